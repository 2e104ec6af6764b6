import Fleet
import Foundation
import RPC
import SwiftProtobuf
import Testing
import TestSupport

/// aspirectl against a real node and a real agent, for what REST offers besides commands and
/// deployments: sub-agent lifecycle, agent config, tags, regions, events, the dashboard.
@Suite("End to end: aspirectl", .stopsChildProcesses)
struct CtlEndToEndTests {
    @Test("subagent stop/start/restart/uninstall, config, tags, regions, events and dashboard, each through aspirectl and seen in the store")
    func catalog() async throws {
        let directory = try makeTemporaryDirectory("ctl-e2e")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        var fleet = DeploymentEndToEndTests.Fleet(directory: directory, node: node)
        defer { fleet.stopAll() }
        let agent = try fleet.start("ctl0")
        try await node.waitForAgent(agent)
        let sn = agent.agentSN
        let rest = try RESTClient(node)
        try await DeploymentEndToEndTests.upload(rest, in: directory, version: "1.0")

        let deployed = try await fleet.aspirectl(["deploy", "MiniAgent", "1.0", "--agent", sn])
        #expect(deployed.contains("installed MiniAgent 1.0: running"), "\(deployed)")
        let stopped = try await fleet.aspirectl(["subagent", "stop", "MiniAgent", "--agent", sn])
        #expect(stopped.contains("stopped MiniAgent 1.0"), "\(stopped)")
        #expect(try await DeploymentEndToEndTests.running(rest, sn) == "1.0 stoped")
        let started = try await fleet.aspirectl(["subagent", "start", "MiniAgent", "--agent", sn])
        #expect(started.contains("started MiniAgent 1.0"), "\(started)")
        let restarted = try await fleet.aspirectl(["subagent", "restart", "MiniAgent", "--agent", sn])
        #expect(restarted.contains("restarted MiniAgent 1.0"), "\(restarted)")
        let removed = try await fleet.aspirectl(["subagent", "uninstall", "MiniAgent", "--agent", sn])
        #expect(removed.contains("uninstalled MiniAgent 1.0"), "\(removed)")
        try await eventually(timeout: .seconds(20), "MiniAgent gone from the host view") { try await DeploymentEndToEndTests.running(rest, sn) == "" }
        let missing = try await fleet.aspirectl(["subagent", "stop", "Nothing", "--agent", sn], expecting: 2)
        #expect(missing.contains("Nothing is not installed on this host"), "\(missing)")

        let configured = try await fleet.aspirectl(["config", "--agent", sn, "--step", "300", "--set-tag", "rack=r12"])
        #expect(configured.contains("1 succeeded"), "\(configured)")
        try await eventually(timeout: .seconds(20), "the agent's new tag bound to its host") {
            try await node.admin { try await $0.getHost(.with { $0.agentSn = sn }) }.tags.contains { $0.name == "rack" && $0.value == "r12" }
        }

        _ = try await fleet.aspirectl(["tags", "create", "svc=db"])
        let bound = try await fleet.aspirectl(["tags", "bind", "svc=db", sn])
        #expect(bound.contains("bound svc=db to 1 of 1 hosts"), "\(bound)")
        let tags = try await fleet.aspirectl(["tags"])
        #expect(tags.contains("svc=db") && tags.contains("rack=r12"), "\(tags)")
        _ = try await fleet.aspirectl(["tags", "unbind", "svc=db", sn])
        _ = try await fleet.aspirectl(["tags", "delete", "svc=db"])
        #expect(try await !fleet.aspirectl(["tags", "list"]).contains("svc=db"))

        let region = try await fleet.aspirectl(["regions", "create", "shanghai"])
        #expect(region.contains("region shanghai (id"), "\(region)")
        _ = try await fleet.aspirectl(["hosts", "set-region", sn, "--region", "shanghai"])
        #expect(try await fleet.aspirectl(["regions"]).contains("shanghai"))
        #expect(try await node.admin { try await $0.getHost(.with { $0.agentSn = sn }) }.region > 0)

        let events = try await fleet.aspirectl(["events", "--agent", sn])
        #expect(events.contains("connected to node") && events.contains("subagent"), "\(events)")
        let dashboard = try await fleet.aspirectl(["dashboard"])
        #expect(dashboard.contains("hosts: 1 (1 online, 0 offline)") && dashboard.contains("node"), "\(dashboard)")
        let json = try await fleet.aspirectl(["dashboard", "-o", "json"])
        #expect(json.contains("\"hostsOnline\": 1") || json.contains("\"hostsOnline\":1"), "\(json)")
    }
}
