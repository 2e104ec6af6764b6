#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An IPv4 or IPv6 network (`10.0.0.0/8`, `2001:db8::/32`, or one address), and whether an
/// address is in it: who may use the seed's plain-HTTP agent routes.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    let bytes: [UInt8]
    let prefix: Int
    public let description: String

    public init(parsing text: String) throws(AspireError) {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let address = parts.first, let bytes = Self.bytes(of: address) else {
            throw AspireError(.badRequest, "'\(text)' is not a network: give ADDRESS/PREFIX (10.0.0.0/8, 2001:db8::/32) or one address")
        }
        let prefix = parts.count == 2 ? Int(parts[1]) : bytes.count * 8
        guard let prefix, prefix >= 0, prefix <= bytes.count * 8 else {
            throw AspireError(.badRequest, "'\(text)': the prefix length must be 0 to \(bytes.count * 8)")
        }
        self.bytes = bytes
        self.prefix = prefix
        self.description = text
    }

    /// Whether `address` (an IP literal) is in the network; false for anything else.
    public func contains(_ address: String) -> Bool {
        guard let other = Self.bytes(of: address), other.count == self.bytes.count else { return false }
        var remaining = self.prefix
        for (mine, theirs) in zip(self.bytes, other) where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if mine & mask != theirs & mask { return false }
            remaining -= bits
        }
        return true
    }

    static func bytes(of address: String) -> [UInt8]? {
        guard let bytes = IPAddress.bytes(address) else { return nil }
        // An IPv4 client on a dual-stack socket (::ffff:a.b.c.d) is that IPv4 address.
        if bytes.count == 16, bytes.prefix(10).allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF { return Array(bytes.suffix(4)) }
        return bytes
    }
}
