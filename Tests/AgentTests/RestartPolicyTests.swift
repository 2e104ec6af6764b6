import Foundation
import RPC
import Testing

@testable import Agent

/// The seed's restart policy as pure transitions, on exact times: check every 60 s; an abnormal
/// exit within 3 min of start is not restarted before 3 min since the start; one within 15 min
/// is an anomaly; more than 3 in a row → fatal.
@Suite("Restart policy")
struct RestartPolicyTests {
    let policy = RestartPolicy(SupervisorConfiguration())
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func at(_ offset: Duration) -> Date { self.t0.addingTimeInterval(offset.secondsDouble) }

    func started() -> RestartPolicy.Life {
        self.policy.onCommandStart(RestartPolicy.Life(phase: .stopped, anomalies: 2, restarts: 5), at: self.t0)
    }

    @Test("The seed's numbers are the defaults")
    func defaults() {
        let configuration = SupervisorConfiguration()
        #expect(configuration.checkInterval == .seconds(60))
        #expect(self.policy == RestartPolicy(holdoff: .seconds(180), anomalyWindow: .seconds(900), maxAnomalies: 3))
    }

    @Test("An operator's start begins a new life: running since then, no streak, no restarts; a stop is final for the checks")
    func commands() {
        let life = self.started()
        #expect(life == RestartPolicy.Life(phase: .running(since: self.t0), anomalies: 0, restarts: 0))
        let stopped = self.policy.onCommandStop(life)
        #expect(stopped.phase == .stopped)
        #expect(self.policy.onCheck(stopped, at: self.at(.seconds(86_400))) == .none)
        #expect(self.policy.onExit(stopped, at: self.at(.seconds(1)), killed: false) == stopped, "a stopped sub-agent has no exits to count")
    }

    @Test("An exit 1 ms inside the 15 min window is an anomaly; one at 15 min exactly ends the streak")
    func anomalyWindowEdge() {
        var life = self.started()
        life.anomalies = 2
        let inside = self.policy.onExit(life, at: self.at(.seconds(900) - .milliseconds(1)), killed: false)
        #expect(inside.anomalies == 3)
        #expect(inside.phase == .exited(since: self.t0, at: self.at(.seconds(900) - .milliseconds(1)), killed: false))
        let at = self.policy.onExit(life, at: self.at(.seconds(900)), killed: true)
        #expect(at.anomalies == 0)
        #expect(at.phase == .exited(since: self.t0, at: self.at(.seconds(900)), killed: true))
        #expect(at.phase.status == .killed && inside.phase.status == .stoped)
    }

    @Test("The hold-off counts from the start: no restart 1 ms before 3 min, a restart at 3 min")
    func holdoffEdge() {
        let exited = self.policy.onExit(self.started(), at: self.at(.seconds(30)), killed: false)
        #expect(self.policy.onCheck(exited, at: self.at(.seconds(60))) == .wait(until: self.at(.seconds(180))))
        #expect(self.policy.onCheck(exited, at: self.at(.seconds(180) - .milliseconds(1))) == .wait(until: self.at(.seconds(180))))
        #expect(self.policy.onCheck(exited, at: self.at(.seconds(180))) == .restart)
        // An exit long after its start is restarted at the next check.
        let late = self.policy.onExit(self.started(), at: self.at(.seconds(3600)), killed: false)
        #expect(self.policy.onCheck(late, at: self.at(.seconds(3600))) == .restart)
        // Only a sub-agent that is down is restarted.
        #expect(self.policy.onCheck(self.started(), at: self.at(.seconds(3600))) == .none)
    }

    @Test("The third anomaly in a row keeps it restarting; the fourth makes it fatal, and then nothing moves it but an operator")
    func fatalEdge() {
        var life = self.started()
        life.anomalies = 2
        let third = self.policy.onExit(life, at: self.at(.seconds(10)), killed: false)
        #expect(third.anomalies == 3 && third.phase.status == .stoped)
        life.anomalies = 3
        let fourth = self.policy.onExit(life, at: self.at(.seconds(10)), killed: false)
        #expect(fourth.anomalies == 4 && fourth.phase == .fatal && fourth.phase.status == .fatal)
        #expect(self.policy.onCheck(fourth, at: self.at(.seconds(86_400))) == .none)
        #expect(self.policy.onExit(fourth, at: self.at(.seconds(20)), killed: false) == fourth)
        #expect(self.policy.onCommandStart(fourth, at: self.at(.seconds(30))).phase == .running(since: self.at(.seconds(30))))
    }

