import Fleet
import Foundation
import RPC
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The binaries as operators run them: their output and exit codes.
@Suite("Command-line tools", .stopsChildProcesses)
struct CommandLineTests {
    /// Runs a binary to completion; returns its exit code and output.
    func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:], in directory: String)
        async throws -> (status: Int32, output: String)
    {
        let log = "\(directory)/\(executable)-\(UUID().uuidString.prefix(6)).out"
        let process = try TestProcess.start(executable, arguments, log: log, environment: environment)
        return (ChildProcess.exitCode(try await process.wait(timeout: .seconds(60))), process.log)
    }

    @Test("BasicAgentCtl prints the seed's JSON and exits with the method's outcome")
    func basicAgentCtl() async throws {
        let directory = try makeTemporaryDirectory("cli-basic")
        defer { try? FileManager.default.removeItem(atPath: directory) }

        let users = try await self.run("BasicAgentCtl", ["-c", "getinfo.users", "-a", "-U root"], in: directory)
        #expect(users.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(users.output.utf8)) as? [String: Any]
        #expect(object?["resp"] as? String == "success")
        #expect(object?["retcode"] as? Int == 0)
        let data = object?["data"] as? [String: Any]
        #expect((data?["users"] as? [[String: Any]])?.first?["name"] as? String == "root")

        let exit3 = try await self.run("BasicAgentCtl", ["-c", "sync.bash", "-a", "echo out; exit 3"], in: directory)
        #expect(exit3.status == 3)
        #expect(exit3.output.contains("\"data\":\"out\\n\""))

        let unknown = try await self.run("BasicAgentCtl", ["-c", "getinfo.nothing"], in: directory)
        #expect(unknown.status == 1)
        #expect(unknown.output.contains("\"retcode\":3022"))

        let usage = try await self.run("BasicAgentCtl", [], in: directory)
        #expect(usage.status == 64)
    }

    @Test("aspirectl exits 0 on success, 2 on a non-zero exit, 3 on timeout or offline agents")
    func aspirectlExitCodes() async throws {
        let directory = try makeTemporaryDirectory("cli-ctl")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let agent = try TestAgent.start(
            in: directory, connectingTo: node
        )
        try await node.waitForAgent(agent)
        let environment = ["ASPIRE_SERVER": node.address.description, "ASPIRE_SERVER_DATA": node.dataDirectory]
        let sn = agent.agentSN

        let ok = try await self.run("aspirectl", ["run", "--agent", sn, "--", "echo", "hi"], environment: environment, in: directory)
        #expect(ok.status == 0, "\(ok.output)")
        #expect(ok.output.contains("hi\n"))
        #expect(ok.output.contains("[\(sn)] ok"))

        let failed = try await self.run("aspirectl", ["run", "--agent", sn, "--", "exit 2"], environment: environment, in: directory)
        #expect(failed.status == 2, "\(failed.output)")
        #expect(failed.output.contains("[\(sn)] exit 2"))

        let timeout = try await self.run(
            "aspirectl", ["run", "--agent", sn, "--timeout", "1", "--", "sleep 30"], environment: environment, in: directory
        )
        #expect(timeout.status == 3, "\(timeout.output)")

        let many = try await self.run(
            "aspirectl", ["run", "--agents", "\(sn),offline-sn", "--agent", sn, "--", "echo line"], environment: environment, in: directory
        )
        #expect(many.status == 3, "\(many.output)")
        #expect(many.output.contains("[\(sn)] line"))
        #expect(many.output.contains("[offline-sn] offline"))
        #expect(many.output.contains("1 succeeded, 0 failed, 1 did not answer"))

        let json = try await self.run("aspirectl", ["run", "--agent", sn, "-o", "json", "--", "printf x"], environment: environment, in: directory)
        let line = try #require(json.output.split(separator: "\n").first { $0.hasPrefix("{") })
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        #expect(object?["data"] as? String == "x")
        #expect(object?["agentsn"] as? String == sn)

        let agents = try await self.run("aspirectl", ["agents"], environment: environment, in: directory)
        #expect(agents.status == 0)
        #expect(agents.output.contains(sn) && agents.output.contains("NODE"))

        let badToken = try await self.run(
            "aspirectl", ["agents"], environment: environment.merging(["ASPIRE_TOKEN": "wrong"]) { $1 }, in: directory
        )
        #expect(badToken.status == 1)
        #expect(badToken.output.contains("unauthenticated"))
    }

    @Test("aspirectl token create: a real boot enrolls with it once and gets its tag; hosts ban closes it out, unban lets it enroll again")
    func joinTokensAndBans() async throws {
        let directory = try makeTemporaryDirectory("cli-identity")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let environment = ["ASPIRE_SERVER": node.address.description, "ASPIRE_SERVER_DATA": node.dataDirectory]

        let created = try await self.run(
            "aspirectl", ["token", "create", "--ttl", "1h", "--uses", "2", "--tag", "env=staging", "--note", "cli"], environment: environment, in: directory
        )
        #expect(created.status == 0, "\(created.output)")
        let secret = String(try #require(created.output.split(separator: "\n").first { $0.count == 64 && $0.allSatisfy(\.isHexDigit) }))
        try "\(secret)\n".write(toFile: "\(directory)/staging.token", atomically: true, encoding: .utf8)
        let bad = try await self.run("aspirectl", ["token", "create", "--ttl", "soon"], environment: environment, in: directory)
        #expect(bad.status != 0 && bad.output.contains("--ttl 'soon'"))

        let agent = try TestAgent.start(
            in: directory, servers: [node.address.description], caFile: node.caFile, tokenFile: "\(directory)/staging.token", agentSN: "cli-enrolled"
        )
        try await node.waitForAgent("cli-enrolled")
        #expect(agent.process.log.contains("enrolled: this host has its own certificate"))
        let key = try FileManager.default.attributesOfItem(atPath: "\(agent.dataDirectory)/agent.key")[.posixPermissions] as? Int
        #expect(key == 0o600)
        let hosts = try await self.run("aspirectl", ["hosts", "--tag", "env=staging"], environment: environment, in: directory)
        #expect(hosts.output.contains("cli-enrolled") && hosts.output.contains("enrolled"), "\(hosts.output)")
        let tokens = try await self.run("aspirectl", ["token", "list"], environment: environment, in: directory)
        #expect(tokens.output.contains("1/2") && tokens.output.contains("env=staging"), "\(tokens.output)")
        // The secret is nowhere in the node's data or log: only its digest is kept.
        #expect(!node.process.log.contains(secret))
        for file in try FileManager.default.contentsOfDirectory(atPath: node.dataDirectory) where file.hasPrefix("aspire.db") {
            #expect(try Data(contentsOf: URL(fileURLWithPath: "\(node.dataDirectory)/\(file)")).range(of: Data(secret.utf8)) == nil, "\(file)")
        }

        let banned = try await self.run("aspirectl", ["hosts", "ban", "cli-enrolled", "--reason", "test"], environment: environment, in: directory)
        #expect(banned.status == 0 && banned.output.contains("cli-enrolled: banned"), "\(banned.output)")
        try await eventually("the banned agent to be dropped") { try await node.connectedAgents().isEmpty }
        try await eventually("the banned agent to be refused enrollment") { agent.process.log.contains("is banned") }

        let lifted = try await self.run("aspirectl", ["hosts", "unban", "cli-enrolled"], environment: environment, in: directory)
        #expect(lifted.status == 0, "\(lifted.output)")
        // Its certificate went with the ban: it enrolls again, with the token's second use.
        try await node.waitForAgent("cli-enrolled")
        let used = try await self.run("aspirectl", ["token", "list", "--all"], environment: environment, in: directory)
        #expect(used.output.contains("2/2") && used.output.contains("used up"), "\(used.output)")
    }

    @Test("aspirectl hosts lists with filters; packages upload, list and delete")
    func aspirectlHostsAndPackages() async throws {
        let directory = try makeTemporaryDirectory("cli-fleet")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        _ = try TestAgent.start(in: directory, connectingTo: node, arguments: ["--tag", "svc=ecs"], agentSN: "cli-host-1")
        try await node.waitForAgent("cli-host-1")
        let environment = ["ASPIRE_SERVER": node.address.description, "ASPIRE_SERVER_DATA": node.dataDirectory]

        let hosts = try await self.run("aspirectl", ["hosts", "--status", "online", "--tag", "svc=ecs"], environment: environment, in: directory)
        #expect(hosts.status == 0, "\(hosts.output)")
        #expect(hosts.output.contains("cli-host-1") && hosts.output.contains("svc=ecs") && hosts.output.contains("1 of 1 hosts"))
        let none = try await self.run("aspirectl", ["hosts", "--tag", "svc=rds"], environment: environment, in: directory)
        #expect(none.status == 0 && none.output.contains("0 of 0 hosts") && !none.output.contains("cli-host-1"))
        let bad = try await self.run("aspirectl", ["hosts", "--status", "asleep"], environment: environment, in: directory)
        #expect(bad.status == 1 && bad.output.contains("status must be one of"))

        // Regions: made through REST, hosts put in one by name, listed by its id; unknown names refused.
        let rest = try RESTClient(node)
        let region = try #require((try await rest.ok("POST", "/api/v1/server/regions", json: ["name": "north"])["region"] as? [String: Any])?["id"] as? Int)
        let moved = try await self.run("aspirectl", ["hosts", "set-region", "cli-host-1", "--region", "north"], environment: environment, in: directory)
        #expect(moved.status == 0 && moved.output.contains("1 host(s) now in region \(region)"), "\(moved.output)")
        let inRegion = try await self.run("aspirectl", ["hosts", "--region", "\(region)"], environment: environment, in: directory)
        #expect(inRegion.output.contains("cli-host-1") && inRegion.output.contains("1 of 1 hosts"), "\(inRegion.output)")
        let unknown = try await self.run("aspirectl", ["hosts", "set-region", "cli-host-1", "--region", "nowhere"], environment: environment, in: directory)
        #expect(unknown.status == 4 && unknown.output.contains("no region named nowhere"), "exit \(unknown.status): \(unknown.output)")
        let nobody = try await self.run("aspirectl", ["hosts", "set-region", "ghost-1", "--region", "north"], environment: environment, in: directory)
        #expect(nobody.status == 4 && nobody.output.contains("no host with AgentSN ghost-1"), "exit \(nobody.status): \(nobody.output)")
        let byREST = try await rest.ok("POST", "/api/v1/server/regions/hosts", json: ["agents": ["cli-host-1"], "region": 0])
        #expect(byREST["changed"] as? Int == 1 && byREST["region"] as? Int == 0)
        try await rest.fails("POST", "/api/v1/server/regions/hosts", json: ["agents": ["cli-host-1"], "region": 1.5], http: 400, code: .badRequest)

        let file = "\(directory)/MonitorAgent-0.1.2-1.x86_64.rpm"
        try Data(repeating: 7, count: 3_000_000).write(to: URL(fileURLWithPath: file))
        let upload = try await self.run(
            "aspirectl", ["packages", "upload", file, "--name", "MonitorAgent", "--version", "0.1.2-1", "--arch", "x86_64"],
            environment: environment, in: directory
        )
        #expect(upload.status == 0, "\(upload.output)")
        #expect(upload.output.contains("packages/linux/x86_64/MonitorAgent-0.1.2-1.x86_64.rpm"))
        let stored = try Data(contentsOf: URL(fileURLWithPath: "\(node.dataDirectory)/packages/linux/x86_64/MonitorAgent-0.1.2-1.x86_64.rpm"))
        #expect(stored.count == 3_000_000)
        let again = try await self.run(
            "aspirectl", ["packages", "upload", file, "--name", "MonitorAgent", "--version", "0.1.2-1", "--arch", "x86_64"],
            environment: environment, in: directory
        )
        #expect(again.status == 1 && again.output.contains("already"))
        let traversal = try await self.run(
            "aspirectl", ["packages", "upload", file, "--name", "../x", "--version", "1", "--arch", "x86_64"],
            environment: environment, in: directory
        )
        #expect(traversal.status == 1 && traversal.output.contains("path separators"), "exit \(traversal.status): \(traversal.output)")

        let list = try await self.run("aspirectl", ["packages", "list", "--name", "MonitorAgent"], environment: environment, in: directory)
        #expect(list.status == 0 && list.output.contains("0.1.2-1") && list.output.contains("1 of 1 packages"))
        let delete = try await self.run("aspirectl", ["packages", "delete", "--name", "MonitorAgent", "--version", "0.1.2-1"], environment: environment, in: directory)
        #expect(delete.status == 0 && delete.output.contains("deleted MonitorAgent 0.1.2-1"))
        let gone = try await self.run("aspirectl", ["packages", "delete", "--name", "MonitorAgent"], environment: environment, in: directory)
        #expect(gone.status == 4 && gone.output.contains("no agent package found"))
    }

    @Test("The node drops an agent killed with SIGKILL")
    func killedAgentGoesOffline() async throws {
        let directory = try makeTemporaryDirectory("cli-kill")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let agent = try TestAgent.start(
            in: directory, connectingTo: node
        )
        try await node.waitForAgent(agent)
        agent.process.signal(SIGKILL)
        try await agent.process.wait()
        try await eventually("the killed agent to be dropped\n\(node.process.log)") {
            try await node.connectedAgents().isEmpty
        }
        #expect(node.process.log.contains("agent disconnected"))
    }

    @Test("boot --token works but warns that the token shows in ps; --token-file does not warn")
    func tokenOnCommandLine() async throws {
        let directory = try makeTemporaryDirectory("cli-token")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let warning = "--token puts the join token in the command line"
        let inline = try TestAgent.start(
            in: directory, name: "inline", servers: [node.address.description], caFile: node.caFile, tokenFile: node.enrollTokenFile,
            arguments: ["--token", try node.enrollToken]
        )
        try await node.waitForAgent(inline)
        #expect(inline.process.log.contains(warning))
        let filed = try TestAgent.start(in: directory, name: "filed", connectingTo: node)
        try await node.waitForAgent(filed)
        #expect(!filed.process.log.contains(warning))
    }

    @Test("boot without -f detaches, holds its PID file, refuses a second copy, and stops on SIGTERM")
    func bootDaemon() async throws {
        let directory = try makeTemporaryDirectory("cli-daemon")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: "127.0.0.15")
        let pidFile = "\(directory)/booter.pid"
        let logFile = "\(directory)/booter.log"
        let arguments = [
            "-L", logFile, "-P", pidFile, "--server", "127.0.0.15:\(node.address.port)", "--ca", node.caFile,
            "--token-file", node.enrollTokenFile, "--data-dir", "\(directory)/agent", "--agent-sn", "daemon-sn",
            // A random wait of up to a second before its first connection, said in its log.
            "--start-delay", "1",
        ]
        let parent = try await self.run("boot", arguments, in: directory)
        #expect(parent.status == 0, "\(parent.output)")
        #expect(parent.output.contains("running in the background"))
        try await node.waitForAgent("daemon-sn")
        let pid = try #require(Int32(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(pid, 0) == 0)
        #expect(getsid(pid) == pid, "the daemon must lead its own session")
        #expect(try String(contentsOfFile: logFile, encoding: .utf8).contains("agent starting"))
        #expect(try String(contentsOfFile: logFile, encoding: .utf8).contains("waiting before the first connection"))

        let second = try await self.run("boot", ["-f"] + arguments, in: directory)
        #expect(second.status != 0)
        #expect(second.output.contains("another agent holds"))

        kill(pid, SIGTERM)
        try await eventually("the daemon to stop") { kill(pid, 0) != 0 }
        #expect(!FileManager.default.fileExists(atPath: pidFile))
        #expect(try String(contentsOfFile: logFile, encoding: .utf8).contains("agent stopped"))
    }
}
