import Foundation
import RPC
import Server
import SwiftProtobuf
import Testing
import TestSupport

/// Nodes of one cluster, built in this process on one PostgreSQL database.
@Suite("Cluster (in-process nodes on one PostgreSQL)")
struct ClusterTests {
    static let postgres = ProcessInfo.processInfo.environment["ASPIRE_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }

    @Test(
        "A task created on one node reaches the agents the other nodes hold; every node sees it done",
        .enabled(if: Self.postgres != nil, "needs ASPIRE_TEST_POSTGRES_URL (scripts/postgres-for-tests.sh)")
    )
    func taskAcrossNodes() async throws {
        try await withLocalCluster(nodes: 3, postgres: try #require(Self.postgres)) { nodes in
            try await ScriptedAgent.connect("held-by-2", to: nodes[1]) { second in
                try await ScriptedAgent.connect("held-by-3", to: nodes[2]) { third in
                    let created = try await nodes[0].createTask(TaskEngineTests.bashTask("hostname", agents: ["held-by-2", "held-by-3"]))
                    for agent in [second, third] {
                        let command = try await agent.waitForCommands(1).first!
                        #expect(command.bash.cmd == "hostname")
                        agent.answer(command, data: agent.agentSN)
                        try await agent.waitForAck(command.id)
                    }
                    for node in nodes {
                        let detail = try await node.task(created.task.id)
                        #expect(detail.task.state == .done && detail.task.complete == 2, "\(node.node.configuration.nodeName): \(detail.task)")
                    }
                    // Each host is recorded as held by the node its stream is on.
                    var request = Aspire_V1_GetHostRequest()
                    request.agentSn = "held-by-3"
                    let host = try await nodes[0].admin { try await $0.getHost(request) }
                    #expect(host.status == "online")
                }
            }
        }
    }
}
