import Foundation
import RPC
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// A sub-agent's processes: started, held to the health window, found, stopped.
extension Supervisor {

    /// The sub-agent's live processes, oldest first: its cgroup's, or its session's.
    func processes(of record: SubAgentRecord) -> [ProcessTable.Entry] {
        if self.control.tracksProcesses {
            return ProcessTable.alive(self.control.processes(of: record.name))
        }
        return ProcessTable.session(record.session).sorted { ($0.startTicks, $0.pid) < ($1.startTicks, $1.pid) }
    }

    /// The process to report: the recorded one while it lives, else the oldest.
    func main(of record: SubAgentRecord, _ alive: [ProcessTable.Entry]) -> ProcessTable.Entry? {
        alive.first { $0.pid == record.pid && $0.startTicks == record.pidStartTicks } ?? alive.first
    }

    /// Starts the sub-agent as an operator's action asked (its streak and restart count begin
    /// again), then holds it to the health window.
    func startChecked(_ record: SubAgentRecord, before: SubAgentRecord?) async throws(AspireError) -> SubAgentRecord {
        var record = record
        record.life = self.policy.onCommandStart(record.life, at: self.clock.now)
        record = try await self.launch(record)
        self.commit(record, changedFrom: before)
        let window = self.configuration.healthWindow
        let clock = ContinuousClock()
        let started = clock.now
        let deadline = started.advanced(by: window)
        let poll = Duration.milliseconds(min(500, max(50, window.milliseconds / 10)))
        while clock.now < deadline {
            try? await Task.sleep(for: poll)
            if self.processes(of: record).isEmpty {
                let killed = self.control.oomKills(of: record.name) > record.oomKillsAtStart
                record.life = self.policy.onStartFailed(record.life, at: self.clock.now, killed: killed)
                record.message = killed
                    ? "killed by its memory limit (\(self.control.name)) \((clock.now - started).words) after start, inside its \(window.words) health window"
                    : "exited \((clock.now - started).words) after start, inside its \(window.words) health window"
                self.commit(record, changedFrom: nil)
                throw AspireError(.startFailed, "\(record.name) \(record.version) \(record.message)\(self.logNote(record.name))")
            }
        }
        if let main = self.main(of: record, self.processes(of: record)), main.pid != record.pid {
            record.pid = main.pid
            record.pidStartTicks = main.startTicks
            self.commit(record, changedFrom: nil)
        }
        return record
    }

    private func logNote(_ name: String) -> String {
        let tail = Launcher.tail(self.logPath(name), limit: 300)
        return tail.isEmpty ? "" : "; its output ends: \(tail)"
    }

    /// Runs `control start` in a new group with the sub-agent's limits, user and environment,
    /// and checks that a process of it runs afterwards.
    func launch(_ record: SubAgentRecord) async throws(AspireError) -> SubAgentRecord {
        var record = record
        let directory = self.versionDirectory(record)
        try self.checkControl(in: directory, origin: "\(record.name) \(record.version) has")
        let identity = try Identity.resolve(user: record.user, group: record.group)
        if identity.needsSwitch {
            if let blocked = identity.firstUnsearchable(on: directory) {
                throw AspireError(
                    .startFailed,
                    "\(record.name) cannot run as \(identity.account.name): it may not enter \(blocked); the agents root and the directories above it must be searchable by it (chmod o+x)"
                )
            }
            Self.chown(directory, to: identity)
        } else if let owner = (try? FileManager.default.attributesOfItem(atPath: directory))?[.ownerAccountID] as? NSNumber, owner.intValue != 0 {
            // Its files were handed to another user, who could have changed them since: never
            // run them as root.
            throw AspireError(
                .startFailed,
                "\(record.name) \(record.version) is not run as root: its files belong to uid \(owner.intValue), which could have changed them; install the version again to run it as root"
            )
        }
        try self.control.prepare(record.name, limits: record.limits)
        let oomKills = self.control.oomKills(of: record.name)
        let log = self.logPath(record.name)
        Self.trim(log)
        let offset = Launcher.size(log)
        let control = self.control
        let group = record.name
        var environment = record.envs
        environment["ASPIRE_SUBAGENT"] = record.name
        environment["ASPIRE_SUBAGENT_VERSION"] = record.version
        let started = try await Launcher.start(
            Launcher.Request(
                executable: "\(directory)/control",
                arguments: ["start"],
                environment: environment,
                directory: directory,
                identity: identity,
                prologue: control.shellPrologue(limits: record.limits),
                outputPath: log,
                enter: { pid throws(AspireError) in try control.enter(pid, group: group) }
            ),
            wait: self.configuration.controlTimeout
        )
        record.session = started.pid
        if case .ended(let termination) = started.outcome, !termination.succeeded {
            await self.kill(record)
            throw AspireError(.startFailed, "control start \(termination.description): \(Launcher.tail(log, from: offset, limit: 400))")
        }
        guard let main = self.main(of: record, self.processes(of: record)) else {
            throw AspireError(
                .startFailed,
                "control start succeeded but no process of \(record.name) is running: \(Launcher.tail(log, from: offset, limit: 400))"
            )
        }
        record.pid = main.pid
        record.pidStartTicks = main.startTicks
        record.oomKillsAtStart = oomKills
        record.message = "started (pid \(main.pid))"
        return record
    }

