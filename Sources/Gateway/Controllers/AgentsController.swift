import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import RPC
import SwiftProtobuf

/// The seed's plain-HTTP agents: status reports answered with their jobs, and job results.
struct AgentsController: GatewayController {
    let gateway: Gateway

    /// The schemas its routes refer to, for the OpenAPI document.
    /// Uptimes and times the seed's agents send, in milliseconds.
    static var milliseconds: ClosedRange<Int64> { 0 ... Int64(Int32.max) * 1000 }

    var schemas: [String: Schema] {
        [
            "AgentStatus": .object(
                [
                    "agentsn": .string, "hostname": .string, "version": .string, "uptime": .bounded(Self.milliseconds), "timestamp": .bounded(Self.milliseconds),
                    "step": .integer, "tags": .object([:], additional: .oneOf([.string, .number])),
                    "agents": .array(
                        .object(["name": .string, "version": .string, "status": .string, "uptime": .bounded(Self.milliseconds)], required: ["name"])
                    ),
                ],
                required: ["hostname"]
            ),
            "Job": .object(
                [
                    "id": .string, "action": .string, "method": .string, "name": .string, "version": .string,
                    "url": .string, "checksum": .string, "envs": .object([:], additional: .string),
                    "limits": .object([:], additional: .string), "svrlist": .string, "step": .integer,
                    "tags": .object([:], additional: .string), "cmd": .string, "timeout": .integer, "user": .string,
                    "group": .string, "args": .string,
                ],
                required: ["id", "action"]
            ),
            "JobResult": .object(
                ["id": .string, "errcode": .integer, "message": .string, "data": .string],
                // A result without errcode is a success (the seed's agents write it either way), and
                // the fields of other agents' versions are let through.
                required: ["id"],
                additional: .any
            ),
        ]
    }

    var endpoints: [Endpoint] {
        [
            Endpoint(
                Route(
                    id: "agentStatus",
                    rpc: "AgentPoll.Report", method: "POST", path: "/agent/status",
                    summary: "The seed's plain-HTTP status report; the answer carries the jobs due for the host.",
                    access: .agent,
                    body: [(Route.json, .ref("AgentStatus"))],
                    response: .object(["errcode": .integer, "jobs": .array(.ref("Job"))], required: ["errcode", "jobs"])
                )
            ) { route, request, context, metadata in
                let query = Query(request)
                let headerSN = request.headers[HTTPField.Name("X-Agent-SN")!] ?? query.string("agentsn")
                let body = try await self.gateway.objectBody(request, route: route)
                var message = Aspire_V1_PollRequest()
                message.ipaddr = context.remoteAddress
                message.status.hostname = try body.string("hostname")
                message.status.version = try body.string("version")
                message.status.uptime = try body.integer("uptime", range: Self.milliseconds) ?? 0
                message.status.timestamp = try body.integer("timestamp", range: Self.milliseconds) ?? 0
                message.status.step = Int32(try body.integer("step", range: 0 ... 86400) ?? 0)
                message.status.tags = try body.stringMap("tags")
                for agent in try self.subAgents(body) {
                    message.status.agents.append(agent)
                }
                message.agentSn = try body.string("agentsn")
                if message.agentSn.isEmpty { message.agentSn = headerSN }
                if message.agentSn.isEmpty { message.agentSn = message.status.hostname }
                guard !message.agentSn.isEmpty else {
                    throw AspireError(.badRequest, "name the host: agentsn, X-Agent-SN or hostname")
                }
                let answer = try await self.gateway.poll.report(message, metadata: metadata)
                let jobs = answer.commands.map { command in
                    var job = RESTJSON.job(command)
                    if case .subagent(let params)? = command.params, let link = self.gateway.downloadURL(for: params.url, request: request) {
                        job["url"] = link
                    }
                    return job
                }
                return Answer.json(["errcode": 0, "jobs": jobs], status: 200)
            },
            Endpoint(
                Route(
                    id: "agentJobResult",
                    rpc: "AgentPoll.SubmitResults", method: "POST", path: "/agent/job/result",
                    summary: "The seed's plain-HTTP job results; a non-zero errcode makes the agent send them again.",
                    access: .agent,
                    query: [
                        Route.query(
                            "agentsn", .string,
                            "The reporting host (also taken from X-Agent-SN); without one, as in the seed's body, each job's id says whose it is."
                        )
                    ],
                    body: [(Route.json, .array(.ref("JobResult")))],
                    response: .object(["errcode": .integer, "stored": .array(.string)], required: ["errcode"])
                )
            ) { route, request, _, metadata in
                let query = Query(request)
                let headerSN = request.headers[HTTPField.Name("X-Agent-SN")!] ?? query.string("agentsn")
                let value = try await self.gateway.jsonBody(request, route: route)
                let context = route.name
                let items: [Google_Protobuf_Value]
                switch value.kind {
                case .listValue(let list)?: items = list.values
                case .structValue?: items = [value]
                default: throw AspireError(.badRequest, "\(context): the body must be an array of results")
                }
                var message = Aspire_V1_SubmitResultsRequest()
                message.agentSn = headerSN
                for (index, item) in items.enumerated() {
                    guard case .structValue(let object)? = item.kind else {
                        throw AspireError(.badRequest, "\(context): result \(index) must be an object")
                    }
                    let fields = JSONFields(object.fields, context: "\(context) [\(index)]", code: .badRequest)
                    var result = Aspire_V1_CommandResult()
                    result.id = try fields.string("id", required: true)
                    result.retcode = Int32(try fields.integer("errcode", range: Int(Int32.min) ... Int(Int32.max)) ?? 0)
                    result.resp = result.retcode == 0 ? .success : .failed
                    result.message = try fields.string("message")
                    result.data = Data(try fields.string("data").utf8)
                    if message.agentSn.isEmpty { message.agentSn = try fields.string("agentsn") }
                    message.results.append(result)
                }
                // No host named (the seed's own body): each job's id says whose it is.
                let answer = try await self.gateway.poll.submitResults(message, metadata: metadata)
                let missing = Set(message.results.map(\.id)).subtracting(answer.stored)
                // A result the store could not take is sent again by the agent (errcode != 0).
                return Answer.json(
                    ["errcode": missing.isEmpty ? 0 : Int(ErrorCode.internalError.rawValue), "stored": answer.stored],
                    status: 200
                )
            },
        ]
    }

    func subAgents(_ body: JSONFields) throws -> [Aspire_V1_SubAgentStatus] {
        guard let value = body.fields["agents"], !JSONFields.isNull(value) else { return [] }
        guard case .listValue(let list)? = value.kind else {
            throw AspireError(.badRequest, "\(body.context): 'agents' must be an array")
        }
        return try list.values.enumerated().map { index, item in
            guard case .structValue(let object)? = item.kind else {
                throw AspireError(.badRequest, "\(body.context): agents[\(index)] must be an object")
            }
            let fields = JSONFields(object.fields, context: "\(body.context) agents[\(index)]", code: .badRequest)
            var agent = Aspire_V1_SubAgentStatus()
            agent.name = try fields.string("name", required: true)
            agent.version = try fields.string("version")
            agent.status = try fields.string("status")
            agent.uptime = try fields.integer("uptime", range: Self.milliseconds) ?? 0
            agent.pid = Int32(try fields.integer("pid", range: 0 ... Int(Int32.max)) ?? 0)
            agent.restarts = Int32(try fields.integer("restarts", range: 0 ... Int(Int32.max)) ?? 0)
            return agent
        }
    }
}
