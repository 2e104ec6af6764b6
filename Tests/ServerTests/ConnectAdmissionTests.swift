import Foundation
import RPC
import Server
import Testing
import TestSupport

@Suite("Connect admission", .stopsChildProcesses)
struct ConnectAdmissionTests {
    @Test("Over the rate, each agent gets a slot of its own, one interval apart; back at it, it is let in without taking another")
    func slots() {
        let t0 = ContinuousClock.now
        let admission = ConnectAdmission(rate: 10, now: t0)  // 100 ms apart; a burst of one
        #expect(admission.admit("a", now: t0) == nil)
        #expect(admission.admit("b", now: t0) == nil)
        #expect(admission.admit("c", now: t0) == .milliseconds(200))
        #expect(admission.admit("d", now: t0) == .milliseconds(300))
        #expect(admission.reservations == 2)
        // Too early: told again how long, the slot kept; on time (or early by less than an
        // interval): in, and the next newcomer still queues behind d.
        #expect(admission.admit("c", now: t0 + .milliseconds(50)) == .milliseconds(150))
        #expect(admission.admit("c", now: t0 + .milliseconds(150)) == nil)
        #expect(admission.admit("e", now: t0 + .milliseconds(150)) == .milliseconds(250))
        #expect(admission.admit("d", now: t0 + .milliseconds(310)) == nil)
        #expect(admission.reservations == 1)
        // A quiet while later the pace starts over; a slot not claimed lapses.
        let later = t0 + .seconds(60)
        #expect(admission.admit("f", now: later) == nil)
        #expect(admission.reservations == 0)
        #expect(admission.admit("e", now: later) == nil)
    }

    @Test("Agents back late together are let in at the rate and its burst; the rest queue again for later slots")
    func lateArrivals() {
        let t0 = ContinuousClock.now
        let admission = ConnectAdmission(rate: 10, now: t0)  // 100 ms apart; a burst of one
        let waits = ["a", "b", "c", "d", "e", "f"].map { admission.admit($0, now: t0) }
        #expect(waits == [nil, nil, .milliseconds(200), .milliseconds(300), .milliseconds(400), .milliseconds(500)])
        // c, d, e and f come back at 600 ms, late: two are in (one and the burst of one), e and f
        // get new slots, a pace apart.
        let back = t0 + .milliseconds(600)
        #expect(admission.admit("c", now: back) == nil)
        #expect(admission.admit("d", now: back) == nil)
        #expect(admission.admit("e", now: back) == .milliseconds(100))
        #expect(admission.admit("f", now: back) == .milliseconds(200))
        #expect(admission.admit("e", now: back + .milliseconds(100)) == nil)
        #expect(admission.admit("f", now: back + .milliseconds(230)) == nil)
        #expect(admission.reservations == 0)
    }

    @Test("Agents held up together (a stall of 600 ms as their slots came) are not let in as a wave: each 100 ms at most its share and the burst")
    func stalledReturns() throws {
        let t0 = ContinuousClock.now
        let admission = ConnectAdmission(rate: 500, now: t0)
        // Every agent asks at t0 and comes back at its slot, except that nothing reaches the
        // node from 1.0 to 1.6 s: what was due then arrives at 1.6 s, all at once.
        // Arrivals latest first, so the next is the last.
        var pending: [(at: Duration, agent: Int)] = (0 ..< 5000).reversed().map { (.zero, $0) }
        var admitted: [Duration] = []
        var rounds = 0
        while let (at, agent) = pending.popLast(), rounds < 100_000 {
            rounds += 1
            if let wait = admission.admit("sn-\(agent)", now: t0 + at) {
                var back = at + wait
                if back >= .seconds(1), back < .milliseconds(1600) { back = .milliseconds(1600) }
                // Behind those arriving at the same instant: first come, first asked.
                var (low, high) = (0, pending.count)
                while low < high {
                    let middle = (low + high) / 2
                    if pending[middle].at > back { low = middle + 1 } else { high = middle }
                }
                pending.insert((back, agent), at: low)
            } else {
                admitted.append(at)
            }
        }
        #expect(admitted.count == 5000, "every agent let in")
        var perWindow: [Int64: Int] = [:]
        for at in admitted { perWindow[at.milliseconds / 100, default: 0] += 1 }
        let burst = 500 / 20
        #expect(try #require(perWindow.values.max()) <= 50 + burst + 1, "\(perWindow.sorted { $0.value > $1.value }.prefix(3))")
        #expect(try #require(admitted.max()) < .seconds(12), "the stall costs its own length and little more")
    }

    @Test("A storm of 5,000 agents at one instant is spread at the rate: no 100 ms holds more than its share and the burst")
    func storm() throws {
        let t0 = ContinuousClock.now
        let admission = ConnectAdmission(rate: 500, now: t0)
        let waits = (0 ..< 5000).map { admission.admit("sn-\($0)", now: t0) ?? .zero }
        var perWindow: [Int: Int] = [:]
        for wait in waits { perWindow[Int(wait.milliseconds / 100), default: 0] += 1 }
        let burst = 500 / 20
        #expect(try #require(perWindow.values.max()) <= 50 + burst + 1, "\(perWindow.sorted { $0.key < $1.key }.prefix(5))")
        #expect(waits.filter { $0 == .zero }.count == burst + 1)
        #expect(try #require(waits.max()) < .seconds(10), "the last of 5,000 at 500/s")
        #expect(Set(waits).count == 5000 - burst, "every slot its own")
    }

    @Test("Real agents over a node's connect rate are told when to come back, come back then, and are all let in")
    func realAgents() async throws {
        try await withLocalNode(configure: { $0.maxConnectRate = 1 }) { node in
            try await withTemporaryDirectory("admission") { directory in
                let agents = try (0 ..< 6).map { index in
                    try TestAgent.start(
                        in: directory, name: "agent\(index)", servers: [node.address.description], caFile: node.caFile,
                        tokenFile: "\(node.node.configuration.dataDirectory)/enroll.token"
                    )
                }
                // Seconds alone; over a minute seen with the whole suite beside it on two cores
                // (six debug agents enrolling, each wait a slot of a second after the last).
                do {
                    try await eventually(timeout: .seconds(150), "all six agents on the node") {
                        agents.allSatisfy { node.node.registry.session(for: $0.agentSN) != nil }
                    }
                } catch {
                    let missing = agents.filter { node.node.registry.session(for: $0.agentSN) == nil }
                    Issue.record("not on the node: \(missing.map { "\($0.agentSN):\n\($0.process.log.suffix(3000))" }.joined(separator: "\n\n"))")
                    throw error
                }
                let told = agents.filter { $0.process.log.contains("asking again at the slot it gave") }
                // At one a second after a burst of one, six starting together cannot all be let in
                // at once (four of them wait when they arrive within a second of each other).
                #expect(told.count >= 1, "at one a second, some of six wait for slots")
                // A wait is not a failed round: no round ends for the rate. (A round may fail for
                // another reason on a loaded machine: an enrollment's answer that came too late.)
                for agent in told {
                    let lines = agent.process.log.split(separator: "\n").filter { $0.contains("[Agent]") }
                    let failedForRate = zip(lines, lines.dropFirst()).filter { before, line in
                        line.contains("no server reachable") && (before.contains("connect rate") || before.contains("resourceExhausted"))
                    }
                    #expect(failedForRate.isEmpty, "a wait is not a failed round: \(failedForRate)")
                }
                for agent in agents { await agent.process.stop() }
            }
        }
    }
}
