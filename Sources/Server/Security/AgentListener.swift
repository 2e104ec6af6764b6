import Foundation
public import RPC
public import GRPCCore
public import GRPCNIOTransportHTTP2
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import SwiftASN1
import Synchronization
public import X509

/// The node's gRPC listener: TLS with the node's certificate, and a client certificate asked
/// for but not required. Agents present theirs (signed by the node's CA at enrollment, checked
/// by BoringSSL against that CA in the handshake); operators' tools and enrolling agents present
/// none and authenticate with a bearer token instead. A handler finds what the verified
/// certificate says (the AgentSN and serial) in `context.transportSpecific` as a ``VerifiedPeer``.
///
/// gRPC's own Posix transport asks for a client certificate only as required (which would shut
/// out `aspirectl` and every grpcio client with a token) or not at all; this listener is the same
/// HTTP/2 transport (`HTTP2ServerTransport.Custom`) with the one TLS setting it lacks.
public final class AgentListener: ListeningServerTransport {
    public typealias Bytes = GRPCNIOTransportBytes

    private let underlying: HTTP2ServerTransport.Custom<Factory>
    private let peers: PeerCertificates

    /// Listens on `address`; with `tls` (the node's certificate, and the CA that signs client
    /// certificates), or plaintext without (`--insecure`). Each connection is closed by the
    /// kernel once its peer has been `silentPeer` silent.
    public init(
        address: HostPort, tls: (files: ServerTLSFiles, clientCA: String)?, silentPeer: SilentPeer? = nil, config: HTTP2ServerTransport.Posix.Config
    ) throws {
        guard IPAddress.isIPv4(address.host) || IPAddress.isIPv6(address.host) else {
            throw AspireError(.badRequest, "listen address '\(address)' must be an IP address (0.0.0.0, ::, 127.0.0.1, ...)")
        }
        var context: NIOSSLContext?
        if let tls {
            var configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(tls.files.certificateChain).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: tls.files.privateKey, format: .pem))
            )
            configuration.minimumTLSVersion = .tlsv12
            configuration.applicationProtocols = ["grpc-exp", "h2"]
            configuration.certificateVerification = .optionalVerification
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(tls.clientCA))
            context = try NIOSSLContext(configuration: configuration)
        }
        let peers = PeerCertificates()
        self.peers = peers
        self.underlying = HTTP2ServerTransport.Custom(
            listenerFactory: Factory(host: address.host, port: address.port, context: context, peers: peers, silentPeer: silentPeer),
            config: .init(
                compression: config.compression, connection: config.connection, http2: config.http2, rpc: config.rpc,
                channelDebuggingCallbacks: config.channelDebuggingCallbacks
            )
        )
    }

    public var listeningAddress: GRPCNIOTransportHTTP2.SocketAddress {
        get async throws {
            guard let address = await self.underlying.listeningAddress else {
                throw RPCError(code: .unavailable, message: "the agent listener is not listening")
            }
            return address
        }
    }

    public func listen(
        streamHandler: @escaping @Sendable (RPCStream<Inbound, Outbound>, ServerContext) async -> Void
    ) async throws {
        let peers = self.peers
        try await self.underlying.listen { stream, context in
            var context = context
            if let peer = peers[PeerCertificates.Connection(local: context.localPeer, remote: context.remotePeer)] {
                context.transportSpecific = peer
            }
            await streamHandler(stream, context)
        }
    }

    public func beginGracefulShutdown() {
        self.underlying.beginGracefulShutdown()
    }

    public func configure(context: GRPCServerContext) {
        self.underlying.configure(context: context)
    }

    /// Binds the socket; each accepted connection gets TLS, the handler that records its
    /// peer's certificate, then gRPC's own HTTP/2 pipeline.
    struct Factory: HTTP2ServerTransport.ListenerFactory {
        let host: String
        let port: Int
        let context: NIOSSLContext?
        let peers: PeerCertificates
        let silentPeer: SilentPeer?
        var eventLoopGroup: any EventLoopGroup { MultiThreadedEventLoopGroup.singleton }

        func makeListeningChannel(
            listenerConfigurator: HTTP2ServerTransport.ListenerConfigurator,
            connectionConfigurator: HTTP2ServerTransport.ConnectionConfigurator
        ) async throws -> NIOAsyncChannel<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel, Never> {
            let (context, peers, silentPeer) = (self.context, self.peers, self.silentPeer)
            return try await ServerBootstrap(group: self.eventLoopGroup)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { channel in listenerConfigurator.configure(channel: channel) }
                .bind(host: self.host, port: self.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try silentPeer?.configure(channel)
                        guard let context else { return }
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(NIOSSLServerHandler(context: context))
                        try sync.addHandler(PeerRecorder(peers: peers))
                        try sync.addHandler(CompactReads())
                    }.flatMap {
                        connectionConfigurator.configure(channel: channel, tls: context == nil ? .none : .configured(requireALPN: false))
                    }
                }
        }
    }
}

