import Crypto
#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// A link to one package file of the store that works without a bearer token until it expires,
/// for the seed's plain-HTTP agents: they send no token and could not fetch an
/// `aspire://package/...` url. The gateway hands one out with each install or upgrade job and
/// checks it on download; the key is the enrollment token, so only a node's gateway can make
/// one, and a link opens that one file and nothing else.
public struct DownloadLink: Sendable, Equatable {
    public var file: StoreFile
    /// Seconds since 1970 after which the link no longer works.
    public var expires: Int64

    /// How long a link handed out with a job works: long enough for a slow agent, and a job
    /// re-sent later comes with a new link.
    public static let lifetime: Int64 = 24 * 3600

    public init(file: StoreFile, expires: Int64) {
        self.file = file
        self.expires = expires
    }

    /// The lowercase hex HMAC-SHA256 of path and expiry under `key`.
    public func signature(key: String) -> String {
        let message = Data("aspire-download\n\(self.file.path)\n\(self.expires)".utf8)
        let code = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Data(key.utf8)))
        return Array(code).hexString
    }

    /// Whether `signature` was made by `key` for this link, and the link has not expired.
    public func isValid(signature: String, key: String, now: Date = Date()) -> Bool {
        guard Int64(now.timeIntervalSince1970) <= self.expires else { return false }
        return Secret.matches(signature, self.signature(key: key))
    }
}
