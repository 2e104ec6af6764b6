import Foundation
import GRPCCore
import RPC
import Server
import SwiftProtobuf
import Testing
import TestSupport

/// The audit trail on an in-process node.
@Suite("Audit trail")
struct AuditTests {
    @Test("One row per mutating call with its operator (refusals too), one per dispatch, none for reads; no secret in the trail or the log")
    func trail() async throws {
        try await withLocalNode { node in
            let alice = try await node.admin { admin in
                try await admin.createOperator(.with { $0.name = "alice"; $0.role = "operator" })
            }
            let join = try await node.admin { try await $0.createJoinToken(.with { $0.maxUses = 1 }) }
            try await ScriptedAgent.connect("aud-1", tags: ["env": "qa"], to: node) { agent in
                let detail = try await node.withClient(token: alice.secret) { client in
                    try await Aspire_V1_Admin.Client(wrapping: client).createTask(TaskEngineTests.bashTask("echo audited", agents: ["aud-1"]))
                }
                let command = try await agent.waitForCommands(1).first!
                agent.answer(command)
                try await agent.waitForAck(command.id)
                _ = try await node.withClient(token: alice.secret) { try await Aspire_V1_Admin.Client(wrapping: $0).listHosts(.init()) }
                let refused = await #expect(throws: RPCError.self) {
                    try await node.withClient(token: alice.secret) { client in
                        try await Aspire_V1_Admin.Client(wrapping: client).createTag(.with { $0.name = "a"; $0.value = "b" })
                    }
                }
                #expect(refused?.code == .permissionDenied)

                let all = try await node.admin { try await $0.listAudit(.with { $0.limit = 1000 }) }.entries
                let mine = try await node.admin { try await $0.listAudit(.with { $0.operator = "alice" }) }.entries
                #expect(Set(mine.map(\.method)) == ["CreateTask", "CreateTag", "dispatch"], "\(mine.map(\.method))")
                let created = try #require(mine.first { $0.method == "CreateTask" })
                #expect(mine.filter { $0.method == "CreateTask" }.count == 1)
                #expect(created.outcome == "ok" && created.role == "operator" && created.task == detail.task.id)
                #expect(created.resolved == #"["aud-1"]"# && created.targets.contains("aud-1"))
                #expect(created.command.contains("echo audited") && created.digest.count == 64 && !created.address.isEmpty)
                let dispatch = try #require(mine.first { $0.method == "dispatch" })
                #expect(dispatch.targets == "aud-1" && dispatch.subtask == command.id && dispatch.task == detail.task.id)
                let tagRow = try #require(mine.first { $0.method == "CreateTag" })
                #expect(tagRow.outcome.contains("permissionDenied"), "\(tagRow.outcome)")
                #expect(!all.contains { $0.method == "ListHosts" || $0.method == "ListAudit" })
                #expect(all.contains { $0.method == "CreateOperator" && $0.actor == "admin" })
                #expect(all.contains { $0.method == "CreateJoinToken" && $0.actor == "admin" })
                #expect(all.contains { $0.method == "Enroll" && $0.actor == "host:aud-1" && $0.outcome == "ok" })
                let later = try await node.admin { try await $0.listAudit(.with { $0.sinceUnixMs = Date().unixMilliseconds + 60_000 }) }
                #expect(later.entries.isEmpty)

                // The test's secrets appear nowhere: not in the trail, not in the node's log.
                let secrets = [alice.secret, join.secret, node.node.adminToken, node.node.enrollmentToken]
                let trail = all.map { "\($0.targets) \($0.resolved) \($0.command) \($0.outcome)" }.joined(separator: "\n")
                let log = try String(contentsOfFile: node.logPath, encoding: .utf8)
                for secret in secrets {
                    #expect(!trail.contains(secret))
                    #expect(!log.contains(secret))
                }
            }
        }
    }
}
