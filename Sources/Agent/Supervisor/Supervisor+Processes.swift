#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SystemPackage
import RPC
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// A sub-agent's processes: started, held to the health window, found, stopped.
extension Supervisor {

    /// The sub-agent's live processes, oldest first: its cgroup's, or its session's, and a
    /// daemon's pidfile process (a daemon that left its session is still found).
    func processes(of record: SubAgentRecord) -> [ProcessTable.Entry] {
        self.processes(of: record, pidfile: self.pidfileProcess(record))
    }

    /// The same, with the pidfile's process already read.
    private func processes(of record: SubAgentRecord, pidfile own: ProcessTable.Entry?) -> [ProcessTable.Entry] {
        var found =
            self.control.tracksProcesses
            ? ProcessTable.alive(self.control.processes(of: record.name))
            : ProcessTable.session(record.session).sorted { ($0.startTicks, $0.pid) < ($1.startTicks, $1.pid) }
        if let own, !found.contains(where: { $0.pid == own.pid }) { found.append(own) }
        return found
    }

    /// A daemon's pidfile process: running, and started since the daemon was (a stale pidfile
    /// naming an older process names someone else).
    func pidfileProcess(_ record: SubAgentRecord) -> ProcessTable.Entry? {
        guard let entry = record.daemon?.pidfileProcess, entry.startTicks + 1 >= record.launchTicks else { return nil }
        return entry
    }

    /// Whether the sub-agent is up — its processes run, or, for a daemon, what its check says —
    /// and the process to report (a daemon's pidfile names it; else the recorded one, or the
    /// oldest). One look at the processes serves both.
    func liveness(_ record: SubAgentRecord) -> (up: Bool, main: ProcessTable.Entry?) {
        let own = self.pidfileProcess(record)
        let alive = self.processes(of: record, pidfile: own)
        let main = own ?? self.main(of: record, alive)
        switch record.daemon?.check {
        case nil, .process?: return (!alive.isEmpty, main)
        case .pidfile?: return (own != nil, main)
        case .socket?: return (record.daemon?.socketAccepts == true, main)
        }
    }

    /// The process to report: the recorded one while it lives, else the oldest.
    func main(of record: SubAgentRecord, _ alive: [ProcessTable.Entry]) -> ProcessTable.Entry? {
        alive.first { $0.pid == record.pid && $0.startTicks == record.pidStartTicks } ?? alive.first
    }

