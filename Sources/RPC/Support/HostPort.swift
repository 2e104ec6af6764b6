#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A server address as operators write it: `host:port`, `[v6addr]:port`, or `host` with a
/// default port.
public struct HostPort: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `text`, using `defaultPort` when it names no port. Port 0 (pick a free port) is
    /// accepted only for listen addresses.
    public init(parsing text: String, defaultPort: Int? = nil, allowPortZero: Bool = false) throws(AspireError) {
        let text = text.trimmingBlanks()
        var host = Substring(text)
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw AspireError(.badRequest, "'\(text)': missing ']' after an IPv6 address")
            }
            host = text[text.index(after: text.startIndex) ..< close]
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else {
                    throw AspireError(.badRequest, "'\(text)': expected ':port' after ']'")
                }
                portText = rest.dropFirst()
            }
        } else if let colon = text.lastIndex(of: ":"), text.firstIndex(of: ":") == colon {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty else { throw AspireError(.badRequest, "'\(text)': empty host name") }
        let port: Int
        if let portText {
            guard let value = Int(portText), ((allowPortZero ? 0 : 1) ... 65535).contains(value) else {
                throw AspireError(.badRequest, "'\(text)': port must be a number from 1 to 65535")
            }
            port = value
        } else if let defaultPort {
            port = defaultPort
        } else {
            throw AspireError(.badRequest, "'\(text)': expected host:port")
        }
        self.init(host: String(host), port: port)
    }

    /// HOST:PORT as new parameters write it (a daemon's socket, `config`'s svrlist): a name or
    /// IPv4 address of letters, digits, `.`, `-` and `_`, or an IPv6 address in brackets, and a
    /// port from 1 to 65535 — a JSON Schema pattern without anchors.
    public static let addressPattern = "(?:[A-Za-z0-9._-]+|\\[[0-9A-Fa-f:.]+\\]):(?:\(WholeText.alternatives(1 ... 65535)))"

    /// Whether `text` is one ``addressPattern`` matches.
    public static func isAddress(_ text: String) -> Bool {
        PatternText.matches(text, "^\(Self.addressPattern)$")
    }

    /// `config`'s svrlist: addresses separated by commas, empty items allowed (the seed writes
    /// "a:1,b:2,"), as a JSON Schema pattern.
    public static let listPattern = "^(?:\(addressPattern))?(?:,(?:\(addressPattern))?)*$"

    /// Parses a comma-separated list, skipping empty items (the seed writes "a:1,b:2,").
    public static func parseList(_ text: String, defaultPort: Int? = nil) throws(AspireError) -> [HostPort] {
        var result: [HostPort] = []
        for item in text.split(separator: ",") where !item.trimmingBlanks().isEmpty {
            result.append(try HostPort(parsing: String(item), defaultPort: defaultPort))
        }
        return result
    }

    public var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }
}
