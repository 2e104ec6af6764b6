#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
import SystemPackage

#if canImport(Glibc)
public import Glibc
#endif

/// Whole-file writes that never leave a half-written file behind: temp file, fsync, rename,
/// fsync of the directory.
public enum AtomicFile {
    /// Writes `bytes` to `path` atomically with the given permissions: readers see the old
    /// contents or the new, never part. `durable` also waits for the disk (fsync of the file
    /// and its directory); without it the file survives a crash of this process but not
    /// necessarily of the machine until `sync(_:)` or the kernel's own writeback.
    public static func write(_ bytes: some Collection<UInt8>, to path: String, mode: mode_t = 0o644, durable: Bool = true) throws {
        let directory = FilePath(path).removingLastComponent().string
        let temporary = "\(path).tmp.\(getpid()).\(UInt32.random(in: 0 ... .max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw POSIXFailure(call: "open", path: temporary) }
        var closed = false
        defer {
            if !closed { close(fd) }
        }
        let array = Array(bytes)
        var offset = 0
        while offset < array.count {
            let written = array.withUnsafeBytes { buffer in
                Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written < 0 {
                if errno == EINTR { continue }
                let failure = POSIXFailure(call: "write", path: temporary)
                unlink(temporary)
                throw failure
            }
            offset += written
        }
        // The mode given to open is filtered by the umask; secrets must end up exactly as asked.
        fchmod(fd, mode)
        guard !durable || fsync(fd) == 0 else {
            let failure = POSIXFailure(call: "fsync", path: temporary)
            unlink(temporary)
            throw failure
        }
        close(fd)
        closed = true
        guard rename(temporary, path) == 0 else {
            let failure = POSIXFailure(call: "rename", path: path)
            unlink(temporary)
            throw failure
        }
        if durable {
            self.sync(directory.isEmpty ? "." : directory)
        }
    }

    /// Waits until `path` (a file or a directory) is on disk; false when it cannot be opened or
    /// synced (a file removed meanwhile, for one).
    @discardableResult
    public static func sync(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return fsync(fd) == 0
    }

    /// Writes a string as UTF-8.
    public static func write(_ text: String, to path: String, mode: mode_t = 0o644, durable: Bool = true) throws {
        try self.write(Array(text.utf8), to: path, mode: mode, durable: durable)
    }

    /// Writes `value` as JSON a person can read (keys sorted, indented), atomically: the agent's
    /// state files.
    public static func writeJSON(_ value: some Encodable, to path: String, mode: mode_t = 0o600) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try self.write(Array(try encoder.encode(value)), to: path, mode: mode)
    }

    /// Creates `path` and its parents with the given mode when missing.
    public static func makeDirectory(_ path: String, mode: Int = 0o755) throws {
        try FileManager.default.createDirectory(
            atPath: path,
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: mode]
        )
    }

    /// Makes `path` a directory only its owner may enter: created 0700, or an existing one whose
    /// group or others had any access tightened to 0700. Answers whether it had to be tightened.
    @discardableResult
    public static func makePrivateDirectory(_ path: String) throws -> Bool {
        try self.makeDirectory(path, mode: 0o700)
        guard try Stat(FilePath(path)).permissions.rawValue & 0o077 != 0 else { return false }
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: path)
        return true
    }
}

/// A failed system call, with errno's text.
public struct POSIXFailure: Error, CustomStringConvertible {
    public var call: String
    public var path: String
    public var errno: Int32

    public init(call: String, path: String, errno: Int32 = Glibc.errno) {
        self.call = call
        self.path = path
        self.errno = errno
    }

    public var description: String {
        "\(self.call) \(self.path): \(String(cString: strerror(self.errno)))"
    }
}
