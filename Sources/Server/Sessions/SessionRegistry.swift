import Foundation
public import Logging
public import RPC
import Synchronization

/// AgentSN → the live stream that holds it on this node, and the commands waiting for results.
public final class SessionRegistry: Sendable {
    private struct State {
        var sessions: [String: AgentSession] = [:]
        var nextConnectionID: UInt64 = 1
    }

    private let state = Mutex(State())
    private let waiters = ResultWaiters()
    private let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    func nextConnectionID() -> UInt64 {
        self.state.withLock { state in
            defer { state.nextConnectionID += 1 }
            return state.nextConnectionID
        }
    }

    /// Registers a session; an older session of the same agent is closed and replaced.
    func register(_ session: AgentSession) {
        let old = self.state.withLock { state in
            let old = state.sessions[session.agentSN]
            state.sessions[session.agentSN] = session
            return old
        }
        if let old {
            self.logger.info(
                "agent reconnected, replacing its old stream",
                metadata: ["agent.sn": "\(session.agentSN)", "agent.peer": "\(session.peer)", "agent.old_peer": "\(old.peer)"]
            )
            old.close()
        }
    }

    /// Removes the session if it is still the registered one for its agent.
    func unregister(_ session: AgentSession) {
        self.state.withLock { state in
            if state.sessions[session.agentSN]?.connectionID == session.connectionID {
                state.sessions[session.agentSN] = nil
            }
        }
    }

    /// How many agents hold a stream here now.
    public var count: Int { self.state.withLock { $0.sessions.count } }

    public func session(for agentSN: String) -> AgentSession? {
        self.state.withLock { $0.sessions[agentSN] }
    }

    /// The sessions now, ordered by AgentSN.
    public var sessions: [AgentSession] {
        self.state.withLock { Array($0.sessions.values) }.sorted { $0.agentSN < $1.agentSN }
    }

    /// Closes every stream (graceful shutdown).
    public func closeAll() {
        for session in self.state.withLock({ Array($0.sessions.values) }) {
            session.close()
        }
    }

    /// Sends `command` to the agent and waits up to `wait` for its result.
    public func run(_ command: Aspire_V1_Command, on agentSN: String, wait: Duration) async throws -> Aspire_V1_CommandResult {
        guard let session = self.session(for: agentSN) else {
            throw AspireError(.agentOffline, "agent \(agentSN) is not connected to this node")
        }
        return try await self.waiters.wait(for: command.id, from: agentSN, timeout: wait) {
            guard session.send(command: command) else {
                throw AspireError(.agentOffline, "the stream of agent \(agentSN) closed before the command was sent")
            }
        } onTimeout: {
            AspireError(.agentTimeout, "agent \(agentSN) did not answer command \(command.id) within \(wait)")
        }
    }

    /// Hands a result from `agentSN` to whoever waits for it from that agent; false when nobody does.
    @discardableResult
    func complete(_ result: Aspire_V1_CommandResult, from agentSN: String) -> Bool {
        self.waiters.complete(result, from: agentSN)
    }
}

/// Callers waiting for a command's result, by agent and command id: a result counts only from
/// the agent the command was sent to, whatever id another agent names.
final class ResultWaiters: Sendable {
    private struct Key: Hashable {
        var agentSN: String
        var id: String
    }

    private enum Waiter {
        /// Registered; the waiting task has not parked yet.
        case pending
        case waiting(CheckedContinuation<Aspire_V1_CommandResult, any Error>)
        /// The result came before the waiting task parked.
        case arrived(Aspire_V1_CommandResult)
        case done
    }

    private let waiters = Mutex<[Key: Waiter]>([:])

    /// Registers `id` of `agentSN`, runs `send`, then waits for `complete` of the same id from
    /// the same agent, a timeout or cancellation.
    func wait(
        for id: String,
        from agentSN: String,
        timeout: Duration,
        send: () throws -> Void,
        onTimeout: @escaping @Sendable () -> any Error
    ) async throws -> Aspire_V1_CommandResult {
        let key = Key(agentSN: agentSN, id: id)
        let registered: Bool = self.waiters.withLock { waiters in
            guard waiters[key] == nil else { return false }
            waiters[key] = .pending
            return true
        }
        guard registered else {
            throw AspireError(.conflict, "command \(id) is already running")
        }
        defer { self.waiters.withLock { _ = $0.removeValue(forKey: key) } }
        try send()
        return try await withThrowingTaskGroup(of: Aspire_V1_CommandResult?.self) { group in
            group.addTask { try await self.park(key) }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let result = first else {
                throw onTimeout()
            }
            return result
        }
    }

    private func park(_ id: Key) async throws -> Aspire_V1_CommandResult {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                enum Now { case park, result(Aspire_V1_CommandResult), cancelled }
                let now: Now = self.waiters.withLock { waiters in
                    if case .arrived(let result) = waiters[id] {
                        waiters[id] = .done
                        return .result(result)
                    }
                    if Task.isCancelled { return .cancelled }
                    waiters[id] = .waiting(continuation)
                    return .park
                }
                switch now {
                case .park: break
                case .result(let result): continuation.resume(returning: result)
                case .cancelled: continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            let continuation: CheckedContinuation<Aspire_V1_CommandResult, any Error>? = self.waiters.withLock { waiters in
                guard case .waiting(let continuation) = waiters[id] else { return nil }
                waiters[id] = .done
                return continuation
            }
            continuation?.resume(throwing: CancellationError())
        }
    }

    /// Delivers a result from `agentSN`; false when nobody waits for its id from that agent.
    func complete(_ result: Aspire_V1_CommandResult, from agentSN: String) -> Bool {
        enum Found { case none, waiter(CheckedContinuation<Aspire_V1_CommandResult, any Error>), kept }
        let key = Key(agentSN: agentSN, id: result.id)
        let found: Found = self.waiters.withLock { waiters in
            switch waiters[key] {
            case .waiting(let continuation):
                waiters[key] = .done
                return .waiter(continuation)
            case .pending:
                waiters[key] = .arrived(result)
                return .kept
            default:
                return .none
            }
        }
        switch found {
        case .none: return false
        case .kept: return true
        case .waiter(let continuation):
            continuation.resume(returning: result)
            return true
        }
    }
}
