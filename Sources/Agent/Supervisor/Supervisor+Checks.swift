#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RPC
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The checks: every `checkInterval`, each sub-agent that should run is looked at, and the
/// restart policy says what follows from what is found.
extension Supervisor {
    /// Adopts what an earlier life of the agent left running, then checks every sub-agent
    /// every `checkInterval` until cancelled.
    public func run() async {
        self.logger.notice(
            "supervisor started",
            metadata: [
                "supervisor.root": "\(self.configuration.root)", "supervisor.limits": "\(self.control.name)",
                "supervisor.subagents": "\(self.allRecords.count)",
            ]
        )
        if let unusable { self.logger.error("\(unusable)") }
        self.adopt()
        while !Task.isCancelled {
            await self.checkAll(dueOnly: true)
            // A daemon may ask to be checked more often than the others.
            let intervals = self.allRecords.compactMap(\.daemon).map(\.checkInterval).filter { $0 > 0 }.map { Duration.seconds($0) }
            try? await Task.sleep(for: ([self.configuration.checkInterval] + intervals).min() ?? self.configuration.checkInterval)
        }
    }

    /// How often a sub-agent is checked: a daemon's own interval, or the supervisor's.
    func checkInterval(of record: SubAgentRecord) -> Duration {
        guard let seconds = record.daemon?.checkInterval, seconds > 0 else { return self.configuration.checkInterval }
        return .seconds(seconds)
    }

    /// Says which sub-agents an earlier life of the agent left running: they are supervised
    /// from here on as they are, not started again.
    private func adopt() {
        for record in self.allRecords.filter({ $0.phase != .stopped }) {
            if let main = self.main(of: record, self.processes(of: record)) {
                self.logger.notice(
                    "adopted a running sub-agent",
                    metadata: ["subagent": "\(record.name)", "subagent.version": "\(record.version)", "subagent.pid": "\(main.pid)"]
                )
            } else {
                self.logger.notice("sub-agent not running; the next check handles it", metadata: ["subagent": "\(record.name)"])
            }
        }
    }

    /// One check of every sub-agent not busy with an operator's action (with `dueOnly`, of
    /// those whose interval has passed since their last check).
    func checkAll(dueOnly: Bool = false) async {
        let records = self.allRecords
        let now = ContinuousClock.now
        for record in records {
            if dueOnly, let last = self.lastChecks.withLock({ $0[record.name] }),
                now - last < self.checkInterval(of: record) - .milliseconds(100)
            {
                continue
            }
            self.lastChecks.withLock { $0[record.name] = now }
            guard self.hold(record.name, .check) else { continue }
            await self.check(record.name)
            self.release(record.name)
        }
        self.logger.debug("sub-agents checked", metadata: ["supervisor.subagents": "\(records.count)"])
    }

    private func check(_ name: String) async {
        guard var record = self.record(name) else { return }
        switch record.phase {
        case .running, .exited: break
        case .stopped, .fatal: return
        }
        let before = record
        let now = self.clock.now
        let (up, main) = self.liveness(record)
        if up {
            if record.phase.runningSince == nil {
                self.logger.notice("sub-agent is running; adopted", metadata: ["subagent": "\(name)", "subagent.pid": "\(main?.pid ?? 0)"])
                record.message = "running\(main.map { " (pid \($0.pid))" } ?? ""); adopted"
            }
            record.life = self.policy(for: record).onFoundRunning(record.life)
            record.pid = main?.pid ?? 0
            record.pidStartTicks = main?.startTicks ?? 0
            self.commit(record, changedFrom: before)
            return
        }
        if case .running(let since) = record.phase {
            if await self.controlSaysStarted(record) {
                if record.message != Self.outsideMessage {
                    self.logger.warning("sub-agent runs outside its process group", metadata: ["subagent": "\(name)"])
                    record.message = Self.outsideMessage
                }
                record.pid = 0
                self.commit(record, changedFrom: before)
                return
            }
            let killed = self.control.oomKills(of: name) > record.oomKillsAtStart
            record.life = self.policy(for: record).onExit(record.life, at: now, killed: killed)
            let how = killed ? "killed by its memory limit (\(self.control.name))" : "exited"
            let exit = "\(how) \(Int(now.timeIntervalSince(since))) s after start"
            if record.phase == .fatal {
                self.fatal(&record, exit, changedFrom: before)
                return
            }
            record.message = "\(exit) (\(record.anomalies) abnormal exit\(record.anomalies == 1 ? "" : "s") in a row)"
            self.logger.warning("sub-agent \(how)", metadata: ["subagent": "\(name)", "subagent.ran_s": "\(Int(now.timeIntervalSince(since)))"])
            self.commit(record, changedFrom: before, event: "\(name) \(record.version) \(record.message)")
        }
        guard self.policy(for: record).onCheck(record.life, at: now) == .restart else {
            self.commit(record, changedFrom: before)
            return
        }
        do {
            record = try await self.launch(record)
            record.life = self.policy(for: record).onRestart(record.life, at: now, succeeded: true)
            record.message = "restarted (restart \(record.restarts)); pid \(record.pid)"
            self.logger.notice("sub-agent restarted", metadata: ["subagent": "\(name)", "subagent.pid": "\(record.pid)"])
        } catch {
            record.life = self.policy(for: record).onRestart(record.life, at: now, succeeded: false)
            self.logger.warning("sub-agent restart failed", metadata: ["subagent": "\(name)", "error": "\(error.cause)"])
            if record.phase == .fatal {
                self.fatal(&record, "restart failed (\(error.cause))", changedFrom: before)
                return
            }
            record.message = "restart failed: \(error.cause)"
        }
        self.commit(record, changedFrom: before)
    }

    /// Says, logs and reports that a sub-agent is fatal.
    private func fatal(_ record: inout SubAgentRecord, _ what: String, changedFrom before: SubAgentRecord) {
        record.message = "fatal: \(what), \(record.anomalies) abnormal exits in a row; not restarted until an operator starts it"
        self.logger.error("sub-agent is fatal", metadata: ["subagent": "\(record.name)", "subagent.anomalies": "\(record.anomalies)"])
        self.commit(record, changedFrom: before, event: record.message)
    }

    static let outsideMessage = "control status says started, but not in the group the agent started it in (started by hand?)"
}
