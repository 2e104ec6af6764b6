import Crypto
#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
public import RPC
import SwiftProtobuf
import Synchronization

/// The agent's data directory: its AgentSN, and the outbox of results not yet acknowledged.
///
/// A result is written here (atomically) before it is sent, and removed only when the server
/// acknowledges it, so results survive lost streams and agent restarts. A marker is written
/// before a command starts, so a command whose agent died while it ran is reported as
/// interrupted instead of being run again.
///
/// Those writes do not wait for the disk: a file written survives a crash of the agent the
/// moment it is written. Surviving a crash of the machine is `flush()`'s job, which the
/// runtime calls off the command path, for every file written since the last flush at once
/// (each write used to fsync its file and its directory before the command could go on:
/// four fsyncs, ~2 ms of every command's round trip). A finished command's running marker is
/// removed only after its result is on disk, so after a power loss the agent finds one or the
/// other: the result (sent again) or the marker (reported as interrupted), never neither.
public final class AgentState: Sendable {
    public let directory: String
    private let outboxDirectory: String
    private let runningDirectory: String
    /// Ids acknowledged in this process's life, so a re-sent command is not run again.
    private let acknowledged = Mutex<[String: Date]>([:])
    /// Written since the last flush: files to sync, and markers to remove once they are.
    private let unsynced = Mutex<(files: [String], markers: [String])>(([], []))
    private let flushInput: AsyncStream<Void>.Continuation
    /// Yields whenever something was written that `flush()` should make durable.
    public let flushRequests: AsyncStream<Void>

    public init(directory: String) throws {
        self.directory = directory
        self.outboxDirectory = "\(directory)/outbox"
        self.runningDirectory = "\(directory)/running"
        (self.flushRequests, self.flushInput) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        // Root's results and the host's identity: nobody else may enter, even where it was made wider.
        try AtomicFile.makePrivateDirectory(directory)
        try AtomicFile.makeDirectory(self.outboxDirectory, mode: 0o700)
        try AtomicFile.makeDirectory(self.runningDirectory, mode: 0o700)
    }

    /// The AgentSN kept in `agent.sn`, made (a UUID) on first start.
    public func agentSN() throws -> String {
        let path = "\(self.directory)/agent.sn"
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let value = text.trimmed()
            if !value.isEmpty { return value }
        }
        let value = UUID.random().uuidString.lowercased()
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
            try AtomicFile.write(id, to: marker, mode: 0o600, durable: false)
            inFlight.insert(id)
            self.unsynced.withLock { $0.files.append(marker) }
            self.flushInput.yield()
            return .run
        }
    }

    private let inFlight = Mutex<Set<String>>([])

    /// The commands an earlier life of the agent was running when it died: a running marker
    /// without a result.
    public func interruptedCommands() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: self.runningDirectory)) ?? []
        return names.compactMap { name in
            guard let id = try? String(contentsOfFile: "\(self.runningDirectory)/\(name)", encoding: .utf8),
                self.fileName(id) == name, self.inFlight.withLock({ !$0.contains(id) }), self.storedResult(id) == nil
            else { return nil }
            return id
        }
    }

    /// Stores a finished command's result in the outbox; its running marker goes once the
    /// result is on disk (`flush()`).
    public func finish(_ result: Aspire_V1_CommandResult) throws {
        try self.inFlight.withLock { inFlight in
            defer { inFlight.remove(result.id) }
            let path = self.outboxPath(result.id)
            try AtomicFile.write(try result.serializedBytes() as [UInt8], to: path, mode: 0o600, durable: false)
            self.unsynced.withLock {
                $0.files.append(path)
                $0.markers.append(self.runningPath(result.id))
            }
        }
        self.flushInput.yield()
    }

    /// Puts every file written since the last flush on disk, then removes the running markers
    /// of the commands whose results now are.
    public func flush() {
        let (files, markers) = self.unsynced.withLock { unsynced in
            defer { unsynced = ([], []) }
            return unsynced
        }
        guard !files.isEmpty else { return }
        // A file acknowledged and removed meanwhile needs no sync.
        for file in files { AtomicFile.sync(file) }
        AtomicFile.sync(self.outboxDirectory)
        AtomicFile.sync(self.runningDirectory)
        for marker in markers { try? FileManager.default.removeItem(atPath: marker) }
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
