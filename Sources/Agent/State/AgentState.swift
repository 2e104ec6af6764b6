import Crypto
public import Foundation
public import RPC
import SwiftProtobuf
import Synchronization

/// The agent's data directory: its AgentSN, and the outbox of results not yet acknowledged.
///
/// A result is written here (atomically) before it is sent, and removed only when the server
/// acknowledges it, so results survive lost streams and agent restarts. A marker is written
/// before a command starts, so a command whose agent died while it ran is reported as
/// interrupted instead of being run again.
public final class AgentState: Sendable {
    public let directory: String
    private let outboxDirectory: String
    private let runningDirectory: String
    /// Ids acknowledged in this process's life, so a re-sent command is not run again.
    private let acknowledged = Mutex<[String: Date]>([:])

    public init(directory: String) throws {
        self.directory = directory
        self.outboxDirectory = "\(directory)/outbox"
        self.runningDirectory = "\(directory)/running"
        try AtomicFile.makeDirectory(directory, mode: 0o700)
        try AtomicFile.makeDirectory(self.outboxDirectory, mode: 0o700)
        try AtomicFile.makeDirectory(self.runningDirectory, mode: 0o700)
    }

    /// The AgentSN kept in `agent.sn`, made (a UUID) on first start.
    public func agentSN() throws -> String {
        let path = "\(self.directory)/agent.sn"
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if !value.isEmpty { return value }
        }
        let value = UUID().uuidString.lowercased()
        try AtomicFile.write(value + "\n", to: path, mode: 0o600)
        return value
    }

    /// What to do with a command that arrives.
    public enum Admission: Sendable {
        /// Never seen: run it.
        case run
        /// Already finished: send this stored result again instead.
        case resend(Aspire_V1_CommandResult)
        /// Already finished and acknowledged: nothing to do.
        case acknowledged
        /// Started by an earlier life of the agent that died while it ran.
        case interrupted
        /// Running now.
        case running
    }

    /// Decides about a command, and marks it running when it should run.
    public func admit(_ id: String) throws -> Admission {
        if self.acknowledged.withLock({ $0[id] != nil }) { return .acknowledged }
        // One lock over the whole decision and over `finish`: the same id delivered twice at
        // once (a redelivery racing the first copy) must see either "running here" or the
        // stored result, never a marker without its owner (which means an earlier life died).
        return try self.inFlight.withLock { inFlight throws -> Admission in
            if inFlight.contains(id) { return .running }
            if let stored = self.storedResult(id) { return .resend(stored) }
            let marker = self.runningPath(id)
            if FileManager.default.fileExists(atPath: marker) { return .interrupted }
            try AtomicFile.write(id, to: marker, mode: 0o600)
            inFlight.insert(id)
            return .run
        }
    }

    private let inFlight = Mutex<Set<String>>([])

    /// Stores a finished command's result in the outbox and clears its running marker.
    public func finish(_ result: Aspire_V1_CommandResult) throws {
        try self.inFlight.withLock { inFlight in
            defer { inFlight.remove(result.id) }
            try AtomicFile.write(try result.serializedBytes() as [UInt8], to: self.outboxPath(result.id), mode: 0o600)
            try? FileManager.default.removeItem(atPath: self.runningPath(result.id))
        }
    }

    /// Removes acknowledged results from the outbox.
    public func acknowledge(_ ids: [String]) {
        let now = Date()
        self.acknowledged.withLock { acknowledged in
            for id in ids { acknowledged[id] = now }
            if acknowledged.count > 50_000 {
                let cutoff = now.addingTimeInterval(-3600)
                acknowledged = acknowledged.filter { $0.value > cutoff }
            }
        }
        for id in ids {
            try? FileManager.default.removeItem(atPath: self.outboxPath(id))
        }
    }

    /// Every result waiting for an acknowledgement, oldest first.
    public func pendingResults() -> [Aspire_V1_CommandResult] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: self.outboxDirectory)) ?? []
        return names.filter { $0.hasSuffix(".result") }.compactMap { name in
            guard let data = FileManager.default.contents(atPath: "\(self.outboxDirectory)/\(name)") else { return nil }
            return try? Aspire_V1_CommandResult(serializedBytes: data)
        }.sorted { $0.finishedUnixMs < $1.finishedUnixMs }
    }

    private func storedResult(_ id: String) -> Aspire_V1_CommandResult? {
        guard let data = FileManager.default.contents(atPath: self.outboxPath(id)) else { return nil }
        return try? Aspire_V1_CommandResult(serializedBytes: data)
    }

    // Command ids come from the network: they never become paths as they are.
    private func fileName(_ id: String) -> String {
        SHA256.hash(data: Data(id.utf8)).hexString
    }

    private func outboxPath(_ id: String) -> String { "\(self.outboxDirectory)/\(self.fileName(id)).result" }
    private func runningPath(_ id: String) -> String { "\(self.runningDirectory)/\(self.fileName(id))" }
}
