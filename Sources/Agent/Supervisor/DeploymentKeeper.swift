#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
public import Logging
public import RPC
import SwiftProtobuf
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Keeps the host running what its deployments declare (`deployment.set`, sent by the server
/// whenever the host's set changes): installs or upgrades each sub-agent to the revision it is
/// given, through the supervisor; removes the ones that left the set (or lets go of them, when
/// their deployment keeps them); and reports the revision of each, or why it could not apply
/// it. A revision that failed is not tried again: the server's rollout decides what comes
/// next. The set and what was applied are kept in the data directory, so a restarted agent
/// goes on where it was, connected or not. The deployment named `BootAgent` is the agent
/// itself: it upgrades by ``SelfUpgrade``.
public final class DeploymentKeeper: Sendable {
    /// What the agent did with one deployment.
    struct Applied: Codable, Sendable, Equatable {
        var revision: Int64
        var version: String
        /// Empty when applied.
        var error: String
        var removeOnLeave: Bool
    }

    let supervisor: Supervisor
    let upgrade: SelfUpgrade
    /// Makes what the agent wrote durable before it hands over to another binary.
    let beforeHandover: @Sendable () -> Void
    /// The upgrade this binary is on trial for, until it commits it.
    private let trial: Mutex<SelfUpgrade.Trial?>
    /// A failed upgrade found at start, for the server to hear of as soon as it can.
    private let failedUpgrade: Atomic<Bool>
    let setPath: String
    let appliedPath: String
    /// Called when the revisions it reports change.
    let onChange: @Sendable () -> Void
    let logger: Logger
    private let state: Mutex<(set: Aspire_V1_DeploymentParams, applied: [String: Applied])>
    private let wakeInput: AsyncStream<Void>.Continuation
    private let wakes: AsyncStream<Void>
    /// How often the set is checked against what runs (a sub-agent uninstalled by hand comes back).
    let recheck: Duration

    public init(
        supervisor: Supervisor, dataDirectory: String, upgrade: SelfUpgrade, recheck: Duration = .seconds(300),
        beforeHandover: @escaping @Sendable () -> Void = {}, onChange: @escaping @Sendable () -> Void = {}, logger: Logger
    ) {
        self.supervisor = supervisor
        self.upgrade = upgrade
        self.beforeHandover = beforeHandover
        self.setPath = "\(dataDirectory)/deployments.pb"
        self.appliedPath = "\(dataDirectory)/deployments.json"
        self.recheck = recheck
        self.onChange = onChange
        self.logger = logger
        (self.wakes, self.wakeInput) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        var set = Aspire_V1_DeploymentParams()
        if let data = FileManager.default.contents(atPath: self.setPath) {
            do {
                set = try Aspire_V1_DeploymentParams(serializedBytes: data)
            } catch {
                logger.error("deployment set unreadable; waiting for the server's", metadata: ["file": "\(self.setPath)"])
            }
        }
        var applied = FileManager.default.contents(atPath: self.appliedPath).flatMap { try? JSONDecoder().decode([String: Applied].self, from: $0) } ?? [:]
        let (onTrial, failed) = upgrade.atStart()
        if let failed {
            logger.error("BootAgent upgrade failed", metadata: ["upgrade.to": "\(failed.to)", "error": "\(failed.reason)"])
            applied[SelfUpgrade.name] = Applied(revision: failed.revision, version: failed.to, error: failed.reason, removeOnLeave: false)
        }
        if let onTrial {
            logger.notice("BootAgent upgraded; committed once connected", metadata: ["upgrade.from": "\(onTrial.from)", "upgrade.to": "\(onTrial.to)"])
        }
        self.trial = Mutex(onTrial)
        self.failedUpgrade = Atomic(failed != nil)
        self.state = Mutex((set, applied))
        if failed != nil { self.save(applied) }
    }

    /// The stream is up: an upgrade on trial has reconnected, so it is this host's version now.
    public func connected() {
        if self.failedUpgrade.exchange(false, ordering: .relaxed) { self.onChange() }
        guard let trial = self.trial.withLock({ trial in defer { trial = nil }; return trial }) else { return }
        do {
            try self.upgrade.commit(trial)
            self.logger.notice("BootAgent upgrade committed", metadata: ["upgrade.from": "\(trial.from)", "upgrade.to": "\(trial.to)"])
            self.record(SelfUpgrade.name, Applied(revision: trial.revision, version: trial.to, error: "", removeOnLeave: false))
        } catch {
            self.logger.error("cannot commit the BootAgent upgrade", metadata: ["error": "\(error.cause)"])
        }
    }

    /// The agent itself as a status entry, while a deployment manages it.
    func selfStatus(startedAt: Date) -> Aspire_V1_SubAgentStatus? {
        let managed = self.state.withLock { state in
            state.applied[SelfUpgrade.name] != nil || state.set.deployments.contains { $0.agent.name == SelfUpgrade.name }
        }
        guard managed else { return nil }
        var status = Aspire_V1_SubAgentStatus()
        status.name = SelfUpgrade.name
        status.version = self.upgrade.version
        status.status = "running"
        status.pid = getpid()
        status.uptime = Int64(Date().timeIntervalSince(startedAt))
        status.previousVersion = self.upgrade.previousVersion
        return status
    }

    /// The digest of the set it has, for Hello.
    public var digest: String { self.state.withLock { $0.set.digest } }

    /// Each deployment's revision as the status report carries it.
    public var states: [Aspire_V1_DeploymentState] {
        self.state.withLock { $0.applied }.sorted { $0.key < $1.key }.map { name, applied in
            var state = Aspire_V1_DeploymentState()
            state.name = name
            state.revision = applied.revision
            state.version = applied.version
            state.error = applied.error
            return state
        }
    }

    /// Applies the set when the agent starts, whenever a new one comes, and every `recheck`.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    self.wakeInput.yield()
                    try? await Task.sleep(for: self.recheck)
                }
            }
            group.addTask {
                for await _ in self.wakes { await self.converge() }
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Makes what runs match the set, one sub-agent at a time.
    func converge() async {
        let set = self.state.withLock { $0.set }
        var retry = false
        for entry in set.deployments {
            let name = entry.agent.name
            let applied = self.state.withLock { $0.applied[name] }
            let runs = name == SelfUpgrade.name ? self.upgrade.version : self.supervisor.record(name)?.version
            if let applied, applied.revision == entry.revision, !applied.error.isEmpty || runs == entry.agent.version {
                continue
            }
            var outcome = Applied(revision: entry.revision, version: entry.agent.version, error: entry.unavailable, removeOnLeave: entry.removeOnLeave)
            if !entry.unavailable.isEmpty {
            } else if name == SelfUpgrade.name {
                // On trial for this revision: it is recorded when the trial commits.
                if self.trial.withLock({ $0?.revision == entry.revision }) { continue }
                if runs != entry.agent.version { outcome.error = await self.upgradeSelf(entry) }
            } else {
                let action: CommandMethod.SubAgentAction = self.supervisor.record(name) == nil ? .install : .upgrade
                let result = await self.supervisor.perform(action, entry.agent, id: "deployment:\(name):\(entry.revision)")
                if result.retcode == ErrorCode.busy.rawValue {
                    retry = true
                    continue
                }
                outcome.error = result.resp == .success ? "" : result.message
            }
            self.logger.notice(
                outcome.error.isEmpty ? "deployment applied" : "deployment not applied",
                metadata: [
                    "deployment": "\(name)", "deployment.revision": "\(entry.revision)", "subagent.version": "\(entry.agent.version)",
                    "error": "\(outcome.error)",
                ]
            )
            self.record(name, outcome)
        }
        let kept = Set(set.deployments.map(\.agent.name))
        for (name, applied) in self.state.withLock({ $0.applied }) where !kept.contains(name) {
            if name == SelfUpgrade.name {
                self.logger.notice("left the BootAgent deployment; this version stays", metadata: ["agent.version": "\(self.upgrade.version)"])
            } else if applied.removeOnLeave {
                var params = Aspire_V1_SubAgentParams()
                params.name = name
                let result = await self.supervisor.perform(.uninstall, params, id: "deployment:\(name):leave")
                if result.retcode == ErrorCode.busy.rawValue {
                    retry = true
                    continue
                }
                self.logger.notice("left a deployment; sub-agent removed", metadata: ["deployment": "\(name)", "result": "\(result.message)"])
            } else {
                self.logger.notice("left a deployment; sub-agent kept, no longer managed", metadata: ["deployment": "\(name)"])
            }
            self.record(name, nil)
        }
        if retry {
            // Another action held a sub-agent: try again shortly.
            Task {
                try? await Task.sleep(for: .seconds(5))
                self.wakeInput.yield()
            }
        }
    }

    /// Fetches and checks the new binary, then hands over to it (this process goes on as the
    /// new version, and never returns here); the error when it cannot.
    private func upgradeSelf(_ entry: Aspire_V1_DeployedAgent) async -> String {
        do {
            let binary = try await self.upgrade.prepare(entry.agent, fetcher: self.supervisor.fetcher)
            self.logger.notice(
                "BootAgent hands over to a new version", metadata: ["upgrade.to": "\(entry.agent.version)", "upgrade.binary": "\(binary)"]
            )
            self.beforeHandover()
            return self.upgrade.handOver(to: binary, version: entry.agent.version, revision: entry.revision).cause
        } catch {
            return "upgrade of BootAgent to \(entry.agent.version) failed: \(error.cause); \(self.upgrade.version) runs on"
        }
    }

    private func record(_ name: String, _ outcome: Applied?) {
        let applied = self.state.withLock { state in
            state.applied[name] = outcome
            return state.applied
        }
        self.save(applied)
        self.onChange()
    }

    private func save(_ applied: [String: Applied]) {
        do {
            try AtomicFile.writeJSON(applied, to: self.appliedPath)
        } catch {
            self.logger.error("cannot save what deployments applied", metadata: ["file": "\(self.appliedPath)", "error": "\(error)"])
        }
    }
}

