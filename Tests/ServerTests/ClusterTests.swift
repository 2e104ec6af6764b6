import Foundation
import RPC
import Server
import SQLKit
import SwiftProtobuf
import Testing
import TestSupport

/// Nodes of one cluster, built in this process on one PostgreSQL database.
@Suite("Cluster (in-process nodes on one PostgreSQL)")
struct ClusterTests {
    static let postgres = ProcessInfo.processInfo.environment["ASPIRE_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }

    /// Nodes that never sweep the store while a test runs, and beat often.
    static let noSweep: @Sendable (inout ServerConfiguration) -> Void = {
        $0.tasks.sweepInterval = .seconds(600)
        $0.heartbeatInterval = .milliseconds(200)
    }

    /// Waits until every node sees every other one active.
    static func waitForPeers(_ nodes: [LocalNode]) async throws {
        try await eventually("every node to see \(nodes.count) active nodes") {
            nodes.allSatisfy { $0.node.cluster.active.count == nodes.count }
        }
    }

    @Test(
        "A task created on one node reaches the agents the other nodes hold; every node sees it done",
        .enabled(if: Self.postgres != nil, "needs ASPIRE_TEST_POSTGRES_URL (scripts/postgres-for-tests.sh)")
    )
    func taskAcrossNodes() async throws {
        // No sweep within the test: the nodes holding the hosts are woken by the one that made
        // the task.
        try await withLocalCluster(nodes: 3, postgres: try #require(Self.postgres), configure: Self.noSweep) { nodes in
            try await Self.waitForPeers(nodes)
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
                    #expect(host.status == "online" && host.node == "node3")
                    // The dashboard of any node shows each node with the hosts it holds.
                    let dashboard = try await nodes[0].admin { try await $0.dashboard(.init()) }
                    #expect(dashboard.nodes.map { "\($0.name):\($0.hosts)" } == ["node1:0", "node2:1", "node3:1"])
                }
            }
        }
    }
}

extension ClusterTests {
    @Test(
        "Every node of a cluster is listed by every node with its address and the hosts it holds; one whose heartbeats stopped is dead",
        .enabled(if: Self.postgres != nil, "needs ASPIRE_TEST_POSTGRES_URL (scripts/postgres-for-tests.sh)")
    )
    func membership() async throws {
        try await withLocalCluster(nodes: 2, postgres: try #require(Self.postgres)) { nodes in
            try await ScriptedAgent.connect("held-by-2", to: nodes[1]) { _ in
                // A node that stopped beating long ago, as a crashed one leaves its row.
                try await nodes[0].store.heartbeat(node: "gone", address: "127.0.0.99:8443", started: 1)
                try await nodes[0].store.engine.withConnection { database in
                    try await database.raw("UPDATE nodes SET heartbeat = 1000 WHERE name = 'gone'").run()
                }
                for node in nodes {
                    let listed = try await node.admin { try await $0.listNodes(.init()) }.nodes
                    let byName = Dictionary(uniqueKeysWithValues: listed.map { ($0.name, $0) })
                    #expect(Set(byName.keys) == ["node1", "node2", "gone"], "\(listed)")
                    #expect(byName["node1"]?.state == "active" && byName["node2"]?.state == "active")
                    #expect(byName["gone"]?.state == "dead")
                    #expect(byName["node2"]?.address == nodes[1].address.description)
                    #expect(byName["node2"]?.hosts == 1 && byName["node1"]?.hosts == 0)
                }
            }
        }
    }
}
