import Fleet
import Foundation
import RPC
import SwiftProtobuf
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Declared deployments on a real node with real boot agents: convergence and health-gated
/// rollouts, driven with aspirectl and read back through REST.
@Suite("End to end: deployments", .stopsChildProcesses)
struct DeploymentEndToEndTests {
    /// A fleet of real agents of one node, each with its own sub-agent root and cgroup parent.
    struct Fleet {
        let directory: String
        let node: TestNode
        let suffix = UUID().uuidString.prefix(8).lowercased()
        var agents: [String: TestAgent] = [:]

        func parent(_ name: String) -> String { "aspire-dep-\(self.suffix)-\(name)" }

        func sn(_ name: String) -> String { "dep-\(name)-\(self.suffix)" }

        /// Starts (or starts again, keeping its data) the agent called `name`.
        mutating func start(_ name: String, tags: [String: String] = [:], extra: [String] = []) throws -> TestAgent {
            let agent = try TestAgent.start(
                in: self.directory, name: name, connectingTo: self.node,
                arguments: [
                    "--agents-root", "\(self.directory)/\(name).agents", "--cgroup-parent", self.parent(name), "--check-interval", "1",
                    "--restart-holdoff", "0", "--health-window", "1",
                ] + tags.flatMap { ["--tag", "\($0.key)=\($0.value)"] } + extra,
                agentSN: self.sn(name)
            )
            self.agents[name] = agent
            return agent
        }

        /// Kills the agents first (so none restarts a sub-agent meanwhile), then what they ran.
        func stopAll() {
            for agent in self.agents.values { agent.process.signal(SIGKILL) }
            SubAgentEndToEndTests.cleanUp(cgroupParents: self.agents.keys.map(self.parent))
        }

        /// Runs aspirectl against the node; its output.
        func aspirectl(_ arguments: [String], expecting status: Int32 = 0) async throws -> String {
            let name = "ctl-\(UUID().uuidString.prefix(6))"
            let process = try TestProcess.start(
                "aspirectl", arguments, log: "\(self.directory)/\(name).out",
                environment: ["ASPIRE_SERVER": self.node.address.description, "ASPIRE_SERVER_DATA": self.node.dataDirectory]
            )
            let exit = ChildProcess.exitCode(try await process.wait(timeout: .seconds(30)))
            #expect(exit == status, "aspirectl \(arguments.joined(separator: " ")): \(process.log)")
            return process.log
        }
    }

    /// Uploads MiniAgent `version` (whose agent.sh runs `program`) to the node's store.
    static func upload(_ rest: RESTClient, in directory: String, version: String, program: String = "exec sleep 100000") async throws {
        let bytes = try await SubAgentEndToEndTests.tarball(in: directory, version: version, program: program)
        _ = try await rest.ok(
            "POST", "/api/v1/server/package/raw?name=MiniAgent&version=\(version)&os=linux&arch=x86_64&file=MiniAgent-\(version).tar.gz",
            body: bytes, contentType: "application/octet-stream"
        )
    }

    /// The deployment's status as REST answers it.
    static func status(_ rest: RESTClient) async throws -> [String: Any] {
        try await rest.ok("GET", "/api/v1/server/deployment?name=MiniAgent")
    }

    /// `version state` → hosts, from a status.
    static func counts(_ status: [String: Any]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for entry in status["counts"] as? [[String: Any]] ?? [] {
            counts["\(entry["version"] ?? "") \(entry["state"] ?? "")"] = entry["hosts"] as? Int
        }
        return counts
    }

    /// The version and status of MiniAgent on a host as its reports say ("" when it has none).
    static func running(_ rest: RESTClient, _ sn: String) async throws -> String {
        guard let agent = try await SubAgentEndToEndTests.subAgent(rest, sn, "MiniAgent") else { return "" }
        return "\(agent["version"] ?? "") \(agent["status"] ?? "")"
    }

