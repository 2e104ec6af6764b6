import Foundation
public import Logging
import RPC
public import ServiceLifecycle

/// Moves every rolling deployment on: picks the canary, promotes a wave once its hosts are
/// healthy, finishes, or halts (and rolls back) past max_failures. Every node runs one; the
/// store's conditional updates let only one of them take each step, and the state lives in
/// the store, so a rollout goes on across node restarts.
public final class RolloutController: Service {
    let store: SQLStore
    let distributor: ConfigDistributor
    let interval: Duration
    let logger: Logger

    public init(store: SQLStore, distributor: ConfigDistributor, interval: Duration = .seconds(2), logger: Logger) {
        self.store = store
        self.distributor = distributor
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        try await repeatEvery(self.interval) { await self.pass() }
    }

    /// One look at every rolling deployment.
    public func pass() async {
        do {
            var changed = false
            for record in try await self.store.deployments() where record.state == .rolling {
                changed = try await self.step(record) || changed
            }
            if changed { await self.distributor.sweep() }
        } catch is CancellationError {
        } catch {
            self.logger.error("cannot move rollouts on", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    /// Takes a deployment's next step; true when it changed what some host must run.
    private func step(_ record: DeploymentRecord) async throws -> Bool {
        let hosts = try await self.store.deploymentHosts(record)
        var logger = self.logger
        logger[metadataKey: "deployment"] = "\(record.name)"
        logger[metadataKey: "deployment.revision"] = "\(record.revision)"
        switch try record.nextStep(hosts: hosts, now: Date().unixMilliseconds) {
        case .wait:
            return false
        case .move(let agents, let wave):
            guard try await self.store.moveHosts(agents, deployment: record.name, revision: record.revision, wave: wave) != nil else { return false }
            logger.notice(
                "rollout wave started",
                metadata: ["deployment.wave": "\(wave)", "deployment.hosts": "\(agents.count)", "deployment.version": "\(record.spec.version)"]
            )
            await self.store.recordServerEvent(
                "deployment", "\(record.name) \(record.spec.version): wave \(wave)\(wave == 0 ? " (canary)" : "") moves \(agents.count) of \(hosts.count) hosts"
            )
            return true
        case .finish:
            guard try await self.store.setRolloutState(.done, reason: "", deployment: record.name, revision: record.revision, from: [.rolling]) != nil
            else { return false }
            logger.notice("rollout done", metadata: ["deployment.version": "\(record.spec.version)", "deployment.hosts": "\(hosts.count)"])
            await self.store.recordServerEvent("deployment", "\(record.name) \(record.spec.version): rollout done on \(hosts.count) hosts")
            // Hosts not moved (offline, or tagged during the rollout) get the new revision now.
            return true
        case .halt(let why):
            let back = !record.rollout.noAutoRollback
            let reason = back ? "\(why); rolled back to \(record.stable?.version ?? "the previous version")" : "\(why); halted, hosts left where they are"
            guard try await self.store.setRolloutState(
                back ? .rolledBack : .halted, reason: reason, deployment: record.name, revision: record.revision, from: [.rolling]
            ) != nil else { return false }
            logger.error("rollout halted", metadata: ["reason": "\(reason)"])
            await self.store.recordServerEvent("deployment", "\(record.name) \(record.spec.version): \(reason)")
            return back
        }
    }
}
