import Foundation
import RPC

#if canImport(Glibc)
import Glibc
#endif

/// What the agent keeps about one sub-agent in its data directory (`subagents/NAME.json`,
/// written atomically): enough to supervise it, and to adopt its processes after the agent
/// itself restarts.
struct SubAgentRecord: Codable, Sendable, Equatable {
    enum Desired: String, Codable, Sendable {
        case running, stopped
    }

    /// The seed's states.
    enum Status: String, Codable, Sendable {
        case running, stoped, fatal, killed
    }

    var name: String
    var version: String
    /// Kept on disk for rollback (the seed's prevers).
    var previousVersion: String?
    var desired: Desired = .running
    var status: Status = .stoped
    var message: String = ""
    var envs: [String: String] = [:]
    var limits: ResourceLimits = .init()
    var user: String = ""
    var group: String = ""
    /// Set when the version in use came as a .deb or .rpm.
    var package: SystemPackage?

    /// The launcher's pid: the id of the session the sub-agent was started in.
    var session: pid_t = 0
    /// Its main process and that process's start time (a pid with another is another process).
    var pid: pid_t = 0
    var pidStartTicks: UInt64 = 0
    /// When it was last started (seconds since 1970).
    var startedAt: Double = 0
    /// Restarts by the supervisor since the last operator action.
    var restarts: Int = 0
    /// Abnormal exits in a row, each within the anomaly window of its start.
    var anomalies: Int = 0
    /// Set once an exit has been counted, until the next start.
    var exitHandled: Bool = false
    /// OOM kills of its group when it was started: more at exit means a limit killed it.
    var oomKillsAtStart: Int = 0

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
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        do {
            try AtomicFile.write(Array(try encoder.encode(record)), to: self.path(record.name), mode: 0o600)
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
