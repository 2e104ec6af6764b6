import Foundation
public import GRPCCore
public import Logging
public import RPC
import Synchronization

/// `AgentChannel.Connect`: the long-lived stream of one agent. The agent says Hello, the node
/// registers the session, then commands go down and results come up until either side leaves.
public struct AgentChannelService: Aspire_V1_AgentChannel.SimpleServiceProtocol {
    public struct Configuration: Sendable {
        public var nodeName: String
        /// Seconds between status reports the node asks of agents.
        public var statusStep: Int32 = 600
        /// Application pings; a stream silent for three intervals is dropped.
        public var pingInterval: Duration = .seconds(300)
        /// Time an agent has to send Hello after opening the stream.
        public var helloTimeout: Duration = .seconds(10)
        /// Messages queued for one agent at most.
        public var outboundQueue = 1024
        /// Streams this node holds at most (`--max-agents`), checked at Hello as at Init: an agent
        /// that skips Init is refused the same way.
        public var maxAgents: Int = .max

        public init(nodeName: String) {
            self.nodeName = nodeName
        }
    }

    let configuration: Configuration
    let registry: SessionRegistry
    let store: SQLStore
    let engine: TaskEngine
    let distributor: ConfigDistributor
    let metrics: MetricIngest
    let logger: Logger
    /// Hello deadlines, pings and silence, for every stream of this service (run by the node).
    let keeper: StreamKeeper

    public init(
        configuration: Configuration, registry: SessionRegistry, store: SQLStore, engine: TaskEngine, distributor: ConfigDistributor, metrics: MetricIngest,
        logger: Logger
    ) {
        self.configuration = configuration
        self.distributor = distributor
        self.metrics = metrics
        self.registry = registry
        self.store = store
        self.engine = engine
        self.logger = logger
        self.keeper = StreamKeeper(pingInterval: configuration.pingInterval, helloTimeout: configuration.helloTimeout)
    }

    enum Ended: Sendable {
        case agentClosed
        case serverClosed
        case silent
        case noHello
        case failed
    }

    public func connect(
        request: RPCAsyncSequence<Aspire_V1_AgentMessage, any Error>,
        response: RPCWriter<Aspire_V1_ServerMessage>,
        context: ServerContext
    ) async throws {
        // Bounded: an agent that does not read gets nothing more queued for it. A command that
        // does not fit is not sent (it waits in the store and is delivered again later); a ping
        // or an acknowledgement that does not fit is asked for again by the agent.
        let (outbound, continuation) = AsyncStream.makeStream(
            of: Aspire_V1_ServerMessage.self, bufferingPolicy: .bufferingOldest(configuration.outboundQueue)
        )
        let connection = Connection(outbound: continuation)
        let peer = context.remotePeer
        let caller = VerifiedPeer.of(context)
        let (registry, store, logger) = (self.registry, self.store, self.logger)

        self.keeper.keep(connection)
        defer { self.keeper.forget(connection) }
        var ended = Ended.failed
        var failure: (any Error)?
        do {
            ended = try await self.serve(request: request, response: response, outbound: outbound, connection: connection, peer: peer, caller: caller)
        } catch {
            failure = error
        }
        // Whatever ended the stream (the agent, the server, silence, an error), the session
        // leaves the registry and the host goes offline unless it already came back.
        continuation.finish()
        if let session = connection.session {
            registry.unregister(session)
            logger.info(
                "agent disconnected",
                metadata: ["agent.sn": "\(session.agentSN)", "agent.peer": "\(peer)", "reason": "\(failure.map { "\($0)" } ?? "\(ended)")"]
            )
            await Self.recordOffline(session, registry: registry, store: store, logger: logger)
        }
        if let failure { throw failure }
        switch ended {
        case .silent: throw RPCError(code: .unavailable, message: "no message from the agent for three ping intervals")
        case .noHello: throw RPCError(code: .deadlineExceeded, message: "no Hello within \(self.configuration.helloTimeout)")
        case .agentClosed, .serverClosed, .failed: break
        }
    }