    /// `control stop`, then SIGTERM and SIGKILL for what is left of the group. Says what it
    /// had to do beyond `control stop`, or nothing.
    func stopProcesses(_ record: SubAgentRecord) async -> String {
        guard !self.processes(of: record).isEmpty else { return "" }
        let directory = self.versionDirectory(record)
        var note = ""
        if let identity = try? Identity.resolve(user: record.user, group: record.group),
            FileManager.default.isExecutableFile(atPath: "\(directory)/control")
        {
            let log = self.logPath(record.name)
            let offset = Launcher.size(log)
            do {
                let termination = try await Launcher.run(
                    Launcher.Request(
                        executable: "\(directory)/control", arguments: ["stop"], environment: record.envs,
                        directory: directory, identity: identity, outputPath: log
                    ),
                    timeout: self.configuration.controlTimeout
                )
                if !termination.succeeded { note = "control stop \(termination.description): \(Launcher.tail(log, from: offset, limit: 200))" }
            } catch {
                note = "control stop: \(error.cause)"
            }
        }
        if await self.waitGone(record, for: self.configuration.stopGrace) { return note }
        for entry in self.processes(of: record) { Glibc.kill(entry.pid, SIGTERM) }
        if await self.waitGone(record, for: .seconds(2)) {
            return [note, "terminated with SIGTERM after \(self.configuration.stopGrace.words)"].filter { !$0.isEmpty }.joined(separator: "; ")
        }
        await self.kill(record)
        return [note, "killed with SIGKILL"].filter { !$0.isEmpty }.joined(separator: "; ")
    }

    /// SIGKILL to every process of the group until none is left.
    func kill(_ record: SubAgentRecord) async {
        for _ in 0 ..< 50 {
            let alive = self.processes(of: record)
            if alive.isEmpty { return }
            for entry in alive { Glibc.kill(entry.pid, SIGKILL) }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    func waitGone(_ record: SubAgentRecord, for duration: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: duration)
        while clock.now < deadline {
            if self.processes(of: record).isEmpty { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return self.processes(of: record).isEmpty
    }

    /// `control status` printing "started": the sub-agent runs, though not where the agent
    /// started it.
    func controlSaysStarted(_ record: SubAgentRecord) async -> Bool {
        let directory = self.versionDirectory(record)
        guard FileManager.default.isExecutableFile(atPath: "\(directory)/control"),
            let identity = try? Identity.resolve(user: record.user, group: record.group)
        else { return false }
        let output = "\(self.records.directory)/\(record.name).status"
        try? FileManager.default.removeItem(atPath: output)
        defer { try? FileManager.default.removeItem(atPath: output) }
        guard
            let termination = try? await Launcher.run(
                Launcher.Request(
                    executable: "\(directory)/control", arguments: ["status"], environment: record.envs,
                    directory: directory, identity: identity, outputPath: output
                ),
                timeout: self.configuration.controlTimeout
            ), termination.succeeded || termination == .exited(3)
        else { return false }
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        return text.split(whereSeparator: \.isWhitespace).contains("started")
    }

    /// Gives a version's files to the user it runs as.
    private static func chown(_ directory: String, to identity: Identity) {
        Glibc.lchown(directory, identity.account.uid, identity.gid)
        guard let walker = FileManager.default.enumerator(atPath: directory) else { return }
        for case let path as String in walker {
            Glibc.lchown("\(directory)/\(path)", identity.account.uid, identity.gid)
        }
    }

    /// Keeps a sub-agent's control log under 1 MiB: past that, it starts again.
    private static func trim(_ path: String) {
        if Launcher.size(path) > 1 << 20 { truncate(path, 0) }
    }
}
