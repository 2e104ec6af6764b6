#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RPC
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The pages of code the agent mapped and does not run now, handed back.
///
/// Starting and connecting run code from all over the binary (option parsing walks the runtime's
/// metadata; TLS, gRPC and protobuf set themselves up), and so does a command (a process, its
/// cgroup, its result); the kernel maps every page faulted with the cached pages around it (up
/// to 64 KiB). A connected agent held ~34 MiB of its binary this way, an idle one runs ~3 MiB of
/// it. Those pages are clean copies of files: unmapping them (`MADV_DONTNEED`) loses nothing, and
/// a page run again is mapped again, from the page cache (a minor fault) or the file; other
/// processes mapping the same file keep theirs. Only read-only file mappings without a private
/// page are released — data the loader relocated and then made read-only (RELRO) has private
/// copies, which dropping would undo. The kernel would reclaim such pages under pressure anyway;
/// released, the agent's RSS — what a fleet's monitoring watches — is what it uses.
enum CodePages {
    /// What a release handed back.
    struct Released: Equatable {
        var mappings = 0
        var bytes = 0
    }

    /// Releases the clean pages of this process's read-only file mappings (the executable's
    /// text and constants; shared libraries', where it has any) as `/proc/self/smaps` lists them.
    @discardableResult
    static func release() -> Released {
        guard let smaps = Self.smaps() else { return Released() }
        var released = Released()
        for mapping in Self.mappings(smaps) where mapping.isReleasable {
            guard let start = UnsafeMutableRawPointer(bitPattern: mapping.start),
                  madvise(start, mapping.end - mapping.start, MADV_DONTNEED) == 0
            else { continue }
            released.mappings += 1
            released.bytes += mapping.residentBytes
        }
        return released
    }

    /// `/proc/self/smaps`, read to its end (`String(contentsOfFile:)` reads a file of the size
    /// `stat` gives, and procfs says 0).
    static func smaps() -> String? {
        try? FileDescriptor.reading("/proc/self/smaps") { file in
            var bytes: [UInt8] = []
            try file.readToEnd(inPiecesOf: 64 << 10) { bytes += $0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// One mapping of `/proc/PID/smaps`, the fields a release reads.
    struct Mapping: Equatable {
        var start = 0
        var end = 0
        var permissions = ""
        var path = ""
        var residentBytes = 0
        var anonymousBytes = 0

        /// Read-only, mapped from a file (not the kernel's [vdso] or [vvar]), no page of its own.
        var isReleasable: Bool {
            self.permissions.hasPrefix("r") && !self.permissions.contains("w") && self.path.hasPrefix("/") && self.anonymousBytes == 0
                && self.residentBytes > 0
        }
    }

    /// The mappings of an smaps text: a header line (`START-END PERMS OFFSET DEV INODE PATH`),
    /// then `Field: N kB` lines.
    static func mappings(_ smaps: String) -> [Mapping] {
        var mappings: [Mapping] = []
        for line in smaps.split(separator: "\n", omittingEmptySubsequences: true) {
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            if let range = fields.first, let dash = range.firstIndex(of: "-"),
               let start = Int(range[..<dash], radix: 16), let end = Int(range[range.index(after: dash)...], radix: 16), fields.count >= 5
            {
                let path = fields.count == 6 ? fields[5].trimmingBlanks() : ""
                mappings.append(Mapping(start: start, end: end, permissions: String(fields[1]), path: path))
            } else if fields.count == 3, fields[2] == "kB", let kilobytes = Int(fields[1]), !mappings.isEmpty {
                switch fields[0] {
                case "Rss:": mappings[mappings.count - 1].residentBytes = kilobytes * 1024
                case "Anonymous:": mappings[mappings.count - 1].anonymousBytes = kilobytes * 1024
                default: break
                }
            }
        }
        return mappings
    }
}
