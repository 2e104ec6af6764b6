import Foundation
import GRPCCore
import RPC
import Server
import SQLKit
import SwiftProtobuf
import Synchronization
import Testing
import TestSupport

extension ClusterTests {
    @Test(
        "A command through any node reaches a host another node holds, in one call; its output streams through a node that does not hold the host",
        .enabled(if: Self.postgres != nil, "needs ASPIRE_TEST_POSTGRES_URL (scripts/postgres-for-tests.sh)")
    )
    func commandAcrossNodes() async throws {
        try await withLocalCluster(nodes: 3, postgres: try #require(Self.postgres), configure: Self.noSweep) { nodes in
            try await Self.waitForPeers(nodes)
            try await ScriptedAgent.connect("held-by-3", to: nodes[2]) { agent in
                // Through each node, the holding one included: the result comes back in the call.
                for (index, node) in nodes.enumerated() {
                    var request = Aspire_V1_RunCommandRequest()
                    request.agentSn = "held-by-3"
                    request.command = Aspire_V1_Command(.bash, .bash(.with { $0.cmd = "echo \(index)" }))
                    try await withThrowingTaskGroup(of: Aspire_V1_RunCommandResponse.self) { group in
                        group.addTask { [request] in try await node.admin { try await $0.runCommand(request) } }
                        let command = try #require(try await agent.waitForCommands(index + 1).last)
                        #expect(command.bash.cmd == "echo \(index)" && !command.streamOutput)
                        agent.answer(command, data: "out \(index)")
                        let response = try #require(try await group.next())
                        #expect(String(decoding: response.result.data, as: UTF8.self) == "out \(index)")
                        #expect(response.commandID == command.id && response.node == "node\(index + 1)")
                        // It is a task of one host, done, as any node reads it (the caller has the
                        // result first, the store a moment later).
                        try await eventually("the command's task done in the store") {
                            let detail = try await nodes[(index + 1) % 3].task(response.taskID)
                            return detail.task.state == .done && detail.subtasks.map(\.id) == [command.id]
                        }
                    }
                }

                // Followed through node 1: the chunks come before the command ends.
                var request = Aspire_V1_RunCommandRequest()
                request.agentSn = "held-by-3"
                request.command = Aspire_V1_Command(id: "followed-1", .bash, .bash(.with { $0.cmd = "long" }))
                let events = Collected<Aspire_V1_CommandEvent>()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { [request] in
                        try await nodes[0].withClient { client in
                            try await Aspire_V1_Admin.Client(wrapping: client).runCommandStream(request) { response in
                                for try await event in response.messages { events.append(event) }
                            }
                        }
                    }
                    let command = try #require(try await agent.waitForCommands(4).last)
                    #expect(command.id == "followed-1" && command.streamOutput)
                    for (seq, text) in ["first line\n", "second line\n"].enumerated() {
                        agent.send(.output(.with {
                            $0.id = command.id
                            $0.seq = UInt64(seq)
                            $0.stream = .stdout
                            $0.chunk = Data(text.utf8)
                        }))
                    }
                    try await eventually("both chunks at the caller before the result") {
                        events.items.filter { $0.output.chunk.count > 0 }.count == 2
                    }
                    agent.answer(command, data: "first line\nsecond line\n")
                    try await group.waitForAll()
                }
                let seen = events.items
                #expect(seen.first?.accepted.commandID == "followed-1" && seen.first?.accepted.heldBy == "node3")
                #expect(seen.compactMap { if case .output? = $0.body { String(decoding: $0.output.chunk, as: UTF8.self) } else { nil } } == ["first line\n", "second line\n"])
                #expect(seen.last?.result.id == "followed-1" && seen.count == 4)

                // A command id runs once in the cluster: the same id again is refused.
                let again = await #expect(throws: RPCError.self) { try await nodes[1].admin { try await $0.runCommand(request) } }
                #expect(again.map { ErrorCode(rpcError: $0) } == .conflict)
            }
        }
    }

    @Test(
        "Init spreads agents over the live active nodes, every node agreeing; a draining node takes none; a dead node's hosts go offline",
        .enabled(if: Self.postgres != nil, "needs ASPIRE_TEST_POSTGRES_URL (scripts/postgres-for-tests.sh)")
    )
    func liveRendezvous() async throws {
        try await withLocalCluster(nodes: 3, postgres: try #require(Self.postgres), configure: Self.noSweep) { nodes in
            try await Self.waitForPeers(nodes)
            let addresses = Dictionary(uniqueKeysWithValues: nodes.map { ($0.address.description, $0.node.configuration.nodeName) })
            /// The node each agent is held by, as each node answers its Init.
            func holders(_ agents: [String]) async throws -> [String: String] {
                var holders: [String: String] = [:]
                for node in nodes {
                    try await node.withClient(token: node.node.enrollmentToken) { client in
                        for agent in agents {
                            let answer = try await Aspire_V1_Bootstrap.Client(wrapping: client).`init`(.with { $0.agentSn = agent })
                            let holder = answer.action == .accept ? node.node.configuration.nodeName : addresses[answer.servers.first ?? ""] ?? "?"
                            #expect(holders[agent] == nil || holders[agent] == holder, "\(agent): nodes disagree")
                            holders[agent] = holder
                        }
                    }
                }
                return holders
            }
            let agents = (0 ..< 60).map { "spread-\($0)" }
            let spread = try await holders(agents)
            #expect(Set(spread.values) == ["node1", "node2", "node3"], "\(spread)")

            // node3 drains: Init anywhere sends no agent to it, and node3 sends its own away.
            let drained = try await nodes[0].admin { try await $0.drainNode(.with { $0.name = "node3" }) }
            #expect(drained.state == "draining")
            try await eventually("every node to see node3 draining") {
                nodes.allSatisfy { $0.node.cluster.active.map(\.name).sorted() == ["node1", "node2"] }
            }
            let respread = try await holders(agents)
            #expect(Set(respread.values) == ["node1", "node2"], "\(respread)")
            // Agents of the other two stay where they were: only node3's move.
            #expect(agents.allSatisfy { spread[$0] == "node3" || respread[$0] == spread[$0] })
            let unknown = await #expect(throws: RPCError.self) { try await nodes[0].admin { try await $0.drainNode(.with { $0.name = "nope" }) } }
            #expect(unknown?.code == .notFound)

            // A node whose heartbeats stopped: the hosts it held go offline.
            try await nodes[0].store.registerHost(HostRegistration(agentSN: "orphan", hostname: "orphan", ipaddr: "", os: "linux", arch: "x86_64", version: "1", node: "gone"))
            try await nodes[0].store.heartbeat(node: "gone", address: "127.0.0.99:8443", started: 1)
            try await nodes[0].store.engine.withConnection { try await $0.raw("UPDATE nodes SET heartbeat = 1000 WHERE name = 'gone'").run() }
            try await eventually("the dead node's host to go offline") {
                try await nodes[0].store.host(agentSN: "orphan")?.status == .offline
            }
        }
    }
}