    /// Reads the agent's messages and writes the session's queue, until either ends.
    private func serve(
        request: RPCAsyncSequence<Aspire_V1_AgentMessage, any Error>,
        response: RPCWriter<Aspire_V1_ServerMessage>,
        outbound: AsyncStream<Aspire_V1_ServerMessage>,
        connection: Connection,
        peer: String,
        caller: VerifiedPeer?
    ) async throws -> Ended {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    // The reader lives as long as the agent: what a message sets off (storing a
                    // report or a result, a dispatch pass, the Hello's records) runs `apart`.
                    for try await message in request {
                        if let session = connection.session {
                            session.touch()
                            try await apart { await self.handle(message, from: session) }
                            continue
                        }
                        guard case .hello(let hello) = message.body else {
                            throw RPCError(code: .failedPrecondition, message: "the first message on the stream must be Hello")
                        }
                        try await apart {
                            try await self.welcome(hello, on: connection, peer: peer, caller: caller)
                        }
                    }
                    connection.end(.agentClosed)
                } catch {
                    connection.end(.failed, failure: error)
                }
            }
            group.addTask {
                do {
                    // The queue ends when the node ends the stream: replaced, shutting down, or
                    // by the keeper (silent, no Hello).
                    for await message in outbound {
                        try await response.write(message)
                    }
                    connection.end(.serverClosed)
                } catch {
                    connection.end(.failed, failure: error)
                }
            }
            // Whichever ends it first, the reader, the writer or the keeper: the other two are
            // stopped, a write that waits on an agent that does not read included.
            let (ended, failure) = await connection.ending()
            group.cancelAll()
            if let failure { throw failure }
            return ended
        }
    }

    /// Takes the stream's Hello: the session is checked against the caller's certificate and the
    /// node's capacity, recorded, registered and welcomed, and what is due to its host follows.
    private func welcome(_ hello: Aspire_V1_Hello, on connection: Connection, peer: String, caller: VerifiedPeer?) async throws {
        let (configuration, registry, logger) = (self.configuration, self.registry, self.logger)
        try VerifiedPeer.claim(hello.agentSn, by: caller, in: "Hello", peer: peer, logger: logger)
        if registry.count >= configuration.maxAgents && registry.session(for: hello.agentSn) == nil {
            throw RPCError(
                code: .resourceExhausted,
                message: "node \(configuration.nodeName) holds its maximum of \(configuration.maxAgents) agents (--max-agents); try another node or later"
            )
        }
        let session = AgentSession(hello: hello, peer: peer, certificateSerial: caller?.serial, outbound: connection.outbound)
        try await Self.recordOnline(session, node: configuration.nodeName, store: self.store, logger: logger)
        connection.session = session
        self.keeper.greeted(connection)
        registry.register(session)
        var welcome = Aspire_V1_ServerMessage()
        welcome.welcome.node = configuration.nodeName
        welcome.welcome.step = configuration.statusStep
        welcome.welcome.pingInterval = Int32(configuration.pingInterval.components.seconds)
        session.send(welcome)
        await self.distributor.refresh(agentSN: hello.agentSn)
        await self.engine.agentConnected(hello.agentSn, newStream: true)
        logger.info(
            "agent connected",
            metadata: [
                "agent.sn": "\(hello.agentSn)", "agent.hostname": "\(hello.hostname)",
                "agent.version": "\(hello.version)", "agent.peer": "\(peer)",
            ]
        )
    }

    /// Stores the host as online on this node, held by this stream, with the tags the agent reports.
    static func recordOnline(_ session: AgentSession, node: String, store: SQLStore, logger: Logger) async throws {
        let hello = session.hello
        do {
            try await store.registerHost(
                HostRegistration(
                    agentSN: hello.agentSn, hostname: hello.hostname, ipaddr: Self.address(of: session.peer), os: hello.os,
                    arch: hello.arch, version: hello.version, node: node, stream: session.connectionID,
                    missingTools: hello.missingTools
                )
            )
            try await store.bindTags(hello.tags, to: hello.agentSn)
            await store.recordServerEvent("host", "connected to node \(node) (boot \(hello.version))", agentSN: hello.agentSn)
        } catch let error as AspireError {
            throw RPCError(code: .invalidArgument, message: error.cause)
        } catch {
            logger.error("cannot record the host", metadata: ["agent.sn": "\(hello.agentSn)", "error": "\(String(reflecting: error))"])
            throw RPCError(code: .unavailable, message: "the server cannot record the host now; try again")
        }
    }

    /// Marks the host offline unless it already has a new stream (here or on another node),
    /// whichever of the two writes reaches the store first.
    static func recordOffline(_ session: AgentSession, registry: SessionRegistry, store: SQLStore, logger: Logger) async {
        guard registry.session(for: session.agentSN) == nil else { return }
        do {
            if try await store.releaseHost(agentSN: session.agentSN, stream: session.connectionID) {
                await store.recordServerEvent("host", "offline: its stream ended", agentSN: session.agentSN)
            }
        } catch {
            logger.error("cannot record the host offline", metadata: ["agent.sn": "\(session.agentSN)", "error": "\(String(reflecting: error))"])
        }
    }

    /// The IP address in a gRPC peer string such as `ipv4:127.0.0.1:5000` or `ipv6:[::1]:5000`.
    static func address(of peer: String) -> String {
        var text = Substring(peer)
        for prefix in ["ipv4:", "ipv6:"] where text.hasPrefix(prefix) {
            text = text.dropFirst(prefix.count)
        }
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            return String(text[text.index(after: text.startIndex) ..< close])
        }
        if let colon = text.lastIndex(of: ":") {
            return String(text[..<colon])
        }
        return String(text)
    }

    private func handle(_ message: Aspire_V1_AgentMessage, from session: AgentSession) async {
        let (registry, engine, store, logger) = (self.registry, self.engine, self.store, self.logger)
        switch message.body {
        case .result(let result):
            // A RunCommand caller waiting for it has it at once; the store (a subtask's result)
            // is written before the acknowledgement: a result the store refused comes again.
            let waited = registry.complete(result, from: session.agentSN)
            let stored = await engine.resultArrived(result, from: session.agentSN)
            logger.debug(
                "command result",
                metadata: [
                    "agent.sn": "\(session.agentSN)", "command.id": "\(result.id)",
                    "command.retcode": "\(result.retcode)", "command.waited": "\(waited)",
                ]
            )
            if stored {
                var ack = Aspire_V1_ServerMessage()
                ack.ack.ids = [result.id]
                session.send(ack)
            }
        case .ping(let ping):
            var pong = Aspire_V1_ServerMessage()
            pong.pong.nonce = ping.nonce
            session.send(pong)
        case .status(let report):
            do {
                try await store.recordStatus(report, agentSN: session.agentSN)
            } catch {
                logger.error("cannot record a status report", metadata: ["agent.sn": "\(session.agentSN)", "error": "\(String(reflecting: error))"])
            }
            // Tag tasks and schedules match hosts when they connect and when they report (tags
            // may have changed).
            await self.distributor.refresh(agentSN: session.agentSN)
            await engine.agentConnected(session.agentSN)
        case .event(let event):
            do {
                try await store.recordEvent(
                    EventRecord(
                        agentSN: session.agentSN, category: event.category, localID: event.localID,
                        occurred: event.occurredUnixMs, message: event.message
                    )
                )
            } catch {
                logger.error("cannot record an event", metadata: ["agent.sn": "\(session.agentSN)", "error": "\(String(reflecting: error))"])
            }
        case .metrics(let batch):
            self.metrics.receive(batch, from: session.agentSN)
        case .output(let output):
            registry.output(output, from: session.agentSN)
        case .pong:
            break
        case .hello:
            logger.warning("second Hello on a stream ignored", metadata: ["agent.sn": "\(session.agentSN)"])
        case nil:
            break
        }
    }
}

