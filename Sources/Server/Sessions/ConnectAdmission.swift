import Synchronization

/// The node's pace for new agents: at most `rate` accepted `Init`s a second after a burst of a
/// twentieth of that (the generic cell rate algorithm), so a reconnect storm — a restarted
/// node's whole fleet dialing at once — arrives spread instead of in one wave.
///
/// An agent over the rate is not just refused: it is given the next free slot, reserved for it
/// by its AgentSN, and told how long until then (``Admission``); coming back at its slot (or
/// within half a burst before it: it aims across a round trip that varies) it is let in without
/// taking another. Coming back late it is let in too, as long as that keeps the agents let in
/// at the rate and its burst: agents held up together — by a node that stalled while their
/// retries waited in its sockets — come back together, and let in at once they made 3× the rate
/// within 100 ms (bench/README P5). One that would break it queues again like a newcomer. A
/// slot not claimed within `keep` of its time lapses.
public final class ConnectAdmission: Sendable {
    /// A node's pace unless told otherwise (`--max-connect-rate`): about what this project's
    /// 2-core machine connects anyway, TLS included (bench/README.md, P1 and P5).
    public static let defaultRate = 500

    private let interval: Duration
    private let tolerance: Duration
    /// How early before its slot an agent coming back is on time.
    private let punctuality: Duration
    private let keep: Duration
    private let state: Mutex<State>

    private struct State {
        /// When the next slot is free (the algorithm's theoretical arrival time).
        var next: ContinuousClock.Instant
        /// The same for the agents let in, whether they had slots or not.
        var admitted: ContinuousClock.Instant
        var reserved: [String: ContinuousClock.Instant] = [:]
        /// Reservations in the order they were made, which is the order of their slots.
        var order: [(agentSN: String, slot: ContinuousClock.Instant)] = []
        var head = 0
    }

    public init(rate: Int, keep: Duration = .seconds(30), now: ContinuousClock.Instant = .now) {
        precondition(rate >= 1)
        self.interval = .seconds(1) / rate
        self.tolerance = self.interval * max(1, rate / 20)
        self.punctuality = max(self.interval, self.tolerance / 2)
        self.keep = keep
        self.state = Mutex(State(next: now, admitted: now))
    }

    /// Nil when the agent may connect now; else how long until its slot.
    public func admit(_ agentSN: String, now: ContinuousClock.Instant = .now) -> Duration? {
        self.state.withLock { state in
            self.expire(&state, now: now)
            if let slot = state.reserved[agentSN] {
                guard slot - now <= self.punctuality else { return slot - now }
                state.reserved[agentSN] = nil
                if self.letIn(&state, now: now) { return nil }
            }
            var next = max(state.next, now)
            if next - now <= self.tolerance {
                if self.letIn(&state, now: now) {
                    state.next = next + self.interval
                    return nil
                }
                next = max(next, state.admitted - self.tolerance)
            }
            state.next = next + self.interval
            state.reserved[agentSN] = next
            state.order.append((agentSN, next))
            return next - now
        }
    }

    /// Lets one more in if that keeps those let in at the rate and its burst.
    private func letIn(_ state: inout State, now: ContinuousClock.Instant) -> Bool {
        let at = max(state.admitted, now)
        guard at - now <= self.tolerance else { return false }
        state.admitted = at + self.interval
        return true
    }

    /// Slots reserved and not yet claimed.
    public var reservations: Int { self.state.withLock { $0.reserved.count } }

    private func expire(_ state: inout State, now: ContinuousClock.Instant) {
        while state.head < state.order.count, state.order[state.head].slot + self.keep < now {
            let (agentSN, slot) = state.order[state.head]
            if state.reserved[agentSN] == slot { state.reserved[agentSN] = nil }
            state.head += 1
        }
        if state.head > 1024, state.head * 2 > state.order.count {
            state.order.removeFirst(state.head)
            state.head = 0
        }
    }
}
