import Dispatch
public import RPC

#if canImport(Glibc)
import Glibc
#endif

/// Turns a server name into the addresses to try, in order.
public protocol AddressResolver: Sendable {
    func resolve(_ server: HostPort) async throws -> [HostPort]
}

/// One `--resolve NAME:PORT:ADDR[,ADDR...]` entry, as curl takes it.
public struct ResolveOverride: Sendable, Hashable {
    public var host: String
    public var port: Int
    public var addresses: [String]

    public init(host: String, port: Int, addresses: [String]) {
        self.host = host
        self.port = port
        self.addresses = addresses
    }

    public init(parsing text: String) throws(AspireError) {
        let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, let port = Int(parts[1]), (1 ... 65535).contains(port) else {
            throw AspireError(.badRequest, "--resolve '\(text)': expected NAME:PORT:ADDR[,ADDR...]")
        }
        let addresses = parts[2].split(separator: ",").map { item -> String in
            var text = String(item)
            if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
            return text
        }
        guard !addresses.isEmpty, addresses.allSatisfy({ IPAddress.isIPv4($0) || IPAddress.isIPv6($0) }) else {
            throw AspireError(.badRequest, "--resolve '\(text)': addresses must be IP addresses")
        }
        self.init(host: String(parts[0]), port: port, addresses: addresses)
    }
}

/// getaddrinfo, returning every address of the name in the order the system gives them (so
/// /etc/hosts listing one name on several lines yields each line), with overrides first.
public struct SystemResolver: AddressResolver {
    public var overrides: [ResolveOverride]

    public init(overrides: [ResolveOverride] = []) {
        self.overrides = overrides
    }

    public func resolve(_ server: HostPort) async throws -> [HostPort] {
        if let entry = self.overrides.first(where: { $0.host == server.host && $0.port == server.port }) {
            return entry.addresses.map { HostPort(host: $0, port: server.port) }
        }
        if IPAddress.isIPv4(server.host) || IPAddress.isIPv6(server.host) {
            return [server]
        }
        // getaddrinfo blocks; keep it off the cooperative pool.
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try Self.getaddrinfo(server) })
            }
        }
    }

    static func getaddrinfo(_ server: HostPort) throws -> [HostPort] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = Glibc.getaddrinfo(server.host, String(server.port), &hints, &list)
        guard status == 0, let first = list else {
            throw AspireError(.notFound, "cannot resolve \(server.host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var result: [HostPort] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor?.pointee {
            defer { cursor = entry.ai_next }
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            guard getnameinfo(entry.ai_addr, entry.ai_addrlen, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 else {
                continue
            }
            let address = HostPort(host: String(cString: host), port: server.port)
            if !result.contains(address) { result.append(address) }
        }
        return result
    }
}
