import Foundation
public import Logging
public import RPC
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Settings of the supervisor. The restart policy is the seed's: check every 60 s; an abnormal
/// exit within 3 min of start is not restarted at once; one within 15 min counts as an
/// anomaly; more than 3 anomalies in a row make the sub-agent `fatal`.
public struct SupervisorConfiguration: Sendable {
    /// Sub-agents live in `<root>/<name>/<version>/`, with `<root>/<name>/.version`.
    public var root: String = "/opt/aspire/agents"
    public var checkInterval: Duration = .seconds(60)
    /// An abnormal exit sooner than this after start is not restarted before this much time
    /// since the start has passed.
    public var holdoff: Duration = .seconds(180)
    /// An abnormal exit sooner than this after start is an anomaly; a later one ends the streak.
    public var anomalyWindow: Duration = .seconds(900)
    /// More anomalies in a row than this: `fatal`.
    public var maxAnomalies: Int = 3
    /// After install, upgrade, start and restart, the sub-agent must keep running this long,
    /// or the action fails (an upgrade rolls back).
    public var healthWindow: Duration = .seconds(10)
    /// Longest wait for `control start|stop|status`. A `control start` still running then is
    /// taken as a program that runs in the foreground.
    public var controlTimeout: Duration = .seconds(30)
    /// After `control stop`, how long the processes get to end before they are killed.
    public var stopGrace: Duration = .seconds(10)
    /// Longest run of a `command://` install command.
    public var commandTimeout: Duration = .seconds(600)
    public var resourceControl: ResourceControlMode = .auto
    /// The cgroup under which each sub-agent gets its own.
    public var cgroupParent: String = "aspire"

    public init() {}
}

/// Keeps the host's sub-agents installed at the right version, running, and inside their
/// limits: carries out `agent.install|upgrade|uninstall|start|stop|restart`, watches the
/// processes (its own process groups, not only `control status`), restarts them by the restart
/// policy, and adopts them when the agent itself restarts.
public final class Supervisor: Sendable {
    public let configuration: SupervisorConfiguration
    let records: SubAgentRecords
    let control: any ResourceControl
    let logger: Logger
    private let state = Mutex<[String: SubAgentRecord]>([:])
    private let holders = Mutex<[String: Holder]>([:])
    private let fetcher: PackageFetcher
    /// Called when a sub-agent's state changes, with an event to report when there is one.
    private let onChange: @Sendable (_ event: Aspire_V1_Event?) -> Void
    /// Why sub-agent actions cannot work on this host (a missing tool), said at start.
    let unusable: String?

    private enum Holder: Equatable {
        case action
        case check
    }

    /// The methods it answers: `agent.install`, `agent.upgrade`, ...
    public static var methods: [CommandMethod] { CommandMethod.SubAgentAction.allCases.map(CommandMethod.subAgent) }

    /// Checks a name that becomes one path component (sub-agent names, versions, cgroups).
    public static func checkName(_ value: String, field: String) throws(AspireError) {
        try SubAgentRecord.checkPathComponent(value, field: field)
    }

    /// Packages come from `downloads` (the server's store over the agent's connection, or the
    /// web); `onChange` hears of every change of a sub-agent's state.
    public init(
        configuration: SupervisorConfiguration,
        dataDirectory: String,
        downloads: PackageFetcher = PackageFetcher(),
        onChange: @escaping @Sendable (_ event: Aspire_V1_Event?) -> Void = { _ in },
        logger: Logger
    ) throws {
        self.configuration = configuration
        self.fetcher = downloads
        self.onChange = onChange
        self.logger = logger
        self.records = try SubAgentRecords(directory: "\(dataDirectory)/subagents")
        self.control = try ResourceControls.make(mode: configuration.resourceControl, parent: configuration.cgroupParent)
        let missing = ["tar", "sh"].filter { Tools.find($0) == nil }
        self.unusable = missing.isEmpty ? nil : "\(missing.joined(separator: " and ")) not found on this host: sub-agent packages cannot be installed"
        let (loaded, damaged) = self.records.loadAll()
        for name in damaged {
            logger.error("sub-agent state unreadable; that sub-agent is no longer supervised", metadata: ["file": "\(self.records.directory)/\(name)"])
        }
        self.state.withLock { state in
            for record in loaded { state[record.name] = record }
        }
    }

    // MARK: Reporting

