import Fleet
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RPC
import Testing
import TestSupport

/// Hosts, tags, regions, events and the dashboard through the Admin service of a real node.
@Suite("Admin: fleet", .stopsChildProcesses)
struct AdminFleetTests {
    @Test("Hosts are listed with filters and tags; one host by AgentSN; unknown is not found")
    func hosts() async throws {
        let directory = try makeTemporaryDirectory("admin-hosts")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        _ = try TestAgent.start(in: directory, name: "web", connectingTo: node, arguments: ["--tag", "svc=ecs"], agentSN: "web-1")
        _ = try TestAgent.start(in: directory, name: "db", connectingTo: node, arguments: ["--tag", "svc=rds"], agentSN: "db-1")
        try await node.waitForAgent("web-1")
        try await node.waitForAgent("db-1")

        let all = try await node.admin { try await $0.listHosts(Aspire_V1_ListHostsRequest()) }
        #expect(all.count == 2 && all.limit == 50)
        var byTag = Aspire_V1_ListHostsRequest()
        byTag.tags = ["svc": "ecs"]
        let ecs = try await node.admin { try await $0.listHosts(byTag) }
        #expect(ecs.hosts.map(\.agentSn) == ["web-1"])
        #expect(ecs.hosts.first?.tags.map(\.name) == ["svc"])
        #expect(ecs.hosts.first?.status == "online")
        var bad = Aspire_V1_ListHostsRequest()
        bad.status = "sleeping"
        let error = await #expect(throws: RPCError.self) { try await node.admin { try await $0.listHosts(bad) } }
        #expect(error?.code == .invalidArgument)

        var get = Aspire_V1_GetHostRequest()
        get.agentSn = "db-1"
        let host = try await node.admin { try await $0.getHost(get) }
        #expect(host.agentSn == "db-1" && host.curvers == AspireVersion.current && host.ipaddr == "127.0.0.1")
        get.agentSn = "nobody"
        let missing = await #expect(throws: RPCError.self) { try await node.admin { try await $0.getHost(get) } }
        #expect(missing?.code == .notFound)
    }

    @Test("Tags and regions: create, list with host counts, bind, unbind, delete")
    func tagsAndRegions() async throws {
        let directory = try makeTemporaryDirectory("admin-tags")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        _ = try TestAgent.start(in: directory, connectingTo: node, agentSN: "tagged-1")
        try await node.waitForAgent("tagged-1")

        var create = Aspire_V1_CreateTagRequest()
        create.name = "env"
        create.value = "prod"
        let tag = try await node.admin { try await $0.createTag(create) }
        let duplicate = await #expect(throws: RPCError.self) { try await node.admin { try await $0.createTag(create) } }
        #expect(duplicate?.code == .failedPrecondition)
        #expect(duplicate.map { ErrorCode(rpcError: $0) } == .conflict)

        var bind = Aspire_V1_BindTagRequest()
        bind.name = "env"
        bind.value = "prod"
        bind.agentSns = ["tagged-1"]
        #expect(try await node.admin { try await $0.bindTag(bind) }.changed == 1)
        let listed = try await node.admin { try await $0.listTags(Aspire_V1_ListTagsRequest()) }
        #expect(listed.tags.first { $0.name == "env" }?.hosts == 1)
        bind.unbind = true
        #expect(try await node.admin { try await $0.bindTag(bind) }.changed == 1)
        #expect(try await node.admin { try await $0.bindTag(bind) }.changed == 0)
        bind.unbind = false
        bind.agentSns = ["ghost"]
        let ghost = await #expect(throws: RPCError.self) { try await node.admin { try await $0.bindTag(bind) } }
        #expect(ghost?.code == .notFound)

        var delete = Aspire_V1_DeleteTagRequest()
        delete.id = tag.id
        _ = try await node.admin { try await $0.deleteTag(delete) }
        let gone = await #expect(throws: RPCError.self) { try await node.admin { try await $0.deleteTag(delete) } }
        #expect(gone?.code == .notFound)

        var region = Aspire_V1_CreateRegionRequest()
        region.name = "east"
        _ = try await node.admin { try await $0.createRegion(region) }
        let regions = try await node.admin { try await $0.listRegions(Aspire_V1_ListRegionsRequest()) }
        #expect(regions.regions.map(\.name) == ["global", "east"])
    }

    @Test("Status reports and events from the stream reach the store, the host view and the dashboard (in-process node)")
    func statusAndEvents() async throws {
        try await withLocalNode { node in
            try await ScriptedAgent.connect("reporter-1", to: node) { agent in
                var status = Aspire_V1_StatusReport()
                status.step = 120
                status.agents = [
                    { var a = Aspire_V1_SubAgentStatus(); a.name = "MonitorAgent"; a.version = "0.1.2-1"; a.status = "running"; a.pid = 42; return a }(),
                    { var a = Aspire_V1_SubAgentStatus(); a.name = "BasicAgent"; a.version = "0.1.1-1"; a.status = "fatal"; a.restarts = 4; return a }(),
                ]
                agent.send(.status(status))
                var event = Aspire_V1_Event()
                event.localID = 1
                event.occurredUnixMs = 1_700_000_000_000
                event.category = "subagent"
                event.message = "BasicAgent is fatal"
                agent.send(.event(event))
                agent.send(.event(event))
                // The node handles a stream's messages in order: once this report is in, so is all before it.
                status.step = 121
                agent.send(.status(status))
                var get = Aspire_V1_GetHostRequest()
                get.agentSn = "reporter-1"
                try await eventually("the last report to be stored") { try await node.admin { try await $0.getHost(get) }.step == 121 }
                let host = try await node.admin { try await $0.getHost(get) }
                #expect(host.lastSeenUnixMs > 0)
                let dashboard = try await node.admin { try await $0.dashboard(Aspire_V1_DashboardRequest()) }
                #expect(dashboard.hostsTotal == 1)
                #expect(dashboard.deployments.map { "\($0.name) \($0.version) \($0.hosts)/\($0.running)" }
                    == ["BasicAgent 0.1.1-1 1/0", "MonitorAgent 0.1.2-1 1/1"])
                var events = Aspire_V1_ListEventsRequest()
                events.agentSn = "reporter-1"
                let listed = try await node.admin { try await $0.listEvents(events) }
                // The agent's own events, and the server's (it saw the host connect).
                let fromAgent = listed.events.filter { $0.category != "host" }
                #expect(fromAgent.count == 1, "the same event twice is stored once")
                #expect(fromAgent.first?.message == "BasicAgent is fatal")
                #expect(listed.events.contains { $0.category == "host" && $0.message.hasPrefix("connected to node") })
            }
        }
    }
}
