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
        public var pingInterval: Duration = .seconds(15)
        /// Time an agent has to send Hello after opening the stream.
        public var helloTimeout: Duration = .seconds(10)

        public init(nodeName: String) {
            self.nodeName = nodeName
        }
    }

    let configuration: Configuration
    let registry: SessionRegistry
    let logger: Logger

    public init(configuration: Configuration, registry: SessionRegistry, logger: Logger) {
        self.configuration = configuration
        self.registry = registry
        self.logger = logger
    }

    private enum Ended: Sendable {
        case agentClosed
        case serverClosed
        case silent
        case failed
    }

    public func connect(
        request: RPCAsyncSequence<Aspire_V1_AgentMessage, any Error>,
        response: RPCWriter<Aspire_V1_ServerMessage>,
        context: ServerContext
    ) async throws {
        let (outbound, continuation) = AsyncStream.makeStream(of: Aspire_V1_ServerMessage.self)
        let connection = Connection()
        let configuration = self.configuration
        let registry = self.registry
        let logger = self.logger
        let peer = context.remotePeer

        var ended = Ended.failed
        // Whatever ends the stream (the agent, the server, silence, an error), the session
        // leaves the registry.
        defer {
            continuation.finish()
            if let session = connection.session {
                registry.unregister(session)
                logger.info(
                    "agent disconnected",
                    metadata: ["agent.sn": "\(session.agentSN)", "agent.peer": "\(peer)", "reason": "\(ended)"]
                )
            }
        }
        ended = try await withThrowingTaskGroup(of: Ended.self) { group in
            group.addTask {
                for try await message in request {
                    if let session = connection.session {
                        session.touch()
                        Self.handle(message, from: session, registry: registry, logger: logger)
                        continue
                    }
                    guard case .hello(let hello) = message.body else {
                        throw RPCError(code: .failedPrecondition, message: "the first message on the stream must be Hello")
                    }
                    try AgentIdentity.validate(agentSN: hello.agentSn)
                    let session = AgentSession(
                        connectionID: registry.nextConnectionID(),
                        hello: hello,
                        peer: peer,
                        outbound: continuation
                    )
                    connection.session = session
                    registry.register(session)
                    var welcome = Aspire_V1_ServerMessage()
                    welcome.welcome.node = configuration.nodeName
                    welcome.welcome.step = configuration.statusStep
                    welcome.welcome.pingInterval = Int32(configuration.pingInterval.components.seconds)
                    session.send(welcome)
                    logger.info(
                        "agent connected",
                        metadata: [
                            "agent.sn": "\(hello.agentSn)", "agent.hostname": "\(hello.hostname)",
                            "agent.version": "\(hello.version)", "agent.peer": "\(peer)",
                        ]
                    )
                }
                return .agentClosed
            }
            group.addTask {
                for await message in outbound {
                    try await response.write(message)
                }
                return .serverClosed
            }
            group.addTask {
                // Wait for Hello (no longer than helloTimeout), then ping every interval and
                // drop a stream that stays silent for three of them.
                let opened = ContinuousClock.now
                var session = connection.session
                while session == nil {
                    guard ContinuousClock.now - opened < configuration.helloTimeout else {
                        throw RPCError(code: .deadlineExceeded, message: "no Hello within \(configuration.helloTimeout)")
                    }
                    try await Task.sleep(for: .milliseconds(100))
                    session = connection.session
                }
                var nonce: UInt64 = 0
                while let session {
                    try await Task.sleep(for: configuration.pingInterval)
                    if Date().timeIntervalSince(session.lastSeen) > 3 * configuration.pingInterval.seconds {
                        return .silent
                    }
                    nonce += 1
                    var ping = Aspire_V1_ServerMessage()
                    ping.ping.nonce = nonce
                    session.send(ping)
                }
                return .serverClosed
            }
            defer { group.cancelAll() }
            return try await group.next() ?? .agentClosed
        }
        if ended == .silent {
            throw RPCError(code: .unavailable, message: "no message from the agent for three ping intervals")
        }
    }

    private static func handle(
        _ message: Aspire_V1_AgentMessage,
        from session: AgentSession,
        registry: SessionRegistry,
        logger: Logger
    ) {
        switch message.body {
        case .result(let result):
            let waited = registry.complete(result)
            logger.debug(
                "command result",
                metadata: [
                    "agent.sn": "\(session.agentSN)", "command.id": "\(result.id)",
                    "command.retcode": "\(result.retcode)", "command.waited": "\(waited)",
                ]
            )
            var ack = Aspire_V1_ServerMessage()
            ack.ack.ids = [result.id]
            session.send(ack)
        case .ping(let ping):
            var pong = Aspire_V1_ServerMessage()
            pong.pong.nonce = ping.nonce
            session.send(pong)
        case .pong, .status, .output, .event:
            break
        case .hello:
            logger.warning("second Hello on a stream ignored", metadata: ["agent.sn": "\(session.agentSN)"])
        case nil:
            break
        }
    }
}

/// What one stream knows once its agent said Hello. Written by the reader only, read by the
/// keepalive task.
private final class Connection: Sendable {
    private let state = Mutex<AgentSession?>(nil)

    var session: AgentSession? {
        get { self.state.withLock { $0 } }
        set { self.state.withLock { $0 = newValue } }
    }
}

extension Duration {
    var seconds: Double {
        Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18
    }
}
