#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RPC

#if canImport(Glibc)
import Glibc
#endif

/// What the agent keeps about one sub-agent in its data directory (`subagents/NAME.json`,
/// written atomically): enough to supervise it, and to adopt its processes after the agent
/// itself restarts.
struct SubAgentRecord: Codable, Sendable, Equatable {
    /// The seed's states.
    enum Status: String, Codable, Sendable {
        case running, stoped, fatal, killed
    }

    var name: String
    var version: String
    /// Kept on disk for rollback (the seed's prevers).
    var previousVersion: String?
    /// Where it is in its life; the restart policy moves it on.
    var phase: SubAgentPhase = .stopped
    var message: String = ""
    var envs: [String: String] = [:]
    var limits: ResourceLimits = .init()
    var user: String = ""
    var group: String = ""
    /// Set when the version in use came as a .deb or .rpm.
    var package: SystemPackage?
    /// Set for a program run by the seed's daemon.init spec instead of a control script.
    var daemon: DaemonProgram?

    /// The launcher's pid: the id of the session the sub-agent was started in.
    var session: pid_t = 0
    /// Its main process and that process's start time (a pid with another is another process).
    var pid: pid_t = 0
    var pidStartTicks: UInt64 = 0
    /// Restarts by the supervisor since the last operator action.
    var restarts: Int = 0
    /// Abnormal exits in a row, each within the anomaly window of its start.
    var anomalies: Int = 0
    /// OOM kills of its group when it was started: more at exit means a limit killed it.
    var oomKillsAtStart: Int = 0
    /// Clock ticks after boot when it was last started: a daemon's pidfile naming an older
    /// process names someone else.
    var launchTicks: UInt64 = 0

    init(name: String, version: String) {
        self.name = name
        self.version = version
    }

    /// The part of the record the restart policy governs.
    var life: RestartPolicy.Life {
        get { RestartPolicy.Life(phase: self.phase, anomalies: self.anomalies, restarts: self.restarts) }
        set {
            self.phase = newValue.phase
            self.anomalies = newValue.anomalies
            self.restarts = newValue.restarts
        }
    }

    /// Reads a record, also one written by an agent before phases were kept: it said `desired`,
    /// `status`, `startedAt` (seconds since 1970) and `exitHandled` instead.
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.name = try container.decode(String.self, forKey: .name)
        self.version = try container.decode(String.self, forKey: .version)
        self.previousVersion = try container.decodeIfPresent(String.self, forKey: .previousVersion)
        self.message = try container.decodeIfPresent(String.self, forKey: .message) ?? ""
        self.envs = try container.decodeIfPresent([String: String].self, forKey: .envs) ?? [:]
        self.limits = try container.decodeIfPresent(ResourceLimits.self, forKey: .limits) ?? .init()
        self.user = try container.decodeIfPresent(String.self, forKey: .user) ?? ""
        self.group = try container.decodeIfPresent(String.self, forKey: .group) ?? ""
        self.package = try container.decodeIfPresent(SystemPackage.self, forKey: .package)
        self.daemon = try container.decodeIfPresent(DaemonProgram.self, forKey: .daemon)
        self.session = try container.decodeIfPresent(pid_t.self, forKey: .session) ?? 0
        self.pid = try container.decodeIfPresent(pid_t.self, forKey: .pid) ?? 0
        self.pidStartTicks = try container.decodeIfPresent(UInt64.self, forKey: .pidStartTicks) ?? 0
        self.restarts = try container.decodeIfPresent(Int.self, forKey: .restarts) ?? 0
        self.anomalies = try container.decodeIfPresent(Int.self, forKey: .anomalies) ?? 0
        self.oomKillsAtStart = try container.decodeIfPresent(Int.self, forKey: .oomKillsAtStart) ?? 0
        self.launchTicks = try container.decodeIfPresent(UInt64.self, forKey: .launchTicks) ?? 0
        if let phase = try container.decodeIfPresent(SubAgentPhase.self, forKey: .phase) {
            self.phase = phase
            return
        }
        let legacy = try decoder.container(keyedBy: LegacyKeys.self)
        let since = Date(timeIntervalSince1970: try legacy.decodeIfPresent(Double.self, forKey: .startedAt) ?? 0)
        let status = try legacy.decodeIfPresent(Status.self, forKey: .status) ?? .stoped
        if try legacy.decodeIfPresent(String.self, forKey: .desired) == "stopped" {
            self.phase = .stopped
        } else if status == .fatal {
            self.phase = .fatal
        } else if try legacy.decodeIfPresent(Bool.self, forKey: .exitHandled) == true {
            self.phase = .exited(since: since, at: since, killed: status == .killed)
        } else {
            self.phase = .running(since: since)
        }
    }

    private enum LegacyKeys: String, CodingKey {
        case desired, status, startedAt, exitHandled
    }

    /// Names and versions become paths (see ``PathName``).
    static func checkPathComponent(_ value: String, field: String) throws(AspireError) {
        try PathName.check(value, field: field)
    }
}

/// The records, one file each.
struct SubAgentRecords: Sendable {
    let directory: String

    init(directory: String) throws {
        self.directory = directory
        try AtomicFile.makeDirectory(directory, mode: 0o700)
    }

    func path(_ name: String) -> String { "\(self.directory)/\(name).json" }

    func save(_ record: SubAgentRecord) throws(AspireError) {
        do {
            try AtomicFile.writeJSON(record, to: self.path(record.name))
        } catch {
            throw AspireError(.agentInternal, "cannot save the state of \(record.name) in \(self.directory): \(error)")
        }
    }

    func remove(_ name: String) {
        try? FileManager.default.removeItem(atPath: self.path(name))
    }

    /// Every record that reads back; a damaged one is skipped and named in `damaged`.
    func loadAll() -> (records: [SubAgentRecord], damaged: [String]) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: self.directory)) ?? []
        var records: [SubAgentRecord] = []
        var damaged: [String] = []
        for name in names.sorted() where name.hasSuffix(".json") {
            guard let data = FileManager.default.contents(atPath: "\(self.directory)/\(name)"),
                let record = try? JSONDecoder().decode(SubAgentRecord.self, from: data)
            else {
                damaged.append(name)
                continue
            }
            records.append(record)
        }
        return (records, damaged)
    }
}
