import Fleet
import Foundation
import GRPCCore
import RPC
import SwiftProtobuf
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Tasks through real server and agent processes.
@Suite("End to end: tasks", .stopsChildProcesses)
struct TaskEndToEndTests {
    static func bash(_ cmd: String, timeout: Double? = nil) -> Google_Protobuf_Struct {
        var parameters = Google_Protobuf_Struct()
        parameters.fields["cmd"] = Google_Protobuf_Value(stringValue: cmd)
        if let timeout { parameters.fields["timeout"] = Google_Protobuf_Value(numberValue: timeout) }
        return parameters
    }

    @Test("config changes the agent's step, servers and tags; they reach the host record and survive a restart")
    func configCommand() async throws {
        let directory = try makeTemporaryDirectory("task-config")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let agent = try TestAgent.start(in: directory, connectingTo: node, arguments: ["--tag", "svc=ecs"], agentSN: "config-1")
        try await node.waitForAgent("config-1")

        // A tag task for a tag the host does not carry yet.
        var tagged = Aspire_V1_CreateTaskRequest()
        tagged.command = "sync.bash"
        tagged.tags = ["env": "prod"]
        tagged.parameters = Self.bash("echo joined")
        let tagTask = try await node.createTask(tagged)
        #expect(tagTask.subtasks.isEmpty)

        var request = Aspire_V1_CreateTaskRequest()
        request.command = "config"
        request.agents = ["config-1"]
        request.parameters = try Google_Protobuf_Struct(jsonString: #"{"step": 45, "svrlist": "127.0.0.99:8443,", "tags": {"env": "prod"}}"#)
        let created = try await node.createTask(request)
        let detail = try await node.waitForTask(created.task.id)
        let result = try #require(detail.subtasks.first?.result)
        #expect(result.resp == .success, "\(result)")
        let applied = try JSONSerialization.jsonObject(with: result.data) as? [String: Any]
        #expect(applied?["step"] as? Int == 45)
        #expect(applied?["svrlist"] as? String == "127.0.0.99:8443")
        #expect(applied?["tags"] as? [String: String] == ["env": "prod", "svc": "ecs"])

        // The report that follows at once carries the new step and tags to the host record.
        var query = Aspire_V1_ListHostsRequest()
        query.tags = ["env": "prod", "svc": "ecs"]
        try await eventually("host record with the new step and tag") {
            let hosts = try await node.admin { try await $0.listHosts(query) }.hosts
            return hosts.first?.agentSn == "config-1" && hosts.first?.step == 45
        }
        // The report that carried the new tag also joined the host to the open tag task.
        var joined = try await node.task(tagTask.task.id)
        try await eventually(
            timeout: .seconds(45),
            "the tag task to reach the newly tagged host: \(joined)\nnode log:\n\(node.process.log.suffix(6000))\nagent log:\n\(agent.process.log.suffix(3000))"
        ) {
            joined = try await node.task(tagTask.task.id)
            return joined.subtasks.first?.agentSn == "config-1" && joined.subtasks.first?.status == "succeeded"
        }
        var events = Aspire_V1_ListEventsRequest()
        events.agentSn = "config-1"
        let recorded = try await node.admin { try await $0.listEvents(events) }
        #expect(recorded.events.contains { $0.category == "config" && $0.message.contains("step 45") })

        // Saved in the data directory: a restarted agent keeps them.
        await agent.process.stop()
        let saved = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(agent.dataDirectory)/config.json"))) as? [String: Any]
        #expect(saved?["step"] as? Int == 45)
        _ = try TestAgent.start(in: directory, connectingTo: node, arguments: ["--tag", "svc=ecs"], agentSN: "config-1")
        try await node.waitForAgent("config-1")
        let connected = try await node.connectedAgents().first { $0.agentSn == "config-1" }
        #expect(connected?.tags == ["env": "prod", "svc": "ecs"])

        // A bad value never reaches the agent.
        request.parameters = try Google_Protobuf_Struct(jsonString: #"{"step": 1}"#)
        await #expect(throws: RPCError.self) { try await node.createTask(request) }
    }

    @Test("A result held back by a crash is delivered once after restart, and the command is not run twice")
    func exactlyOnce() async throws {
        let directory = try makeTemporaryDirectory("task-once")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let agent = try TestAgent.start(in: directory, connectingTo: node, agentSN: "once-agent")
        try await node.waitForAgent(agent)

        let counter = "\(directory)/runs"
        var request = Aspire_V1_CreateTaskRequest()
        request.command = "sync.bash"
        request.agents = [agent.agentSN]
        // The command finishes only once the test says so (the file `go`), after the node is frozen:
        // however slow the machine, its result cannot be acknowledged before.
        let go = "\(directory)/go"
        request.parameters = Self.bash("echo run >> \(counter); while [ ! -e \(go) ]; do sleep 0.05; done; echo finished")
        let created = try await node.createTask(request)
        try await eventually("the command to start") { FileManager.default.fileExists(atPath: counter) }

        // Freeze the node: the result reaches the agent's outbox but no acknowledgement comes.
        node.process.signal(SIGSTOP)
        _ = FileManager.default.createFile(atPath: go, contents: nil)
        let outbox = "\(agent.dataDirectory)/outbox"
        try await eventually("the result to wait in the outbox") {
            ((try? FileManager.default.contentsOfDirectory(atPath: outbox)) ?? []).contains { $0.hasSuffix(".result") }
        }
        agent.process.signal(SIGKILL)
        try await agent.process.wait()
        node.process.signal(SIGCONT)

        _ = try TestAgent.start(in: directory, connectingTo: node, agentSN: "once-agent")
        let done = try await node.waitForTask(created.task.id)
        #expect(done.task.status == "done" && done.task.complete == 1)
        #expect(String(decoding: done.subtasks[0].result.data, as: UTF8.self) == "finished\n")
        try await eventually("the outbox to be acknowledged and emptied") {
            ((try? FileManager.default.contentsOfDirectory(atPath: outbox)) ?? []).isEmpty
        }
        #expect(try String(contentsOfFile: counter, encoding: .utf8) == "run\n", "the command ran more than once")
    }
}
