import Fleet
import Foundation
import GRPCCore
import RPC
import SwiftProtobuf
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Tasks through real server and agent processes.
@Suite("End to end: tasks")
struct TaskEndToEndTests {
    static func bash(_ cmd: String, timeout: Double? = nil) -> Google_Protobuf_Struct {
        var parameters = Google_Protobuf_Struct()
        parameters.fields["cmd"] = Google_Protobuf_Value(stringValue: cmd)
        if let timeout { parameters.fields["timeout"] = Google_Protobuf_Value(numberValue: timeout) }
        return parameters
    }

    @Test("A tag task reaches exactly the tagged hosts")
    func tagTask() async throws {
        let directory = try makeTemporaryDirectory("task-tags")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: "127.0.0.18")
        defer { Task { await node.process.stop() } }
        let agents = try (0 ..< 3).map { index in
            try TestAgent.start(
                in: directory, name: "agent\(index)", connectingTo: node,
                arguments: index < 2 ? ["--tag", "svc=ecs"] : ["--tag", "svc=rds"]
            )
        }
        defer { for agent in agents { Task { await agent.process.stop() } } }
        for agent in agents { try await node.waitForAgent(agent.agentSN) }

        var request = Aspire_V1_CreateTaskRequest()
        request.command = "sync.bash"
        request.tags = ["svc": "ecs"]
        request.parameters = Self.bash("cat agent.sn 2>/dev/null || echo $HOSTNAME")
        let created = try await node.createTask(request)
        #expect(created.task.tags == ["svc": "ecs"])
        let detail = try await node.waitForTask(created.task.id)
        #expect(Set(detail.subtasks.map(\.agentSn)) == Set(agents.prefix(2).map(\.agentSN)))
        #expect(detail.subtasks.allSatisfy { $0.status == "succeeded" && $0.result.resp == .success })
        #expect(detail.task.status == "running", "a tag task stays open through its window")
    }

    @Test("config changes the agent's step, servers and tags; they reach the host record and survive a restart")
    func configCommand() async throws {
        let directory = try makeTemporaryDirectory("task-config")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: "127.0.0.33")
        defer { Task { await node.process.stop() } }
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
        let restarted = try TestAgent.start(in: directory, connectingTo: node, arguments: ["--tag", "svc=ecs"], agentSN: "config-1")
        defer { Task { await restarted.process.stop() } }
        try await node.waitForAgent("config-1")
        let connected = try await node.connectedAgents().first { $0.agentSn == "config-1" }
        #expect(connected?.tags == ["env": "prod", "svc": "ecs"])

        // A bad value never reaches the agent.
        request.parameters = try Google_Protobuf_Struct(jsonString: #"{"step": 1}"#)
        await #expect(throws: RPCError.self) { try await node.createTask(request) }
    }

    @Test("A task created while a host is offline completes when it connects")
    func offlineHost() async throws {
        let directory = try makeTemporaryDirectory("task-offline")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: "127.0.0.19")
        defer { Task { await node.process.stop() } }
        let online = try TestAgent.start(in: directory, name: "online", connectingTo: node)
        defer { Task { await online.process.stop() } }
        try await node.waitForAgent(online.agentSN)

        var request = Aspire_V1_CreateTaskRequest()
        request.command = "sync.bash"
        request.agents = [online.agentSN, "late-agent"]
        request.parameters = Self.bash("echo hi")
        let created = try await node.createTask(request)
        try await eventually("the online host to answer") {
            try await node.task(created.task.id).task.complete == 1
        }
        let halfway = try await node.task(created.task.id)
        #expect(halfway.task.status == "running")
        #expect(halfway.subtasks.first { $0.agentSn == "late-agent" }?.status == "pending")

        let late = try TestAgent.start(in: directory, name: "late", connectingTo: node, agentSN: "late-agent")
        defer { Task { await late.process.stop() } }
        let done = try await node.waitForTask(created.task.id)
        #expect(done.task.status == "done")
        #expect(done.subtasks.allSatisfy { $0.status == "succeeded" && String(decoding: $0.result.data, as: UTF8.self) == "hi\n" })
    }

    @Test("A result held back by a crash is delivered once after restart, and the command is not run twice")
    func exactlyOnce() async throws {
        let directory = try makeTemporaryDirectory("task-once")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: "127.0.0.20")
        defer { Task { node.process.signal(SIGCONT); await node.process.stop() } }
        let agent = try TestAgent.start(in: directory, connectingTo: node, agentSN: "once-agent")
        try await node.waitForAgent(agent.agentSN)

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
        FileManager.default.createFile(atPath: go, contents: nil)
        let outbox = "\(agent.dataDirectory)/outbox"
        try await eventually("the result to wait in the outbox") {
            ((try? FileManager.default.contentsOfDirectory(atPath: outbox)) ?? []).contains { $0.hasSuffix(".result") }
        }
        agent.process.signal(SIGKILL)
        try await agent.process.wait()
        node.process.signal(SIGCONT)

        let restarted = try TestAgent.start(in: directory, connectingTo: node, agentSN: "once-agent")
        defer { Task { await restarted.process.stop() } }
        let done = try await node.waitForTask(created.task.id)
        #expect(done.task.status == "done" && done.task.complete == 1)
        #expect(String(decoding: done.subtasks[0].result.data, as: UTF8.self) == "finished\n")
        try await eventually("the outbox to be acknowledged and emptied") {
            ((try? FileManager.default.contentsOfDirectory(atPath: outbox)) ?? []).isEmpty
        }
        #expect(try String(contentsOfFile: counter, encoding: .utf8) == "run\n", "the command ran more than once")
    }

    @Test("max_concurrency keeps at most that many hosts busy at once")
    func concurrency() async throws {
        let directory = try makeTemporaryDirectory("task-rate")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: "127.0.0.21")
        defer { Task { await node.process.stop() } }
        let agents = try (0 ..< 3).map { try TestAgent.start(in: directory, name: "agent\($0)", connectingTo: node) }
        defer { for agent in agents { Task { await agent.process.stop() } } }
        for agent in agents { try await node.waitForAgent(agent.agentSN) }

        // Each run records its start and end; with max_concurrency 1 the intervals never overlap.
        let log = "\(directory)/intervals"
        var request = Aspire_V1_CreateTaskRequest()
        request.command = "sync.bash"
        request.agents = agents.map(\.agentSN)
        request.maxConcurrency = "1"
        request.parameters = Self.bash("echo \"start $(date +%s%N)\" >> \(log); sleep 0.3; echo \"end $(date +%s%N)\" >> \(log)")
        let created = try await node.createTask(request)
        let done = try await node.waitForTask(created.task.id)
        #expect(done.task.status == "done")
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 6)
        var running = 0
        for line in lines {
            running += line.hasPrefix("start") ? 1 : -1
            #expect(running <= 1, "two hosts ran at once: \(lines)")
        }
    }

    @Test("Bad task requests are refused with a clear reason")
    func badRequests() async throws {
        let directory = try makeTemporaryDirectory("task-bad")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: "127.0.0.22")
        defer { Task { await node.process.stop() } }
        func refused(_ request: Aspire_V1_CreateTaskRequest, _ fragment: String) async {
            let error = await #expect(throws: RPCError.self) { try await node.createTask(request) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains(fragment) == true, "\(error?.message ?? "") lacks \(fragment)")
        }
        var request = Aspire_V1_CreateTaskRequest()
        request.command = "sync.bash"
        request.agents = ["a"]
        await refused(request, "'cmd' is required")
        request.parameters = Self.bash("true")
        request.parameters.fields["cmdd"] = Google_Protobuf_Value(stringValue: "typo")
        await refused(request, "unknown field 'cmdd'")
        request.parameters = Self.bash("true", timeout: 1.5)
        await refused(request, "whole number")
        request.parameters = Self.bash("true")
        request.command = "rm.everything"
        await refused(request, "unknown command")
        request.command = "sync.bash"
        request.tags = ["svc": "ecs"]
        await refused(request, "not both")
        request.tags = [:]
        request.agents = ["../etc"]
        await refused(request, "agent_sn")
        request.agents = ["a"]
        request.maxConcurrency = "lots"
        await refused(request, "max_concurrency")
        var missing = Aspire_V1_GetTaskRequest()
        missing.id = 4242
        let notFound = await #expect(throws: RPCError.self) { try await node.admin { try await $0.getTask(missing) } }
        #expect(notFound?.code == .notFound)
    }
}
