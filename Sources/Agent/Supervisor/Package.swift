import Crypto
#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
public import RPC
public import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Where a package comes from: the `url` of a sub-agent command.
enum PackageSource: Sendable, Equatable {
    /// `file:///path`
    case file(String)
    /// `http://` or `https://`
    case web(URL)
    /// `aspire://package/OS/ARCH/FILE`: the server's package store, over the agent's own channel.
    case store(String)
    /// `command://yum install MiniAgent -y`: runs the command instead of fetching anything.
    case command(String)

    init(_ url: String) throws(AspireError) {
        if url.hasPrefix("command://") {
            let command = String(url.dropFirst("command://".count)).trimmingBlanks()
            guard !command.isEmpty else { throw AspireError(.invalidParams, "url 'command://' names no command") }
            self = .command(command)
            return
        }
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased() else {
            throw AspireError(.invalidParams, "url '\(url)' is not a URL (use http(s)://, file://, aspire://package/ or command://)")
        }
        switch scheme {
        case "file":
            guard parsed.host == nil || parsed.host == "" || parsed.host == "localhost", parsed.path.hasPrefix("/") else {
                throw AspireError(.invalidParams, "url '\(url)': file URLs name a local absolute path (file:///path)")
            }
            self = .file(parsed.path)
        case "http", "https":
            guard parsed.host?.isEmpty == false else { throw AspireError(.invalidParams, "url '\(url)' names no host") }
            self = .web(parsed)
        case "aspire":
            guard parsed.host == "package" else {
                throw AspireError(.invalidParams, "url '\(url)': the server's store is aspire://package/OS/ARCH/FILE")
            }
            let path = String(parsed.path.drop { $0 == "/" })
            let parts = path.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
                throw AspireError(.invalidParams, "url '\(url)': the server's store is aspire://package/OS/ARCH/FILE")
            }
            self = .store(path)
        default:
            throw AspireError(.invalidParams, "url '\(url)': scheme '\(scheme)' is not supported (use http(s)://, file://, aspire://package/ or command://)")
        }
    }
}

/// Fetches a package into a staging file and checks its SHA256 before anything reads it.
public struct PackageFetcher: Sendable {
    /// Writes the store file at a path (OS/ARCH/FILE) to a handle; the runtime provides it over
    /// its current connection.
    public typealias StoreDownload = @Sendable (_ path: String, _ into: Destination) async throws(AspireError) -> Void
    /// Fetches an http(s) URL into a handle.
    public typealias WebDownload = @Sendable (_ url: URL, _ into: Destination) async throws(AspireError) -> Void
    /// The staging file a download writes to (swift-system's: NIO has a `FileDescriptor` too).
    public typealias Destination = FileDescriptor

    var store: StoreDownload?
    var web: WebDownload?

    /// Without `store`, `aspire://package/` URLs cannot be fetched; without `web`, http(s) ones.
    public init(store: StoreDownload? = nil, web: WebDownload? = nil) {
        self.store = store
        self.web = web
    }

    /// Fetches `source` to `destination`, then verifies `checksum` ("SHA256:<hex>") over the
    /// bytes written there.
    func fetch(_ source: PackageSource, checksum: String, to destination: String) async throws(AspireError) {
        let handle: FileDescriptor
        do {
            handle = try FileDescriptor.open(
                FilePath(destination), .writeOnly, options: [.create, .truncate, .closeOnExec], permissions: [.ownerReadWrite]
            )
        } catch {
            throw AspireError(.agentInternal, "cannot create \(destination): \(error)")
        }
        do {
            defer { try? handle.close() }
            switch source {
            case .file(let path):
                try Self.copy(path, into: handle, at: destination)
            case .web(let url):
                guard let web else { throw AspireError(.downloadFailed, "this agent cannot fetch \(url.scheme ?? "http") URLs") }
                try await web(url, handle)
            case .store(let path):
                guard let store else { throw AspireError(.downloadFailed, "not connected to a server: cannot fetch aspire://package/\(path)") }
                try await store(path, handle)
            case .command:
                throw AspireError(.agentInternal, "command:// has nothing to fetch")
            }
            _ = fsync(handle.rawValue)
        }
        try Self.verify(destination, checksum: checksum)
    }