    /// Every sub-agent as the status report carries it.
    public var statuses: [Aspire_V1_SubAgentStatus] {
        let now = Date().timeIntervalSince1970
        return self.state.withLock { Array($0.values) }.sorted { $0.name < $1.name }.map { record in
            var status = Aspire_V1_SubAgentStatus()
            status.name = record.name
            status.version = record.version
            status.status = record.status.rawValue
            status.pid = record.status == .running ? Int32(record.pid) : 0
            status.uptime = record.status == .running ? Int64(max(0, now - record.startedAt)) : 0
            status.restarts = Int32(clamping: record.restarts)
            status.message = record.message
            status.previousVersion = record.previousVersion ?? ""
            return status
        }
    }

    func record(_ name: String) -> SubAgentRecord? {
        self.state.withLock { $0[name] }
    }

    /// Describes how limits are enforced here, for the agent's start log.
    public var resourceControlName: String { self.control.name }

    // MARK: Supervision

    /// Adopts what an earlier life of the agent left running, then checks every sub-agent
    /// every `checkInterval` until cancelled.
    public func run() async {
        self.logger.notice(
            "supervisor started",
            metadata: [
                "supervisor.root": "\(self.configuration.root)", "supervisor.limits": "\(self.control.name)",
                "supervisor.subagents": "\(self.state.withLock { $0.count })",
            ]
        )
        if let unusable { self.logger.error("\(unusable)") }
        self.adopt()
        while !Task.isCancelled {
            await self.checkAll()
            try? await Task.sleep(for: self.configuration.checkInterval)
        }
    }

