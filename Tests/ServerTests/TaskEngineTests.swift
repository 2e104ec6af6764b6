import Foundation
import GRPCCore
import RPC
import Server
import SwiftProtobuf
import Testing
import TestSupport

/// The task engine, the session registry and rate control, on a node built in this process,
/// with agents the tests answer by hand over the real protocol.
@Suite("Task engine (in-process node)")
struct TaskEngineTests {
    static func bashTask(_ cmd: String, agents: [String] = [], tags: [String: String] = [:]) -> Aspire_V1_CreateTaskRequest {
        var request = Aspire_V1_CreateTaskRequest()
        request.command = "sync.bash"
        request.agents = agents
        request.tags = tags
        request.parameters.fields["cmd"] = Google_Protobuf_Value(stringValue: cmd)
        return request
    }

    @Test("A host-list task sends each host its command once; results complete it, are acknowledged, and one failure fails it")
    func hostList() async throws {
        try await withLocalNode { node in
            try await ScriptedAgent.connect("web-1", to: node) { first in
                try await ScriptedAgent.connect("web-2", to: node) { second in
                    let created = try await node.createTask(Self.bashTask("uptime", agents: ["web-1", "web-2"]))
                    #expect(created.task.count == 2)
                    let one = try await first.waitForCommands(1).first!
                    let two = try await second.waitForCommands(1).first!
                    #expect(one.method == "sync.bash" && one.bash.cmd == "uptime")
                    #expect(one.id != two.id)
                    first.answer(one, data: "up 1 day")
                    second.answer(two, success: false, retcode: 2)
                    try await first.waitForAck(one.id)
                    try await second.waitForAck(two.id)
                    let detail = try await node.task(created.task.id)
                    #expect(detail.task.complete == 2 && detail.task.failed == 1)
                    #expect(detail.task.status == "failed", "a task with a failed host ends failed")
                    #expect(detail.task.state == .failed)
                    #expect(Set(detail.subtasks.map(\.state)) == [.succeeded, .failed])
                    let bySN = Dictionary(uniqueKeysWithValues: detail.subtasks.map { ($0.agentSn, $0) })
                    #expect(bySN["web-1"]?.status == "succeeded" && bySN["web-1"]?.result.data == Data("up 1 day".utf8))
                    #expect(bySN["web-2"]?.status == "failed" && bySN["web-2"]?.result.retcode == 2)
                    #expect(first.commands.count == 1 && second.commands.count == 1)
                    // The server's own events: the task made, and how it ended.
                    let events = try await node.node.store.events(page: Page(limit: 100)).items.filter { $0.category == "task" }.map(\.message)
                    #expect(events.contains("task \(created.task.id) created by admin: sync.bash on 2 hosts"), "\(events)")
                    #expect(events.contains("task \(created.task.id) failed: 1 of 2 hosts failed"), "\(events)")
                }
            }
        }
    }

    @Test("A host offline when its task is created gets the command when it connects")
    func offlineHost() async throws {
        try await withLocalNode { node in
            let created = try await node.createTask(Self.bashTask("hostname", agents: ["late-1"]))
            #expect(try await node.task(created.task.id).subtasks.first?.status == "pending")
            try await ScriptedAgent.connect("late-1", to: node) { agent in
                let command = try await agent.waitForCommands(1).first!
                agent.answer(command)
                try await agent.waitForAck(command.id)
            }
            #expect(try await node.task(created.task.id).task.status == "done")
        }
    }

    @Test("A tag task reaches exactly the hosts whose tags match, those that join later in its window too")
    func tagTask() async throws {
        try await withLocalNode { node in
            try await ScriptedAgent.connect("ecs-1", tags: ["svc": "ecs"], to: node) { ecs in
                try await ScriptedAgent.connect("rds-1", tags: ["svc": "rds"], to: node) { rds in
                    let created = try await node.createTask(Self.bashTask("true", tags: ["svc": "ecs"]))
                    try await ecs.waitForCommands(1)
                    try await ScriptedAgent.connect("ecs-2", tags: ["svc": "ecs", "zone": "b"], to: node) { late in
                        try await late.waitForCommands(1)
                        // Both ecs hosts have theirs; the engine had its chance at rds-1 too.
                        #expect(rds.commands.isEmpty)
                        let detail = try await node.task(created.task.id)
                        #expect(Set(detail.subtasks.map(\.agentSn)) == ["ecs-1", "ecs-2"])
                        #expect(detail.task.status == "running", "a tag task stays open through its window")
                    }
                }
            }
        }
    }

    @Test("max_concurrency 1: one host holds the command at a time; each result frees the place for the next")
    func concurrency() async throws {
        try await withLocalNode { node in
            try await ScriptedAgent.connect("r-1", to: node) { a in
                try await ScriptedAgent.connect("r-2", to: node) { b in
                    try await ScriptedAgent.connect("r-3", to: node) { c in
                        let agents = [a, b, c]
                        var request = Self.bashTask("true", agents: agents.map(\.agentSN))
                        request.maxConcurrency = "1"
                        let created = try await node.createTask(request)
                        var served: Set<String> = []
                        for round in 1 ... 3 {
                            try await eventually("round \(round): one more host has its command") {
                                agents.filter { !$0.commands.isEmpty }.count == round
                            }
                            let holders = agents.filter { !$0.commands.isEmpty && !served.contains($0.agentSN) }
                            #expect(holders.count == 1, "round \(round): \(holders.map(\.agentSN)) hold commands at once")
                            #expect(agents.map(\.commands.count).reduce(0, +) == round)
                            for holder in holders {
                                holder.answer(holder.commands[0])
                                try await holder.waitForAck(holder.commands[0].id)
                                served.insert(holder.agentSN)
                            }
                        }
                        #expect(try await node.task(created.task.id).task.status == "done")
                    }
                }
            }
        }
    }