/// What one stream knows: its session once its agent said Hello, and how it ended, once it did.
final class Connection: Sendable {
    private struct State {
        var session: AgentSession?
        var ended: (AgentChannelService.Ended, (any Error)?)?
        var waiting: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())
    /// The stream's queue, which its session sends on.
    let outbound: AsyncStream<Aspire_V1_ServerMessage>.Continuation

    init(outbound: AsyncStream<Aspire_V1_ServerMessage>.Continuation) {
        self.outbound = outbound
    }

    var session: AgentSession? {
        get { self.state.withLock { $0.session } }
        set { self.state.withLock { $0.session = newValue } }
    }

    /// How the stream ended; nil while it goes on.
    var ended: AgentChannelService.Ended? { self.state.withLock { $0.ended?.0 } }

    /// Ends the stream, for `reason` (the first reason given stands): what is queued is
    /// written if the stream still can, then it closes.
    func end(_ reason: AgentChannelService.Ended, failure: (any Error)? = nil) {
        let waiting = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.ended == nil else { return nil }
            state.ended = (reason, failure)
            defer { state.waiting = nil }
            return state.waiting
        }
        self.outbound.finish()
        waiting?.resume()
    }

    /// Waits for the stream's end, and says how it ended.
    func ending() async -> (AgentChannelService.Ended, (any Error)?) {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ended = self.state.withLock { state in
                if state.ended == nil { state.waiting = continuation }
                return state.ended != nil
            }
            if ended { continuation.resume() }
        }
        return self.state.withLock { $0.ended } ?? (.failed, nil)
    }
}
