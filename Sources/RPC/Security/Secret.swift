#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Crypto

/// A bearer token kept in a file of the data directory (admin token, enrollment token).
public enum Secret {
    /// Reads the token in `path`, or makes a new random one there (mode 0600) when the file is
    /// missing. Returns the token and whether it was created now.
    public static func loadOrCreate(at path: String) throws -> (token: String, created: Bool) {
        if let existing = try? self.read(path) {
            return (existing, false)
        }
        let token = Self.make()
        try AtomicFile.write(token + "\n", to: path, mode: 0o600)
        return (token, true)
    }

    /// A new random token: `bytes` bytes from the system's generator, in hex.
    public static func make(bytes: Int = 32) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0 ..< bytes).map { _ in UInt8.random(in: 0 ... 255, using: &generator) }.hexString
    }

    /// The digest a token is stored and looked up by (join tokens, operators' tokens): SHA-256, hex.
    public static func digest(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).hexString
    }

    /// The token of an `authorization: Bearer <token>` value, or nil for any other form.
    public static func bearerToken(_ header: String) -> String? {
        let prefix = "Bearer "
        guard header.hasPrefix(prefix) else { return nil }
        return String(header.dropFirst(prefix.count))
    }

    /// Reads a token file, trimming white space; fails on an empty file.
    public static func read(_ path: String) throws -> String {
        let text = try String(contentsOfFile: path, encoding: .utf8).trimmed()
        guard !text.isEmpty else {
            throw AspireError(.unauthenticated, "token file \(path) is empty")
        }
        return text
    }

    /// Compares two tokens in time independent of where they differ.
    public static func matches(_ presented: String, _ expected: String) -> Bool {
        let a = SHA256.hash(data: Data(presented.utf8))
        let b = SHA256.hash(data: Data(expected.utf8))
        return zip(a, b).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