    /// Says which sub-agents an earlier life of the agent left running: they are supervised
    /// from here on as they are, not started again.
    private func adopt() {
        for record in self.state.withLock({ Array($0.values) }) where record.desired == .running {
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

    func checkAll() async {
        for name in self.state.withLock({ $0.keys.sorted() }) {
            guard self.hold(name, .check) else { continue }
            await self.check(name)
            self.release(name)
        }
    }

    private func check(_ name: String) async {
        guard var record = self.state.withLock({ $0[name] }), record.desired == .running, record.status != .fatal else { return }
        let before = record
        let alive = self.processes(of: record)
        if let main = self.main(of: record, alive) {
            if record.status != .running || record.pid != main.pid {
                if record.status != .running {
                    self.logger.notice("sub-agent is running; adopted", metadata: ["subagent": "\(name)", "subagent.pid": "\(main.pid)"])
                    record.message = "running (pid \(main.pid)); adopted"
                }
                record.status = .running
                record.pid = main.pid
                record.pidStartTicks = main.startTicks
            }
            self.commit(record, changedFrom: before)
            return
        }
        let now = Date().timeIntervalSince1970
        if !record.exitHandled {
            if await self.controlSaysStarted(record) {
                if record.message != Self.outsideMessage {
                    self.logger.warning("sub-agent runs outside its process group", metadata: ["subagent": "\(name)"])
                    record.message = Self.outsideMessage
                }
                record.status = .running
                record.pid = 0
                self.commit(record, changedFrom: before)
                return
            }
            let ranFor = max(0, now - record.startedAt)
            let killed = self.control.oomKills(of: name) > record.oomKillsAtStart
            record.exitHandled = true
            record.anomalies = ranFor < self.configuration.anomalyWindow.secondsDouble ? record.anomalies + 1 : 0
            record.status = killed ? .killed : .stoped
            let how = killed ? "killed by its memory limit (\(self.control.name))" : "exited"
            if record.anomalies > self.configuration.maxAnomalies {
                record.status = .fatal
                record.message = "fatal: \(how) \(Int(ranFor)) s after start, \(record.anomalies) abnormal exits in a row; not restarted until an operator starts it"
                self.logger.error("sub-agent is fatal", metadata: ["subagent": "\(name)", "subagent.anomalies": "\(record.anomalies)"])
                self.commit(record, changedFrom: before, event: record.message)
                return
            }
            record.message = "\(how) \(Int(ranFor)) s after start (\(record.anomalies) abnormal exit\(record.anomalies == 1 ? "" : "s") in a row)"
            self.logger.warning("sub-agent \(how)", metadata: ["subagent": "\(name)", "subagent.ran_s": "\(Int(ranFor))"])
            self.commit(record, changedFrom: before, event: "\(name) \(record.version) \(record.message)")
        }
        let wait = self.configuration.holdoff.secondsDouble - (now - record.startedAt)
        if wait > 0 {
            self.commit(record, changedFrom: before)
            return
        }
        record.restarts += 1
        do {
            record = try await self.launch(record)
            record.message = "restarted (restart \(record.restarts)); pid \(record.pid)"
            self.logger.notice("sub-agent restarted", metadata: ["subagent": "\(name)", "subagent.pid": "\(record.pid)"])
        } catch {
            // Counted as another abnormal exit at the next check.
            record.startedAt = now
            record.exitHandled = false
            record.message = "restart failed: \(error.cause)"
            self.logger.warning("sub-agent restart failed", metadata: ["subagent": "\(name)", "error": "\(error.cause)"])
        }
        self.commit(record, changedFrom: before)
    }

    private static let outsideMessage = "control status says started, but not in the group the agent started it in (started by hand?)"

    /// Saves a changed record and tells the runtime.
    private func commit(_ record: SubAgentRecord, changedFrom before: SubAgentRecord?, event: String? = nil) {
        guard record != before else { return }
        self.state.withLock { $0[record.name] = record }
        do {
            try self.records.save(record)
        } catch {
            self.logger.error("\(error.cause)")
        }
        self.onChange(event.map { self.event($0, record) })
    }

    private func event(_ message: String, _ record: SubAgentRecord) -> Aspire_V1_Event {
        Aspire_V1_Event(
            category: "subagent", message: message,
            attributes: ["name": record.name, "version": record.version, "status": record.status.rawValue]
        )
    }

    // MARK: Actions

    /// Carries out one sub-agent action; the result says what happened in words.
    public func perform(_ action: CommandMethod.SubAgentAction, _ params: Aspire_V1_SubAgentParams, id: String) async -> Aspire_V1_CommandResult {
        let started = Date()
        let method = CommandMethod.subAgent(action)
        do {
            try SubAgentRecord.checkPathComponent(params.name, field: "name")
        } catch {
            return .failed(id: id, error.code, error.cause, started: started)
        }
        guard await self.claim(params.name) else {
            return .failed(id: id, .busy, "another action on \(params.name) is under way; try again when it ends", started: started)
        }
        defer { self.release(params.name) }
        do throws(AspireError) {
            let message: String
            switch action {
            case .install, .upgrade: message = try await self.deploy(params)
            case .uninstall: message = try await self.uninstall(params.name)
            case .start: message = try await self.start(params, restart: false)
            case .restart: message = try await self.start(params, restart: true)
            case .stop: message = try await self.stop(params.name)
            }
            self.logger.notice("sub-agent action done", metadata: ["subagent": "\(params.name)", "command.method": "\(method)", "result": "\(message)"])
            return .success(id: id, message: message, started: started)
        } catch {
            self.logger.warning("sub-agent action failed", metadata: ["subagent": "\(params.name)", "command.method": "\(method)", "error": "\(error.cause)"])
            return .failed(id: id, error.code, error.cause, started: started)
        }
    }

    /// Waits out a check of `name`; false when another action holds it.
    private func claim(_ name: String) async -> Bool {
        while true {
            let holder = self.holders.withLock { holders -> Holder? in
                if let holder = holders[name] { return holder }
                holders[name] = .action
                return nil
            }
            switch holder {
            case nil: return true
            case .action?: return false
            case .check?: try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    private func hold(_ name: String, _ holder: Holder) -> Bool {
        self.holders.withLock { holders in
            guard holders[name] == nil else { return false }
            holders[name] = holder
            return true
        }
    }

    private func release(_ name: String) {
        _ = self.holders.withLock { $0.removeValue(forKey: name) }
    }

    /// install and upgrade: make `version` the one installed and running.
    private func deploy(_ params: Aspire_V1_SubAgentParams) async throws(AspireError) -> String {
        let name = params.name
        try SubAgentRecord.checkPathComponent(params.version, field: "version")
        guard !params.url.isEmpty else { throw AspireError(.invalidParams, "\(name) \(params.version): no url to fetch the package from") }
        let source = try PackageSource(params.url)
        if case .command = source {
        } else if !CommandParameters.isSHA256(params.checksum) {
            throw AspireError(.invalidParams, "\(name) \(params.version): checksum must be SHA256:<64 hex digits>; packages are not installed unchecked")
        }
        if let unusable { throw AspireError(.toolMissing, unusable) }
        let current = self.state.withLock { $0[name] }
        var record = current ?? SubAgentRecord(name: name, version: params.version)
        record.version = params.version
        let settingsChanged = try self.apply(params, to: &record)

        if let current, current.version == params.version, FileManager.default.fileExists(atPath: self.versionDirectory(current)) {
            let alive = self.processes(of: current)
            if !settingsChanged, current.status == .running, let main = self.main(of: current, alive) {
                return "\(name) \(params.version) is already installed and running (pid \(main.pid)); nothing to do"
            }
            _ = await self.stopProcesses(current)
            record.desired = .running
            record.anomalies = 0
            record = try await self.startChecked(record, before: current)
            return "\(name) \(params.version) was already installed; \(settingsChanged ? "restarted with the new settings" : "started"): running (pid \(record.pid))\(self.limitsNote(record))"
        }

        record.package = try await self.unpack(source, checksum: params.checksum, name: name, version: params.version)
        if let current {
            return try await self.upgrade(from: current, to: record)
        }
        record.desired = .running
        do {
            if let package = record.package { try await self.install(package, for: record) }
            try self.switchVersion(name, to: params.version)
            record = try await self.startChecked(record, before: nil)
        } catch {
            _ = await self.stopProcesses(record)
            self.forget(name)
            if let package = record.package { try? await package.remove(log: self.logPath(name), timeout: self.configuration.commandTimeout) }
            try? FileManager.default.removeItem(atPath: self.directory(name))
            throw AspireError(error.code, "install of \(name) \(params.version) failed: \(error.cause); nothing is left installed")
        }
        return "installed \(name) \(params.version): running (pid \(record.pid))\(self.limitsNote(record))"
    }

    private func upgrade(from old: SubAgentRecord, to new: SubAgentRecord) async throws(AspireError) -> String {
        let name = old.name
        let stopped = await self.stopProcesses(old)
        var record = new
        record.previousVersion = old.version
        record.desired = .running
        record.restarts = 0
        record.anomalies = 0
        do {
            if let package = new.package { try await self.install(package, for: new) }
            try self.switchVersion(name, to: new.version)
            record = try await self.startChecked(record, before: old)
        } catch {
            let reason = error.cause
            _ = await self.stopProcesses(record)
            var back = old
            back.desired = .running
            back.anomalies = 0
            do {
                try await self.restorePackages(from: new, to: old)
            } catch {
                back.status = .stoped
                back.message = "upgrade to \(new.version) failed (\(reason)); \(old.version) could not be put back: \(error.cause)"
                self.commit(back, changedFrom: nil, event: back.message)
                throw AspireError(.rolledBack, "upgrade of \(name) to \(new.version) failed: \(reason); putting \(old.version) back failed too: \(error.cause)")
            }
            try? FileManager.default.removeItem(atPath: self.versionDirectory(new))
            do {
                try self.switchVersion(name, to: old.version)
                back = try await self.launch(back)
                back.message = "rolled back from \(new.version): \(reason)"
                self.commit(back, changedFrom: nil, event: "\(name): upgrade to \(new.version) failed; rolled back to \(old.version)")
            } catch {
                back.status = .stoped
                back.message = "upgrade to \(new.version) failed (\(reason)); \(old.version) did not start again: \(error.cause)"
                self.commit(back, changedFrom: nil, event: back.message)
                throw AspireError(.rolledBack, "upgrade of \(name) to \(new.version) failed: \(reason); rolled back to \(old.version), which did not start again: \(error.cause)")
            }
            throw AspireError(.rolledBack, "upgrade of \(name) from \(old.version) to \(new.version) failed: \(reason); rolled back to \(old.version): running (pid \(back.pid))")
        }
        if let previous = old.package, previous.name != new.package?.name {
            // Another package (or a tarball) replaced it: the package manager would keep it forever.
            try? await previous.remove(log: self.logPath(name), timeout: self.configuration.commandTimeout)
        }
        self.pruneVersions(record)
        let note = stopped.isEmpty ? "" : " (\(stopped))"
        return "upgraded \(name) from \(old.version) to \(new.version): running (pid \(record.pid))\(note)\(self.limitsNote(record))"
    }

    private func uninstall(_ name: String) async throws(AspireError) -> String {
        guard let record = self.state.withLock({ $0[name] }) else {
            if FileManager.default.fileExists(atPath: self.directory(name)) {
                try? FileManager.default.removeItem(atPath: self.directory(name))
                return "\(name) was not supervised; removed \(self.directory(name))"
            }
            return "\(name) is not installed; nothing to do"
        }
        let stopped = await self.stopProcesses(record)
        if let package = record.package {
            do {
                try await package.remove(log: self.logPath(name), timeout: self.configuration.commandTimeout)
            } catch {
                var kept = record
                kept.desired = .stopped
                kept.status = .stoped
                kept.message = "uninstall failed: \(error.cause)"
                self.commit(kept, changedFrom: record)
                throw AspireError(error.code, "stopped \(name), but \(error.cause); its files are still there")
            }
        }
        self.forget(name)
        do {
            try FileManager.default.removeItem(atPath: self.directory(name))
        } catch {
            throw AspireError(.agentInternal, "stopped \(name), but cannot remove \(self.directory(name)): \(error.localizedDescription)")
        }
        self.onChange(self.event("uninstalled \(name) \(record.version)", record))
        return "uninstalled \(name) \(record.version)\(stopped.isEmpty ? "" : " (\(stopped))")"
    }

    private func start(_ params: Aspire_V1_SubAgentParams, restart: Bool) async throws(AspireError) -> String {
        guard var record = self.state.withLock({ $0[params.name] }) else {
            throw AspireError(.notInstalled, "\(params.name) is not installed on this host")
        }
        let before = record
        let changed = try self.apply(params, to: &record)
        record.desired = .running
        record.anomalies = 0
        record.restarts = 0
        if !restart, !changed, let main = self.main(of: record, self.processes(of: record)) {
            record.status = .running
            self.commit(record, changedFrom: before)
            return "\(params.name) \(record.version) is already running (pid \(main.pid))"
        }
        let stopped = await self.stopProcesses(record)
        record = try await self.startChecked(record, before: before)
        let verb = restart ? "restarted" : "started"
        return "\(verb) \(params.name) \(record.version): running (pid \(record.pid))\(stopped.isEmpty ? "" : " (\(stopped))")\(self.limitsNote(record))"
    }

    private func stop(_ name: String) async throws(AspireError) -> String {
        guard var record = self.state.withLock({ $0[name] }) else {
            throw AspireError(.notInstalled, "\(name) is not installed on this host")
        }
        let before = record
        record.desired = .stopped
        let stopped = await self.stopProcesses(record)
        record.status = .stoped
        record.message = "stopped by an operator"
        self.commit(record, changedFrom: before)
        return "stopped \(name) \(record.version)\(stopped.isEmpty ? "" : " (\(stopped))")"
    }

    /// Takes envs, limits, user and group from the command when it gives them; true when the
    /// running sub-agent's settings change.
    private func apply(_ params: Aspire_V1_SubAgentParams, to record: inout SubAgentRecord) throws(AspireError) -> Bool {
        let before = record
        if !params.envs.isEmpty { record.envs = params.envs }
        if params.hasLimits { record.limits = try ResourceLimits(params.limits) }
        if !params.user.isEmpty || !params.group.isEmpty {
            record.user = params.user
            record.group = params.group
            _ = try Identity.resolve(user: record.user, group: record.group)
        }
        return record.envs != before.envs || record.limits != before.limits || record.user != before.user || record.group != before.group
    }

    private func forget(_ name: String) {
        _ = self.state.withLock { $0.removeValue(forKey: name) }
        self.records.remove(name)
        self.control.remove(name)
    }

    private func limitsNote(_ record: SubAgentRecord) -> String {
        guard !record.limits.isEmpty else { return "" }
        var note = "; limits \(record.limits.summary) via \(self.control.name)"
        let missing = self.control.unenforced(record.limits)
        if !missing.isEmpty { note += " (not enforced here: \(missing.joined(separator: ", ")))" }
        return note
    }

    // MARK: Layout

    func directory(_ name: String) -> String { "\(self.configuration.root)/\(name)" }

    func versionDirectory(_ record: SubAgentRecord) -> String { "\(self.directory(record.name))/\(record.version)" }

    private func logPath(_ name: String) -> String { "\(self.records.directory)/\(name).log" }

    /// Where .deb and .rpm files are kept for rollback: `<root>/<name>/.packages/<version>.deb`.
    private func packagesDirectory(_ name: String) -> String { "\(self.directory(name))/.packages" }

    /// Writes `<root>/<name>/.version` atomically (temp file, fsync, rename).
    private func switchVersion(_ name: String, to version: String) throws(AspireError) {
        do {
            try AtomicFile.write(version + "\n", to: "\(self.directory(name))/.version", mode: 0o644)
        } catch {
            throw AspireError(.agentInternal, "cannot write \(self.directory(name))/.version: \(error)")
        }
    }

    /// Keeps the version in use and the previous one; removes the others.
    private func pruneVersions(_ record: SubAgentRecord) {
        let keep = Set([record.version, record.previousVersion].compactMap(\.self))
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: self.directory(record.name))) ?? []
        for entry in entries where !entry.hasPrefix(".") && !keep.contains(entry) {
            try? FileManager.default.removeItem(atPath: "\(self.directory(record.name))/\(entry)")
        }
        let kept = self.packagesDirectory(record.name)
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: kept)) ?? [] {
            let version = (entry as NSString).deletingPathExtension
            if !keep.contains(version) { try? FileManager.default.removeItem(atPath: "\(kept)/\(entry)") }
        }
    }

    /// Fetches, verifies and unpacks a package into `<root>/<name>/<version>/`; what was there
    /// under that version is replaced only once the new tree is complete. A .deb or .rpm is
    /// fetched, verified and kept, and answered to be installed by the package manager once the
    /// version in use has stopped.
    private func unpack(_ source: PackageSource, checksum: String, name: String, version: String) async throws(AspireError) -> SystemPackage? {
        let directory = self.directory(name)
        do {
            try AtomicFile.makeDirectory(self.configuration.root, mode: 0o755)
            try AtomicFile.makeDirectory(directory, mode: 0o755)
        } catch {
            throw AspireError(.agentInternal, "cannot create \(directory): \(error)")
        }
        let target = "\(directory)/\(version)"
        if case .command(let command) = source {
            let log = self.logPath(name)
            let offset = Launcher.size(log)
            let termination = try await Launcher.run(
                Launcher.Request(
                    executable: "/bin/sh",
                    arguments: ["-c", command],
                    environment: Tools.rootEnvironment,
                    outputPath: log
                ),
                timeout: self.configuration.commandTimeout
            )
            guard termination.succeeded else {
                throw AspireError(.downloadFailed, "install command '\(command)' \(termination.description): \(Launcher.tail(log, from: offset))")
            }
            try self.checkControl(in: target, origin: "the install command ran but")
            return nil
        }
        let staging = "\(directory)/.staging-\(UUID().uuidString.lowercased())"
        do {
            try AtomicFile.makeDirectory(staging, mode: 0o700)
        } catch {
            throw AspireError(.agentInternal, "cannot create \(staging): \(error)")
        }
        defer { try? FileManager.default.removeItem(atPath: staging) }
        let package = "\(staging)/package"
        try await self.fetcher.fetch(source, checksum: checksum, to: package)
        let format = try PackageFormat(path: package)
        switch format {
        case .tarball:
            let entries = try await Tarball.list(package, scratch: staging)
            try Tarball.validate(entries)
            let tree = "\(staging)/tree"
            do {
                try AtomicFile.makeDirectory(tree, mode: 0o755)
            } catch {
                throw AspireError(.agentInternal, "cannot create \(tree): \(error)")
            }
            try await Tarball.extract(package, into: tree, scratch: staging)
            let root = Tarball.root(of: tree, marker: "control")
            try self.checkControl(in: root, origin: "the package has")
            if FileManager.default.fileExists(atPath: target) {
                try? FileManager.default.moveItem(atPath: target, toPath: "\(staging)/replaced")
            }
            guard rename(root, target) == 0 else {
                throw AspireError(.agentInternal, "cannot move the unpacked package to \(target): \(String(cString: strerror(errno)))")
            }
            chmod(target, 0o755)
            AtomicFile.sync(directory)
            return nil
        case .deb, .rpm:
            let manager: SystemPackage.Manager = format == .deb ? .dpkg : .rpm
            let packageName = try await SystemPackage.inspect(package, manager: manager, scratch: staging, timeout: self.configuration.controlTimeout)
            let kept = "\(self.packagesDirectory(name))/\(version).\(manager.fileExtension)"
            do {
                try AtomicFile.makeDirectory(self.packagesDirectory(name), mode: 0o700)
            } catch {
                throw AspireError(.agentInternal, "cannot create \(self.packagesDirectory(name)): \(error)")
            }
            guard rename(package, kept) == 0 else {
                throw AspireError(.agentInternal, "cannot keep the package as \(kept): \(String(cString: strerror(errno)))")
            }
            AtomicFile.sync(self.packagesDirectory(name))
            return SystemPackage(manager: manager, name: packageName, file: kept)
        }
    }

    /// Installs a .deb or .rpm with the package manager; it must leave the version's control script.
    private func install(_ package: SystemPackage, for record: SubAgentRecord) async throws(AspireError) {
        try await package.install(log: self.logPath(record.name), timeout: self.configuration.commandTimeout)
        try self.checkControl(in: self.versionDirectory(record), origin: "\(package.manager.rawValue) installed \(package.name) but it has")
    }

    /// After a failed upgrade: what the package manager changed goes back to the old version —
    /// its package reinstalled, or the new package removed when the old version was a tarball.
    private func restorePackages(from new: SubAgentRecord, to old: SubAgentRecord) async throws(AspireError) {
        let log = self.logPath(old.name)
        guard let package = new.package else { return }
        if old.package?.name != package.name {
            try await package.remove(log: log, timeout: self.configuration.commandTimeout)
        }
        if let previous = old.package {
            try await previous.install(log: log, timeout: self.configuration.commandTimeout)
        }
        try? FileManager.default.removeItem(atPath: package.file)
    }

    /// The directory holding `control`: the archive's root, or its one top directory when the
    /// archive wraps everything in one (`name-1.0/control`).
    private func checkControl(in directory: String, origin: String) throws(AspireError) {
        let path = "\(directory)/control"
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else {
            throw AspireError(.badPackage, "\(origin) no control script (\(path) is missing); a package needs an executable 'control' at its root")
        }
        guard attributes[.type] as? FileAttributeType == .typeRegular else {
            throw AspireError(.badPackage, "\(origin) a 'control' that is not a regular file")
        }
        guard ((attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0) & 0o111 != 0 else {
            throw AspireError(.badPackage, "\(origin) a 'control' script that is not executable (chmod +x control before packing)")
        }
    }

    // MARK: Processes

    /// The sub-agent's live processes, oldest first: its cgroup's, or its session's.
    func processes(of record: SubAgentRecord) -> [ProcessTable.Entry] {
        if self.control.tracksProcesses {
            return ProcessTable.alive(self.control.processes(of: record.name))
        }
        return ProcessTable.session(record.session).sorted { ($0.startTicks, $0.pid) < ($1.startTicks, $1.pid) }
    }

    /// The process to report: the recorded one while it lives, else the oldest.
    private func main(of record: SubAgentRecord, _ alive: [ProcessTable.Entry]) -> ProcessTable.Entry? {
        alive.first { $0.pid == record.pid && $0.startTicks == record.pidStartTicks } ?? alive.first
    }

    /// Starts the sub-agent, then holds it to the health window.
    private func startChecked(_ record: SubAgentRecord, before: SubAgentRecord?) async throws(AspireError) -> SubAgentRecord {
        var record = try await self.launch(record)
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
                record.status = killed ? .killed : .stoped
                record.exitHandled = true
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
    private func launch(_ record: SubAgentRecord) async throws(AspireError) -> SubAgentRecord {
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
        record.startedAt = Date().timeIntervalSince1970
        record.status = .running
        record.exitHandled = false
        record.oomKillsAtStart = oomKills
        record.message = "started (pid \(main.pid))"
        return record
    }

    /// `control stop`, then SIGTERM and SIGKILL for what is left of the group. Says what it
    /// had to do beyond `control stop`, or nothing.
    private func stopProcesses(_ record: SubAgentRecord) async -> String {
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
    private func kill(_ record: SubAgentRecord) async {
        for _ in 0 ..< 50 {
            let alive = self.processes(of: record)
            if alive.isEmpty { return }
            for entry in alive { Glibc.kill(entry.pid, SIGKILL) }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    private func waitGone(_ record: SubAgentRecord, for duration: Duration) async -> Bool {
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
    private func controlSaysStarted(_ record: SubAgentRecord) async -> Bool {
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

extension Supervisor: CommandHandler {
    public func handle(_ command: Aspire_V1_Command, as method: CommandMethod, output: BashExecutor.OutputHandler?) async -> Aspire_V1_CommandResult {
        guard case .subAgent(let action) = method else { return CommandHandlers.misrouted(command, to: "supervisor") }
        return await self.perform(action, command.subagent, id: command.id)
    }
}
