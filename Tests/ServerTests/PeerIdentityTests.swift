import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOPosix
import NIOSSL
import RPC
import Server
import Testing
import TestSupport

/// Which certificate a call is taken to come with: its own connection's, and no other.
@Suite("Peer identity per connection")
struct PeerIdentityTests {
    @Test("Two connections from one address and port to two of the node's addresses keep their own identities: one without a certificate is not taken for the host beside it")
    func onePortTwoNodeAddresses() async throws {
        try await withLocalNode(configure: { $0.listen = HostPort(host: "0.0.0.0", port: 0) }) { node in
            let identity = try await ScriptedAgent.identity("beside", node: node)
            let (first, second) = (Loopback.address(), Loopback.address())
            let source = try NIOCore.SocketAddress(ipAddress: "127.0.0.1", port: Self.freePort())
            // The host's own connection, from `source` to the node's first address: it is the host.
            try await Self.withConnection(from: source, to: first, port: node.address.port, identity: identity, node: node) { host in
                #expect(try await Self.sayInit("beside", over: host).action == .accept)
                // Beside it, from the same address and port to the node's second address, with no
                // certificate and no token: refused, whoever it names.
                try await Self.withConnection(from: source, to: second, port: node.address.port, identity: nil, node: node) { stranger in
                    let refused = await #expect(throws: RPCError.self) { try await Self.sayInit("beside", over: stranger) }
                    #expect(refused?.code == .unauthenticated, "\(String(describing: refused))")
                }
                // The host's connection is still its own after the other closed.
                #expect(try await Self.sayInit("beside", over: host).action == .accept)
            }
        }
    }

    static func sayInit(_ agentSN: String, over client: GRPCClient<HTTP2ClientTransport.WrappedChannel>) async throws -> Aspire_V1_InitResponse {
        var request = Aspire_V1_InitRequest()
        request.agentSn = agentSN
        return try await Aspire_V1_Bootstrap.Client(wrapping: client).`init`(request)
    }

    /// A port no one is bound to now (the kernel's pick for a socket closed at once).
    static func freePort() throws -> Int {
        let channel = try DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).wait()
        defer { try? channel.close().wait() }
        return channel.localAddress?.port ?? 0
    }

    /// A gRPC client over one TLS connection made from `source` (shared: SO_REUSEADDR) to
    /// `host`:`port`, presenting `identity` when given.
    static func withConnection<Result: Sendable>(
        from source: NIOCore.SocketAddress, to host: String, port: Int, identity: ClientIdentity?, node: LocalNode,
        _ body: (GRPCClient<HTTP2ClientTransport.WrappedChannel>) async throws -> Result
    ) async throws -> Result {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(node.caFile))
        tls.applicationProtocols = ["grpc-exp", "h2"]
        if let identity {
            tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(identity.certificatePEM.utf8)).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(identity.keyPEM.utf8), format: .pem))
        }
        let context = try NIOSSLContext(configuration: tls)
        let transport = try await HTTP2ClientTransport.WrappedChannel.wrapping { configure in
            try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(to: source)
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: "aspire.test"))
                    }.flatMap { configure(channel) }
                }
        }
        return try await withGRPCClient(transport: transport, handleClient: body)
    }
}