    @Test("max_errors 0: after the first failure no new host gets the command, and the task fails")
    func errorThreshold() async throws {
        try await withLocalNode { node in
            try await ScriptedAgent.connect("e-1", to: node) { a in
                try await ScriptedAgent.connect("e-2", to: node) { b in
                    var request = Self.bashTask("false", agents: ["e-1", "e-2"])
                    request.maxConcurrency = "1"
                    request.maxErrors = "0"
                    let created = try await node.createTask(request)
                    try await eventually("one host has the command") { a.commands.count + b.commands.count == 1 }
                    let (failing, other) = a.commands.isEmpty ? (b, a) : (a, b)
                    failing.answer(failing.commands[0], success: false, retcode: 1)
                    var detail = try await node.task(created.task.id)
                    try await eventually("the task to fail: \(detail.task)") {
                        detail = try await node.task(created.task.id)
                        return detail.task.status == "failed"
                    }
                    #expect(other.commands.isEmpty, "a host got the command after the error threshold was passed")
                    #expect(detail.subtasks.first { $0.agentSn == other.agentSN }?.status == "cancelled")
                }
            }
        }
    }

    @Test("A second stream of the same AgentSN replaces the first; commands go to the new one; the host is offline once it leaves")
    func sessionReplaced() async throws {
        try await withLocalNode { node in
            try await ScriptedAgent.connect("twin", to: node) { old in
                try await ScriptedAgent.connect("twin", to: node) { new in
                    try await eventually("the node to close the first stream") { old.ended }
                    #expect(node.node.registry.count == 1)
                    _ = try await node.createTask(Self.bashTask("true", agents: ["twin"]))
                    let command = try await new.waitForCommands(1).first!
                    new.answer(command)
                    try await new.waitForAck(command.id)
                    #expect(old.commands.isEmpty)
                }
            }
            try await eventually("the host to go offline") {
                var request = Aspire_V1_GetHostRequest()
                request.agentSn = "twin"
                return try await node.admin { try await $0.getHost(request) }.status == "offline"
            }
            #expect(node.node.registry.count == 0)
        }
    }

    @Test("Bad task requests are refused with a clear reason")
    func badRequests() async throws {
        try await withLocalNode { node in
            func refused(_ request: Aspire_V1_CreateTaskRequest, _ fragment: String) async {
                let error = await #expect(throws: RPCError.self) { try await node.createTask(request) }
                #expect(error?.code == .invalidArgument)
                #expect(error?.message.contains(fragment) == true, "\(error?.message ?? "") lacks \(fragment)")
            }
            var request = Self.bashTask("true", agents: ["a"])
            request.parameters = Google_Protobuf_Struct()
            await refused(request, "'cmd' is required")
            request.parameters = Self.bashTask("true").parameters
            request.parameters.fields["cmdd"] = Google_Protobuf_Value(stringValue: "typo")
            await refused(request, "unknown field 'cmdd'")
            request.parameters = Self.bashTask("true").parameters
            request.parameters.fields["timeout"] = Google_Protobuf_Value(numberValue: 1.5)
            await refused(request, "whole number")
            request.parameters = Self.bashTask("true").parameters
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

    @Test("A task stored before typed commands were kept is still delivered, translated from its JSON body")
    func storedWithoutTypedCommand() async throws {
        try await withLocalNode { node in
            let (task, _) = try await node.store.createTask(NewTask(command: "sync.bash", body: #"{"cmd":"echo old","user":"nobody"}"#), agents: ["old-1"])
            #expect(task.typed == nil)
            try await ScriptedAgent.connect("old-1", to: node) { agent in
                let command = try await agent.waitForCommands(1).first!
                #expect(command.method == "sync.bash" && command.bash.cmd == "echo old" && command.bash.user == "nobody")
                #expect(command.id == (try await node.task(Int64(task.id))).subtasks.first?.id)
            }
        }
    }

    @Test("A task keeps the typed command it was made with, and the Admin API gives task and subtask states as enums")
    func typedCommandStored() async throws {
        try await withLocalNode { node in
            var request = Self.bashTask("uptime", agents: ["t-1"])
            request.parameters.fields["timeout"] = Google_Protobuf_Value(numberValue: 30)
            let created = try await node.createTask(request)
            let stored = try #require(try await node.store.task(id: Int(created.task.id)))
            #expect(stored.typed?.method == "sync.bash" && stored.typed?.bash.cmd == "uptime" && stored.typed?.bash.timeout == 30)
            #expect(created.task.state == .pending && created.subtasks.first?.state == .pending)
        }
    }

    @Test("A RunCommand result counts only from the host it was sent to: another host naming its id changes nothing")
    func runCommandMatchesHost() async throws {
        try await withLocalNode { node in
            try await ScriptedAgent.connect("target-1", to: node) { target in
                try await ScriptedAgent.connect("impostor-1", to: node) { impostor in
                    var request = Aspire_V1_RunCommandRequest()
                    request.agentSn = "target-1"
                    request.command = Aspire_V1_Command(.bash, .bash({ var bash = Aspire_V1_BashParams(); bash.cmd = "hostname"; return bash }()))
                    request.waitSeconds = 30
                    let call = Task { try await node.admin { try await $0.runCommand(request) } }
                    let command = try await target.waitForCommands(1).first!
                    impostor.answer(command, data: "forged")
                    try await impostor.waitForAck(command.id)
                    target.answer(command, data: "real")
                    let answer = try await call.value
                    #expect(String(decoding: answer.result.data, as: UTF8.self) == "real")
                }
            }
        }
    }
}
