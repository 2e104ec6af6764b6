import Fleet
import Foundation
import Logging
import RPC
import Testing
import SwiftProtobuf
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Real `aspire-server` processes on one PostgreSQL database, driven by real agents (boot, or
/// the fleet's simulated ones) and aspirectl: the cluster as operators run it.
@Suite("Cluster of real nodes", .stopsChildProcesses)
struct ClusterProcessTests {
    static let postgres = ProcessInfo.processInfo.environment["ASPIRE_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }

    /// `count` nodes on a fresh database (the first one's CA and tokens shared), each with
    /// `arguments(index)` added; waits until each sees every node active.
    static func withNodes<Result: Sendable>(
        _ count: Int,
        in directory: String,
        arguments: (Int) -> [String] = { _ in [] },
        _ body: ([TestNode]) async throws -> Result
    ) async throws -> Result {
        try await ScratchStore.withPostgresDatabase(server: try #require(Self.postgres), logger: Logger(label: "cluster-processes")) { database in
            var nodes: [TestNode] = []
            defer { for node in nodes { node.process.signal(SIGKILL) } }
            for index in 0 ..< count {
                nodes.append(
                    try await TestNode.start(
                        in: directory, name: "node\(index + 1)", host: Loopback.address(),
                        arguments: ["--database", database] + arguments(index), sharingSecretsOf: nodes.first
                    )
                )
            }
            // Every node spreads agents over every node: Init at each sends some agents to each
            // other one (it has read the table since they all joined).
            let addresses = Set(nodes.map(\.address.description))
            try await eventually(timeout: .seconds(30), "every node to spread agents over all \(count)") {
                for node in nodes {
                    let targets = try await node.withClient(token: try node.enrollToken) { client in
                        var seen: Set<String> = [node.address.description]
                        for index in 0 ..< 32 {
                            let answer = try await Aspire_V1_Bootstrap.Client(wrapping: client).`init`(.with { $0.agentSn = "probe-\(index)" })
                            if answer.action == .redirect, let first = answer.servers.first { seen.insert(first) }
                        }
                        return seen
                    }
                    guard targets == addresses else { return false }
                }
                return true
            }
            let result = try await body(nodes)
            for node in nodes {
                node.process.signal(SIGTERM)
                _ = try? await node.process.wait(timeout: .seconds(30))
            }
            return result
        }
    }

    /// A fleet of `count` simulated agents dialing the first node, the others as fallbacks.
    static func fleet(_ count: Int, nodes: [TestNode], prefix: String, answerDelay: Duration) throws -> Fleet {
        var configuration = Fleet.Configuration(server: nodes[0].address, security: .tls(caFile: nodes[0].caFile), token: try nodes[0].enrollToken)
        configuration.spread = false
        configuration.fallbacks = nodes.dropFirst().map(\.address)
        configuration.prefix = prefix
        configuration.answerDelay = answerDelay
        return Fleet(configuration: configuration, count: count)
    }

    /// Hosts online on each node, by name.
    static func held(_ node: TestNode) async throws -> [String: Int] {
        let listed = try await node.admin { try await $0.listNodes(.init()) }.nodes
        return Dictionary(uniqueKeysWithValues: listed.map { ($0.name, Int($0.hosts)) })
    }

    /// Once every agent of `fleet` is online and the store counts it, the hosts on each node.
    static func online(_ fleet: Fleet, nodes: [TestNode]) async throws -> [String: Int] {
        try await fleet.waitOnline(timeout: .seconds(60))
        var held: [String: Int] = [:]
        try await eventually("the store to count every host online") {
            held = try await Self.held(nodes[0])
            return held.values.reduce(0, +) == fleet.count
        }
        return held
    }

    /// The agents that moved came back a wave at a time: at most about `rate` a second.
    static func expectWaves(_ fleet: Fleet, since started: Int64, rate: Int) {
        let arrivals = fleet.welcomes(since: started)
        let busiest = arrivals.map { start in arrivals.filter { $0 >= start && $0 < start + 1000 }.count }.max() ?? 0
        #expect(busiest <= rate * 3, "at most about \(rate) reconnects a second; \(busiest) in one second")
    }

    /// Every subtask of the task succeeded, and every agent ran its command exactly once.
    static func expectRanOnce(_ detail: Aspire_V1_TaskDetail, _ fleet: Fleet, hosts: Int) {
        #expect(detail.task.count == Int32(hosts) && detail.task.complete == Int32(hosts) && detail.task.failed == 0, "\(detail.task)")
        #expect(detail.subtasks.allSatisfy { $0.state == .succeeded }, "\(detail.subtasks.filter { $0.state != .succeeded }.prefix(5))")
        let runs = fleet.counters.executions
        let wrong = detail.subtasks.filter { runs[$0.id] != 1 }.map { "\($0.agentSn): \(runs[$0.id] ?? 0)" }
        #expect(wrong.isEmpty, "commands not run exactly once: \(wrong.prefix(10))")
    }

    @Test(
        "kill -9 of one of three nodes in the middle of a 300-host task: its agents reconnect to the others, each subtask ends with one result, no command runs twice",
        .enabled(if: Self.postgres != nil, "needs ASPIRE_TEST_POSTGRES_URL (scripts/postgres-for-tests.sh)")
    )
    func nodeKilledMidTask() async throws {
        let directory = try makeTemporaryDirectory("cluster-kill")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await Self.withNodes(3, in: directory) { nodes in
            let fleet = try Self.fleet(300, nodes: nodes, prefix: "kill", answerDelay: .seconds(2))
            try await fleet.enroll()
            try await fleet.run { fleet in
                let held = try await Self.online(fleet, nodes: nodes)
                #expect(held.values.allSatisfy { $0 > 0 }, "rendezvous spreads agents over every node: \(held)")

                let created = try await nodes[0].createTask(TaskEngineTests.bashTask("true", agents: fleet.agentSNs))
                try await Task.sleep(for: .milliseconds(800))
                // Commands are in flight on every node; node3 dies without a word.
                nodes[2].process.signal(SIGKILL)
                _ = try await nodes[2].process.wait(timeout: .seconds(10))

                let detail = try await nodes[1].waitForTask(created.task.id, timeout: .seconds(120))
                Self.expectRanOnce(detail, fleet, hosts: 300)
                try await eventually(timeout: .seconds(60), "every agent back, on the two live nodes") {
                    let now = try await Self.held(nodes[0])
                    return now["node3", default: 0] == 0 && now["node1", default: 0] + now["node2", default: 0] == 300
                }
                let agents = try await nodes[1].connectedAgents()
                #expect(agents.count == 300 && agents.allSatisfy { $0.node != "node3" })
            }
        }
    }

    @Test(
        "aspirectl nodes drain moves every agent off a node in bounded waves, with no failed or repeated command",
        .enabled(if: Self.postgres != nil, "needs ASPIRE_TEST_POSTGRES_URL (scripts/postgres-for-tests.sh)")
    )
    func drain() async throws {
        let directory = try makeTemporaryDirectory("cluster-drain")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let rate = 10
        try await Self.withNodes(2, in: directory, arguments: { _ in ["--drain-rate", "\(rate)"] }) { nodes in
            let fleet = try Self.fleet(100, nodes: nodes, prefix: "drain", answerDelay: .seconds(1))
            try await fleet.enroll()
            try await fleet.run { fleet in
                let moving = try await Self.online(fleet, nodes: nodes)["node2", default: 0]
                #expect(moving > rate * 3, "node2 holds enough agents to need several waves: \(moving)")
                let created = try await nodes[0].createTask(TaskEngineTests.bashTask("true", agents: fleet.agentSNs))

                let started = Date().unixMilliseconds
                let environment = ["ASPIRE_SERVER": nodes[0].address.description, "ASPIRE_SERVER_DATA": nodes[0].dataDirectory]
                let drain = try TestProcess.start("aspirectl", ["nodes", "drain", "node2"], log: "\(directory)/drain.out", environment: environment)
                #expect(ChildProcess.exitCode(try await drain.wait(timeout: .seconds(30))) == 0, "\(drain.log)")
                #expect(drain.log.contains("node node2: draining"))

                try await eventually(timeout: .seconds(60), "node2 to hold no agent") {
                    try await Self.held(nodes[0])["node2", default: 0] == 0 && fleet.online == 100
                }
                let detail = try await nodes[0].waitForTask(created.task.id, timeout: .seconds(60))
                Self.expectRanOnce(detail, fleet, hosts: 100)

                // The moved agents came back a wave at a time, not all at once.
                #expect(fleet.welcomes(since: started).count >= moving)
                Self.expectWaves(fleet, since: started, rate: rate)
                let list = try TestProcess.start("aspirectl", ["nodes"], log: "\(directory)/nodes.out", environment: environment)
                _ = try await list.wait(timeout: .seconds(30))
                #expect(list.log.contains("node2") && list.log.contains("draining"), "\(list.log)")
            }
        }
    }
}

extension ClusterProcessTests {
    @Test(
        "aspirectl through any of three nodes: run reaches a boot agent another node holds, --follow prints its lines before it ends, and a package uploaded on one node is deployed by way of another to the agent a third holds",
        .enabled(if: Self.postgres != nil, "needs ASPIRE_TEST_POSTGRES_URL (scripts/postgres-for-tests.sh)")
    )
    func aspirectlThroughAnyNode() async throws {
        let directory = try makeTemporaryDirectory("cluster-cli")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let parent = "aspire-cluster-\(UUID().uuidString.prefix(8).lowercased())"
        defer { SubAgentEndToEndTests.cleanUp(cgroupParents: [parent]) }
        try await Self.withNodes(3, in: directory) { nodes in
            // The agent knows every node, as a DNS name with three addresses would give it.
            let agent = try TestAgent.start(
                in: directory, servers: nodes.map(\.address.description), caFile: nodes[0].caFile, tokenFile: nodes[0].enrollTokenFile,
                arguments: ["--agents-root", "\(directory)/agents", "--cgroup-parent", parent, "--health-window", "1"]
            )
            defer { Task { await agent.process.stop() } }
            var holder = ""
            try await eventually(timeout: .seconds(30), "the agent to be held by a node") {
                holder = try await nodes[0].connectedAgents().first { $0.agentSn == agent.agentSN }?.node ?? ""
                return !holder.isEmpty
            }
            // Each node's data directory is named as the node.
            let holding = try #require(nodes.firstIndex { URL(fileURLWithPath: $0.dataDirectory).lastPathComponent == holder })
            let others = nodes.indices.filter { $0 != holding }
            func aspirectl(_ arguments: [String], through node: TestNode, name: String) throws -> TestProcess {
                try TestProcess.start(
                    "aspirectl", arguments, log: "\(directory)/\(name).out",
                    environment: ["ASPIRE_SERVER": node.address.description, "ASPIRE_SERVER_DATA": node.dataDirectory]
                )
            }

            for (index, node) in nodes.enumerated() {
                let run = try aspirectl(["run", "--agent", agent.agentSN, "--", "echo", "through-\(index)"], through: node, name: "run-\(index)")
                #expect(ChildProcess.exitCode(try await run.wait(timeout: .seconds(60))) == 0, "\(run.log)")
                #expect(run.log.contains("through-\(index)"), "\(run.log)")
            }

            let follow = try aspirectl(
                ["run", "--follow", "--agent", agent.agentSN, "--", "echo first; sleep 4; echo second"], through: nodes[others[0]], name: "follow"
            )
            try await eventually(timeout: .seconds(30), "the first line before the command ends") { follow.log.contains("first") }
            #expect(!follow.log.contains("second"), "the first line came only with the end: \(follow.log)")
            #expect(ChildProcess.exitCode(try await follow.wait(timeout: .seconds(60))) == 0, "\(follow.log)")
            #expect(follow.log.contains("second"))

            // --async: the task's id at once; task wait reads the result when it is there.
            let detached = try aspirectl(["run", "--async", "--agent", agent.agentSN, "--", "sleep 1; echo later"], through: nodes[others[1]], name: "async")
            #expect(ChildProcess.exitCode(try await detached.wait(timeout: .seconds(60))) == 0, "\(detached.log)")
            let taskID = try #require(detached.log.split(separator: "\t").first { $0.hasPrefix("task ") }.map { String($0.dropFirst(5)) })
            let waited = try aspirectl(["task", "wait", taskID], through: nodes[others[0]], name: "wait")
            #expect(ChildProcess.exitCode(try await waited.wait(timeout: .seconds(60))) == 0, "\(waited.log)")
            #expect(waited.log.contains("[\(agent.agentSN)] later"), "\(waited.log)")

            let package = "\(directory)/MiniAgent-1.0.tar.gz"
            try await SubAgentEndToEndTests.tarball(in: directory, version: "1.0").write(to: URL(fileURLWithPath: package))
            let upload = try aspirectl(
                ["packages", "upload", package, "--name", "MiniAgent", "--version", "1.0", "--arch", "x86_64"], through: nodes[others[0]], name: "upload"
            )
            #expect(ChildProcess.exitCode(try await upload.wait(timeout: .seconds(60))) == 0, "\(upload.log)")
            let deploy = try aspirectl(["deploy", "MiniAgent", "1.0", "--agent", agent.agentSN], through: nodes[others[1]], name: "deploy")
            #expect(ChildProcess.exitCode(try await deploy.wait(timeout: .seconds(90))) == 0, "\(deploy.log)")
            #expect(deploy.log.contains("installed MiniAgent 1.0: running"), "\(deploy.log)")
            // The holding node served the file from the database: it is in its cache now.
            #expect(FileManager.default.fileExists(atPath: "\(nodes[holding].dataDirectory)/packages/linux/x86_64/MiniAgent-1.0.tar.gz"))
        }
    }
}

extension ClusterProcessTests {
    @Test(
        "SIGTERM of a node started --drain-on-stop sends its agents to the other node in waves before it stops",
        .enabled(if: Self.postgres != nil, "needs ASPIRE_TEST_POSTGRES_URL (scripts/postgres-for-tests.sh)")
    )
    func drainOnStop() async throws {
        let directory = try makeTemporaryDirectory("cluster-drain-stop")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let rate = 10
        try await Self.withNodes(2, in: directory, arguments: { $0 == 1 ? ["--drain-on-stop", "--drain-rate", "\(rate)"] : [] }) { nodes in
            let fleet = try Self.fleet(60, nodes: nodes, prefix: "stop", answerDelay: .zero)
            try await fleet.enroll()
            try await fleet.run { fleet in
                let moving = try await Self.online(fleet, nodes: nodes)["node2", default: 0]
                #expect(moving > rate * 2, "node2 holds enough agents to need several waves: \(moving)")
                let started = Date().unixMilliseconds
                nodes[1].process.signal(SIGTERM)
                #expect(ChildProcess.exitCode(try await nodes[1].process.wait(timeout: .seconds(60))) == 0, "\(nodes[1].process.log)")
                #expect(nodes[1].process.log.contains("draining before stopping"))
                #expect(nodes[1].process.log.contains("hosts.left=0"), "every agent left before the node stopped")
                try await eventually("every agent on node1") {
                    let held = try await Self.held(nodes[0])
                    return fleet.online == 60 && held["node1", default: 0] == 60
                }
                Self.expectWaves(fleet, since: started, rate: rate)
            }
        }
    }
}