/// Items a concurrent task collects for the test to read.
final class Collected<Item: Sendable>: Sendable {
    private let state = Mutex<[Item]>([])

    func append(_ item: Item) { self.state.withLock { $0.append(item) } }

    var items: [Item] { self.state.withLock { $0 } }
}

extension ClusterTests {
    @Test(
        "A package uploaded on one node is served by every node from the database, checked, cached on disk; deleted, it is gone everywhere",
        .enabled(if: Self.postgres != nil, "needs ASPIRE_TEST_POSTGRES_URL (scripts/postgres-for-tests.sh)")
    )
    func packagesAcrossNodes() async throws {
        try await withLocalCluster(nodes: 3, postgres: try #require(Self.postgres)) { nodes in
            // Larger than a stored chunk, so it comes back in several.
            let content = Data((0 ..< (SQLStore.contentChunk * 2 + 12_345)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 9)) })
            var info = Aspire_V1_PackageInfo()
            (info.name, info.version, info.os, info.arch, info.file) = ("MiniAgent", "1.0", "linux", "x86_64", "MiniAgent-1.0.tar.gz")
            let named = info
            let uploaded = try await nodes[0].admin { admin in
                try await admin.uploadPackage { writer in
                    try await writer.write(.with { $0.info = named })
                    var offset = 0
                    while offset < content.count {
                        try await writer.write(.with { $0.chunk = content[offset ..< min(offset + 300_000, content.count)] })
                        offset += 300_000
                    }
                }
            }
            let cached = "\(nodes[2].node.configuration.dataDirectory)/\(uploaded.path)"
            #expect(!FileManager.default.fileExists(atPath: cached))

            func download(from node: LocalNode) async throws -> Data {
                try await node.withClient { client in
                    try await Aspire_V1_PackageStore.Client(wrapping: client).download(.with { $0.path = "linux/x86_64/MiniAgent-1.0.tar.gz" }) { response in
                        var bytes = Data()
                        for try await chunk in response.messages { bytes.append(chunk.data) }
                        return bytes
                    }
                }
            }
            #expect(try await download(from: nodes[2]) == content)
            #expect(FileManager.default.contents(atPath: cached) == content)
            // A damaged cached copy (a different size) is fetched again, not served.
            try Data("damaged".utf8).write(to: URL(fileURLWithPath: cached))
            #expect(try await download(from: nodes[2]) == content)

            _ = try await nodes[1].admin { try await $0.deletePackages(.with { $0.name = "MiniAgent" }) }
            #expect(try await nodes[0].store.hasContent(uploaded.sha256) == false)
            let gone = await #expect(throws: RPCError.self) { try await download(from: nodes[1]) }
            #expect(gone?.code == .notFound)
        }
    }
}
