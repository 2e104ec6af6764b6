#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension Aspire_V1_Plugin {
    /// The checks a plugin's definition must pass, the same on the server (when it is stored,
    /// `code` 130003) and on the agent (when a set arrives, 3021): its name is a path name, its
    /// source is an archive URL with a SHA256 checksum or a git URL pinned to a commit (or with a
    /// moving ref the operator allowed; never both, never a URL git would read as an option), and
    /// its period and timeout are not negative.
    /// The commit a git plugin is pinned to: its ref when that is a full commit id.
    public var pinnedCommit: String? {
        PatternText.matches(self.ref, Self.commitPattern) ? self.ref.lowercased() : nil
    }

    /// A full commit id.
    public static let commitPattern = "^[0-9a-fA-F]{40}$"
    /// An archive's url: http(s), file or aspire (the store's), printable ASCII without spaces.
    public static let archivePattern = "^(?:\(["https", "http", "file", "aspire"].map(PatternText.anyCase).joined(separator: "|")))://[!-~]*$"
    /// A git url: https://, ssh://, file://, or scp-like user@host:path (git:// and http://
    /// carry no integrity), printable ASCII without spaces.
    public static let gitPattern =
        "^(?:\(["https", "ssh", "file"].map { PatternText.anyCase($0) + "://" }.joined(separator: "|"))|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[!-9;-~])[!-~]*$"
    /// A branch or tag: ASCII letters, digits and `. _ / + -`, not starting with `-` or `.`, no `..`.
    public static let refPattern = "^(?:[A-Za-z0-9_/+][A-Za-z0-9_/+-]*(?:\\.[A-Za-z0-9_/+-]+)*\\.?)?$"

    public func check(code: ErrorCode) throws(AspireError) {
        try PathName.check(self.name, field: "plugin name", code: code)
        let owner = "plugin '\(self.name)'"
        if !self.checksum.isEmpty, !CommandParameters.isSHA256(self.checksum) {
            throw AspireError(code, "\(owner): checksum must be SHA256:<64 hex digits>")
        }
        guard PatternText.matches(self.ref, Self.refPattern) else {
            throw AspireError(code, "\(owner): ref '\(self.ref.prefix(200))' is not a branch, tag or commit")
        }
        switch (self.url.isEmpty, self.git.isEmpty) {
        case (false, true) where self.url.lowercased().hasPrefix("\(BuiltinCollector.scheme)://"):
            do {
                _ = try BuiltinCollector(url: self.url)
            } catch {
                throw AspireError(code, "\(owner): \(error.cause)")
            }
        case (false, true):
            guard CommandParameters.isSHA256(self.checksum) else {
                throw AspireError(code, "\(owner): url needs checksum SHA256:<64 hex digits> (or name a package of the store)")
            }
            guard PatternText.matches(self.url, Self.archivePattern) else {
                throw AspireError(code, "\(owner): url '\(self.url.prefix(200))' must be http(s)://, file:// or aspire://package/OS/ARCH/FILE, without spaces")
            }
        case (true, false):
            guard self.checksum.isEmpty else { throw AspireError(code, "\(owner): a git plugin has no checksum (pin it with ref)") }
            // git:// and http:// carry no integrity: anyone on the path could hand root's agents a plugin.
            if ["git://", "http://"].contains(where: self.git.lowercased().hasPrefix) {
                throw AspireError(code, "\(owner): git '\(self.git)' is fetched without integrity; use https://, ssh:// or user@host:path")
            }
            // scp-like user@host:path, as in the seed's git@git.example.com:team/plugin.git
            guard PatternText.matches(self.git, Self.gitPattern) else {
                throw AspireError(code, "\(owner): git '\(self.git.prefix(200))' is not a git URL (https://, ssh://, file:// or user@host:path)")
            }
            // What root's agents run must not change under them without the operator knowing.
            guard self.pinnedCommit != nil || self.allowMovingRef else {
                throw AspireError(
                    code,
                    """
                    \(owner): ref '\(self.ref.isEmpty ? "(the default branch)" : self.ref)' can move; pin a commit (40 hex digits) \
                    or allow a moving ref (aspirectl --allow-moving-ref, REST "allow_moving_ref": true)
                    """
                )
            }
        case (true, true):
            throw AspireError(code, "\(owner) has no source: give url and checksum, a package and version, or git")
        case (false, false):
            throw AspireError(code, "\(owner): give url or git, not both")
        }
        guard self.period >= 0, self.timeout >= 0 else {
            throw AspireError(code, "\(owner): period and timeout must not be negative")
        }
    }
}
