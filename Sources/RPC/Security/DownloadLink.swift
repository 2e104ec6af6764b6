import Crypto
public import Foundation

/// A link to one package file of the store that works without a bearer token until it expires,
/// for the seed's plain-HTTP agents: they send no token and could not fetch an
/// `aspire://package/...` url. The gateway hands one out with each install or upgrade job and
/// checks it on download; the key is the enrollment token, so only a node's gateway can make
/// one, and a link opens that one file and nothing else.
public struct DownloadLink: Sendable, Equatable {
    /// `OS/ARCH/FILE`, as in the url after `aspire://package/`.
    public var path: String
    /// Seconds since 1970 after which the link no longer works.
    public var expires: Int64

    /// How long a link handed out with a job works: long enough for a slow agent, and a job
    /// re-sent later comes with a new link.
    public static let lifetime: Int64 = 24 * 3600

    /// How commands and plugins name a file of the store: `aspire://package/OS/ARCH/FILE`.
    public static let storeURLPrefix = "aspire://package/"

    /// The link to the store file an `aspire://package/OS/ARCH/FILE` url names; nil for other urls.
    public init?(storeURL url: String, expires: Int64) {
        guard url.hasPrefix(Self.storeURLPrefix) else { return nil }
        let path = String(url.dropFirst(Self.storeURLPrefix.count))
        guard path.split(separator: "/", omittingEmptySubsequences: false).count == 3 else { return nil }
        self.init(path: path, expires: expires)
    }

    public init(path: String, expires: Int64) {
        self.path = path
        self.expires = expires
    }

    /// The lowercase hex HMAC-SHA256 of path and expiry under `key`.
    public func signature(key: String) -> String {
        let message = Data("aspire-download\n\(self.path)\n\(self.expires)".utf8)
        let code = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Data(key.utf8)))
        return Array(code).hexString
    }

    /// Whether `signature` was made by `key` for this link, and the link has not expired.
    public func isValid(signature: String, key: String, now: Date = Date()) -> Bool {
        guard Int64(now.timeIntervalSince1970) <= self.expires else { return false }
        return Secret.matches(signature, self.signature(key: key))
    }
}