extension DeploymentKeeper: CommandHandler {
    /// `deployment.set`: the server's set replaces the agent's; it is applied in the background
    /// (an install may take minutes), each revision reported in the status.
    public func handle(_ command: Aspire_V1_Command, as method: CommandMethod, output: BashExecutor.OutputHandler?) async -> Aspire_V1_CommandResult {
        let set = command.deployments
        var names = Set<String>()
        for entry in set.deployments {
            do {
                try PathName.check(entry.agent.name, field: "deployment name")
                try PathName.check(entry.agent.version, field: "deployment version")
            } catch {
                return .failed(id: command.id, error.code, error.cause)
            }
            guard names.insert(entry.agent.name).inserted else {
                return .failed(id: command.id, .invalidParams, "deployment '\(entry.agent.name)' is in the set twice")
            }
        }
        do {
            try AtomicFile.write(Array(try set.serializedBytes() as [UInt8]), to: self.setPath, mode: 0o600)
        } catch {
            return .failed(id: command.id, .agentInternal, "cannot save the deployment set in \(self.setPath): \(error)")
        }
        self.state.withLock { $0.set = set }
        self.wakeInput.yield()
        self.logger.notice("deployment set received", metadata: ["deployments": "\(set.deployments.count)"])
        return .success(id: command.id, message: "\(set.deployments.count) deployment\(set.deployments.count == 1 ? "" : "s"); applying", started: Date())
    }
}