    static func bind(_ node: TestNode, _ sns: [String], unbind: Bool = false) async throws {
        var request = Aspire_V1_BindTagRequest()
        request.name = "svc"
        request.value = "web"
        request.agentSns = sns
        request.unbind = unbind
        _ = try await node.admin { try await $0.bindTag(request) }
    }

    @Test(
        "A deployment for svc=web: five agents converge; a sixth started later with the tag converges with no command; an untagged one removes it; one offline during an upgrade converges when it returns; a node restarted mid-rollout goes on where it was"
    )
    func converge() async throws {
        let directory = try makeTemporaryDirectory("deployments-e2e")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        var fleet = Fleet(directory: directory, node: node)
        defer { fleet.stopAll() }
        let rest = try RESTClient(node)
        for version in ["1.0", "2.0", "3.0"] { try await Self.upload(rest, in: directory, version: version) }

        let names = (0 ..< 5).map { "web\($0)" }
        for name in names { try await node.waitForAgent(try fleet.start(name)) }
        // Tagged by an operator: an agent's own --tag comes back with each of its reports.
        try await Self.bind(node, names.map(fleet.sn))

        let applied = try await fleet.aspirectl(["deployment", "apply", "MiniAgent", "1.0", "--tag", "svc=web", "--health", "1"])
        #expect(applied.contains("deployment MiniAgent 1.0, revision 1, done"), "\(applied)")
        try await eventually(timeout: .seconds(60), "five hosts running MiniAgent 1.0, healthy") {
            for name in names where try await Self.running(rest, fleet.sn(name)) != "1.0 running" { return false }
            return Self.counts(try await Self.status(rest)) == ["1.0 healthy": 5]
        }

        // A host that appears with the tag converges on its own: no task is made for it.
        try await node.waitForAgent(try fleet.start("web5", tags: ["svc": "web"]))
        try await eventually(timeout: .seconds(60), "the sixth host running MiniAgent 1.0") {
            try await Self.running(rest, fleet.sn("web5")) == "1.0 running"
        }
        let tasks = try await rest.ok("GET", "/api/v1/server/task")
        #expect((tasks["tasks"] as? [Any])?.isEmpty == true, "deployments converge without tasks: \(tasks)")

        // Untagged: the sub-agent goes, its files too.
        try await Self.bind(node, [fleet.sn("web0")], unbind: true)
        try await eventually(timeout: .seconds(60), "web0 to remove MiniAgent") {
            try await Self.running(rest, fleet.sn("web0")) == "" && !FileManager.default.fileExists(atPath: "\(directory)/web0.agents/MiniAgent")
        }
        #expect(try await Self.status(rest)["matching"] as? Int == 5)

        // web1 is offline while 2.0 rolls out; it converges when it comes back.
        await fleet.agents["web1"]?.process.stop()
        try await eventually(timeout: .seconds(30), "web1 offline") { try await !node.connectedAgents().contains { $0.agentSn == fleet.sn("web1") } }
        let upgraded = try await fleet.aspirectl(["deployment", "apply", "MiniAgent", "2.0", "--tag", "svc=web", "--health", "1", "--batch", "100%"])
        #expect(upgraded.contains("revision 2, rolling: rolling out from 1.0"), "\(upgraded)")
        try await eventually(timeout: .seconds(90), "the rollout done on the online hosts") {
            let status = try await Self.status(rest)
            return (status["deployment"] as? [String: Any])?["state"] as? String == "done"
        }
        for name in ["web2", "web3", "web4", "web5"] {
            #expect(try await Self.running(rest, fleet.sn(name)) == "2.0 running", "\(name)")
        }
        #expect(try await Self.running(rest, fleet.sn("web1")) == "1.0 running", "offline: as it last reported")
        try await node.waitForAgent(try fleet.start("web1"))
        try await eventually(timeout: .seconds(60), "web1 running 2.0 after it came back") {
            try await Self.running(rest, fleet.sn("web1")) == "2.0 running"
        }
        try await eventually(timeout: .seconds(30), "every host healthy on 2.0") {
            Self.counts(try await Self.status(rest)) == ["2.0 healthy": 5]
        }
        let shown = try await fleet.aspirectl(["deployment", "status", "MiniAgent"])
        #expect(shown.contains("deployment MiniAgent: 2.0, revision 2, done") && shown.contains("stable: 1.0") && shown.contains("healthy"), "\(shown)")

        // The server's own events tell the story.
        let events = try #require(try await rest.ok("GET", "/api/v1/server/events?limit=1000")["events"] as? [[String: Any]])
        func said(_ category: String, _ text: String, host: String = "") -> Bool {
            events.contains { ($0["category"] as? String) == category && ($0["message"] as? String ?? "").contains(text) && (host.isEmpty || $0["agentsn"] as? String == host) }
        }
        #expect(said("deployment", "MiniAgent 1.0 declared by admin (revision 1, done)"))
        #expect(said("deployment", "MiniAgent 2.0: wave 0 (canary) moves 1 of"))
        #expect(said("deployment", "MiniAgent 2.0: rollout done"))
        #expect(said("host", "offline: its stream ended", host: fleet.sn("web1")))
        #expect(said("host", "connected to node node", host: fleet.sn("web5")))
        let listed = try await fleet.aspirectl(["deployment", "list"])
        #expect(listed.contains("MiniAgent") && listed.contains("svc=web"), "\(listed)")

        // A rollout's state is the store's: a node restarted in the middle goes on where it was.
        _ = try await fleet.aspirectl(["deployment", "apply", "MiniAgent", "3.0", "--tag", "svc=web", "--health", "600", "--batch", "100%"])
        var canary = ""
        try await eventually(timeout: .seconds(60), "the canary on 3.0") {
            let status = try await Self.status(rest)
            canary = (status["hosts"] as? [[String: Any]] ?? []).first { $0["moved"] as? Bool == true }?["agentsn"] as? String ?? ""
            return !canary.isEmpty && Self.counts(status)["3.0 starting"] == 1
        }
        await node.process.stop()
        let restarted = try await TestNode.start(in: directory, host: node.address.host, port: node.address.port)
        let again = try RESTClient(restarted)
        let resumed = try await Self.status(again)
        let deployment = try #require(resumed["deployment"] as? [String: Any])
        #expect(deployment["state"] as? String == "rolling" && deployment["wave"] as? Int == 0 && deployment["revision"] as? Int == 3)
        #expect((resumed["hosts"] as? [[String: Any]] ?? []).filter { $0["moved"] as? Bool == true }.map { $0["agentsn"] as? String } == [canary])
        for name in ["web1", "web2", "web3", "web4", "web5"] { try await restarted.waitForAgent(try #require(fleet.agents[name])) }
        let back = try await fleet.aspirectl(["deployment", "rollback", "MiniAgent"])
        #expect(back.contains("rolled_back"), "\(back)")
        try await eventually(timeout: .seconds(60), "every host on 2.0 again") {
            let counts = Self.counts(try await Self.status(again))
            for name in ["web1", "web2", "web3", "web4", "web5"] where try await Self.running(again, fleet.sn(name)) != "2.0 running" { return false }
            // Inside the 600 s health window they count as starting; none pending, none failed.
            return counts.values.reduce(0, +) == 5 && counts.keys.allSatisfy { $0 == "2.0 healthy" || $0 == "2.0 starting" }
        }
    }

    @Test(
        "A rollout to a version that dies at start halts after the canary, rolls the canary back, leaves the other 19 hosts untouched, and says why",
        .timeLimit(.minutes(5))
    )
    func haltAndRollBack() async throws {
        let directory = try makeTemporaryDirectory("deployments-halt")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        var fleet = Fleet(directory: directory, node: node)
        defer { fleet.stopAll() }
        let rest = try RESTClient(node)
        try await Self.upload(rest, in: directory, version: "1.0")
        try await Self.upload(rest, in: directory, version: "2.0", program: "echo 'cannot open config' >&2; exit 1")

        let names = (0 ..< 20).map { "api\($0)" }
        for name in names { _ = try fleet.start(name, tags: ["svc": "api"]) }
        for name in names { try await node.waitForAgent(try #require(fleet.agents[name])) }
        _ = try await fleet.aspirectl(["deployment", "apply", "MiniAgent", "1.0", "--tag", "svc=api", "--health", "1"])
        try await eventually(timeout: .seconds(120), "20 hosts healthy on 1.0") {
            Self.counts(try await Self.status(rest)) == ["1.0 healthy": 20]
        }
        var pids: [String: Int] = [:]
        for name in names {
            pids[name] = try await SubAgentEndToEndTests.subAgent(rest, fleet.sn(name), "MiniAgent")?["pid"] as? Int
        }

        _ = try await fleet.aspirectl([
            "deployment", "apply", "MiniAgent", "2.0", "--tag", "svc=api", "--health", "2", "--canary", "1", "--batch", "50%",
        ])
        var deployment: [String: Any] = [:]
        try await eventually(timeout: .seconds(90), "the rollout to stop") {
            deployment = try await Self.status(rest)["deployment"] as? [String: Any] ?? [:]
            return deployment["state"] as? String == "rolled_back"
        }
        let reason = deployment["reason"] as? String ?? ""
        #expect(reason.contains("wave 0: 1 of 1 moved hosts failed") && reason.contains("upgrade of MiniAgent") && reason.contains("rolled back to 1.0"), "\(reason)")
        #expect(deployment["wave"] as? Int == 0, "no wave after the canary")

        try await eventually(timeout: .seconds(60), "every host back on 1.0, healthy") {
            Self.counts(try await Self.status(rest)) == ["1.0 healthy": 20]
        }
        var untouched = 0
        for name in names {
            #expect(try await Self.running(rest, fleet.sn(name)) == "1.0 running", "\(name)")
            if try await SubAgentEndToEndTests.subAgent(rest, fleet.sn(name), "MiniAgent")?["pid"] as? Int == pids[name] { untouched += 1 }
        }
        #expect(untouched == 19, "only the canary's MiniAgent was restarted")
        let shown = try await fleet.aspirectl(["deployment", "status", "MiniAgent"])
        #expect(shown.contains("rolled_back") && shown.contains("reason: wave 0"), "\(shown)")
        let again = try await fleet.aspirectl(["deployment", "resume", "MiniAgent"], expecting: 1)
        #expect(again.contains("rolled_back: it cannot resume"), "\(again)")
    }

    /// A "binary" of BootAgent `version`: this build's boot, reporting that version (or, broken,
    /// one that answers --version and exits at once otherwise).
    static func bootPackage(version: String, broken: Bool = false) -> Data {
        let real = "\(TestProcess.binDirectory)/boot"
        let script = broken
            ? "#!/bin/sh\ncase \"$1\" in --version) echo \(version); exit 0 ;; esac\necho 'broken build' >&2\nexit 1\n"
            : "#!/bin/sh\nexec \(real) --report-version \(version) \"$@\"\n"
        return Data(script.utf8)
    }

    @Test(
        "BootAgent upgrades itself from a store package, keeping its process, AgentSN and certificate; a broken new binary is rolled back by its watchdog",
        .timeLimit(.minutes(5))
    )
    func selfUpgrade() async throws {
        let directory = try makeTemporaryDirectory("deployments-boot")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        var fleet = Fleet(directory: directory, node: node)
        let names = ["boot0", "boot1"]
        func pid(_ name: String) -> Int32? {
            (try? String(contentsOfFile: "\(directory)/\(name).pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        defer {
            // The agents the watchdog started again are not this test's children.
            for name in names { if let pid = pid(name) { kill(pid, SIGTERM) } }
            fleet.stopAll()
        }
        let rest = try RESTClient(node)
        for (version, broken) in [("2.0", false), ("3.0", true)] {
            _ = try await rest.ok(
                "POST", "/api/v1/server/package/raw?name=BootAgent&version=\(version)&os=linux&arch=x86_64&file=boot-\(version)",
                body: Self.bootPackage(version: version, broken: broken), contentType: "application/octet-stream"
            )
        }
        for name in names {
            try await node.waitForAgent(
                try fleet.start(name, tags: ["svc": "boot"], extra: ["-P", "\(directory)/\(name).pid", "--upgrade-window", "120"])
            )
        }
        func host(_ name: String) async throws -> Aspire_V1_Host {
            try await node.admin { try await $0.getHost(.with { $0.agentSn = fleet.sn(name) }) }
        }
        let before = try await host("boot0")
        let pids = names.map(pid)
        #expect(before.curvers == AspireVersion.current && pids.allSatisfy { $0 != nil })

        _ = try await fleet.aspirectl(["deployment", "apply", "BootAgent", "2.0", "--tag", "svc=boot", "--health", "2"])
        // Generous waits (and upgrade window): alone this takes seconds, beside the whole suite on two cores it took
        // up to a minute, and once more than 90 s.
        try await eventually(timeout: .seconds(180), "both agents on 2.0, healthy") {
            for name in names where try await host(name).curvers != "2.0" { return false }
            return Self.counts(try await rest.ok("GET", "/api/v1/server/deployment?name=BootAgent")) == ["2.0 healthy": 2]
        }
        let after = try await host("boot0")
        #expect(after.prevers == AspireVersion.current && after.agentSn == before.agentSn)
        #expect(after.certificateNotAfter == before.certificateNotAfter, "the same certificate: no new enrollment")
        #expect(names.map(pid) == pids, "the same processes, by exec")
        for (index, name) in names.enumerated() {
            #expect(SubAgentEndToEndTests.isAlive(Int(pids[index]!)), "\(name)")
            let result = try await node.run("echo after-upgrade", on: fleet.sn(name))
            #expect(String(decoding: result.data, as: UTF8.self) == "after-upgrade\n")
        }
        #expect(try await host("boot1").agents.contains { $0.name == "BootAgent" && $0.version == "2.0" && $0.previousVersion == AspireVersion.current })

        // 3.0 exits at once: its watchdog brings 2.0 back, the rollout halts after the canary.
        _ = try await fleet.aspirectl(["deployment", "apply", "BootAgent", "3.0", "--tag", "svc=boot", "--health", "2", "--batch", "100%"])
        var deployment: [String: Any] = [:]
        try await eventually(timeout: .seconds(180), "the rollout to BootAgent 3.0 to be rolled back") {
            deployment = try await rest.ok("GET", "/api/v1/server/deployment?name=BootAgent")["deployment"] as? [String: Any] ?? [:]
            return deployment["state"] as? String == "rolled_back"
        }
        let reason = deployment["reason"] as? String ?? ""
        #expect(reason.contains("3.0 exited before it reconnected; 2.0 runs again"), "\(reason)")
        try await eventually(timeout: .seconds(120), "both agents on 2.0 again, healthy") {
            for name in names where try await host(name).curvers != "2.0" { return false }
            return Self.counts(try await rest.ok("GET", "/api/v1/server/deployment?name=BootAgent")) == ["2.0 healthy": 2]
        }
        let restored = names.filter { pid($0) != pids[names.firstIndex(of: $0)!] }
        #expect(restored.count == 1, "only the canary tried 3.0: \(restored)")
        for name in names {
            let result = try await node.run("echo still-here", on: fleet.sn(name))
            #expect(String(decoding: result.data, as: UTF8.self) == "still-here\n", "\(name)")
        }
    }
}
