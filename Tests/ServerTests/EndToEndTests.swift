import Agent
import Fleet
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RPC
import SwiftProtobuf
import Testing
import TestSupport

/// Real `aspire-server` and `boot` processes over TLS on loopback addresses.
@Suite("End to end: server node and BootAgent", .stopsChildProcesses)
struct EndToEndTests {
    @Test("Commands run through the Admin service on a real agent over TLS, after a dead first address")
    func commandsOverTLS() async throws {
        let directory = try makeTemporaryDirectory("e2e-tls")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: "127.0.0.2")
        let port = node.address.port
        // aspire.test resolves to a dead address first, then to the node.
        let agent = try TestAgent.start(
            in: directory,
            servers: ["aspire.test:\(port)"],
            caFile: node.caFile,
            tokenFile: node.enrollTokenFile,
            arguments: ["--resolve", "aspire.test:\(port):127.0.0.9,127.0.0.2", "--tag", "svc=ecs"]
        )
        try await node.waitForAgent(agent)
        #expect(agent.process.log.contains("127.0.0.9"), "the dead address was not tried first")

        let listed = try #require(try await node.connectedAgents().first { $0.agentSn == agent.agentSN })
        #expect(listed.tags == ["svc": "ecs"])
        #expect(listed.version == AspireVersion.current)
        #expect(listed.peer.contains("127.0.0.1") || listed.peer.contains("127.0.0.2"))

        let echo = try await node.run("echo hello; echo to-stderr >&2", on: agent.agentSN)
        #expect(echo.resp == .success)
        #expect(echo.retcode == 0)
        #expect(String(decoding: echo.data, as: UTF8.self) == "hello\n")
        #expect(String(decoding: echo.stderr, as: UTF8.self) == "to-stderr\n")

        let exit = try await node.run("exit 5", on: agent.agentSN)
        #expect(exit.resp == .success && exit.retcode == 5)

        let nobody = try await node.run("id -un", on: agent.agentSN, user: "nobody")
        #expect(String(decoding: nobody.data, as: UTF8.self) == "nobody\n")

        let timeout = try await node.run("sleep 30", on: agent.agentSN, timeout: 1)
        #expect(timeout.resp == .failed && timeout.retcode == ErrorCode.timeout.rawValue)

        var info = Aspire_V1_RunCommandRequest()
        info.agentSn = agent.agentSN
        info.command.method = "getinfo.users"
        info.command.getinfo.args = "-U root"
        let users = try await node.admin { try await $0.runCommand(info).result }
        #expect(users.resp == .success)
        let document = try JSONSerialization.jsonObject(with: users.data) as? [String: Any]
        #expect((document?["users"] as? [[String: Any]])?.first?["uid"] as? Int == 0)

        // A command is checked as a task is, before anything is stored or sent.
        info.command.method = "getinfo.nothing"
        let unknown = await #expect(throws: RPCError.self) { try await node.admin { try await $0.runCommand(info) } }
        #expect(unknown?.code == .invalidArgument && unknown?.message.contains("unknown method 'getinfo.nothing'") == true)

