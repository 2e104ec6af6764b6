import Crypto
import Foundation
import RPC
import SystemPackage

/// The package files of one node: `<data>/packages/{os}/{arch}/{file}`.
///
/// Names come from the network, so every one that becomes a path component is checked first
/// (``validate(_:)``): a safe alphabet, no separators, no `..`, nothing hidden. An upload is
/// written to `<data>/packages/.incoming/` and hashed on the way; it takes its place only once
/// the store accepted the record, so a refused or broken upload leaves nothing behind.
///
/// In a cluster (``shared``: the PostgreSQL store) the database holds every file by SHA256
/// (``SQLStore/putContent(_:size:from:)``) and these files are each node's cache of it: a node
/// asked for a file it lacks fetches it from the database a chunk at a time, checks its SHA256,
/// and keeps it; past ``cacheBytes`` the files served longest ago are removed. One SQLite node
/// keeps its files as the only copy.
struct PackageFiles: Sendable {
    let dataDirectory: String
    /// Uploads larger than this are refused (payload too large).
    let maxBytes: Int64
    /// The cluster's store of package content; nil for one node on SQLite.
    var shared: SQLStore? = nil
    /// How many bytes of package files a cluster node keeps.
    var cacheBytes: Int64 = 10 << 30

    static let directoryName = "packages"

    /// `packages/{os}/{arch}/{file}`, relative to the data directory (the seed's `path`).
    static func relativePath(os: String, arch: String, file: String) -> String {
        "\(Self.directoryName)/\(os)/\(arch)/\(file)"
    }

    func absolute(_ relativePath: String) -> String {
        "\(self.dataDirectory)/\(relativePath)"
    }

    /// Checks every name of a package; the error names the field and what is wrong with it.
    static func validate(_ info: Aspire_V1_PackageInfo) throws(AspireError) {
        try Self.check(info.name, field: "name", maxLength: 64)
        try Self.check(info.version, field: "version", maxLength: 64)
        try Self.check(info.os, field: "os", maxLength: 64)
        try Self.check(info.arch, field: "arch", maxLength: 16)
        try Self.check(info.file, field: "file", maxLength: 255)
        if !info.sha256.isEmpty {
            guard info.sha256.count == 64, info.sha256.allSatisfy(\.isHexDigit) else {
                throw AspireError(.unprocessable, "sha256 must be 64 hexadecimal digits")
            }
        }
    }

    /// A name that may become one path component.
    static func check(_ value: String, field: String, maxLength: Int) throws(AspireError) {
        guard !value.isEmpty else {
            throw AspireError(.unprocessable, "\(field) is required")
        }
        guard value.utf8.count <= maxLength else {
            throw AspireError(.unprocessable, "\(field) is longer than \(maxLength) bytes")
        }
        guard !value.contains("/"), !value.contains("\\") else {
            throw AspireError(.unprocessable, "\(field) '\(value)' must not contain path separators")
        }
        guard !value.contains("..") else {
            throw AspireError(.unprocessable, "\(field) '\(value)' must not contain '..'")
        }
        guard !value.hasPrefix(".") else {
            throw AspireError(.unprocessable, "\(field) '\(value)' must not start with '.'")
        }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+~@:")
        guard value.allSatisfy({ allowed.contains($0) }) else {
            throw AspireError(.unprocessable, "\(field) '\(value)' may hold only letters, digits and . _ - + ~ @ :")
        }
    }

    /// An upload on its way to disk.
    final class Incoming {
        let path: String
        private let handle: FileHandle
        private var hasher = SHA256()
        private(set) var size: Int64 = 0
        private let maxBytes: Int64

        init(directory: String, maxBytes: Int64) throws {
            try AtomicFile.makeDirectory(directory, mode: 0o700)
            self.path = "\(directory)/\(UUID.random().uuidString.lowercased()).part"
            guard FileManager.default.createFile(atPath: self.path, contents: nil, attributes: [.posixPermissions: 0o600]),
                let handle = FileHandle(forWritingAtPath: self.path)
            else {
                throw AspireError(.internalError, "cannot create \(self.path)")
            }
            self.handle = handle
            self.maxBytes = maxBytes
        }

        func append(_ bytes: Data) throws {
            self.size += Int64(bytes.count)
            guard self.size <= self.maxBytes else {
                throw AspireError(.payloadTooLarge, "the package is larger than the limit of \(self.maxBytes) bytes")
            }
            self.hasher.update(data: bytes)
            try self.handle.write(contentsOf: bytes)
        }