    /// Copies a local package; a failure says which side failed (a source that cannot be read is
    /// the command's fault, a destination that cannot be written, a full disk say, the host's).
    private static func copy(_ path: String, into handle: FileDescriptor, at destination: String) throws(AspireError) {
        let source: FileDescriptor
        do {
            source = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
        } catch {
            throw AspireError(.downloadFailed, "cannot read \(path): \(error)")
        }
        defer { try? source.close() }
        var writing: (any Error)?
        do {
            try source.readToEnd { piece in
                do { _ = try handle.writeAll(piece) } catch {
                    writing = error
                    throw error
                }
            }
        } catch {
            if let writing { throw AspireError(.agentInternal, "cannot write \(destination): \(writing)") }
            throw AspireError(.downloadFailed, "cannot read \(path): \(error)")
        }
    }

    /// Compares the file's SHA256 with `checksum`.
    static func verify(_ path: String, checksum: String) throws(AspireError) {
        let expected = String(checksum.dropFirst("SHA256:".count)).lowercased()
        let actual: String
        let size: Int64
        do {
            (actual, size) = try FileDigest.sha256(atPath: path)
        } catch {
            throw AspireError(.agentInternal, "cannot read \(path): \(error)")
        }
        guard actual == expected else {
            throw AspireError(.checksumMismatch, "checksum mismatch: the package (\(size) bytes) has SHA256:\(actual), the command expects SHA256:\(expected); nothing was unpacked")
        }
    }
}

/// What kind of file a package is, from its first bytes.
enum PackageFormat: Sendable, Equatable {
    /// A tar archive, compressed or not (tar finds out which).
    case tarball
    case deb
    case rpm

    init(path: String) throws(AspireError) {
        let head: [UInt8]
        do {
            head = try FileDescriptor.reading(path) { try $0.read(upTo: 512) }
        } catch {
            throw AspireError(.agentInternal, "cannot read \(path): \(error)")
        }
        func starts(_ magic: [UInt8]) -> Bool { head.starts(with: magic) }
        if starts(Array("!<arch>\ndebian-binary".utf8)) {
            self = .deb
        } else if starts([0xED, 0xAB, 0xEE, 0xDB]) {
            self = .rpm
        } else if starts([0x1F, 0x8B]) || starts([0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) || starts(Array("BZh".utf8))
            || starts([0x28, 0xB5, 0x2F, 0xFD]) || (head.count >= 262 && Array(head[257 ..< 262]) == Array("ustar".utf8))
        {
            self = .tarball
        } else {
            throw AspireError(.badPackage, "the package is neither a tar archive (.tar.gz, .tar.xz, ...) nor a .deb or .rpm")
        }
    }
}

/// Reads a tarball's table of contents with GNU tar and refuses anything that could write
/// outside the directory it is unpacked in — before a single byte is unpacked.
enum Tarball {
    struct Entry: Sendable, Equatable {
        /// '-' file, 'd' directory, 'l' symbolic link, 'h' hard link, and tar's other letters.
        var type: Character
        var mode: String
        var name: String
        var target: String?
    }

