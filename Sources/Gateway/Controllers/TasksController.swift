import AsyncAlgorithms
import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import RPC
import SwiftProtobuf

/// Tasks (by host list or by tags in a window, with rate control) and one-off commands.
struct TasksController: GatewayController {
    let gateway: Gateway

    /// How long a command's caller may wait, seconds.
    static var waits: ClosedRange<Int64> { 0 ... 86_400 }
    /// What every command request carries beside its method's fields.
    static var commandFields: [String: Schema] {
        ["agentsn": OpenAPI.agentSN, "id": .matching(CommandID.pattern), "wait": .bounded(Self.waits), "async": .boolean]
    }
    /// The methods a command request runs with args alone, and with nothing at all.
    static var getInfoMethods: [String] { CommandMethod.GetInfoTopic.allCases.map { CommandMethod.getInfo($0).taskName } }
    static var plainMethods: [String] { [CommandMethod.config.taskName, CommandMethod.plugin(.list).taskName] }

    /// The schemas its routes refer to, for the OpenAPI document.
    var schemas: [String: Schema] {
        [
            "TaskRequest": .allOf([
                .object(
                    [
                        "command": .enumeration(CommandParameters.methods),
                        "agents": .array(OpenAPI.agentSN),
                        "tags": OpenAPI.tags(),
                        "window": .object(["start": Self.windowTime, "end": Self.windowTime]),
                        "parameters": .object([:], additional: .any),
                        "max_concurrency": RateLimitText.schema(minimumCount: 0),
                        "max_errors": RateLimitText.schema(minimumCount: 0),
                        "user": .string,
                    ],
                    required: ["command"]
                ),
                OpenAPI.oneTarget,
                // Each method's parameters, as the task engine reads them.
                .oneOf(CommandMethod.taskMethods.map { method in
                    .object(
                        ["command": .enumeration([method.taskName]), "parameters": CommandParameters.schema(for: method)],
                        required: CommandParameters.needsParameters(method) ? ["command", "parameters"] : ["command"], additional: .any
                    )
                }),
            ]),
            "Task": .object(
                [
                    "id": .integer, "status": .enumeration(["pending", "running", "done", "failed", "cancelled"]),
                    "user": .string, "command": .string, "parameters": .object([:], additional: .any),
                    "tags": .object([:], additional: .string),
                    "window": .object(["start": OpenAPI.time, "end": OpenAPI.time]),
                    "max_concurrency": .string, "max_errors": .string,
                    "count": .integer, "complete": .integer, "failed": .integer, "gmt_create": OpenAPI.time, "gmt_modify": OpenAPI.time,
                ],
                required: ["id", "status", "command", "count", "complete", "failed", "gmt_create", "gmt_modify"]
            ),
            "Subtask": .object(
                [
                    "id": .string, "agentsn": .string,
                    "status": .enumeration(["pending", "dispatched", "succeeded", "failed", "undeliverable", "cancelled"]),
                    "result": .ref("CommandResult"), "gmt_create": OpenAPI.time, "gmt_modify": OpenAPI.time,
                ],
                required: ["id", "agentsn", "status", "gmt_create", "gmt_modify"]
            ),
            // One shape per kind of method: the route carries only cmd, timeout, user, group and
            // args, so the methods it can run are those these make whole (a test holds the lists
            // to CommandParameters).
            "CommandRequest": .oneOf([
                .object(
                    Self.commandFields.merging([
                        "method": .enumeration([CommandMethod.bash.taskName]), "cmd": .string, "timeout": .bounded(CommandParameters.bashTimeouts),
                        "user": .matching(AccountName.pattern), "group": .matching(AccountName.pattern),
                    ]) { $1 },
                    required: ["agentsn", "method", "cmd"]
                ),
                .object(
                    Self.commandFields.merging(["method": .enumeration(Self.getInfoMethods), "args": .string]) { $1 },
                    required: ["agentsn", "method"]
                ),
                .object(Self.commandFields.merging(["method": .enumeration(Self.plainMethods)]) { $1 }, required: ["agentsn", "method"]),
            ]),
            "CommandResult": .object(
                [
                    "id": .string, "resp": .enumeration(["success", "failed"]), "retcode": .integer, "message": .string,
                    "data": .any, "data_encoding": .string, "stderr": .string, "truncated": .boolean,
                    "stdout_bytes": .integer, "stderr_bytes": .integer, "started": .integer, "finished": .integer,
                ],
                required: ["id", "resp", "retcode", "message"]
            ),
        ]
    }

