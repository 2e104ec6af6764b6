import Foundation
import RPC
@testable import Server
import SQLKit
import Testing
import TestSupport

extension ClusterTests {
    @Test(
        "A real agent sent to a node that died (its peers still count it alive) connects to another in the same round",
        .enabled(if: Self.postgres != nil, "needs ASPIRE_TEST_POSTGRES_URL (scripts/postgres-for-tests.sh)")
    )
    func deadPeerSkipped() async throws {
        try await withLocalCluster(nodes: 2, postgres: try #require(Self.postgres), configure: Self.noSweep) { nodes in
            // A node that still beats in the table but listens nowhere: Init sends agents to it
            // until its heartbeats stop (10 s).
            let ghost = "127.0.0.99:1"
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        try await nodes[0].store.heartbeat(node: "ghost", address: ghost, started: 1)
                        try await Task.sleep(for: .milliseconds(200))
                    }
                }
                defer { group.cancelAll() }
                try await eventually("both nodes to count the ghost active") {
                    nodes.allSatisfy { $0.node.cluster.active.contains { $0.name == "ghost" } }
                }
                // An AgentSN the ghost ranks first for.
                let names = ["ghost", "node1", "node2"]
                let sn = try #require((0 ..< 1000).map { "ghosted-\($0)" }.first { sn in
                    names.max { RedirectPolicy.weight(sn, $0) < RedirectPolicy.weight(sn, $1) } == "ghost"
                })
                let directory = try makeTemporaryDirectory("cluster-ghost")
                defer { try? FileManager.default.removeItem(atPath: directory) }
                // "The same round": the agent's log shows no failed round before its stream. (A
                // deadline could not say it — the first backoff is under a second — and on a loaded
                // machine enrollment alone can take seconds.)
                let agent = try TestAgent.start(
                    in: directory, servers: [nodes[0].address.description], caFile: nodes[0].caFile,
                    tokenFile: "\(nodes[0].node.configuration.dataDirectory)/enroll.token", agentSN: sn
                )
                defer { Task { await agent.process.stop() } }
                try await eventually(timeout: .seconds(30), "the agent on a live node\n\(agent.process.log)") {
                    nodes.contains { $0.node.registry.session(for: sn) != nil }
                }
                let log = agent.process.log
                #expect(log.contains(ghost), "the agent was not sent to the ghost\n\(log)")
                #expect(!log.contains("no server reachable"), "the agent needed a second round\n\(log)")
            }
        }
    }
}
