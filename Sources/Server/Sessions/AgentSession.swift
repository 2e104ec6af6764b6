public import Foundation
public import RPC
import Synchronization

/// One live stream of one agent on this node.
public final class AgentSession: Sendable {
    /// Distinguishes successive streams of the same agent, on any node and across restarts:
    /// the host's row keeps the id of the stream that holds it, so an old stream that ends
    /// late cannot mark offline a host that a newer one holds.
    public let connectionID: Int64
    public let hello: Aspire_V1_Hello
    public let peer: String
    /// The serial of the certificate the agent connected with; nil on a node without TLS.
    public let certificateSerial: String?
    public let connectedAt: Date
    private let outbound: AsyncStream<Aspire_V1_ServerMessage>.Continuation
    private let lastSeenMillis: Atomic<Int64>
    /// The digests of the sets the agent has: what it said in Hello, then what this stream
    /// sent it.
    private let digests: Mutex<[ConfigSet: String]>

    /// What a node keeps an agent's copy of (see ``ConfigDistributor``).
    enum ConfigSet: Hashable {
        case schedules, plugins, deployments
    }

    public var agentSN: String { self.hello.agentSn }

    init(
        connectionID: Int64 = .random(in: 1 ... .max),
        hello: Aspire_V1_Hello,
        peer: String,
        certificateSerial: String? = nil,
        outbound: AsyncStream<Aspire_V1_ServerMessage>.Continuation
    ) {
        self.connectionID = connectionID
        self.hello = hello
        self.peer = peer
        self.certificateSerial = certificateSerial
        self.connectedAt = Date()
        self.outbound = outbound
        self.lastSeenMillis = Atomic(Date().unixMilliseconds)
        self.digests = Mutex([.schedules: hello.schedulesDigest, .plugins: hello.pluginsDigest, .deployments: hello.deploymentsDigest])
    }

    /// Queues a message for the agent; false when the stream is already closed.
    @discardableResult
    public func send(_ message: Aspire_V1_ServerMessage) -> Bool {
        if case .enqueued = self.outbound.yield(message) { return true }
        return false
    }

    /// Queues a command for the agent; false when the stream is already closed.
    @discardableResult
    public func send(command: Aspire_V1_Command) -> Bool {
        var message = Aspire_V1_ServerMessage()
        message.command = command
        return self.send(message)
    }

    /// Records the set of `digest` as the one the agent has; false when it already had it.
    func digestChanged(_ set: ConfigSet, to digest: String) -> Bool {
        self.digests.withLock { digests in
            guard digests[set] != digest else { return false }
            digests[set] = digest
            return true
        }
    }

    /// Ends the stream from the server side (replaced, shutting down, dead).
    public func close() {
        self.outbound.finish()
    }

    /// Records that the agent said something.
    func touch() {
        self.lastSeenMillis.store(Date().unixMilliseconds, ordering: .relaxed)
    }

    public var lastSeen: Date {
        Date(timeIntervalSince1970: Double(self.lastSeenMillis.load(ordering: .relaxed)) / 1000)
    }
}