    var endpoints: [Endpoint] {
        [
            Endpoint(
                Route(
                    id: "createTask",
                    rpc: "CreateTask", method: "POST", path: "/api/v1/server/task",
                    summary: "Creates a task for a list of AgentSNs (one subtask each) or for the hosts carrying tags within a window.",
                    body: [(Route.json, .ref("TaskRequest"))],
                    response: .envelope([
                        "id": .integer, "results": .array(.object(["AgentSN": .string], required: ["AgentSN"])),
                        "task": .ref("Task"), "subtasks": .array(.ref("Subtask")),
                    ])
                )
            ) { route, request, _, metadata in
                let message = try await self.taskRequest(request, route: route)
                let detail = try await self.gateway.admin.createTask(message, metadata: metadata)
                var payload = RESTJSON.taskDetail(detail)
                payload["id"] = Int(detail.task.id)
                payload["results"] = detail.subtasks.map { ["AgentSN": $0.agentSn] }
                return Answer.success(payload)
            },
            Endpoint(
                Route(
                    id: "getTasks",
                    rpc: "GetTask", method: "GET", path: "/api/v1/server/task",
                    summary: "With id: one task, its counts and every subtask with its result. Without: tasks, newest first.",
                    query: [Route.query("id", .bounded(1 ... Int64.max), "Task id.")] + Route.paging,
                    response: .envelope([
                        "task": .ref("Task"), "subtasks": .array(.ref("Subtask")),
                        "count": .integer, "offset": .integer, "limit": .integer, "tasks": .array(.ref("Task")),
                    ])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                if let id = try query.integer("id") {
                    var message = Aspire_V1_GetTaskRequest()
                    message.id = id
                    return Answer.success(RESTJSON.taskDetail(try await self.gateway.admin.getTask(message, metadata: metadata)))
                }
                var message = Aspire_V1_ListTasksRequest()
                (message.offset, message.limit) = try query.page()
                let answer = try await self.gateway.admin.listTasks(message, metadata: metadata)
                return Answer.success([
                    "count": Int(answer.count), "offset": Int(message.offset), "limit": Int(message.limit == 0 ? 50 : message.limit),
                    "tasks": answer.tasks.map(RESTJSON.task),
                ])
            },
            Endpoint(
                Route(
                    id: "cancelTask",
                    rpc: "CancelTask", method: "DELETE", path: "/api/v1/server/task", summary: "Cancels a task's undelivered subtasks.",
                    query: [Route.query("id", .bounded(1 ... Int64.max), "Task id.", required: true)],
                    response: .envelope(["task": .ref("Task"), "subtasks": .array(.ref("Subtask"))])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var message = Aspire_V1_CancelTaskRequest()
                message.id = try query.integer("id") ?? 0
                return Answer.success(RESTJSON.taskDetail(try await self.gateway.admin.cancelTask(message, metadata: metadata)))
            },
            Endpoint(
                Route(
                    id: "runCommand",
                    rpc: "RunCommand", method: "POST", path: "/api/v1/server/command",
                    summary: """
                        Runs one command on one host (through whichever node holds it) and answers the seed's result form once \
                        it answers. Each command is a task of one host: with "async": true the answer is at once, \
                        {"task": ID, "id": COMMAND_ID}, and GET /api/v1/server/task?id=ID reads the result.
                        """,
                    body: [(Route.json, .ref("CommandRequest"))],
                    // The result, or with async the task and command ids.
                    response: .oneOf([.ref("CommandResult"), .envelope(["task": .integer, "id": .string], required: ["task", "id"])])
                )
            ) { route, request, _, metadata in
                let message = try await self.commandRequest(request, route: route)
                let answer = try await self.gateway.admin.runCommand(message, metadata: metadata)
                if message.detach { return Answer.success(["task": Int(answer.taskID), "id": answer.commandID]) }
                return Answer.json(answer.result, status: 200)
            },
            Endpoint(
                Route(
                    id: "runCommandStream",
                    rpc: "RunCommandStream", method: "POST", path: "/api/v1/server/command/stream",
                    summary: """
                        The same command, followed as Server-Sent Events: `accepted` {task, id, node}, then `output` \
                        {seq, stream, data} as the host prints, `lost` {chunks} where a slow reader missed some, and \
                        `result` (the seed's result form) last; `error` (the error envelope) when it cannot run.
                        """,
                    body: [(Route.json, .ref("CommandRequest"))],
                    response: .any,
                    text: "text/event-stream"
                )
            ) { route, request, _, metadata in
                let message = try await self.commandRequest(request, route: route)
                let admin = self.gateway.admin
                // The call's events go to the client as it reads them: a channel hands one over at
                // a time, so a slow reader holds up the call, and the node (which keeps a bounded
                // backlog per command) drops old output for it, never the result.
                let events = AsyncChannel<StreamEvent>()
                let call = Task {
                    defer { events.finish() }
                    do {
                        try await admin.runCommandStream(message, metadata: metadata) { response in
                            for try await event in response.messages {
                                guard let (name, object) = Self.serverSentEvent(event) else { continue }
                                await events.send(.event(Self.serverSent(name, object)))
                            }
                        }
                    } catch {
                        await events.send(.failed(ErrorMiddleware.aspireError(error)))
                    }
                }
                // Refused before it began (a bad request, an unknown host): an HTTP error, as
                // every route answers one; the stream's `error` event is for what fails later.
                var first: ByteBuffer?
                var waiting = events.makeAsyncIterator()
                switch await waiting.next() {
                case .event(let buffer)?: first = buffer
                case .failed(let error)?: throw error
                case nil: break
                }
                var headers = HTTPFields()
                headers[.contentType] = "text/event-stream"
                headers[.cacheControl] = "no-cache"
                return Response(status: .ok, headers: headers, body: ResponseBody { [first] writer in
                    defer { call.cancel() }
                    if let first { try await writer.write(first) }
                    for await event in events {
                        switch event {
                        case .event(let buffer):
                            try await writer.write(buffer)
                        case .failed(let error):
                            let envelope = ErrorEnvelope(error)
                            let object: JSONObject = ["status": Int(envelope.status), "message": envelope.message, "cause": envelope.cause ?? ""]
                            try await writer.write(Self.serverSent("error", object))
                        }
                    }
                    try await writer.finish(nil)
                })
            },
        ]
    }

    /// `{"command", "agents" | "tags", "window", "parameters", "max_concurrency", "max_errors", "user"}`.
    func taskRequest(_ request: Request, route: Route) async throws -> Aspire_V1_CreateTaskRequest {
        let body = try await self.gateway.objectBody(request, route: route)
        try body.allow(["command", "agents", "tags", "window", "parameters", "max_concurrency", "max_errors", "user"])
        var message = Aspire_V1_CreateTaskRequest()
        message.command = try body.string("command", required: true)
        message.agents = try body.stringArray("agents")
        message.tags = try body.stringMap("tags")
        if let window = try body.object("window") {
            let fields = JSONFields(window.fields, context: body.context + " window", code: .badRequest)
            try fields.allow(["start", "end"])
            message.window.startUnixMs = try Self.time(fields, "start")
            message.window.endUnixMs = try Self.time(fields, "end")
        }
        if let parameters = try body.object("parameters") {
            message.parameters = parameters
        }
        message.maxConcurrency = try body.numberOrString("max_concurrency")
        message.maxErrors = try body.numberOrString("max_errors")
        message.user = try body.string("user")
        return message
    }

    /// Whole Unix seconds a window may name (numbers, or their digits as text).
    static var windowSeconds: ClosedRange<Int64> { 0 ... 99_999_999_999 }

    /// A window's time as the document says it: whole Unix seconds (a number, or its digits) or
    /// an RFC 3339 time from 1970 on.
    static var windowTime: Schema {
        .oneOf([.bounded(Self.windowSeconds), .matching("^(?:\(WholeText.alternatives(Self.windowSeconds))|\(RFC3339.alternatives))$")])
    }

    /// A time as Unix seconds or RFC 3339, in milliseconds; 0 when absent.
    static func time(_ fields: JSONFields, _ key: String) throws(AspireError) -> Int64 {
        guard let value = fields.fields[key], !JSONFields.isNull(value) else { return 0 }
        switch value.kind {
        case .numberValue(let number)?:
            if let seconds = Int64(exactly: number), Self.windowSeconds.contains(seconds) { return seconds * 1000 }
        case .stringValue(let text)?:
            if let seconds = WholeText.value(text), Self.windowSeconds.contains(seconds) { return seconds * 1000 }
            if let time = try RFC3339.milliseconds(text, field: "\(fields.context): '\(key)'") { return time }
        default:
            break
        }
        throw AspireError(.badRequest, "\(fields.context): '\(key)' must be whole Unix seconds or an RFC 3339 time (2026-12-02T10:00:00Z)")
    }

    /// One Server-Sent Event of a followed command; nil for none.
    static func serverSentEvent(_ event: Aspire_V1_CommandEvent) -> (String, any JSONWritable)? {
        switch event.body {
        case .accepted(let accepted)?:
            ("accepted", ["task": Int(accepted.taskID), "id": accepted.commandID, "node": accepted.heldBy] as JSONObject)
        case .output(let output)?:
            ("output", ["seq": Int(output.seq), "stream": output.stream == .stderr ? "stderr" : "stdout", "data": String(decoding: output.chunk, as: UTF8.self)] as JSONObject)
        case .lostChunks(let count)?:
            ("lost", ["chunks": Int(count)] as JSONObject)
        case .result(let result)?:
            ("result", result)
        case nil:
            nil
        }
    }

    /// `event: NAME` and its JSON on one `data:` line (JSON never holds a raw newline).
    /// What the command stream's call hands its response: an event to send, or why it failed.
    enum StreamEvent: Sendable {
        case event(ByteBuffer)
        case failed(AspireError)
    }

    static func serverSent(_ name: String, _ object: some JSONWritable) -> ByteBuffer {
        var buffer = ByteBuffer(string: "event: \(name)\ndata: ")
        var json = JSONWriter.encode(object)
        buffer.writeBuffer(&json)
        buffer.writeString("\n\n")
        return buffer
    }

    /// The seed's sync form plus `agentsn` (and an optional `wait` in seconds).
    func commandRequest(_ request: Request, route: Route) async throws -> Aspire_V1_RunCommandRequest {
        let body = try await self.gateway.objectBody(request, route: route)
        try body.allow(["agentsn", "id", "method", "cmd", "timeout", "user", "group", "args", "wait", "async"])
        var message = Aspire_V1_RunCommandRequest()
        message.agentSn = try body.string("agentsn", required: true)
        message.detach = try body.bool("async") ?? false
        message.waitSeconds = Int32(try body.integer("wait", range: Self.waits) ?? 0)
        let method = try body.string("method", required: true)
        var parameters = Google_Protobuf_Struct()
        for key in ["cmd", "timeout", "user", "group", "args"] {
            if let value = body.fields[key] { parameters.fields[key] = value }
        }
        message.command = try CommandParameters.command(method: method, parameters: parameters)
        message.command.id = try body.string("id")
        return message
    }
}
