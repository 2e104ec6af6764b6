import Crypto
import Fleet
import Foundation
import RPC
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Sub-agents deployed through a real node's REST gateway to real boot agents.
@Suite("End to end: sub-agents", .stopsChildProcesses)
struct SubAgentEndToEndTests {
    static let control = """
        #!/bin/sh
        cd "$(dirname "$0")"
        case "$1" in
        start) nohup ./agent.sh >> agent.out 2>&1 & echo $! > agent.pid; echo started ;;
        stop) [ -f agent.pid ] && kill "$(cat agent.pid)" 2>/dev/null; rm -f agent.pid; echo stoped ;;
        status) if [ -f agent.pid ] && kill -0 "$(cat agent.pid)" 2>/dev/null; then echo started; else echo stoped; fi ;;
        esac
        """

    /// A MiniAgent tarball built with tar, as bytes; its agent.sh runs `program` (by default it
    /// sleeps, a sub-agent that keeps running).
    static func tarball(in directory: String, version: String, program: String = "exec sleep 100000") async throws -> Data {
        let tree = "\(directory)/src-\(version)"
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        try Self.control.write(toFile: "\(tree)/control", atomically: true, encoding: .utf8)
        try "#!/bin/sh\n\(program)\n".write(toFile: "\(tree)/agent.sh", atomically: true, encoding: .utf8)
        chmod("\(tree)/control", 0o755)
        chmod("\(tree)/agent.sh", 0o755)
        let archive = "\(directory)/MiniAgent-\(version).tar.gz"
        let (status, output) = try await ChildProcess.run("tar", ["-czf", archive, "-C", tree, "control", "agent.sh"])
        guard status == 0 else { throw HarnessError("tar: \(output)") }
        return try Data(contentsOf: URL(fileURLWithPath: archive))
    }

