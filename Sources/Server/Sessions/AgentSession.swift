public import Foundation
public import RPC
import Synchronization

/// One live stream of one agent on this node.
public final class AgentSession: Sendable {
    /// Distinguishes successive connections of the same agent.
    public let connectionID: UInt64
    public let hello: Aspire_V1_Hello
    public let peer: String
    public let connectedAt: Date
    private let outbound: AsyncStream<Aspire_V1_ServerMessage>.Continuation
    private let lastSeenMillis: Atomic<Int64>
    /// The digest of the schedule set the agent has: what it said in Hello, then what this
    /// stream sent it.
    private let schedulesDigest: Mutex<String>

    public var agentSN: String { self.hello.agentSn }

    init(
        connectionID: UInt64,
        hello: Aspire_V1_Hello,
        peer: String,
        outbound: AsyncStream<Aspire_V1_ServerMessage>.Continuation
    ) {
        self.connectionID = connectionID
        self.hello = hello
        self.peer = peer
        self.connectedAt = Date()
        self.outbound = outbound
        self.lastSeenMillis = Atomic(Date().unixMilliseconds)
        self.schedulesDigest = Mutex(hello.schedulesDigest)
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
    func schedulesChanged(to digest: String) -> Bool {
        self.schedulesDigest.withLock { current in
            guard current != digest else { return false }
            current = digest
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
