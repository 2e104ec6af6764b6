import Foundation
import HeapModule
import RPC
import Synchronization

/// Keeps a node's agent streams alive from one task: a stream says Hello within
/// `helloTimeout`, then gets a ping every `pingInterval`, and one silent for three intervals is
/// ended.
///
/// One task for all the streams, where each stream had a task of its own asleep between its
/// pings: its frames and its timer were ~5 KiB of every idle agent (bench/README.md, "P1").
final class StreamKeeper: Sendable {
    let pingInterval: Duration
    let helloTimeout: Duration

    private struct Kept {
        let connection: Connection
        /// When the stream is next looked at: its Hello's deadline, then its next ping.
        var due: ContinuousClock.Instant
        var nonce: UInt64 = 0
    }

    /// A stream's turn in the schedule.
    private struct Turn: Comparable {
        let due: ContinuousClock.Instant
        let id: ObjectIdentifier

        static func < (lhs: Turn, rhs: Turn) -> Bool { lhs.due < rhs.due }
    }

    private struct State {
        var streams: [ObjectIdentifier: Kept] = [:]
        /// The streams' turns, soonest first: a sweep looks at the due ones only (looking at
        /// each stream each second was a quarter of an idle node's CPU at 10,000 agents). A
        /// turn whose stream has gone, or moved to another time, is passed over.
        var turns = Heap<Turn>()
    }

    private let state = Mutex(State())

    init(pingInterval: Duration, helloTimeout: Duration) {
        self.pingInterval = pingInterval
        self.helloTimeout = helloTimeout
    }

    /// Takes a stream as it opens.
    func keep(_ connection: Connection, now: ContinuousClock.Instant = .now) {
        let kept = Kept(connection: connection, due: now + self.helloTimeout)
        self.state.withLock { state in
            state.streams[ObjectIdentifier(connection)] = kept
            state.turns.insert(Turn(due: kept.due, id: ObjectIdentifier(connection)))
        }
    }

    /// Notes the stream's Hello: its first ping is an interval from now.
    func greeted(_ connection: Connection, now: ContinuousClock.Instant = .now) {
        let id = ObjectIdentifier(connection)
        self.state.withLock { state in
            guard var kept = state.streams[id] else { return }
            kept.due = now + self.pingInterval
            state.streams[id] = kept
            state.turns.insert(Turn(due: kept.due, id: id))
        }
    }

    /// Lets go of a stream that ended.
    func forget(_ connection: Connection) {
        _ = self.state.withLock { $0.streams.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    /// How many streams are kept.
    var count: Int { self.state.withLock { $0.streams.count } }

    /// Looks at the streams every second (every ping interval when that is shorter), until
    /// cancelled.
    func run() async {
        let tick = min(.seconds(1), self.pingInterval)
        while (try? await Task.sleep(for: tick)) != nil {
            self.sweep()
        }
    }

    /// Ends the streams past their Hello's deadline or silent for three ping intervals, and
    /// pings the others that are due.
    func sweep(now: ContinuousClock.Instant = .now) {
        let silence = 3 * self.pingInterval.seconds
        var pings: [(AgentSession, UInt64)] = []
        var ending: [(Connection, AgentChannelService.Ended)] = []
        self.state.withLock { state in
            while let turn = state.turns.min, turn.due <= now {
                state.turns.removeMin()
                guard var kept = state.streams[turn.id], kept.due == turn.due else { continue }
                guard let session = kept.connection.session else {
                    ending.append((kept.connection, .noHello))
                    state.streams[turn.id] = nil
                    continue
                }
                if session.lastSeen.timeIntervalSinceNow < -silence {
                    ending.append((kept.connection, .silent))
                    state.streams[turn.id] = nil
                    continue
                }
                kept.nonce += 1
                pings.append((session, kept.nonce))
                kept.due = now + self.pingInterval
                state.streams[turn.id] = kept
                state.turns.insert(Turn(due: kept.due, id: turn.id))
            }
        }
        for (session, nonce) in pings {
            var ping = Aspire_V1_ServerMessage()
            ping.ping.nonce = nonce
            session.send(ping)
        }
        for (connection, reason) in ending {
            connection.end(reason)
        }
    }
}