    /// Kills every process left in the agents' cgroups (or, without cgroups, nothing is left
    /// to find but by name) and removes the groups.
    static func cleanUp(cgroupParents: [String]) {
        for parent in cgroupParents {
            for hierarchy in ["memory", "cpu", "pids"] {
                let base = "/sys/fs/cgroup/\(hierarchy)/\(parent)"
                for group in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] {
                    let path = "\(base)/\(group)"
                    guard FileManager.default.fileExists(atPath: "\(path)/cgroup.procs") else { continue }
                    for _ in 0 ..< 100 {
                        let pids = ((try? String(contentsOfFile: "\(path)/cgroup.procs", encoding: .utf8)) ?? "").split(separator: "\n").compactMap { pid_t($0) }
                        for pid in pids { kill(pid, SIGKILL) }
                        if rmdir(path) == 0 { break }
                        usleep(20_000)
                    }
                }
                rmdir(base)
            }
            // The agents' command groups (a sibling of the sub-agents' parent).
            for hierarchy in ["", "/unified", "/freezer"] {
                let base = "/sys/fs/cgroup\(hierarchy)/\(parent).commands"
                for group in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where !group.hasPrefix("cgroup.") {
                    rmdir("\(base)/\(group)")
                }
                rmdir(base)
            }
        }
    }

    /// Running, not a zombie (one whose parent is gone may wait a while to be reaped).
    static func isAlive(_ pid: Int) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].drop { $0 == " " }.first
        return state != "Z" && state != "X"
    }

    /// The sub-agent as the REST host view shows it.
    static func subAgent(_ rest: RESTClient, _ sn: String, _ name: String) async throws -> [String: Any]? {
        let host = try await rest.ok("GET", "/api/v1/server/agent?agentsn=\(sn)")
        let agents = (host["host"] as? [String: Any])?["agents"] as? [[String: Any]] ?? []
        return agents.first { $0["name"] as? String == name }
    }

    @Test("deploy through REST to two real agents; the host view shows them running; a SIGKILLed agent's sub-agent runs on and is adopted")
    func deployThroughREST() async throws {
        let directory = try makeTemporaryDirectory("subagents-e2e")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let parents = (0 ..< 2).map { "aspire-e2e-\(suffix)-\($0)" }
        defer { Self.cleanUp(cgroupParents: parents) }
        func agentArguments(_ index: Int) -> [String] {
            [
                "--agents-root", "\(directory)/agents\(index)", "--cgroup-parent", parents[index],
                "--check-interval", "1", "--restart-holdoff", "0", "--health-window", "1",
            ]
        }
        var agents = try (0 ..< 2).map { index in
            try TestAgent.start(in: directory, name: "agent\(index)", connectingTo: node, arguments: agentArguments(index), agentSN: "sub-\(index)-\(suffix)")
        }
        defer { for agent in agents { Task { await agent.process.stop() } } }
        for agent in agents { try await node.waitForAgent(agent) }

        let rest = try RESTClient(node)
        let bytes = try await Self.tarball(in: directory, version: "1.0")
        _ = try await rest.ok(
            "POST", "/api/v1/server/package/raw?name=MiniAgent&version=1.0&os=linux&arch=x86_64&file=MiniAgent-1.0.tar.gz",
            body: bytes, contentType: "application/octet-stream"
        )
        // The seed's task body without url or checksum: the store's package is meant.
        let created = try await rest.ok(
            "POST", "/api/v1/server/task",
            json: [
                "command": "install", "agents": agents.map(\.agentSN),
                "parameters": ["name": "MiniAgent", "version": "1.0", "envs": ["GREETING": "hi"], "limits": ["memory": "64M"]],
            ]
        )
        let taskID = try #require(created["id"] as? Int)
        let detail = try await node.waitForTask(Int64(taskID), timeout: .seconds(60))
        for subtask in detail.subtasks {
            #expect(subtask.status == "succeeded", "\(subtask.agentSn): \(subtask.result.message)")
            #expect(subtask.result.message.contains("installed MiniAgent 1.0: running"), "\(subtask.result.message)")
        }
        let body = try #require(try await rest.ok("GET", "/api/v1/server/task?id=\(taskID)")["task"] as? [String: Any])
        #expect(String(describing: body).contains("aspire://package/linux/x86_64/MiniAgent-1.0.tar.gz"), "the task keeps the url it sent: \(body)")

        // The host view shows both running, from the reports the agents sent on the change.
        var pid = 0
        try await eventually(timeout: .seconds(20), "sub-agents in the host view") {
            for agent in agents {
                guard let shown = try await Self.subAgent(rest, agent.agentSN, "MiniAgent"), shown["status"] as? String == "running",
                    shown["version"] as? String == "1.0", (shown["pid"] as? Int ?? 0) > 0
                else { return false }
            }
            pid = try await Self.subAgent(rest, agents[0].agentSN, "MiniAgent")?["pid"] as? Int ?? 0
            return true
        }
        let dashboard = try await rest.ok("GET", "/api/v1/server/dashboard")
        let deployments = try #require(dashboard["deployments"] as? [[String: Any]])
        #expect(deployments.contains { $0["name"] as? String == "MiniAgent" && $0["hosts"] as? Int == 2 && $0["running"] as? Int == 2 })

        // SIGKILL the first agent (its whole process group): the sub-agent, in its own session
        // and cgroup, runs on; the agent started again adopts it.
        await agents[0].process.kill()
        #expect(Self.isAlive(pid), "the sub-agent outlives its agent")
        agents[0] = try TestAgent.start(in: directory, name: "agent0", connectingTo: node, arguments: agentArguments(0), agentSN: agents[0].agentSN)
        try await node.waitForAgent(agents[0].agentSN)
        let restarted = agents[0].process
        try await eventually(timeout: .seconds(20), "the restarted agent to adopt the sub-agent\n\(restarted.log)") {
            restarted.log.contains("adopted a running sub-agent")
        }
        #expect(restarted.log.contains("subagent.pid=\(pid)"), "\(restarted.log)")
        // Checks that follow keep the same process: no restart, no second instance.
        let checks = restarted.log.components(separatedBy: "sub-agents checked").count
        try await eventually(timeout: .seconds(20), "two more checks of the adopted sub-agent") {
            restarted.log.components(separatedBy: "sub-agents checked").count >= checks + 2
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/agent0/subagents/MiniAgent.json"))
        let record = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(record["pid"] as? Int == pid, "\(record)")
        #expect(record["restarts"] as? Int == 0, "\(record)")
        #expect((record["phase"] as? [String: Any])?["running"] != nil, "\(record)")

        // The gateway serves the store over HTTP to the enrollment token or the admin token; an
        // upgrade that names the store's package (no url) reaches both agents over their own
        // connections (they send their token to no plain-HTTP URL).
        let newer = try await Self.tarball(in: directory, version: "1.1")
        let uploaded = try await rest.ok(
            "POST", "/api/v1/server/package/raw?name=MiniAgent&version=1.1&os=linux&arch=x86_64&file=MiniAgent-1.1.tar.gz",
            body: newer, contentType: "application/octet-stream"
        )
        let sha256 = try #require((uploaded["package"] as? [String: Any])?["sha256"] as? String)
        #expect(sha256 == SHA256.hash(data: newer).map { String(format: "%02x", $0) }.joined(), "the store hashed the bytes it got")
        let route = "/api/v1/server/package/download?os=linux&arch=x86_64&file=MiniAgent-1.1.tar.gz"
        let fetched = try await rest.call("GET", route)
        #expect(fetched.status == 200 && fetched.data == newer, "the admin token downloads the file: \(fetched.status)")
        let enrolled = try await RESTClient(base: rest.base, token: try node.enrollToken).call("GET", route)
        #expect(enrolled.status == 200 && enrolled.data == newer, "the enrollment token downloads the file: \(enrolled.status)")
        try await RESTClient(base: rest.base, token: nil).fails("GET", route, http: 401, code: .unauthenticated)
        try await RESTClient(base: rest.base, token: "wrong").fails("GET", route, http: 401, code: .unauthenticated)
        try await rest.fails("GET", "/api/v1/server/package/download?os=linux&arch=x86_64&file=Nothing.tar.gz", http: 404, code: .notFound)
        try await rest.fails("GET", "/api/v1/server/package/download?os=linux&arch=x86_64&file=..", http: 400, code: .badRequest)
        let upgrade = try await rest.ok(
            "POST", "/api/v1/server/task",
            json: [
                "command": "upgrade", "agents": agents.map(\.agentSN),
                "parameters": [
                    "name": "MiniAgent", "version": "1.1",
                    "user": "nobody", "limits": ["memory": "64M", "pids": "32"],
                ],
            ]
        )
        let upgraded = try await node.waitForTask(Int64(try #require(upgrade["id"] as? Int)), timeout: .seconds(60))
        for subtask in upgraded.subtasks {
            #expect(subtask.status == "succeeded", "\(subtask.agentSn): \(subtask.result.message)")
            #expect(subtask.result.message.contains("upgraded MiniAgent from 1.0 to 1.1"), "\(subtask.result.message)")
        }
        // The task's user reached the hosts: the new version runs as nobody.
        let nobody = try #require(getpwnam("nobody")).pointee.pw_uid
        for agent in agents {
            var upgradedPID = 0
            try await eventually(timeout: .seconds(20), "\(agent.agentSN) reporting 1.1") {
                let shown = try await Self.subAgent(rest, agent.agentSN, "MiniAgent")
                upgradedPID = shown?["version"] as? String == "1.1" ? shown?["pid"] as? Int ?? 0 : 0
                return upgradedPID > 0
            }
            let status = try String(contentsOfFile: "/proc/\(upgradedPID)/status", encoding: .utf8)
            let uid = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }?.split(separator: "\t").dropFirst().first
            #expect(uid.map(String.init) == String(nobody), "\(agent.agentSN): \(status.prefix(400))")
        }

        // Uninstall through REST removes it from both hosts.
        let removal = try await rest.ok(
            "POST", "/api/v1/server/task",
            json: ["command": "uninstall", "agents": agents.map(\.agentSN), "parameters": ["name": "MiniAgent"]]
        )
        let removed = try await node.waitForTask(Int64(try #require(removal["id"] as? Int)), timeout: .seconds(60))
        #expect(removed.subtasks.allSatisfy { $0.status == "succeeded" && $0.result.message.contains("uninstalled MiniAgent 1.1") })
        #expect(!Self.isAlive(pid), "uninstall stopped it")
        #expect(!FileManager.default.fileExists(atPath: "\(directory)/agents0/MiniAgent"))
        try await eventually(timeout: .seconds(20), "the host view without the sub-agent") {
            try await Self.subAgent(rest, agents[1].agentSN, "MiniAgent") == nil
        }
    }

    @Test("A package with builds for several platforms: each host gets the build for its own os and arch, a host of none fails saying so")
    func buildPerPlatform() async throws {
        let directory = try makeTemporaryDirectory("subagents-arch")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address(), arguments: ["--seed-agents", "127.0.0.0/8"])
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let parent = "aspire-arch-\(suffix)"
        defer { Self.cleanUp(cgroupParents: [parent]) }
        let agent = try TestAgent.start(
            in: directory, name: "agent", connectingTo: node,
            arguments: ["--agents-root", "\(directory)/agents", "--cgroup-parent", parent, "--health-window", "1"],
            agentSN: "arch-\(suffix)"
        )
        try await node.waitForAgent(agent)
        let rest = try RESTClient(node)
        // A seed agent: it reports no os or arch.
        var seed = try RESTClient(node)
        seed.token = nil
        _ = try await seed.call("POST", "/agent/status", json: ["hostname": "seed-\(suffix)"], headers: ["X-Agent-SN": "seed-\(suffix)"])

        // This machine's build is real; the other platform's is not a package at all, so an
        // agent given it would fail.
        var names = utsname()
        uname(&names)
        let machine = withUnsafeBytes(of: &names.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let other = machine == "aarch64" ? "x86_64" : "aarch64"
        let real = try await Self.tarball(in: directory, version: "1.0")
        for (arch, bytes) in [(machine, real), (other, Data("not a tarball".utf8))] {
            _ = try await rest.ok(
                "POST", "/api/v1/server/package/raw?name=MiniAgent&version=1.0&os=linux&arch=\(arch)&file=MiniAgent-1.0.tar.gz",
                body: bytes, contentType: "application/octet-stream"
            )
        }
        let created = try await rest.ok(
            "POST", "/api/v1/server/task",
            json: ["command": "install", "agents": [agent.agentSN, "seed-\(suffix)"], "parameters": ["name": "MiniAgent", "version": "1.0"]]
        )
        let taskID = Int64(try #require(created["id"] as? Int))
        // The seed agent's next report takes no job: there is no build for it.
        let polled = try await seed.call("POST", "/agent/status", json: ["hostname": "seed-\(suffix)"], headers: ["X-Agent-SN": "seed-\(suffix)"])
        #expect((try polled.object["jobs"] as? [Any])?.isEmpty == true, "\(polled.text)")
        let detail = try await node.waitForTask(taskID, timeout: .seconds(60))
        let byHost = Dictionary(uniqueKeysWithValues: detail.subtasks.map { ($0.agentSn, $0) })
        let installed = try #require(byHost[agent.agentSN])
        #expect(installed.status == "succeeded", "\(installed.result.message)")
        #expect(installed.result.message.contains("installed MiniAgent 1.0: running"), "\(installed.result.message)")
        let refused = try #require(byHost["seed-\(suffix)"])
        #expect(refused.status == "failed")
        #expect(refused.result.message.contains("for linux/\(machine), linux/\(other)") || refused.result.message.contains("for linux/\(other), linux/\(machine)"), "\(refused.result.message)")
        #expect(refused.result.message.contains("this host has not reported its os and arch"), "\(refused.result.message)")
        #expect(detail.task.failed == 1 && detail.task.complete == 2, "\(detail.task)")
    }

    @Test("aspirectl deploy uploads the file, installs by tag, upgrades with rollback on a broken version; subagents lists them")
    func aspirectlDeploy() async throws {
        let directory = try makeTemporaryDirectory("subagents-ctl")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let parent = "aspire-ctl-\(UUID().uuidString.prefix(8).lowercased())"
        defer { Self.cleanUp(cgroupParents: [parent]) }
        _ = try TestAgent.start(
            in: directory, connectingTo: node,
            arguments: ["--tag", "role=web", "--agents-root", "\(directory)/agents", "--cgroup-parent", parent, "--health-window", "1"],
            agentSN: "ctl-sub-1"
        )
        try await node.waitForAgent("ctl-sub-1")
        let environment = ["ASPIRE_SERVER": node.address.description, "ASPIRE_SERVER_DATA": node.dataDirectory]
        func aspirectl(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            let log = "\(directory)/aspirectl-\(UUID().uuidString.prefix(6)).out"
            let process = try TestProcess.start("aspirectl", arguments, log: log, environment: environment)
            return (ChildProcess.exitCode(try await process.wait(timeout: .seconds(90))), process.log)
        }

        let first = "\(directory)/MiniAgent-1.0.tar.gz"
        try await Self.tarball(in: directory, version: "1.0").write(to: URL(fileURLWithPath: first))
        let installed = try await aspirectl(["deploy", "MiniAgent", "1.0", "--file", first, "--agent", "ctl-sub-1", "--memory", "64M"])
        #expect(installed.status == 0, "\(installed.output)")
        #expect(installed.output.contains("uploaded MiniAgent 1.0"), "\(installed.output)")
        #expect(installed.output.contains("[ctl-sub-1] ok: installed MiniAgent 1.0: running"), "\(installed.output)")
        #expect(installed.output.contains("1 succeeded, 0 failed"), "\(installed.output)")

        // A version whose control start fails: exit 2, rolled back, 1.0 still running.
        let brokenTree = "\(directory)/broken"
        try FileManager.default.createDirectory(atPath: brokenTree, withIntermediateDirectories: true)
        try "#!/bin/sh\necho 'config file missing' >&2\nexit 1\n".write(toFile: "\(brokenTree)/control", atomically: true, encoding: .utf8)
        chmod("\(brokenTree)/control", 0o755)
        let broken = "\(directory)/MiniAgent-2.0.tar.gz"
        #expect(try await ChildProcess.run("tar", ["-czf", broken, "-C", brokenTree, "control"]).status == 0)
        let rolled = try await aspirectl(["deploy", "MiniAgent", "2.0", "--file", broken, "--tag", "role=web", "--window", "10"])
        #expect(rolled.status == 2, "\(rolled.output)")
        #expect(rolled.output.contains("rolled back to 1.0"), "\(rolled.output)")
        #expect(rolled.output.contains("config file missing"), "\(rolled.output)")

        try await eventually(timeout: .seconds(20), "subagents to show 1.0 running") {
            let listed = try await aspirectl(["subagents", "--agent", "ctl-sub-1"])
            return listed.status == 0 && listed.output.contains("MiniAgent") && listed.output.contains("1.0")
                && listed.output.contains("running") && listed.output.contains("rolled back from 2.0")
        }
        let json = try await aspirectl(["subagents", "--agent", "ctl-sub-1", "-o", "json"])
        let list = try #require(try JSONSerialization.jsonObject(with: Data(json.output.split(separator: "\n").first.map(String.init)?.utf8 ?? "".utf8)) as? [[String: Any]])
        #expect(list.first?["name"] as? String == "MiniAgent")
        #expect(list.first?["status"] as? String == "running")

        let nobody = try await aspirectl(["deploy", "MiniAgent", "1.0", "--tag", "role=nobody", "--window", "10"])
        #expect(nobody.status == 4, "\(nobody.output)")
        let missing = try await aspirectl(["deploy", "Ghost", "9.9", "--agent", "ctl-sub-1"])
        #expect(missing.status == 1, "\(missing.output)")
        #expect(missing.output.contains("no package Ghost 9.9 in the store"), "\(missing.output)")
    }
}
