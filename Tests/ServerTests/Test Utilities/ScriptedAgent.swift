import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RPC
import Server
import Synchronization
import TestSupport

/// An agent the test drives by hand over the real protocol (TLS, the enrollment token, the
/// Connect stream): it says Hello, keeps every command the node sends, and sends the results
/// the test gives it, when the test gives them. For testing the node's logic: which host gets
/// what, when, and how many at once.
final class ScriptedAgent: Sendable {
    let agentSN: String
    private let outbound: AsyncStream<Aspire_V1_AgentMessage>.Continuation
    private let received = Mutex(Received())

    private struct Received {
        var welcomed = false
        var commands: [Aspire_V1_Command] = []
        var acknowledged: Set<String> = []
        var ended = false
        /// Why the node ended the stream, when it ended it with an error.
        var failure: RPCError?
    }

    private init(agentSN: String, outbound: AsyncStream<Aspire_V1_AgentMessage>.Continuation) {
        self.agentSN = agentSN
        self.outbound = outbound
    }

    /// Connects as `agentSN` with `tags`, waits for the node's Welcome, runs `body`, then closes
    /// the stream however `body` ends.
    static func connect<Result: Sendable>(
        _ agentSN: String,
        tags: [String: String] = [:],
        to node: LocalNode,
        _ body: (ScriptedAgent) async throws -> Result
    ) async throws -> Result {
        let identity = try await Self.identity(agentSN, node: node)
        let transport = try Transports.client(address: node.address, security: .tls(caFile: node.caFile, identity: identity))
        return try await withGRPCClient(transport: transport) { client in
            let (messages, continuation) = AsyncStream.makeStream(of: Aspire_V1_AgentMessage.self)
            let agent = ScriptedAgent(agentSN: agentSN, outbound: continuation)
            var hello = Aspire_V1_AgentMessage()
            hello.hello.agentSn = agentSN
            hello.hello.hostname = agentSN
            hello.hello.version = AspireVersion.current
            hello.hello.os = "linux"
            hello.hello.arch = "x86_64"
            hello.hello.tags = tags
            continuation.yield(hello)
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    defer { agent.received.withLock { $0.ended = true } }
                    do {
                        try await Aspire_V1_AgentChannel.Client(wrapping: client).connect(
                            requestProducer: { writer in
                                for await message in messages { try await writer.write(message) }
                            },
                            onResponse: { response in
                                for try await message in response.messages { agent.handle(message) }
                            }
                        )
                    } catch let error as RPCError {
                        agent.received.withLock { $0.failure = error }
                        throw error
                    }
                }
                defer {
                    continuation.finish()
                    group.cancelAll()
                }
                try await eventually(timeout: .seconds(20), "\(agentSN) to be welcomed") {
                    agent.received.withLock { $0.welcomed || $0.ended }
                }
                guard agent.received.withLock({ $0.welcomed }) else {
                    if let failure = agent.received.withLock({ $0.failure }) { throw failure }
                    throw HarnessError("the node closed the stream of \(agentSN) before Welcome")
                }
                return try await body(agent)
            }
        }
    }

    private func handle(_ message: Aspire_V1_ServerMessage) {
        switch message.body {
        case .welcome:
            self.received.withLock { $0.welcomed = true }
        case .command(let command):
            self.received.withLock { $0.commands.append(command) }
        case .ack(let ack):
            self.received.withLock { $0.acknowledged.formUnion(ack.ids) }
        case .ping(let ping):
            var pong = Aspire_V1_AgentMessage()
            pong.pong.nonce = ping.nonce
            self.outbound.yield(pong)
        default:
            break
        }
    }

    /// Certificates already enrolled, by cluster (its CA) and AgentSN: a test that connects the
    /// same host twice presents the same certificate, as a real agent would.
    private static let identities = Mutex<[String: ClientIdentity]>([:])

    /// The host's certificate, enrolled with the node's join token on first use.
    static func identity(_ agentSN: String, node: LocalNode) async throws -> ClientIdentity {
        let key = try String(contentsOfFile: node.caFile, encoding: .utf8) + "|" + agentSN
        if let known = Self.identities.withLock({ $0[key] }) { return known }
        let identity = try await node.withClient(token: node.node.enrollmentToken) { client in
            try await ClientIdentity.enroll(agentSN: agentSN, joinToken: node.node.enrollmentToken, client: client)
        }
        Self.identities.withLock { $0[key] = identity }
        return identity
    }

    /// Every command received so far, in order.
    var commands: [Aspire_V1_Command] { self.received.withLock { $0.commands } }

    /// Whether the node closed the stream.
    var ended: Bool { self.received.withLock { $0.ended } }

    /// Waits until at least `count` commands arrived (of `method`, when given), and returns them.
    @discardableResult
    func waitForCommands(_ count: Int = 1, method: String? = nil, timeout: Duration = .seconds(20)) async throws -> [Aspire_V1_Command] {
        var matching: [Aspire_V1_Command] = []
        try await eventually(timeout: timeout, "\(count) command(s) at \(self.agentSN); got \(self.commands.map(\.method))") {
            matching = self.commands.filter { method == nil || $0.method == method }
            return matching.count >= count
        }
        return matching
    }

    /// Sends a message of the agent's own (a status report, an event, ...) on the stream.
    func send(_ body: Aspire_V1_AgentMessage.OneOf_Body) {
        var message = Aspire_V1_AgentMessage()
        message.body = body
        self.outbound.yield(message)
    }

    /// Answers `command` with success (and `data` as its output) or failure.
    func answer(_ command: Aspire_V1_Command, success: Bool = true, retcode: Int32 = 0, data: String = "") {
        var result = Aspire_V1_CommandResult()
        result.id = command.id
        result.resp = success ? .success : .failed
        result.retcode = success ? 0 : (retcode == 0 ? 1 : retcode)
        result.message = success ? "success" : "failed"
        result.data = Data(data.utf8)
        var message = Aspire_V1_AgentMessage()
        message.result = result
        self.outbound.yield(message)
    }

    /// Waits until the node acknowledged the result of `id`.
    func waitForAck(_ id: String, timeout: Duration = .seconds(20)) async throws {
        try await eventually(timeout: timeout, "the node to acknowledge \(id)") {
            self.received.withLock { $0.acknowledged.contains(id) }
        }
    }
}
