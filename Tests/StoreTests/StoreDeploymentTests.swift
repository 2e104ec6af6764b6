import Foundation
import RPC
@testable import Server
import Testing

/// Declared deployments in the store, on SQLite and on a real PostgreSQL server.
@Suite("Store conformance: deployments")
struct StoreDeploymentTests {
    static func spec(_ version: String, tags: [String: String] = ["svc": "web"], envs: [String: String] = [:]) -> Aspire_V1_DeploymentSpec {
        var spec = Aspire_V1_DeploymentSpec()
        spec.name = "web-agent"
        spec.version = version
        spec.tags = tags
        spec.envs = envs
        spec.onUntag = "remove"
        return spec
    }

    static var policy: Aspire_V1_RolloutPolicy {
        get throws { try Aspire_V1_RolloutPolicy().checked() }
    }

    static func host(_ store: SQLStore, _ sn: String, tags: [String: String]) async throws {
        try await store.registerHost(
            HostRegistration(agentSN: sn, hostname: "h-\(sn)", ipaddr: "10.0.0.1", os: "linux", arch: "x86_64", version: "1", node: "n1")
        )
        try await store.bindTags(tags, to: sn)
    }

    @Test("Apply: a first revision is done at once; the same again changes nothing; a selector change is no new revision; a new version rolls out from the stable one", arguments: StoreHarness.engines)
    func apply(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let empty = try await store.deploymentRevision()
            let (first, created) = try await store.applyDeployment(Self.spec("1.0"), rollout: try Self.policy)
            #expect(created && first.revision == 1 && first.state == .done && first.stable == nil)
            let afterCreate = try await store.deploymentRevision()
            #expect(afterCreate != empty)

            let (same, changed) = try await store.applyDeployment(Self.spec("1.0"), rollout: try Self.policy)
            #expect(!changed && same.revision == 1 && same.modified == first.modified)
            #expect(try await store.deploymentRevision() == afterCreate)

            let (retagged, moved) = try await store.applyDeployment(Self.spec("1.0", tags: ["svc": "api"]), rollout: try Self.policy)
            #expect(moved && retagged.revision == 1 && retagged.state == .done && retagged.spec.tags == ["svc": "api"])

            let (upgraded, _) = try await store.applyDeployment(Self.spec("2.0", tags: ["svc": "api"]), rollout: try Self.policy)
            #expect(upgraded.revision == 2 && upgraded.state == .rolling && upgraded.wave == -1)
            #expect(upgraded.stable?.version == "1.0" && upgraded.stableRevision == 1)
            #expect(upgraded.target(moved: false).spec.version == "1.0" && upgraded.target(moved: true).spec.version == "2.0")

            // A change in the middle of a rollout starts again from the same stable revision.
            let (again, _) = try await store.applyDeployment(Self.spec("2.1", tags: ["svc": "api"], envs: ["A": "1"]), rollout: try Self.policy)
            #expect(again.revision == 3 && again.stable?.version == "1.0" && again.stableRevision == 1)
            let stored = try #require(try await store.deployments(name: "web-agent").first)
            #expect(stored == again)
        }
    }

    @Test("Moving hosts is conditional on the revision, state and wave; done and rolled back forget the moves", arguments: StoreHarness.engines)
    func moves(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            _ = try await store.applyDeployment(Self.spec("1.0"), rollout: try Self.policy)
            let (rolling, _) = try await store.applyDeployment(Self.spec("2.0"), rollout: try Self.policy)
            let before = try await store.deploymentRevision()
            let canary = try #require(try await store.moveHosts(["sn-1"], deployment: "web-agent", revision: rolling.revision, wave: 0))
            #expect(canary.wave == 0 && canary.waveStarted > 0)
            #expect(try await store.deploymentRevision() != before, "a move changes what hosts must run")
            // Another node that read wave -1 too: refused.
            #expect(try await store.moveHosts(["sn-2"], deployment: "web-agent", revision: rolling.revision, wave: 0) == nil)
            #expect(try await store.moveHosts(["sn-2"], deployment: "web-agent", revision: rolling.revision - 1, wave: 1) == nil)
            #expect(try await store.deploymentMoves() == ["web-agent": ["sn-1"]])
            _ = try await store.moveHosts(["sn-2", "sn-3"], deployment: "web-agent", revision: rolling.revision, wave: 1)
            #expect(try await store.deploymentMoves() == ["web-agent": ["sn-1", "sn-2", "sn-3"]])

            let paused = try await store.setRolloutState(.paused, reason: "by test", deployment: "web-agent", revision: rolling.revision, from: [.rolling])
            #expect(paused?.state == .paused && paused?.reason == "by test")
            #expect(try await store.moveHosts(["sn-4"], deployment: "web-agent", revision: rolling.revision, wave: 2) == nil, "no wave while paused")
            #expect(try await store.setRolloutState(.paused, reason: "", deployment: "web-agent", revision: rolling.revision, from: [.rolling]) == nil)
            let back = try await store.setRolloutState(.rolledBack, reason: "r", deployment: "web-agent", revision: rolling.revision, from: [.paused])
            #expect(back?.target(moved: true).spec.version == "1.0")
            #expect(try await store.deploymentMoves().isEmpty)

            // A new version after a rollback rolls out from the same stable revision.
            let (next, _) = try await store.applyDeployment(Self.spec("3.0"), rollout: try Self.policy)
            #expect(next.revision == 3 && next.stable?.version == "1.0")
            #expect(try await store.deleteDeployment(name: "web-agent")?.revision == 3)
            #expect(try await store.deleteDeployment(name: "web-agent") == nil)
            #expect(try await store.deployments().isEmpty)
        }
    }

    @Test("A deployment's hosts: those carrying every tag, with their moves and what they reported of it", arguments: StoreHarness.engines)
    func hosts(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            try await Self.host(store, "sn-1", tags: ["svc": "web", "dc": "a"])
            try await Self.host(store, "sn-2", tags: ["svc": "web"])
            try await Self.host(store, "sn-3", tags: ["svc": "db"])
            _ = try await store.applyDeployment(Self.spec("1.0"), rollout: try Self.policy)
            let (rolling, _) = try await store.applyDeployment(Self.spec("2.0"), rollout: try Self.policy)
            _ = try await store.moveHosts(["sn-1"], deployment: "web-agent", revision: rolling.revision, wave: 0)
            var state = Aspire_V1_DeploymentState()
            state.name = "web-agent"
            state.revision = 2
            state.version = "2.0"
            state.error = "upgrade failed"
            try await store.recordStatus(
                agentSN: "sn-1", step: 60, subAgents: [SubAgentRecord(name: "web-agent", version: "1.0", status: "running", uptime: 30)],
                deployments: [state]
            )
            let hosts = try await store.deploymentHosts(rolling).sorted { $0.agentSN < $1.agentSN }
            #expect(hosts.map(\.agentSN) == ["sn-1", "sn-2"])
            #expect(hosts[0].moved?.revision == 2 && hosts[0].moved?.wave == 0 && hosts[1].moved == nil)
            #expect(hosts[0].reported?.error == "upgrade failed" && hosts[0].subAgent?.version == "1.0" && hosts[0].subAgent?.uptime == 30)
            #expect(hosts[0].reportedAt > 0 && hosts[1].reported == nil && hosts[1].subAgent == nil)
            #expect(hosts[0].phase(in: rolling, now: hosts[0].reportedAt).phase == .failed)
            #expect(hosts[1].phase(in: rolling, now: hosts[0].reportedAt).phase == .pending)

            // A report without the deployment removes what the host reported of it, and keeps its sub-agent.
            try await store.recordStatus(
                agentSN: "sn-1", step: 60, subAgents: [SubAgentRecord(name: "web-agent", version: "1.0", status: "running", uptime: 35)]
            )
            let after = try await store.deploymentHosts(rolling).sorted { $0.agentSN < $1.agentSN }
            #expect(after[0].reported == nil && after[0].subAgent?.uptime == 35)
        }
    }

    @Test("Binding and unbinding a tag moves the tag revision; binding one already bound does not", arguments: StoreHarness.engines)
    func tagRevision(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            try await Self.host(store, "sn-1", tags: [:])
            let start = try await store.tagRevision()
            try await store.bindTag(name: "svc", value: "web", to: "sn-1")
            let bound = try await store.tagRevision()
            #expect(bound > start)
            try await store.bindTags(["svc": "web"], to: "sn-1")
            #expect(try await store.tagRevision() == bound, "a report that carries the same tags changes nothing")
            #expect(try await store.unbindTag(name: "svc", value: "web", from: "sn-1"))
            #expect(try await store.tagRevision() > bound)

            // The distributor's one read moves with tags and deployments too.
            let before = try await store.distributionRevision()
            try await store.bindTag(name: "svc", value: "web", to: "sn-1")
            let tagged = try await store.distributionRevision()
            #expect(tagged != before)
            _ = try await store.applyDeployment(Self.spec("1.0"), rollout: try Self.policy)
            #expect(try await store.distributionRevision() != tagged)
        }
    }
}