        // An agent that is not connected is a clear error, not a hang.
        let error = await #expect(throws: RPCError.self) { try await node.run("true", on: "no-such-agent") }
        #expect(error?.code == .unavailable)
        #expect(error.map { ErrorCode(rpcError: $0) } == .agentOffline)
    }

    @Test("The agent reconnects after the server node restarts")
    func reconnectsAfterRestart() async throws {
        let directory = try makeTemporaryDirectory("e2e-restart")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try await TestNode.start(in: directory, host: "127.0.0.3")
        let agent = try TestAgent.start(
            in: directory,
            connectingTo: first
        )
        try await first.waitForAgent(agent)
        await first.process.stop()
        #expect(first.process.log.contains("shutting down"))

        let second = try await TestNode.start(in: directory, host: "127.0.0.3", port: first.address.port)
        try await second.waitForAgent(agent)
        let result = try await second.run("echo back", on: agent.agentSN)
        #expect(String(decoding: result.data, as: UTF8.self) == "back\n")
    }

    @Test(
        "An agent SIGKILLed while a command runs: started again, it reports the command interrupted, does not run it again, and kills what the command left running",
        .enabled(if: CommandGroups.detect() != nil, "needs a writable cgroup hierarchy (root)")
    )
    func agentKilledUnderCommand() async throws {
        let directory = try makeTemporaryDirectory("e2e-agent-kill")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: "127.0.0.3")
        var agent = try TestAgent.start(in: directory, connectingTo: node)
        try await node.waitForAgent(agent)

        // The command and a child that left its session: both outlive the agent's SIGKILL
        // (commands are in process groups of their own, as under KillMode=process).
        let marker = "7733.\(Int.random(in: 100_000 ... 999_999))"
        let runs = "\(directory)/runs"
        var request = Aspire_V1_CreateTaskRequest()
        request.command = CommandMethod.bash.taskName
        request.agents = [agent.agentSN]
        request.parameters = try Google_Protobuf_Struct(
            jsonString: #"{"cmd": "echo ran >> \#(runs); setsid sleep \#(marker) < /dev/null > /dev/null 2>&1 & sleep \#(marker)", "timeout": 600}"#
        )
        let taskID = try await node.createTask(request).task.id
        try await eventually(timeout: .seconds(30), "the command and its child to run") { ProcessSearch.withArgument(marker).count == 2 }
        await agent.process.kill()
        #expect(ProcessSearch.withArgument(marker).count == 2, "the command runs on while its agent is down")

        agent = try TestAgent.start(in: directory, connectingTo: node, agentSN: agent.agentSN)
        let task = try await node.waitForTask(taskID, timeout: .seconds(60))
        let result = try #require(task.subtasks.first).result
        #expect(result.retcode == ErrorCode.interrupted.rawValue, "\(result)")
        #expect(result.message.contains("not run again, and what it left running was killed"), "\(result.message)")
        try await eventually(timeout: .seconds(10), "nothing of the interrupted command left running") { ProcessSearch.withArgument(marker).isEmpty }
        #expect(try String(contentsOfFile: runs, encoding: .utf8) == "ran\n", "run once")
        #expect(agent.process.log.contains("killed what an interrupted command left running"), "\(agent.process.log.suffix(3000))")
    }

    @Test("Init redirects are followed to the node that holds the agent")
    func followsRedirect() async throws {
        let directory = try makeTemporaryDirectory("e2e-redirect")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let holder = try await TestNode.start(in: directory, name: "holder", host: "127.0.0.4")
        let redirector = try await TestNode.start(
            in: directory,
            name: "redirector",
            host: "127.0.0.5",
            arguments: ["--redirect-to", "127.0.0.4:\(holder.address.port)"],
            sharingSecretsOf: holder
        )
        let agent = try TestAgent.start(
            in: directory,
            servers: ["127.0.0.5:\(redirector.address.port)"],
            caFile: holder.caFile,
            tokenFile: holder.enrollTokenFile
        )
        try await holder.waitForAgent(agent)
        #expect(try await redirector.connectedAgents().isEmpty)
        #expect(agent.process.log.contains("redirected"))
        let result = try await holder.run("echo via-redirect", on: agent.agentSN)
        #expect(String(decoding: result.data, as: UTF8.self) == "via-redirect\n")
    }

    @Test("Calls without the right token are refused before any handler")
    func authentication() async throws {
        let directory = try makeTemporaryDirectory("e2e-auth")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: "127.0.0.6")

        // Admin calls with the enrollment token, a wrong token, and none at all.
        for token in [try node.enrollToken, "wrong"] {
            let error = await #expect(throws: RPCError.self) {
                try await node.withClient(token: token) { client in
                    try await Aspire_V1_Admin.Client(wrapping: client).listAgents(Aspire_V1_ListAgentsRequest())
                }
            }
            #expect(error?.code == .unauthenticated)
        }
        let transport = try Transports.client(address: node.address, security: .tls(caFile: node.caFile))
        let missing = await #expect(throws: RPCError.self) {
            try await withGRPCClient(transport: transport) { client in
                try await Aspire_V1_Admin.Client(wrapping: client).listAgents(Aspire_V1_ListAgentsRequest())
            }
        }
        #expect(missing?.code == .unauthenticated)

        // Agent calls with the admin token.
        let initError = await #expect(throws: RPCError.self) {
            try await node.withClient(token: try node.adminToken) { client in
                var request = Aspire_V1_InitRequest()
                request.agentSn = "x"
                return try await Aspire_V1_Bootstrap.Client(wrapping: client).`init`(request)
            }
        }
        #expect(initError?.code == .unauthenticated)

        // An agent with a wrong join token never gets listed.
        try "not-the-token\n".write(toFile: "\(directory)/bad.token", atomically: true, encoding: .utf8)
        let agent = try TestAgent.start(
            in: directory,
            servers: ["127.0.0.6:\(node.address.port)"],
            caFile: node.caFile,
            tokenFile: "\(directory)/bad.token"
        )
        try await eventually("the agent to be refused\n\(agent.process.log)") {
            agent.process.log.contains("unknown join token")
        }
        #expect(try await node.connectedAgents().isEmpty)
    }

    @Test("A silent stream is dropped within three ping intervals, and the agent comes back")
    func deadStreamDetected() async throws {
        let directory = try makeTemporaryDirectory("e2e-silent")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address(), arguments: ["--ping-interval", "1"])
        let agent = try TestAgent.start(
            in: directory,
            connectingTo: node
        )
        try await node.waitForAgent(agent)
        agent.process.signal(SIGSTOP)
        try await eventually(timeout: .seconds(30), "the frozen agent to be dropped\n\(node.process.log)") {
            try await node.connectedAgents().isEmpty
        }
        agent.process.signal(SIGCONT)
        try await node.waitForAgent(agent)
    }

    @Test("SIGTERM stops the node's services in order: the agent listener first, the store last; the agent comes back to a new node")
    func orderedShutdown() async throws {
        let directory = try makeTemporaryDirectory("e2e-sigterm")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let agent = try TestAgent.start(in: directory, connectingTo: node)
        try await node.waitForAgent(agent)

        node.process.signal(SIGTERM)
        #expect(try await node.process.wait(timeout: .seconds(30)) == 0, "\(node.process.log)")
        let stopped = node.process.log.split(separator: "\n").filter { $0.contains("node service stopped") }
        let order = [
            "drainer", "agent listener", "gateway", "node links", "membership", "revocation watch", "metric ingest", "config distributor", "task engine", "store"]
        let positions = order.map { name in stopped.firstIndex { $0.contains("node.service=\(name)") } }
        #expect(positions.allSatisfy { $0 != nil }, "every service says it stopped: \(stopped)")
        #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted(), "stopped out of order: \(stopped)")
        #expect(node.process.log.contains("closing agent streams"))

        // The agent outlives its node and holds a stream to the next one on the same address.
        let next = try await TestNode.start(in: directory, host: node.address.host, port: node.address.port)
        try await next.waitForAgent(agent)
    }
}
