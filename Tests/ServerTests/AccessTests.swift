import Foundation
import Gateway
import GRPCCore
import GRPCNIOTransportHTTP2
import RPC
import Server
import SwiftProtobuf
import Testing
import TestSupport

/// Who may call what: every Admin method and REST route against every role, and an operator's scope.
@Suite("Operators, roles and scopes")
struct AccessTests {
    @Test("Every Admin method and REST route has a permission in the one table; each role is let through exactly where the table says")
    func tableWalk() async throws {
        try await withLocalNode { node in
            // The table covers every method the service has, and every route names one.
            let methods = Aspire_V1_Admin.Method.descriptors.map(\.method)
            #expect(Set(methods) == Set(AccessTable.admin.keys), "methods and table differ")
            for route in node.node.gateway.routes where route.access != .agent {
                let rpc = try #require(route.rpc, "\(route.name) names no service method")
                #expect(AccessTable.permission(route: rpc) != nil, "\(route.name): \(rpc) is not in the table")
            }

            var tokens: [Role: String] = [.admin: node.node.adminToken]
            for role in [Role.viewer, .operator, .metrics] {
                var request = Aspire_V1_CreateOperatorRequest()
                request.name = "walk-\(role.rawValue)"
                request.role = role.rawValue
                tokens[role] = try await node.admin { try await $0.createOperator(request) }.secret
            }

            // gRPC: each method with an empty message, as each role.
            for descriptor in Aspire_V1_Admin.Method.descriptors {
                let permission = try #require(AccessTable.admin[descriptor.method])
                for (role, token) in tokens {
                    let code = try await node.withClient(token: token) { client in await Self.callEmpty(descriptor, on: client) }
                    if role.permissions.contains(permission) {
                        #expect(code != .permissionDenied && code != .unauthenticated, "\(role) \(descriptor.method): \(String(describing: code))")
                    } else {
                        #expect(code == .permissionDenied, "\(role) \(descriptor.method): \(String(describing: code))")
                    }
                }
            }

            // REST: each route, as each role (empty JSON bodies, no query).
            let roleTokens = tokens
            try await node.withREST { client in
                for route in node.node.gateway.routes where route.access != .agent {
                    let rpc = try #require(route.rpc)
                    let permission = try #require(AccessTable.permission(route: rpc))
                    for (role, token) in roleTokens {
                        let rest = RESTClient(router: client, token: token)
                        let answer = try await rest.call(route.method, route.path, json: route.body.isEmpty ? nil : [String: Any]())
                        if role.permissions.contains(permission) {
                            #expect(answer.status != 401 && answer.status != 403, "\(role) \(route.name): \(answer.status) \(answer.text)")
                        } else {
                            #expect(answer.status == 403 && answer.code == Int(ErrorCode.permissionDenied.rawValue), "\(role) \(route.name): \(answer.text)")
                        }
                    }
                }
            }

            // A revoked operator is unknown from then on; who-am-I names the caller.
            #expect(try await node.withClient(token: tokens[.viewer]!) { try await Aspire_V1_Admin.Client(wrapping: $0).whoAmI(.init()) }.role == "viewer")
            var revoke = Aspire_V1_RevokeOperatorRequest()
            revoke.name = "walk-viewer"
            _ = try await node.admin { try await $0.revokeOperator(revoke) }
            let gone = await #expect(throws: RPCError.self) {
                try await node.withClient(token: tokens[.viewer]!) { try await Aspire_V1_Admin.Client(wrapping: $0).listHosts(.init()) }
            }
            #expect(gone?.code == .unauthenticated)
        }
    }

    @Test("An operator scoped to env=staging reaches staging hosts, and no env=prod host by AgentSN, tag, schedule or plugin; nothing is created by a refusal")
    func scope() async throws {
        try await withLocalNode { node in
            var create = Aspire_V1_CreateOperatorRequest()
            create.name = "stager"
            create.role = "operator"
            create.scope = ["env": "staging"]
            let token = try await node.admin { try await $0.createOperator(create) }.secret
            let viewer = Aspire_V1_CreateOperatorRequest.with { $0.name = "look"; $0.role = "viewer" }
            let viewerToken = try await node.admin { try await $0.createOperator(viewer) }.secret
            try await ScriptedAgent.connect("stg-1", tags: ["env": "staging", "role": "web"], to: node) { staging in
                try await ScriptedAgent.connect("prod-1", tags: ["env": "prod", "role": "web"], to: node) { _ in
                    // The admin's own prod task and schedule, which the operator may not touch.
                    let prodTask = try await node.createTask(TaskEngineTests.bashTask("true", agents: ["prod-1"]))
                    var prodSchedule = Aspire_V1_CreateScheduleRequest()
                    prodSchedule.schedule.name = "prod-nightly"
                    prodSchedule.schedule.expr = "0 0 3 * * *"
                    prodSchedule.schedule.command = "true"
                    prodSchedule.tags = ["env": "prod"]
                    _ = try await node.admin { [prodSchedule] in try await $0.createSchedule(prodSchedule) }
                    let prodDeployment = Aspire_V1_ApplyDeploymentRequest.with { request in
                        request.spec.name = "prod-agent"
                        request.spec.version = "1.0"
                        request.spec.url = "https://files.example.com/prod-agent-1.0.tar.gz"
                        request.spec.checksum = "SHA256:" + String(repeating: "ab", count: 32)
                        request.spec.tags = ["env": "prod"]
                    }
                    _ = try await node.admin { try await $0.applyDeployment(prodDeployment) }
                    let sneaky = Aspire_V1_CreateScheduleRequest.with { request in
                        request.schedule = prodSchedule.schedule
                        request.schedule.name = "sneaky"
                        request.agents = ["prod-1"]
                    }

                    let refusals: [(String, @Sendable (Aspire_V1_Admin.Client<HTTP2ClientTransport.Posix>) async throws -> Void)] = [
                        ("RunCommand on a prod host", { admin in
                            var request = Aspire_V1_RunCommandRequest()
                            request.agentSn = "prod-1"
                            request.command = Aspire_V1_Command(id: "", .bash, .bash(Aspire_V1_BashParams.with { $0.cmd = "true" }))
                            _ = try await admin.runCommand(request)
                        }),
                        ("a task by AgentSN", { admin in _ = try await admin.createTask(TaskEngineTests.bashTask("true", agents: ["stg-1", "prod-1"])) }),
                        ("a task by the prod tag", { admin in _ = try await admin.createTask(TaskEngineTests.bashTask("true", tags: ["env": "prod"])) }),
                        ("a task by a tag outside the scope", { admin in _ = try await admin.createTask(TaskEngineTests.bashTask("true", tags: ["role": "web"])) }),
                        ("a schedule on a prod host", { admin in _ = try await admin.createSchedule(sneaky) }),
                        ("disabling the prod schedule", { admin in
                            _ = try await admin.setScheduleEnabled(.with { $0.name = "prod-nightly"; $0.enabled = false })
                        }),
                        ("cancelling the prod task", { admin in _ = try await admin.cancelTask(.with { $0.id = prodTask.task.id }) }),
                        ("a plugin for prod", { admin in
                            var request = Aspire_V1_CreatePluginRequest()
                            request.plugin.name = "probe"
                            request.tags = ["env": "prod"]
                            _ = try await admin.createPlugin(request)
                        }),
                        ("a deployment for prod", { admin in
                            var request = prodDeployment
                            request.spec.name = "other"
                            request.spec.tags = ["role": "web"]
                            _ = try await admin.applyDeployment(request)
                        }),
                        ("a new version of the prod deployment", { admin in
                            var request = prodDeployment
                            request.spec.version = "2.0"
                            request.spec.tags = ["env": "staging"]
                            _ = try await admin.applyDeployment(request)
                        }),
                        ("pausing the prod deployment", { admin in _ = try await admin.controlDeployment(.with { $0.name = "prod-agent"; $0.action = "pause" }) }),
                        ("deleting the prod deployment", { admin in _ = try await admin.deleteDeployment(.with { $0.name = "prod-agent" }) }),
                    ]
                    for (what, call) in refusals {
                        let error = await #expect(throws: RPCError.self, "\(what)") {
                            try await node.withClient(token: token) { try await call(Aspire_V1_Admin.Client(wrapping: $0)) }
                        }
                        #expect(error?.code == .permissionDenied, "\(what): \(String(describing: error))")
                        #expect(error?.message.contains("stager") == true, "\(what): \(String(describing: error))")
                    }
                    // A viewer mutates nothing at all.
                    let viewing = await #expect(throws: RPCError.self) {
                        try await node.withClient(token: viewerToken) { client in
                            _ = try await Aspire_V1_Admin.Client(wrapping: client).createTask(TaskEngineTests.bashTask("true", agents: ["stg-1"]))
                        }
                    }
                    #expect(viewing?.code == .permissionDenied)

                    // Inside the scope it works: by AgentSN and by a selector that includes the scope.
                    let byName = try await node.withClient(token: token) { client in
                        try await Aspire_V1_Admin.Client(wrapping: client).createTask(TaskEngineTests.bashTask("hostname", agents: ["stg-1"]))
                    }
                    let command = try await staging.waitForCommands(1).first!
                    staging.answer(command)
                    try await staging.waitForAck(command.id)
                    _ = try await node.withClient(token: token) { client in
                        try await Aspire_V1_Admin.Client(wrapping: client).createTask(TaskEngineTests.bashTask("true", tags: ["env": "staging", "role": "web"]))
                    }
                    // Nothing of the refusals was created: the admin's task, and the two allowed.
                    let tasks = try await node.admin { try await $0.listTasks(.init()) }
                    #expect(tasks.tasks.count == 3 && tasks.tasks.contains { $0.id == byName.task.id })
                    let schedules = try await node.admin { try await $0.listSchedules(.init()) }
                    #expect(schedules.schedules.map(\.schedule.name) == ["prod-nightly"] && !schedules.schedules[0].schedule.disabled)
                    let plugins = try await node.admin { try await $0.listPlugins(.init()) }
                    #expect(plugins.plugins.isEmpty)
                    let deployments = try await node.admin { try await $0.listDeployments(.init()) }
                    #expect(deployments.deployments.map { "\($0.spec.name) \($0.spec.version)" } == ["prod-agent 1.0"])
                }
            }
        }
    }

    /// Calls `descriptor` with an empty message and answers the status code (nil: success).
    static func callEmpty(_ descriptor: MethodDescriptor, on client: GRPCClient<HTTP2ClientTransport.Posix>) async -> RPCError.Code? {
        do {
            if descriptor.method == "UploadPackage" {
                let request = StreamingClientRequest<[UInt8]>(of: [UInt8].self) { writer in try await writer.write([]) }
                try await client.clientStreaming(
                    request: request, descriptor: descriptor, serializer: RawBytes(), deserializer: RawBytes(), options: .defaults
                ) { _ = try $0.message }
            } else {
                try await client.unary(
                    request: ClientRequest(message: []), descriptor: descriptor, serializer: RawBytes(), deserializer: RawBytes(), options: .defaults
                ) { _ = try $0.message }
            }
            return nil
        } catch let error as RPCError {
            return error.code
        } catch {
            return .unknown
        }
    }
}

/// Messages as their bytes: an empty message of any type is zero bytes.
struct RawBytes: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}
