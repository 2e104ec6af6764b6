import Foundation
public import Logging
public import RPC
import Synchronization

/// AgentSN → the live stream that holds it on this node, and the commands callers watch.
public final class SessionRegistry: Sendable {
    private struct State {
        var sessions: [String: AgentSession] = [:]
    }

    private let state = Mutex(State())
    private let watches = Mutex<[CommandWatch.Key: [CommandWatch]]>([:])
    private let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
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

    /// Watches command `id` of `agentSN`: its result (and with `follow` its output) goes to the
    /// watch as it arrives, until ``unwatch(_:)``.
    func watch(_ id: String, of agentSN: String, follow: Bool) -> CommandWatch {
        let watch = CommandWatch(id: id, agentSN: agentSN, follow: follow)
        self.watches.withLock { $0[watch.key, default: []].append(watch) }
        return watch
    }

    func unwatch(_ watch: CommandWatch) {
        watch.finish()
        self.watches.withLock { watches in
            watches[watch.key]?.removeAll { $0 === watch }
            if watches[watch.key]?.isEmpty == true { watches[watch.key] = nil }
        }
    }

    /// Hands a chunk of live output from `agentSN` to whoever follows that command.
    func output(_ output: Aspire_V1_CommandOutput, from agentSN: String) {
        for watch in self.watches.withLock({ $0[CommandWatch.Key(agentSN: agentSN, id: output.id)] ?? [] }) {
            watch.deliver(.output(output))
        }
    }

    /// Hands a result from `agentSN` to whoever watches it from that agent; false when nobody does.
    @discardableResult
    func complete(_ result: Aspire_V1_CommandResult, from agentSN: String) -> Bool {
        let watching = self.watches.withLock { $0[CommandWatch.Key(agentSN: agentSN, id: result.id)] ?? [] }
        for watch in watching { watch.deliver(.result(result)) }
        return !watching.isEmpty
    }
}

/// One caller's view of a command: its output as it comes (when it follows), then its result.
/// Bounded: a reader that falls behind by more than ``capacity`` chunks loses the oldest, and
/// reads one ``Event/lost(_:)`` marker in their place; the result is never dropped. A result
/// counts only from the agent the command was sent to, whatever id another agent names.
final class CommandWatch: Sendable {
    struct Key: Hashable {
        var agentSN: String
        var id: String
    }

    enum Event: Sendable {
        case output(Aspire_V1_CommandOutput)
        /// This many chunks were dropped here.
        case lost(UInt64)
        case result(Aspire_V1_CommandResult)
    }

    /// Chunks kept for a reader at most (64 KiB each at most: 16 MiB).
    static let capacity = 256

    private struct State {
        var queue: [Event] = []
        var lost: UInt64 = 0
        var result: Aspire_V1_CommandResult?
        var waiter: CheckedContinuation<Event?, Never>?
        /// No event comes any more (after the result, or ended).
        var finished = false

        /// The next event for the reader: a loss marker first, then chunks, then the result.
        mutating func next() -> Event? {
            if self.lost > 0 {
                defer { self.lost = 0 }
                return .lost(self.lost)
            }
            if !self.queue.isEmpty { return self.queue.removeFirst() }
            if let result = self.result {
                self.result = nil
                self.finished = true
                return .result(result)
            }
            return nil
        }
    }

    let key: Key
    let follow: Bool
    private let state = Mutex(State())

    init(id: String, agentSN: String, follow: Bool) {
        self.key = Key(agentSN: agentSN, id: id)
        self.follow = follow
    }

    var id: String { self.key.id }

    func deliver(_ event: Event) {
        let resume: (CheckedContinuation<Event?, Never>, Event)? = self.state.withLock { state in
            guard !state.finished else { return nil }
            switch event {
            case .result(let result):
                guard state.result == nil else { return nil }
                state.result = result
            case .output, .lost:
                guard self.follow else { return nil }
                state.queue.append(event)
                if state.queue.count > Self.capacity {
                    state.queue.removeFirst()
                    state.lost += 1
                }
            }
            guard let waiter = state.waiter, let next = state.next() else { return nil }
            state.waiter = nil
            return (waiter, next)
        }
        if let (waiter, next) = resume { waiter.resume(returning: next) }
    }

    /// Ends the watch: a reader waiting gets nil, and events that come later are dropped.
    func finish() {
        let waiter = self.state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// The next event; nil once the result was read or the watch finished (or the reading task
    /// was cancelled).
    func next() async -> Event? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now: Event?? = self.state.withLock { state in
                    if let event = state.next() { return .some(event) }
                    if state.finished || Task.isCancelled { return .some(nil) }
                    state.waiter = continuation
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            self.finish()
        }
    }
}