    /// Starts the sub-agent as an operator's action asked (its streak and restart count begin
    /// again), then holds it to the health window.
    func startChecked(_ record: SubAgentRecord, before: SubAgentRecord?) async throws(AspireError) -> SubAgentRecord {
        var record = record
        record.life = self.policy(for: record).onCommandStart(record.life, at: self.clock.now)
        record = try await self.launch(record)
        self.commit(record, changedFrom: before)
        let window = self.configuration.healthWindow
        let clock = ContinuousClock()
        let started = clock.now
        let deadline = started.advanced(by: window)
        let poll = Duration.milliseconds(min(500, max(50, window.milliseconds / 10)))
        while clock.now < deadline {
            try? await Task.sleep(for: poll)
            if !self.liveness(record).up {
                let killed = self.control.oomKills(of: record.name) > record.oomKillsAtStart
                record.life = self.policy(for: record).onStartFailed(record.life, at: self.clock.now, killed: killed)
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

    /// Runs `control start` (a daemon: its precheck, then its start command) in a new group
    /// with the sub-agent's limits, user and environment, and checks that it is up afterwards.
    func launch(_ record: SubAgentRecord) async throws(AspireError) -> SubAgentRecord {
        var record = record
        let directory = self.versionDirectory(record)
        if record.daemon == nil { try self.checkControl(in: directory, origin: "\(record.name) \(record.version) has") }
        let identity = try Identity.resolve(user: record.user, group: record.group)
        if identity.needsSwitch {
            if let blocked = identity.firstUnsearchable(on: directory) {
                throw AspireError(
                    .startFailed,
                    "\(record.name) cannot run as \(identity.account.name): it may not enter \(blocked); the agents root and the directories above it must be searchable by it (chmod o+x)"
                )
            }
            Self.chown(directory, to: identity)
        } else if let owner = try? Stat(FilePath(directory), followTargetSymlink: false).userID, owner.rawValue != 0 {
            // Its files were handed to another user, who could have changed them since: never
            // run them as root.
            throw AspireError(
                .startFailed,
                "\(record.name) \(record.version) is not run as root: its files belong to uid \(owner.rawValue), which could have changed them; install the version again to run it as root"
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
        let (executable, arguments) = record.daemon.map { ("/bin/sh", ["-c", $0.start]) } ?? ("\(directory)/control", ["start"])
        let what = record.daemon.map { "start '\($0.start)'" } ?? "control start"
        if let daemon = record.daemon, !daemon.precheck.isEmpty {
            try await self.precheck(daemon, environment: environment, directory: directory, identity: identity, log: log)
        }
        record.launchTicks = ProcessTable.ticksNow
        let started = try await Launcher.start(
            Launcher.Request(
                executable: executable,
                arguments: arguments,
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
            throw Launcher.failed(.startFailed, what, termination, log: log, from: offset, limit: 400, directory: directory)
        }
        if let daemon = record.daemon {
            if daemon.startDelay > 0 { try? await Task.sleep(for: .seconds(daemon.startDelay)) }
            let (up, main) = self.liveness(record)
            guard up else {
                await self.kill(record)
                throw AspireError(
                    .startFailed,
                    "\(what) ran, but \(daemon.startDelay) s later \(daemon.checkDescription): \(Launcher.tail(log, from: offset, limit: 400))"
                )
            }
            record.pid = main?.pid ?? 0
            record.pidStartTicks = main?.startTicks ?? 0
            record.oomKillsAtStart = oomKills
            record.message = "started (\(main.map { "pid \($0.pid)" } ?? "\(daemon.socket) accepts connections"))"
            return record
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

    /// A daemon's precheck, tried `precheckRetries` more times a second apart until it succeeds.
    private func precheck(
        _ daemon: DaemonProgram, environment: [String: String], directory: String, identity: Identity, log: String
    ) async throws(AspireError) {
        var last = ""
        for attempt in 0 ... daemon.precheckRetries {
            if attempt > 0 { try? await Task.sleep(for: .seconds(1)) }
            let offset = Launcher.size(log)
            let termination = try await Launcher.run(
                Launcher.Request(
                    executable: "/bin/sh", arguments: ["-c", daemon.precheck], environment: environment, directory: directory,
                    identity: identity, outputPath: log
                ),
                timeout: self.configuration.controlTimeout
            )
            if termination.succeeded { return }
            last = "\(termination.description): \(Launcher.tail(log, from: offset, limit: 300))"
        }
        throw AspireError(.startFailed, "precheck '\(daemon.precheck)' failed \(daemon.precheckRetries + 1) times; the last \(last)")
    }

    /// A daemon's stop (its command, or its signal to every process of it), then SIGKILL for
    /// what is left after its stop timeout.
    private func stopDaemon(_ record: SubAgentRecord, _ daemon: DaemonProgram) async -> String {
        var note = ""
        switch daemon.stop {
        case .command(let command):
            let log = self.logPath(record.name)
            let offset = Launcher.size(log)
            do {
                let identity = try Identity.resolve(user: record.user, group: record.group)
                let termination = try await Launcher.run(
                    Launcher.Request(
                        executable: "/bin/sh", arguments: ["-c", command], environment: record.envs, directory: self.versionDirectory(record),
                        identity: identity, outputPath: log
                    ),
                    timeout: .seconds(daemon.stopTimeout)
                )
                if !termination.succeeded { note = "stop '\(command)' \(termination.description): \(Launcher.tail(log, from: offset, limit: 200))" }
            } catch {
                note = "stop '\(command)': \(error.cause)"
            }
        case .signal(let signal):
            for entry in self.processes(of: record) { Glibc.kill(entry.pid, signal) }
        }
        if await self.waitGone(record, for: .seconds(daemon.stopTimeout)) { return note }
        await self.kill(record)
        return [note, "killed with SIGKILL after its \(daemon.stopTimeout) s stop timeout"].filter { !$0.isEmpty }.joined(separator: "; ")
    }

    /// `control stop`, then SIGTERM and SIGKILL for what is left of the group (a daemon: its
    /// own stop). Says what it had to do beyond `control stop`, or nothing.
    func stopProcesses(_ record: SubAgentRecord) async -> String {
        guard !self.processes(of: record).isEmpty else { return "" }
        if let daemon = record.daemon { return await self.stopDaemon(record, daemon) }
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
        guard record.daemon == nil else { return false }
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
        for path in (try? FileManager.default.subpathsOfDirectory(atPath: directory)) ?? [] {
            Glibc.lchown("\(directory)/\(path)", identity.account.uid, identity.gid)
        }
    }

    /// Keeps a sub-agent's control log under 1 MiB: past that, it starts again.
    private static func trim(_ path: String) {
        if Launcher.size(path) > 1 << 20 { truncate(path, 0) }
    }
}