        /// Flushes the file to disk and answers its SHA256 (hex).
        func finish() throws -> String {
            try self.handle.synchronize()
            try self.handle.close()
            return self.hasher.finalize().hexString
        }

        func discard() {
            try? self.handle.close()
            unlink(self.path)
        }
    }

    func incoming() throws -> Incoming {
        try Incoming(directory: self.absolute("\(Self.directoryName)/.incoming"), maxBytes: self.maxBytes)
    }

    /// Moves a finished upload to its place (replacing nothing: the caller made sure no record
    /// owns the path).
    func install(_ incoming: Incoming, at relativePath: String) throws {
        let target = self.absolute(relativePath)
        try AtomicFile.makeDirectory((target as NSString).deletingLastPathComponent, mode: 0o755)
        chmod(incoming.path, 0o644)
        guard rename(incoming.path, target) == 0 else {
            throw AspireError(.internalError, "cannot move the upload to \(target): \(String(cString: strerror(errno)))")
        }
    }

    /// SHA256 and size of a file already in the store (the seed's JSON registration).
    func hashExisting(_ relativePath: String) throws -> (sha256: String, size: Int64) {
        let path = self.absolute(relativePath)
        do {
            return try FileDigest.sha256(atPath: path)
        } catch Errno.noSuchFileOrDirectory {
            throw AspireError(
                .notFound,
                "no file \(relativePath) in the package store: upload its bytes (the raw body, or base64 in the JSON field content), or copy it there first"
            )
        }
    }

    func remove(_ relativePath: String) {
        unlink(self.absolute(relativePath))
    }

    // MARK: The cluster's copy

    /// Puts a stored package's file into the cluster's store (nothing without one).
    func share(_ record: PackageRecord) async throws {
        guard let shared = self.shared else { return }
        guard let handle = FileHandle(forReadingAtPath: self.absolute(record.path)) else {
            throw AspireError(.internalError, "cannot read \(record.path) to share it")
        }
        defer { try? handle.close() }
        try await shared.putContent(record.sha256, size: record.size, from: handle)
    }

    /// Forgets a deleted package's file here and, when no version has it any more, in the
    /// cluster's store.
    func forget(_ record: PackageRecord) async throws {
        self.remove(record.path)
        try await self.shared?.dropContentIfUnused(record.sha256)
    }

    /// The file of `record` on this node, fetched from the cluster's store when this node lacks
    /// it (or holds another file by that name).
    func localFile(for record: PackageRecord) async throws -> String {
        let path = self.absolute(record.path)
        if let size = Self.size(of: path), size == record.size {
            // Served now: the last to be evicted.
            utimes(path, nil)
            return path
        }
        guard let shared = self.shared else {
            throw AspireError(.notFound, "package \(record.name) \(record.version) is registered but its file is not on this node (\(record.path))")
        }
        let incoming = try self.incoming()
        do {
            let found = try await shared.readContent(record.sha256) { try incoming.append($0) }
            guard found else {
                throw AspireError(.notFound, "package \(record.name) \(record.version): its content (\(record.sha256)) is in no store of the cluster")
            }
            let sha256 = try incoming.finish()
            guard sha256 == record.sha256 else {
                throw AspireError(.internalError, "package \(record.name) \(record.version): the cluster's copy hashes to \(sha256), not \(record.sha256)")
            }
            try self.install(incoming, at: record.path)
        } catch {
            incoming.discard()
            throw error
        }
        self.evict(keeping: path)
        return path
    }

    /// Removes the files served longest ago until this node's packages fit ``cacheBytes``.
    func evict(keeping kept: String) {
        let root = self.absolute(Self.directoryName)
        guard let walker = FileManager.default.enumerator(atPath: root) else { return }
        var files: [(path: String, size: Int64, used: Date)] = []
        while let relative = walker.nextObject() as? String {
            guard !relative.hasPrefix(".incoming") else { continue }
            let path = "\(root)/\(relative)"
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                attributes[.type] as? FileAttributeType == .typeRegular
            else { continue }
            files.append((path, (attributes[.size] as? NSNumber)?.int64Value ?? 0, attributes[.modificationDate] as? Date ?? .distantPast))
        }
        var total = files.reduce(0) { $0 + $1.size }
        for file in files.sorted(by: { $0.used < $1.used }) where total > self.cacheBytes && file.path != kept {
            if unlink(file.path) == 0 { total -= file.size }
        }
    }

    private static func size(of path: String) -> Int64? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            attributes[.type] as? FileAttributeType == .typeRegular
        else { return nil }
        return (attributes[.size] as? NSNumber)?.int64Value
    }
}
