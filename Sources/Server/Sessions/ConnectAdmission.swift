import Synchronization

/// The node's pace for new agents: at most `rate` accepted `Init`s a second after a burst of a
/// twentieth of that (the generic cell rate algorithm), so a reconnect storm — a restarted
/// node's whole fleet dialing at once — arrives spread instead of in one wave.
///
/// An agent over the rate is not just refused: it is given the next free slot, reserved for it
/// by its AgentSN, and told how long until then (``Admission``); coming back at its slot it is
/// let in without taking another. A slot not claimed within `keep` of its time lapses.
public final class ConnectAdmission: Sendable {
    /// A node's pace unless told otherwise (`--max-connect-rate`): about what this project's
    /// 2-core machine connects anyway, TLS included (bench/README.md, P1 and P5).
    public static let defaultRate = 500

    private let interval: Duration
    private let tolerance: Duration
    private let keep: Duration
    private let state: Mutex<State>

    private struct State {
        /// When the next slot is free (the algorithm's theoretical arrival time).
        var next: ContinuousClock.Instant
        var reserved: [String: ContinuousClock.Instant] = [:]
        /// Reservations in the order they were made, which is the order of their slots.
        var order: [(agentSN: String, slot: ContinuousClock.Instant)] = []
        var head = 0
    }

    public init(rate: Int, keep: Duration = .seconds(30), now: ContinuousClock.Instant = .now) {
        precondition(rate >= 1)
        self.interval = .seconds(1) / rate
        self.tolerance = self.interval * max(1, rate / 20)
        self.keep = keep
        self.state = Mutex(State(next: now))
    }

    /// Nil when the agent may connect now; else how long until its slot.
    public func admit(_ agentSN: String, now: ContinuousClock.Instant = .now) -> Duration? {
        self.state.withLock { state in
            self.expire(&state, now: now)
            if let slot = state.reserved[agentSN] {
                // Its slot was counted when it was given: early by up to one interval is on time.
                guard slot - now <= self.interval else { return slot - now }
                state.reserved[agentSN] = nil
                return nil
            }
            let next = max(state.next, now)
            state.next = next + self.interval
            if next - now <= self.tolerance { return nil }
            state.reserved[agentSN] = next
            state.order.append((agentSN, next))
            return next - now
        }
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
