import Foundation
public import GRPCCore
import Logging
public import RPC

/// Declared deployments: stored here, sent to each matching host by the distributor as its
/// `deployment.set`, rolled out wave by wave by the rollout controller.
extension AdminService {
    public func applyDeployment(request: Aspire_V1_ApplyDeploymentRequest, context: ServerContext) async throws -> Aspire_V1_DeploymentInfo {
        let spec = try request.spec.checked()
        let rollout = try request.rollout.checked()
        if spec.url.isEmpty, try await self.store.builds(name: spec.name, version: spec.version).isEmpty {
            throw AspireError(
                .notFound, "no package \(spec.name) \(spec.version) in the store: upload it (aspirectl package upload), or give a url and checksum"
            )
        }
        let (record, changed) = try await self.store.applyDeployment(spec, rollout: rollout)
        guard changed else { return Aspire_V1_DeploymentInfo(record) }
        self.logger.notice(
            "deployment applied",
            metadata: [
                "deployment": "\(record.name)", "deployment.version": "\(record.spec.version)", "deployment.revision": "\(record.revision)",
                "deployment.state": "\(record.state.rawValue)", "actor": "\(CallContext.principal?.name ?? "")",
            ]
        )
        await self.store.recordServerEvent(
            "deployment",
            "\(record.name) \(record.spec.version) declared by \(CallContext.principal?.name ?? "an operator") (revision \(record.revision), \(record.state.rawValue))"
        )
        await self.distributor.sweep()
        return Aspire_V1_DeploymentInfo(record)
    }

    public func listDeployments(request: Aspire_V1_ListDeploymentsRequest, context: ServerContext) async throws -> Aspire_V1_ListDeploymentsResponse {
        var response = Aspire_V1_ListDeploymentsResponse()
        response.deployments = try await self.store.deployments().map(Aspire_V1_DeploymentInfo.init(_:))
        return response
    }

    public func getDeployment(request: Aspire_V1_GetDeploymentRequest, context: ServerContext) async throws -> Aspire_V1_DeploymentStatus {
        let record = try await self.deployment(named: request.name)
        let hosts = try await self.store.deploymentHosts(record)
        let now = Date().unixMilliseconds
        var status = Aspire_V1_DeploymentStatus(record, hosts: hosts, now: now)
        if record.state == .rolling, record.reason.isEmpty, case .wait(let waiting)? = try? record.nextStep(hosts: hosts, now: now) {
            status.deployment.reason = waiting
        }
        return status
    }

    public func controlDeployment(request: Aspire_V1_ControlDeploymentRequest, context: ServerContext) async throws -> Aspire_V1_DeploymentInfo {
        let record = try await self.deployment(named: request.name)
        let actor = CallContext.principal?.name ?? "an operator"
        let change: (to: RolloutState, from: Set<RolloutState>, reason: String)
        switch request.action {
        case "pause":
            change = (.paused, [.rolling], "paused by \(actor) in wave \(max(0, record.wave))")
        case "resume":
            guard record.state != .halted else {
                throw AspireError(
                    .conflict, "deployment '\(record.name)' halted (\(record.reason)): roll it back, or apply a version that works"
                )
            }
            change = (.rolling, [.paused], "")
        case "rollback":
            guard let stable = record.stable else {
                throw AspireError(.conflict, "deployment '\(record.name)' has only its first revision: there is nothing to roll back to (delete it instead)")
            }
            change = (.rolledBack, [.rolling, .paused, .halted, .done], "rolled back to \(stable.version) by \(actor)")
        default:
            throw AspireError(.badRequest, "action '\(request.action)': use pause, resume or rollback")
        }
        guard let changed = try await self.store.setRolloutState(
            change.to, reason: change.reason, deployment: record.name, revision: record.revision, from: change.from
        ) else {
            throw AspireError(.conflict, "deployment '\(record.name)' is \(record.state.rawValue): it cannot \(request.action)")
        }
        self.logger.notice("deployment \(request.action)", metadata: ["deployment": "\(record.name)", "actor": "\(actor)"])
        await self.store.recordServerEvent("deployment", "\(record.name): \(request.action) by \(actor)")
        await self.distributor.sweep()
        return Aspire_V1_DeploymentInfo(changed)
    }

    public func deleteDeployment(request: Aspire_V1_DeleteDeploymentRequest, context: ServerContext) async throws -> Aspire_V1_DeploymentInfo {
        guard let deleted = try await self.store.deleteDeployment(name: request.name) else {
            throw AspireError(.notFound, "no deployment named '\(request.name)'")
        }
        self.logger.notice("deployment deleted", metadata: ["deployment": "\(deleted.name)", "deployment.on_untag": "\(deleted.spec.onUntag)"])
        await self.store.recordServerEvent("deployment", "\(deleted.name) deleted by \(CallContext.principal?.name ?? "an operator")")
        await self.distributor.sweep()
        return Aspire_V1_DeploymentInfo(deleted)
    }

    private func deployment(named name: String) async throws -> DeploymentRecord {
        guard let record = try await self.store.deployments(name: name).first else {
            throw AspireError(.notFound, "no deployment named '\(name)'")
        }
        return record
    }
}