    /// Lists the archive: `tar -tv` with C-quoted names, so no name can fake a line or an
    /// arrow, and `--absolute-names`, so tar shows names as they are instead of quietly
    /// stripping a leading `/` or `../` (which extraction would do too, but such a package is
    /// refused, not repaired).
    static func list(_ archive: String, scratch: String) async throws(AspireError) -> [Entry] {
        let listing = "\(scratch)/listing"
        let errors = "\(scratch)/listing.err"
        let termination = try await Launcher.run(
            Launcher.Request(
                executable: "tar",
                arguments: ["-tv", "--quoting-style=c", "--numeric-owner", "--absolute-names", "-f", archive],
                environment: ["LC_ALL": "C", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"],
                outputPath: listing,
                errorPath: errors
            ),
            timeout: .seconds(300)
        )
        guard termination.succeeded else {
            throw Launcher.failed(.badPackage, "tar cannot read the package:", termination, log: errors, directory: scratch)
        }
        let text = (try? String(contentsOfFile: listing, encoding: .utf8)) ?? ""
        try? FileManager.default.removeItem(atPath: listing)
        var entries: [Entry] = []
        for line in text.split(separator: "\n") where !line.isEmpty {
            guard let entry = self.parse(line) else {
                throw AspireError(.badPackage, "cannot read tar's listing line '\(line.prefix(200))'")
            }
            entries.append(entry)
        }
        return entries
    }

    /// One `tar -tv --quoting-style=c` line: `MODE OWNER SIZE DATE TIME "NAME"[ -> "TARGET"| link to "TARGET"]`.
    static func parse(_ line: Substring) -> Entry? {
        guard let type = line.first, let quote = line.firstIndex(of: "\"") else { return nil }
        let mode = String(line.prefix { $0 != " " })
        guard let (name, afterName) = self.unquote(line[quote...]) else { return nil }
        var rest = line[afterName...]
        var target: String?
        for separator in [" -> ", " link to "] where rest.hasPrefix(separator) {
            rest = rest.dropFirst(separator.count)
            guard let (value, end) = self.unquote(rest) else { return nil }
            target = value
            rest = rest[end...]
        }
        guard rest.isEmpty else { return nil }
        return Entry(type: type, mode: mode, name: name, target: target)
    }

    /// A C-quoted string at the start of `text`: the value and the index after the closing quote.
    static func unquote(_ text: Substring) -> (String, Substring.Index)? {
        guard text.first == "\"" else { return nil }
        var bytes: [UInt8] = []
        var index = text.index(after: text.startIndex)
        while index < text.endIndex {
            let character = text[index]
            if character == "\"" { return (String(decoding: bytes, as: UTF8.self), text.index(after: index)) }
            if character == "\\" {
                index = text.index(after: index)
                guard index < text.endIndex else { return nil }
                let escaped = text[index]
                switch escaped {
                case "n": bytes.append(0x0A)
                case "t": bytes.append(0x09)
                case "r": bytes.append(0x0D)
                case "a": bytes.append(0x07)
                case "b": bytes.append(0x08)
                case "f": bytes.append(0x0C)
                case "v": bytes.append(0x0B)
                case "\\", "\"", "?", "'": bytes.append(UInt8(escaped.asciiValue ?? 0))
                case "0" ... "7":
                    var value = 0
                    var digits = 0
                    while digits < 3, index < text.endIndex, let digit = text[index].wholeNumberValue, digit < 8 {
                        value = value * 8 + digit
                        digits += 1
                        index = text.index(after: index)
                    }
                    bytes.append(UInt8(truncatingIfNeeded: value))
                    continue
                default: return nil
                }
            } else {
                bytes.append(contentsOf: Array(String(character).utf8))
            }
            index = text.index(after: index)
        }
        return nil
    }

    /// Refuses entries with an absolute path or `..`, links whose target leaves the archive's
    /// root, entries under a symbolic link of the archive, devices and set-id files.
    static func validate(_ entries: [Entry]) throws(AspireError) {
        // Every symbolic link of the archive, by its path: a link's target is resolved through
        // the others (as the kernel would, one component at a time), wherever they stand in it.
        var links: [[String]: Entry] = [:]
        for entry in entries where entry.type == "l" {
            links[self.components(entry.name)] = entry
        }
        for entry in entries {
            let name = entry.name
            guard !name.hasPrefix("/") else { throw self.unsafe(entry, "an absolute path") }
            let parts = self.components(name)
            guard !parts.contains("..") else { throw self.unsafe(entry, "'..' in its path") }
            for length in 1 ..< max(parts.count, 1) where links[Array(parts.prefix(length))] != nil {
                throw self.unsafe(entry, "a path through the archive's own symbolic link '\(parts.prefix(length).joined(separator: "/"))'")
            }
            guard !entry.mode.contains("s"), !entry.mode.contains("S") else { throw self.unsafe(entry, "set-user-ID or set-group-ID mode \(entry.mode)") }
            // Files and directories root runs or reads must not be changeable by other users.
            let bits = Array(entry.mode)
            if entry.type == "-" || entry.type == "d", bits.count >= 9, bits[5] == "w" || bits[8] == "w" {
                throw self.unsafe(entry, "mode \(entry.mode), writable by group or others (chmod go-w before packing)")
            }
            switch entry.type {
            case "-", "d":
                break
            case "l":
                guard let target = entry.target, !target.isEmpty else { throw self.unsafe(entry, "a link without a target") }
                guard !target.hasPrefix("/") else { throw self.unsafe(entry, "a link to the absolute path '\(target)'") }
                _ = try self.resolve(parts, links: links, depth: 0)
            case "h":
                guard let target = entry.target, !target.hasPrefix("/"), !self.components(target).contains("..") else {
                    throw self.unsafe(entry, "a hard link to '\(entry.target ?? "")', outside the package")
                }
            default:
                throw self.unsafe(entry, "type '\(entry.type)' (only files, directories and links are unpacked)")
            }
        }
    }

    /// Where the link at `path` leads, as components below the package's root: its target is
    /// walked from the link's directory, each component that is itself a link of the archive
    /// replaced by where that link leads before the next one is taken; a step above the root, or
    /// links that lead to each other, refuse the archive.
    private static func resolve(_ path: [String], links: [[String]: Entry], depth: Int) throws(AspireError) -> [String] {
        guard let link = links[path], let target = link.target else { return path }
        guard depth < 40 else { throw self.unsafe(link, "links that lead to each other") }
        var resolved = Array(path.dropLast())
        for part in self.components(target) {
            if part == ".." {
                guard !resolved.isEmpty else { throw self.unsafe(link, "a link to '\(target)', outside the package") }
                resolved.removeLast()
            } else {
                resolved.append(part)
                if links[resolved] != nil { resolved = try self.resolve(resolved, links: links, depth: depth + 1) }
            }
        }
        return resolved
    }

    private static func components(_ path: String) -> [String] {
        path.split(separator: "/").map(String.init).filter { $0 != "." }
    }

    private static func unsafe(_ entry: Entry, _ why: String) -> AspireError {
        AspireError(.badPackage, "package refused: entry '\(entry.name)' has \(why); nothing was unpacked")
    }

    /// Where an unpacked package's files are: `tree`, or its one directory when the archive
    /// wraps everything in one (and `marker`, the file a package must have, is not at the top).
    static func root(of tree: String, marker: String) -> String {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: tree)) ?? []
        if !entries.contains(marker), entries.count == 1 {
            let only = "\(tree)/\(entries[0])"
            if (try? Stat(FilePath(only)))?.type == .directory { return only }
        }
        return tree
    }

