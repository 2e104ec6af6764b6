import ArgumentParser
import Fleet
import Foundation
import GRPCCore
import Logging
import RPC
import SwiftProtobuf
import Synchronization
import TestSupport

/// The cluster's figures, beside the one-node ones of P2, P3 and P5: three nodes on one
/// PostgreSQL database, a fleet spread over them by Init.
struct ClusterBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Three nodes on one PostgreSQL: P2 fan-out over them, cross-node RunCommand p50 against same-node, P5 storm when one of them dies.",
        discussion: "Needs a PostgreSQL server whose user may create databases (--postgres, or ASPIRE_TEST_POSTGRES_URL); skipped without one."
    )

    @OptionGroup var options: BenchOptions

    @Option(name: .shortAndLong, help: "Simulated agents (default 10000; 1000 with --quick).")
    var agents: Int?

    @Option(help: "RunCommands timed each way (default 1000; 200 with --quick).")
    var samples: Int?

    @Option(help: "PostgreSQL server URL (default: ASPIRE_TEST_POSTGRES_URL).")
    var postgres: String?

    func run() async throws {
        for report in try await Self.measure(self.options, agents: self.agents, samples: self.samples, postgres: self.postgres) {
            report.print(jsonOnly: self.options.jsonOnly)
        }
    }

    static func measure(_ options: BenchOptions, agents: Int? = nil, samples: Int? = nil, postgres: String? = nil) async throws -> [Report] {
        guard let server = postgres ?? ProcessInfo.processInfo.environment["ASPIRE_TEST_POSTGRES_URL"].flatMap({ $0.isEmpty ? nil : $0 }) else {
            FileHandle.standardError.write(Data("cluster: skipped, no PostgreSQL (--postgres or ASPIRE_TEST_POSTGRES_URL)\n".utf8))
            return []
        }
        let count = agents ?? (options.quick ? 1000 : 10000)
        let samples = samples ?? (options.quick ? 200 : 1000)
        return try await withHarness(options, name: "cluster") { harness in
            try await ScratchStore.withPostgresDatabase(server: server, logger: Logger(label: "bench")) { database in
                var started: [NodeProcess] = []
                for index in 1 ... 3 {
                    started.append(try await harness.startNode("node\(index)", listen: "127.0.0.1:0", database: database, sharingSecretsOf: started.first))
                }
                let nodes = started
                defer { for node in nodes { node.process.signal(SIGKILL) } }
                try await Self.waitForCluster(nodes)

                let commands = try await Self.crossNode(harness, nodes: nodes, samples: samples, quick: options.quick)

                var configuration = Fleet.Configuration(server: nodes[0].dialAddress, security: .tls(caFile: nodes[0].caFile), token: try nodes[0].enrollToken)
                configuration.spread = false
                configuration.fallbacks = nodes.dropFirst().map(\.dialAddress)
                let fleet = Fleet(configuration: configuration, count: count)
                let (fanOut, storm) = try await fleet.run { fleet in
                    try await fleet.waitOnline(timeout: .seconds(Int64(60 + count / 100)))
                    let held = try await Self.held(nodes[0])
                    let fanOut = try await nodes[0].withAdmin { admin in
                        _ = try await FanOutBench.fanOut(admin, to: Array(fleet.agentSNs.prefix(10)))
                        return try await FanOutBench.fanOut(admin, to: fleet.agentSNs)
                    }
                    var report = Report("P2", "fan-out over 3 nodes (\(count) simulated agents)", quick: options.quick)
                    report.add("agents", "agents", Double(count), digits: 0)
                    report.add("spread", "agents per node (min / max)", Double(held.values.min() ?? 0) / Double(max(held.values.max() ?? 1, 1)), unit: "ratio", digits: 2)
                    report.add("create_ms", "CreateTask answered after", fanOut.created.millis, unit: "ms")
                    report.add("last_result_ms", "last result stored after", fanOut.total.millis, unit: "ms", target: count >= 10000 ? "≤ 2000 ms" : "")
                    report.add("subtask_p50_ms", "subtask p50", fanOut.p50, unit: "ms")
                    report.add("subtask_p99_ms", "subtask p99", fanOut.p99, unit: "ms")
                    report.add("failed", "subtasks not succeeded", Double(fanOut.failed), digits: 0, target: "0")
                    return (report, try await Self.storm(fleet, nodes: nodes, held: held["node3", default: 0], quick: options.quick))
                }
                for node in nodes.prefix(2) { await node.process.stop() }
                return [fanOut, commands, storm]
            }
        }
    }

    /// Until every node spreads agents over all three (each read the others' heartbeats).
    static func waitForCluster(_ nodes: [NodeProcess]) async throws {
        try await eventually(timeout: .seconds(30), "three active nodes") {
            try await Self.held(nodes[0]).count == nodes.count
        }
        // A heartbeat (3 s) later every node has read the table with all of them in it.
        try await Task.sleep(for: .seconds(4))
    }

    /// Hosts online on each node, by name.
    static func held(_ node: NodeProcess) async throws -> [String: Int] {
        let listed = try await node.withAdmin { try await $0.listNodes(.init()) }.nodes.filter { $0.state == "active" }
        return Dictionary(uniqueKeysWithValues: listed.map { ($0.name, Int($0.hosts)) })
    }

    /// RunCommand 'true' on one boot agent through the node that holds it, and through another,
    /// taken in turns.
    static func crossNode(_ harness: Harness, nodes: [NodeProcess], samples: Int, quick: Bool) async throws -> Report {
        let agent = try harness.startAgent("agent", servers: nodes.map(\.dialAddress), caFile: nodes[0].caFile, tokenFile: nodes[0].enrollTokenFile)
        defer { agent.process.signal(SIGKILL) }
        var holder = ""
        try await eventually(timeout: .seconds(60), "the agent held by a node") {
            holder = try await nodes[0].withAdmin { try await $0.listAgents(.init()) }.agents.first { $0.agentSn == agent.agentSN }?.node ?? ""
            return !holder.isEmpty
        }
        guard let same = nodes.first(where: { URL(fileURLWithPath: $0.dataDirectory).lastPathComponent == holder }),
            let other = nodes.first(where: { URL(fileURLWithPath: $0.dataDirectory).lastPathComponent != holder })
        else { throw HarnessError("no node named \(holder)") }
        let clock = ContinuousClock()
        let (local, remote) = try await same.withAdmin { near in
            try await other.withAdmin { far in
                for _ in 0 ..< 20 {
                    _ = try await near.run("true", on: agent.agentSN)
                    _ = try await far.run("true", on: agent.agentSN)
                }
                var local: [Double] = []
                var remote: [Double] = []
                for _ in 0 ..< samples {
                    for (admin, into) in [(near, 0), (far, 1)] {
                        let started = clock.now
                        let result = try await admin.run("true", on: agent.agentSN)
                        guard result.resp == .success, result.retcode == 0 else { throw HarnessError("'true' failed: \(result)") }
                        if into == 0 { local.append((clock.now - started).millis) } else { remote.append((clock.now - started).millis) }
                    }
                }
                return (local, remote)
            }
        }
        var report = Report("P3", "RunCommand across nodes (\(samples) × 'true' each way on one boot agent)", quick: quick)
        report.add("same_node_p50_ms", "through the node holding the agent, p50", Stats.median(local), unit: "ms", digits: 2)
        report.add("cross_node_p50_ms", "through another node, p50", Stats.median(remote), unit: "ms", digits: 2)
        report.add("cross_extra_ms", "cross-node extra, p50", Stats.median(remote) - Stats.median(local), unit: "ms", digits: 2, target: "≤ 1 ms")
        report.add("cross_node_p99_ms", "through another node, p99", Stats.percentile(remote, 99), unit: "ms", digits: 2)
        return report
    }

    /// node3 dies (SIGKILL) with a task in flight: how fast its agents are back on the others.
    static func storm(_ fleet: Fleet, nodes: [NodeProcess], held: Int, quick: Bool) async throws -> Report {
        let request = try Aspire_V1_CreateTaskRequest.trueTask(on: fleet.agentSNs)
        let taskID = try await nodes[0].withAdmin { try await $0.createTask(request).task.id }
        let clock = ContinuousClock()
        let killedAt = Date().unixMilliseconds
        let before = fleet.counters.welcomes.load(ordering: .relaxed)
        func back() -> Int { fleet.counters.welcomes.load(ordering: .relaxed) - before }
        let killed = clock.now
        await nodes[2].process.kill()
        let timeout = Duration.seconds(Int64(120 + held / 50))
        try await eventually(timeout: timeout, interval: .milliseconds(10), "half of node3's \(held) agents back (\(back()) are)") {
            back() >= held / 2
        }
        let back50 = clock.now - killed
        try await eventually(timeout: timeout, interval: .milliseconds(10), "99 % of node3's \(held) agents back (\(back()) are)") {
            back() >= held * 99 / 100
        }
        let back99 = clock.now - killed
        try await eventually(timeout: timeout, interval: .milliseconds(10), "every agent online again") { fleet.online >= fleet.count }
        let back100 = clock.now - killed
        let task = try await nodes[0].withAdmin { try await $0.settledTask(taskID, timeout: .seconds(90)) }
        var report = Report("P5", "one of 3 nodes SIGKILLed (\(held) of \(fleet.count) agents on it)", quick: quick)
        report.add("agents_moved", "agents of the dead node", Double(held), digits: 0)
        report.add("back_50_s", "half of them back on the others after the kill", back50.seconds, unit: "s")
        report.add("back_99_s", "99 % of them back on the others after the kill", back99.seconds, unit: "s", target: "≤ 30 s")
        report.add("back_100_s", "every agent online after the kill", back100.seconds, unit: "s")
        StormBench.addConnectRates(fleet.welcomes(since: killedAt), to: &report)
        report.add("lost", "subtasks without a result", Double(task.count - task.complete), digits: 0, target: "0")
        return report
    }
}
