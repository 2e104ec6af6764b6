public import GRPCCore
public import GRPCNIOTransportHTTP2

#if canImport(Glibc)
import Glibc
#endif

/// TLS material of a listening node.
public struct ServerTLSFiles: Sendable, Hashable {
    public var certificateChain: String
    public var privateKey: String

    public init(certificateChain: String, privateKey: String) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
    }
}

/// How a client checks the server: against a CA file (TLS, peer verified), or not at all
/// (plaintext, only behind an explicit `--insecure`); and, for an enrolled agent, the client
/// certificate it proves itself with.
public enum ClientSecurity: Sendable, Hashable {
    case tls(caFile: String, identity: ClientIdentity? = nil)
    case plaintext
}

/// A client certificate and its key, PEM.
public struct ClientIdentity: Sendable, Hashable {
    public var certificatePEM: String
    public var keyPEM: String

    public init(certificatePEM: String, keyPEM: String) {
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
    }
}

/// Builds the HTTP/2 transports every Aspire binary uses, with one set of defaults.
///
/// Both ends flush their writes at once rather than hold them up to 100 µs for others to join
/// (the transport's default, `flushCoalescing`): an agent's connection carries one stream and a
/// message now and then, an operator's a call or a few, so there is nothing to coalesce, and
/// every hop of a command waited out the delay, with a timer armed for each flush (P3 in
/// bench/README.md).
public enum Transports {
    /// Settings of every listening transport: keepalive, and the largest request message.
    public static func serverConfig(keepalive: Duration = .seconds(30), maxRequestBytes: Int = 8 << 20) -> HTTP2ServerTransport.Posix.Config {
        .defaults { config in
            config.connection.keepalive.time = keepalive
            config.connection.keepalive.timeout = .seconds(10)
            config.connection.keepalive.clientBehavior.allowWithoutCalls = true
            config.connection.keepalive.clientBehavior.minPingIntervalWithoutCalls = .seconds(5)
            config.rpc.maxRequestPayloadSize = maxRequestBytes
            // An agent holds one stream and makes a call now and then; an operator's tool a few.
            // More at once on one connection is a client gone wrong, not a reason to grow.
            config.http2.maxConcurrentStreams = Self.maxConcurrentStreams
            config.connection.flushCoalescing = nil
        }
    }

    /// HTTP/2 streams one client may have open at once on one connection.
    public static let maxConcurrentStreams = 64

    /// A client transport to `address`; `authority` is the name the server's certificate must
    /// carry (SNI and verification) when `address` is a resolved IP. `silentPeer` has the kernel
    /// close a connection whose server went silent; `keepalive` adds HTTP/2 pings.
    public static func client(
        address: HostPort,
        authority: String? = nil,
        security: ClientSecurity,
        silentPeer: SilentPeer? = nil,
        keepalive: Duration? = nil
    ) throws -> HTTP2ClientTransport.Posix {
        let transportSecurity: HTTP2ClientTransport.Posix.TransportSecurity
        switch security {
        case .plaintext:
            transportSecurity = .plaintext
        case .tls(let caFile, let identity):
            transportSecurity = .tls { config in
                config.trustRoots = .certificates([.file(path: caFile, format: .pem)])
                config.serverCertificateVerification = .fullVerification
                if let identity {
                    config.certificateChain = [.bytes(Array(identity.certificatePEM.utf8), format: .pem)]
                    config.privateKey = .bytes(Array(identity.keyPEM.utf8), format: .pem)
                }
            }
        }
        return try HTTP2ClientTransport.Posix(
            target: self.target(address),
            transportSecurity: transportSecurity,
            config: .defaults { config in
                // SNI cannot carry an IP address: for IP literals the certificate is checked
                // against the peer's address (its IP SANs) instead.
                let name = authority ?? address.host
                config.http2.authority = IPAddress.isIPv4(name) || IPAddress.isIPv6(name) ? nil : name
                if let keepalive {
                    config.connection.keepalive = .init(time: keepalive, timeout: .seconds(10), allowWithoutCalls: true)
                }
                config.connection.flushCoalescing = nil
                config.backoff = .init(initial: .milliseconds(200), max: .seconds(2), multiplier: 1.6, jitter: 0.2)
                // The transport's one hook on a new connection's channel (named for debugging).
                if let silentPeer {
                    config.channelDebuggingCallbacks.onCreateTCPConnection = { silentPeer.configureAsync($0) }
                }
            }
        )
    }

    static func target(_ address: HostPort) -> any ResolvableTarget {
        if IPAddress.isIPv4(address.host) {
            return .ipv4(host: address.host, port: address.port)
        }
        if IPAddress.isIPv6(address.host) {
            return .ipv6(host: address.host, port: address.port)
        }
        return .dns(host: address.host, port: address.port)
    }
}

/// Checks for IP literals.
public enum IPAddress {
    public static func isIPv4(_ text: String) -> Bool {
        var address = in_addr()
        return inet_pton(AF_INET, text, &address) == 1
    }

    public static func isIPv6(_ text: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET6, text, &address) == 1
    }

    /// The address's bytes in network order (4 for IPv4, 16 for IPv6); nil for anything else.
    public static func bytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}

extension CallOptions {
    /// Fail fast instead of waiting for a connection: the agent's connector and the CLIs try
    /// other addresses or report the error themselves.
    public static func failFast(timeout: Duration?) -> Self {
        var options = CallOptions.defaults
        options.waitForReady = false
        options.timeout = timeout
        return options
    }
}