/// What the verified client certificate of a call's connection says: read once per connection
/// at the handshake, and kept instead of the certificate (a few strings, not a parsed X.509).
public struct VerifiedPeer: ServerContext.TransportSpecific, Hashable {
    /// The AgentSN of its SAN; nil for a certificate that names none.
    public let agentSN: String?
    /// The node of the cluster it names (``NodeIdentity``): a peer node calling; nil for others.
    public let nodeName: String?
    /// Its serial number, hex.
    public let serial: String

    init(_ certificate: Certificate) {
        self.agentSN = AgentIdentity.agentSN(of: certificate)
        self.nodeName = NodeIdentity.name(of: certificate)
        self.serial = AgentIdentity.serial(of: certificate)
    }

    /// The caller's verified certificate, when it presented one.
    public static func of(_ context: ServerContext) -> VerifiedPeer? {
        context.transportSpecific as? VerifiedPeer
    }
}

/// Open connections' verified client certificates, by both ends of the connection as gRPC
/// spells them in every call's context (`ipv4:1.2.3.4:5678`, `ipv6:[::1]:5678`).
///
/// Both ends, because only the pair names one live connection: a host (or the NAT in front of
/// many) may hold connections from one address and port to two of the node's addresses at once,
/// and a table by the remote end alone gave the second one the first one's certificate — a
/// connection without any taken for the host beside it. Every connection's entry is made at its
/// handshake, one without a certificate too, so no entry left by a closed connection of the
/// same pair is read for a new one; and a connection removes only its own entry when it closes.
final class PeerCertificates: Sendable {
    struct Connection: Hashable, Sendable {
        var local: String
        var remote: String

        /// The connection of `channel`, as gRPC will name it in its calls' contexts; nil when an
        /// end has no IP address.
        init?(of channel: any Channel) {
            guard let local = PeerCertificates.peerString(channel.localAddress), let remote = PeerCertificates.peerString(channel.remoteAddress) else {
                return nil
            }
            self.init(local: local, remote: remote)
        }

        init(local: String, remote: String) {
            self.local = local
            self.remote = remote
        }
    }

    private struct Entry {
        /// The handler of the connection that made the entry.
        var owner: ObjectIdentifier
        var peer: VerifiedPeer?
    }

    private let table = Mutex<[Connection: Entry]>([:])

    subscript(connection: Connection) -> VerifiedPeer? {
        self.table.withLock { $0[connection]?.peer }
    }

    /// Says what `owner`'s connection presented at its handshake: a verified certificate, or none.
    func record(_ verified: VerifiedPeer?, for connection: Connection, owner: ObjectIdentifier) {
        self.table.withLock { $0[connection] = Entry(owner: owner, peer: verified) }
    }

    /// Forgets `owner`'s connection; an entry a newer connection of the same pair made stays.
    func forget(_ connection: Connection, owner: ObjectIdentifier) {
        self.table.withLock { table in
            if table[connection]?.owner == owner { table[connection] = nil }
        }
    }

    /// gRPC's spelling of a remote address.
    static func peerString(_ address: NIOCore.SocketAddress?) -> String? {
        switch address {
        case .v4(let v4)?: "ipv4:\(v4.host):\(address?.port ?? 0)"
        case .v6(let v6)?: "ipv6:[\(v6.host)]:\(address?.port ?? 0)"
        default: nil
        }
    }
}

/// After the handshake, records the peer's certificate (verified by then: the context asks for
/// one and checks any it gets), or that it presented none, until the connection closes.
private final class PeerRecorder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let peers: PeerCertificates
    private var connection: PeerCertificates.Connection?

    init(peers: PeerCertificates) {
        self.peers = peers
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event, let connection = PeerCertificates.Connection(of: context.channel) {
            let presented = (try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self))?.peerCertificate
            let certificate = presented.flatMap { try? Certificate(derEncoded: $0.toDERBytes()) }
            self.connection = connection
            self.peers.record(certificate.map(VerifiedPeer.init), for: connection, owner: ObjectIdentifier(self))
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let connection = self.connection { self.peers.forget(connection, owner: ObjectIdentifier(self)) }
        context.fireChannelInactive()
    }
}

/// Hands on what TLS decrypted as a buffer of its own, sized to it.
///
/// NIOSSL decrypts into one 32 KiB buffer per connection and passes that buffer on; HTTP/2's
/// frame decoder keeps the last buffer it was given (empty, to accumulate the next frame in),
/// so at NIOSSL's next read its buffer is shared and it copies it: two 32 KiB buffers held by
/// every idle connection. With a copy here NIOSSL's buffer stays its own, and the decoder keeps
/// a small one (the idle agent's cost, P1 in bench/README.md).
final class CompactReads: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let read = self.unwrapInboundIn(data)
        var own = context.channel.allocator.buffer(capacity: read.readableBytes)
        own.writeImmutableBuffer(read)
        context.fireChannelRead(self.wrapInboundOut(own))
    }
}
