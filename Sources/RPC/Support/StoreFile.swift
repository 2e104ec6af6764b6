/// A file of the server's package store as commands and plugins name it:
/// `aspire://package/OS/ARCH/FILE` (fetched over the agent's own connection).
public struct StoreFile: Sendable, Hashable {
    public static let urlPrefix = "aspire://package/"

    /// A package's url as a JSON Schema pattern: one of the store's names three parts under
    /// ``urlPrefix``; any other url is the agent's to fetch.
    public static let urlPattern = "^(?:\(PatternText.notStarting(with: [urlPrefix]))|\(storeURL))$"

    /// One of the store's urls, without anchors: three parts under the prefix (``init(url:)``).
    static let storeURL = PatternText.literal(urlPrefix) + "[^/]*/[^/]*/[^/]*"

    public var os: String
    public var arch: String
    public var file: String

    public init(os: String, arch: String, file: String) {
        self.os = os
        self.arch = arch
        self.file = file
    }

    /// Whether `url` is one of the store's (begins with ``urlPrefix``). By Unicode scalars, as the
    /// document's patterns read it: by characters, a combining mark after the prefix's last `/`
    /// would hide the prefix.
    public static func isStoreURL(_ url: String) -> Bool {
        url.unicodeScalars.starts(with: Self.urlPrefix.unicodeScalars)
    }

    /// The file an `aspire://package/OS/ARCH/FILE` url names; nil for any other url.
    public init?(url: String) {
        guard Self.isStoreURL(url) else { return nil }
        let parts = url.unicodeScalars.dropFirst(Self.urlPrefix.unicodeScalars.count)
            .split(separator: "/", omittingEmptySubsequences: false).map { String(String.UnicodeScalarView($0)) }
        guard parts.count == 3 else { return nil }
        self.init(os: parts[0], arch: parts[1], file: parts[2])
    }

    /// One of the store's urls as a JSON Schema pattern (``init(url:)`` reads it).
    public static let storeURLPattern = "^\(storeURL)$"

    /// `OS/ARCH/FILE`: where it lies under the store's `packages/`.
    public var path: String { "\(self.os)/\(self.arch)/\(self.file)" }

    public var url: String { Self.urlPrefix + self.path }
}
