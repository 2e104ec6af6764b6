import Fleet
import Foundation
import Logging
import RPC
import Server
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The node keeps its hosts in the store as agents come and go.
@Suite("Hosts in the store", .stopsChildProcesses)
struct HostRecordTests {
    /// Reads the node's own SQLite file (WAL lets a second reader in while the node runs).
    func host(_ sn: String, of node: TestNode) async throws -> HostRecord? {
        let engine = try await SQLiteEngine.open(path: "\(node.dataDirectory)/aspire.db", logger: Logger(label: "test"))
        do {
            let host = try await SQLStore(engine: engine, logger: Logger(label: "test")).host(agentSN: sn)
            await engine.shutdown()
            return host
        } catch {
            await engine.shutdown()
            throw error
        }
    }

    @Test("An agent's host is online with its facts and tags while connected, offline after it goes")
    func onlineOffline() async throws {
        let directory = try makeTemporaryDirectory("hosts")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let agent = try TestAgent.start(in: directory, connectingTo: node, arguments: ["--tag", "svc=ecs", "--tag", "zone=b"])
        try await node.waitForAgent(agent)

        let online = try #require(try await self.host(agent.agentSN, of: node))
        #expect(online.status == .online)
        #expect(online.hostname == ProcessInfo.processInfo.hostName)
        #expect(online.ipaddr == "127.0.0.1")
        #expect(online.curvers == AspireVersion.current)
        #expect(online.os == "linux" && !online.arch.isEmpty)
        #expect(online.node == "node")
        #expect(online.tags.map { "\($0.name)=\($0.value)" } == ["svc=ecs", "zone=b"])

        agent.process.signal(SIGKILL)
        try await agent.process.wait()
        try await eventually("the host to be recorded offline") {
            try await self.host(agent.agentSN, of: node)?.status == .offline
        }
    }

    @Test("A node that restarts releases the hosts it held, and they come back online")
    func restartReleases() async throws {
        let directory = try makeTemporaryDirectory("hosts-restart")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try await TestNode.start(in: directory, host: Loopback.address())
        let agent = try TestAgent.start(in: directory, connectingTo: first)
        try await first.waitForAgent(agent)
        // A crash: no chance to mark anything offline.
        first.process.signal(SIGKILL)
        try await first.process.wait()
        agent.process.signal(SIGSTOP)
        let second = try await TestNode.start(in: directory, host: first.address.host, port: first.address.port)
        #expect(try await self.host(agent.agentSN, of: second)?.status == .offline)
        agent.process.signal(SIGCONT)
        try await second.waitForAgent(agent)
        try await eventually("the host to be online again") {
            try await self.host(agent.agentSN, of: second)?.status == .online
        }
    }
}