    @Test("A restart runs it again since then and counts; a failed one counts as an exit at once")
    func restarts() {
        let exited = self.policy.onExit(self.started(), at: self.at(.seconds(5)), killed: false)
        let restarted = self.policy.onRestart(exited, at: self.at(.seconds(180)), succeeded: true)
        #expect(restarted == RestartPolicy.Life(phase: .running(since: self.at(.seconds(180))), anomalies: 1, restarts: 1))
        let failed = self.policy.onRestart(exited, at: self.at(.seconds(180)), succeeded: false)
        #expect(failed.restarts == 1 && failed.anomalies == 2)
        #expect(failed.phase == .exited(since: self.at(.seconds(180)), at: self.at(.seconds(180)), killed: false))
        var worn = exited
        worn.anomalies = 3
        #expect(self.policy.onRestart(worn, at: self.at(.seconds(180)), succeeded: false).phase == .fatal)
    }

    @Test("Death inside an operator's health window leaves it down without an anomaly; found running again, it keeps its start")
    func startFailedAndFound() {
        let failed = self.policy.onStartFailed(self.started(), at: self.at(.milliseconds(300)), killed: true)
        #expect(failed.anomalies == 0 && failed.phase == .exited(since: self.t0, at: self.at(.milliseconds(300)), killed: true))
        #expect(self.policy.onFoundRunning(failed).phase == .running(since: self.t0))
        #expect(self.policy.onFoundRunning(self.started()) == self.started())
    }

    @Test("The seed's crash loop on a 60 s check clock: restarts no sooner than 3 min after each start, fatal at the fourth crash in a row")
    func crashLoop() {
        // A sub-agent that dies 30 s after every start, checked every 60 s.
        var life = self.started()
        var restartsAt: [Duration] = []
        var check = Duration.zero
        while life.phase != .fatal, check < .seconds(3600) {
            check += .seconds(60)
            let now = self.at(check)
            if let since = life.phase.runningSince, now.timeIntervalSince(since) >= 30 {
                life = self.policy.onExit(life, at: now, killed: false)
            }
            if self.policy.onCheck(life, at: now) == .restart {
                life = self.policy.onRestart(life, at: now, succeeded: true)
                restartsAt.append(check)
            }
        }
        #expect(life.phase == .fatal && life.anomalies == 4 && life.restarts == 3)
        #expect(restartsAt == [.seconds(180), .seconds(360), .seconds(540)], "\(restartsAt)")
        #expect(check == .seconds(600), "fatal at the check after the fourth crash")
    }
}

/// What an agent of an earlier version wrote is still read.
@Suite("Sub-agent records")
struct SubAgentRecordTests {
    static func decode(_ json: String) throws -> SubAgentRecord {
        try JSONDecoder().decode(SubAgentRecord.self, from: Data(json.utf8))
    }

    @Test("Records without a phase map their desired state, status, start and handled exit onto one")
    func legacy() throws {
        let base = #""name": "web", "version": "1.0", "startedAt": 1800000000, "restarts": 2, "anomalies": 1"#
        let since = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(try Self.decode("{\(base), \"desired\": \"running\", \"status\": \"running\", \"exitHandled\": false}").phase == .running(since: since))
        #expect(try Self.decode("{\(base), \"desired\": \"running\", \"status\": \"killed\", \"exitHandled\": true}").phase == .exited(since: since, at: since, killed: true))
        #expect(try Self.decode("{\(base), \"desired\": \"running\", \"status\": \"fatal\", \"exitHandled\": true}").phase == .fatal)
        let stopped = try Self.decode("{\(base), \"desired\": \"stopped\", \"status\": \"stoped\"}")
        #expect(stopped.phase == .stopped && stopped.restarts == 2 && stopped.anomalies == 1)
    }

    @Test("A record reads back as it was written")
    func roundTrip() throws {
        var record = SubAgentRecord(name: "web", version: "2.0")
        record.life = RestartPolicy.Life(phase: .exited(since: Date(timeIntervalSince1970: 5), at: Date(timeIntervalSince1970: 9), killed: false), anomalies: 3, restarts: 1)
        record.envs = ["A": "b"]
        record.pid = 42
        let data = try JSONEncoder().encode(record)
        #expect(try JSONDecoder().decode(SubAgentRecord.self, from: data) == record)
    }
}
