import Foundation
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
        var greeted = false
        var nonce: UInt64 = 0
    }

    private let streams = Mutex<[ObjectIdentifier: Kept]>([:])

    init(pingInterval: Duration, helloTimeout: Duration) {
        self.pingInterval = pingInterval
        self.helloTimeout = helloTimeout
    }

    /// Takes a stream as it opens.
    func keep(_ connection: Connection, now: ContinuousClock.Instant = .now) {
        self.streams.withLock { $0[ObjectIdentifier(connection)] = Kept(connection: connection, due: now + self.helloTimeout) }
    }

    /// Lets go of a stream that ended.
    func forget(_ connection: Connection) {
        _ = self.streams.withLock { $0.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    /// How many streams are kept.
    var count: Int { self.streams.withLock { $0.count } }

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
        self.streams.withLock { streams in
            var changed: [(ObjectIdentifier, Kept?)] = []
            for (id, var kept) in streams where kept.due <= now {
                guard let session = kept.connection.session else {
                    ending.append((kept.connection, .noHello))
                    changed.append((id, nil))
                    continue
                }
                if kept.greeted {
                    if session.lastSeen.timeIntervalSinceNow < -silence {
                        ending.append((kept.connection, .silent))
                        changed.append((id, nil))
                        continue
                    }
                    kept.nonce += 1
                    pings.append((session, kept.nonce))
                }
                // The first ping an interval after Hello.
                kept.greeted = true
                kept.due = now + self.pingInterval
                changed.append((id, kept))
            }
            // Changed after the loop, not in it: the loop reads the dictionary, which a change
            // inside it would copy whole.
            for (id, kept) in changed { streams[id] = kept }
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