    /// Unpacks a validated archive into `directory` (owned by root; modes kept without set-id bits).
    static func extract(_ archive: String, into directory: String, scratch: String) async throws(AspireError) {
        let log = "\(scratch)/extract.log"
        let termination = try await Launcher.run(
            Launcher.Request(
                executable: "tar",
                arguments: ["-x", "--no-same-owner", "--no-overwrite-dir", "-f", archive, "-C", directory],
                environment: ["LC_ALL": "C", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"],
                outputPath: log
            ),
            timeout: .seconds(600)
        )
        guard termination.succeeded else {
            throw Launcher.failed(.badPackage, "tar could not unpack the package:", termination, log: log, directory: directory)
        }
    }
}

/// Tools the supervisor needs, checked at start.
public enum Tools {
    /// The PATH of what the agent runs as root, and where it looks for its tools.
    public static let rootPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// The environment of install commands and package managers, run as root.
    static let rootEnvironment = ["PATH": rootPath, "HOME": "/root", "LC_ALL": "C"]

    /// What the agent needs from the host, and what cannot work without each (seed 004: check
    /// them at start). The agent still starts without them — it can report and run the rest —
    /// and says which are missing in its log and to the server.
    static let required: [(name: String, neededFor: String)] = [
        ("sh", "control scripts, install commands"), ("bash", "sync.bash, schedules"), ("tar", "sub-agent packages, plugins"),
        ("gzip", "compressed packages"),
    ]

    /// The required tools this host lacks (on `path`), each with what it is needed for.
    public static func missing(on path: String = rootPath) -> [String] {
        self.required.filter { self.find($0.name, on: path) == nil }.map { "\($0.name) (\($0.neededFor))" }
    }

    /// The path of `name` on `path` (``rootPath`` by default), or nil.
    static func find(_ name: String, on path: String = rootPath) -> String? {
        for directory in path.split(separator: ":") {
            let path = "\(directory)/\(name)"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }
}
