import Foundation
import GRPCCore
import Hummingbird
import RPC
import SwiftProtobuf

/// Deployments: every declared deployment with its rollout, one with its hosts by version and
/// state (failed first), and the operator's pause, resume and rollback.
extension Console {
    func deployments(_ visit: Visit) async throws -> Response {
        let list = try await self.admin.listDeployments(Aspire_V1_ListDeploymentsRequest(), metadata: visit.metadata)
        return self.views.page(
            "deployments", tab: .deployments, session: visit.session,
            ["title": "Deployments", "deployments": list.deployments.map(Self.deploymentValues)]
        )
    }

    func deployment(_ visit: Visit, name: String) async throws -> Response {
        let status = try await self.admin.getDeployment(.with { $0.name = name }, metadata: visit.metadata)
        var values = Self.deploymentValues(status.deployment)
        values["title"] = "Deployment \(name)"
        values["matching"] = status.matching
        values["counts"] = status.counts.map { ["version": $0.version, "state": $0.state, "hosts": $0.hosts] as [String: Any] }
        values["chart"] = ConsoleChart.split(
            [HostRolloutPhase.healthy, .starting, .pending, .failed].map { phase in
                (phase.rawValue, Int(status.counts.filter { $0.state == phase.rawValue }.reduce(0) { $0 + $1.hosts }))
            },
            label: "Hosts of deployment \(name) by state"
        )
        values["hosts"] = status.hosts.map { host -> [String: Any] in
            [
                "sn": host.agentSn, "href": "/hosts/\(ConsoleText.encoded(host.agentSn))", "hostname": host.hostname, "version": host.version,
                "state": host.state, "message": host.message, "wave": host.moved ? "\(host.wave)" : "", "online": host.online,
                "bad": host.state == "failed",
            ]
        }
        values["pausable"] = status.deployment.state == "rolling"
        values["resumable"] = status.deployment.state == "paused"
        values["rollbackable"] = !status.deployment.stableVersion.isEmpty && status.deployment.state != "rolled_back"
        return self.views.page("deployment", tab: .deployments, session: visit.session, values)
    }

    func controlDeployment(_ visit: Visit, form: FormFields) async throws -> Response {
        let name = form["name"]
        let action = form["action"]
        let info = try await self.admin.controlDeployment(.with { $0.name = name; $0.action = action }, metadata: visit.metadata)
        return Self.back(to: "/deployments/\(ConsoleText.encoded(name))", note: "\(name): \(info.state)")
    }

    static func deploymentValues(_ info: Aspire_V1_DeploymentInfo) -> [String: Any] {
        [
            "name": info.spec.name, "href": "/deployments/\(ConsoleText.encoded(info.spec.name))", "version": info.spec.version,
            "revision": info.revision, "state": info.state, "stable": info.stableVersion, "wave": info.wave, "reason": info.reason,
            "tags": info.spec.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "),
            "onUntag": info.spec.onUntag, "canary": info.rollout.canary, "batch": info.rollout.batch, "health": info.rollout.healthSeconds,
            "maxFailures": info.rollout.maxFailures, "updated": ConsoleText.time(info.modifiedUnixMs),
        ]
    }
}
