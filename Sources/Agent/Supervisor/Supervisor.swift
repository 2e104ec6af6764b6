#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
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
    /// When a sub-agent restarts, and when it is fatal.
    let policy: RestartPolicy
    /// The time of day its start and exit times are read from.
    let clock: any WallClock
    private let state = Mutex<[String: SubAgentRecord]>([:])
    private let holders = Mutex<[String: Holder]>([:])
    /// When each sub-agent was last checked.
    let lastChecks = Mutex<[String: ContinuousClock.Instant]>([:])
    let fetcher: PackageFetcher
    /// Called when a sub-agent's state changes, with an event to report when there is one.
    let onChange: @Sendable (_ event: Aspire_V1_Event?) -> Void
    /// Why sub-agent actions cannot work on this host (a missing tool), said at start.
    let unusable: String?

    enum Holder: Equatable {
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
        clock: any WallClock = SystemWallClock(),
        logger: Logger
    ) throws {
        self.configuration = configuration
        self.policy = RestartPolicy(configuration)
        self.clock = clock
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
        let now = self.clock.now
        return self.allRecords.map { record in
            var status = Aspire_V1_SubAgentStatus()
            status.name = record.name
            status.version = record.version
            status.status = record.phase.status.rawValue
            let since = record.phase.runningSince
            status.pid = since == nil ? 0 : Int32(record.pid)
            status.uptime = since.map { Int64(max(0, now.timeIntervalSince($0))) } ?? 0
            status.restarts = Int32(clamping: record.restarts)
            status.message = record.message
            status.previousVersion = record.previousVersion ?? ""
            return status
        }
    }

    /// The restart policy for one sub-agent: the supervisor's, with a daemon's own `hits`.
    func policy(for record: SubAgentRecord) -> RestartPolicy {
        var policy = self.policy
        if let hits = record.daemon?.hits, hits > 0 { policy.maxAnomalies = hits }
        return policy
    }

    func record(_ name: String) -> SubAgentRecord? {
        self.state.withLock { $0[name] }
    }

    /// Stops supervising `name`: its record and its cgroup go.
    func forget(_ name: String) {
        _ = self.state.withLock { $0.removeValue(forKey: name) }
        self.records.remove(name)
        self.control.remove(name)
    }

    /// Every record, by name.
    var allRecords: [SubAgentRecord] {
        self.state.withLock { Array($0.values) }.sorted { $0.name < $1.name }
    }

    /// Describes how limits are enforced here, for the agent's start log.
    public var resourceControlName: String { self.control.name }

    /// Saves a changed record and tells the runtime.
    func commit(_ record: SubAgentRecord, changedFrom before: SubAgentRecord?, event: String? = nil) {
        guard record != before else { return }
        self.state.withLock { $0[record.name] = record }
        do {
            try self.records.save(record)
        } catch {
            self.logger.error("\(error.cause)")
        }
        self.onChange(event.map { self.event($0, record) })
    }

    func event(_ message: String, _ record: SubAgentRecord) -> Aspire_V1_Event {
        Aspire_V1_Event(
            category: "subagent", message: message,
            attributes: ["name": record.name, "version": record.version, "status": record.phase.status.rawValue]
        )
    }

    // MARK: One holder at a time

    /// Waits out a check of `name`; false when another action holds it.
    func claim(_ name: String) async -> Bool {
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

    func hold(_ name: String, _ holder: Holder) -> Bool {
        self.holders.withLock { holders in
            guard holders[name] == nil else { return false }
            holders[name] = holder
            return true
        }
    }

    func release(_ name: String) {
        _ = self.holders.withLock { $0.removeValue(forKey: name) }
    }
}

extension Supervisor: CommandHandler {
    public func handle(_ command: Aspire_V1_Command, as method: CommandMethod, output: BashExecutor.OutputHandler?) async -> Aspire_V1_CommandResult {
        guard case .subAgent(let action) = method else { return CommandHandlers.misrouted(command, to: "supervisor") }
        return await self.perform(action, command.subagent, id: command.id)
    }
}
