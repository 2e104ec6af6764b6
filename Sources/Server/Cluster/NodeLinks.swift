import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging
public import RPC
import ServiceLifecycle
import Synchronization

/// This node's calls to the other nodes of its cluster (``Aspire_V1_NodeLink``): a wake-up for
/// work created here for hosts another node holds, and the live events of a command watched
/// here whose host another node holds. One client per peer, made when first needed and kept
/// while the node runs; a peer is found by name in the ``ClusterView``.
///
/// Nothing depends on a call arriving: every node sweeps the store for its own hosts' due work,
/// and a caller waiting for a command reads the store too. A wake-up only makes it immediate.
public final class NodeLinks: Sendable {
    /// How this node proves itself to its peers.
    public enum Credentials: Sendable {
        /// Its certificate (SAN aspire://node/<name>), checked against the CA the nodes share.
        case certificate(caFile: String, identity: ClientIdentity)
        /// Nodes started `--insecure`: plaintext, with the cluster's shared admin token.
        case token(String)
    }

    typealias Client = GRPCClient<HTTP2ClientTransport.Posix>

    private struct Wake: Sendable {
        var node: String
        var agents: [String]
    }

    private struct State {
        var clients: [HostPort: Client] = [:]
        var stopping = false
    }

    let cluster: ClusterView
    /// Where a node this one has not read yet (one that joined since its last heartbeat) is found.
    private let store: SQLStore
    private let credentials: Credentials
    private let logger: Logger
    private let state = Mutex(State())
    private let started: (stream: AsyncStream<Client>, continuation: AsyncStream<Client>.Continuation)
    private let wakes: (stream: AsyncStream<Wake>, continuation: AsyncStream<Wake>.Continuation)

    public init(cluster: ClusterView, store: SQLStore, credentials: Credentials, logger: Logger) {
        self.cluster = cluster
        self.store = store
        self.credentials = credentials
        self.logger = logger
        self.started = AsyncStream.makeStream()
        // A wake-up that cannot be queued is dropped: the peer's sweep delivers the work.
        self.wakes = AsyncStream.makeStream(bufferingPolicy: .bufferingOldest(10_000))
    }

    /// Runs the peers' connections and sends the queued wake-ups, until a graceful shutdown.
    public func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    await withDiscardingTaskGroup { sending in
                        for await wake in self.wakes.stream {
                            sending.addTask { await self.send(wake) }
                        }
                    }
                }
                for await client in self.started.stream {
                    group.addTask { try? await client.runConnections() }
                }
            }
        } onGracefulShutdown: {
            let clients = self.state.withLock { state in
                state.stopping = true
                return Array(state.clients.values)
            }
            self.wakes.continuation.finish()
            self.started.continuation.finish()
            for client in clients { client.beginGracefulShutdown() }
        }
    }

    /// Asks `node` to send `agents` (hosts it holds) what is due for them now; returns at once.
    public func wake(_ node: String, agents: [String]) {
        guard !agents.isEmpty else { return }
        self.wakes.continuation.yield(Wake(node: node, agents: agents))
    }

    private func send(_ wake: Wake) async {
        do {
            var request = Aspire_V1_WakeRequest()
            request.agentSns = wake.agents
            let answer = try await self.call(wake.node, timeout: .seconds(5)) { try await $0.wake(request, metadata: $1, options: $2) }
            self.logger.debug("woke a peer", metadata: ["node.peer": "\(wake.node)", "hosts": "\(wake.agents.count)", "held": "\(answer.held)"])
        } catch {
            self.logger.info(
                "cannot wake a peer node; its sweep will deliver",
                metadata: ["node.peer": "\(wake.node)", "hosts": "\(wake.agents.count)", "error": "\(error)"]
            )
        }
    }

    /// Watches a command on `node` (which holds its host): `each` gets its events as they come,
    /// until its result, the end of the wait, or the peer's end of the call.
    func watch(_ node: String, _ request: Aspire_V1_WatchRequest, each: @escaping @Sendable (Aspire_V1_CommandEvent) async -> Void) async throws {
        let timeout = Duration.milliseconds(Int64(request.waitMs)) + .seconds(5)
        try await self.call(node, timeout: timeout) { link, metadata, options in
            try await link.watch(request, metadata: metadata, options: options) { response in
                for try await event in response.messages { await each(event) }
            }
        }
    }

    private func call<Answer: Sendable>(
        _ node: String,
        timeout: Duration,
        _ body: (Aspire_V1_NodeLink.Client<HTTP2ClientTransport.Posix>, Metadata, CallOptions) async throws -> Answer
    ) async throws -> Answer {
        var known = self.cluster.address(of: node)
        if known == nil {
            // Joined since this node last read the table, perhaps: read it now.
            self.cluster.update(try await self.store.nodes())
            known = self.cluster.address(of: node)
        }
        guard let address = known else {
            throw AspireError(.agentOffline, "node \(node) is not alive")
        }
        let client = try self.client(for: address)
        var metadata = Metadata()
        if case .token(let token) = self.credentials { metadata.addString("Bearer \(token)", forKey: "authorization") }
        return try await body(Aspire_V1_NodeLink.Client(wrapping: client), metadata, .failFast(timeout: timeout))
    }

    private func client(for address: HostPort) throws -> Client {
        let security: ClientSecurity
        switch self.credentials {
        case .certificate(let caFile, let identity): security = .tls(caFile: caFile, identity: identity)
        case .token: security = .plaintext
        }
        let (client, made) = try self.state.withLock { state in
            if let client = state.clients[address] { return (client, false) }
            guard !state.stopping else { throw AspireError(.unavailable, "this node is stopping") }
            let client = GRPCClient(transport: try Transports.client(address: address, security: security, silentPeer: .standard, keepalive: .seconds(30)))
            state.clients[address] = client
            return (client, true)
        }
        if made { self.started.continuation.yield(client) }
        return client
    }
}
