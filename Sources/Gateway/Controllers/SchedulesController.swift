import Cron
import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import RPC
import SwiftProtobuf

/// Scheduled commands, crontab imports and the runs agents report.
struct SchedulesController: GatewayController {
    let gateway: Gateway

    /// The schemas its routes refer to, for the OpenAPI document.
    var schemas: [String: Schema] {
        [
            "ScheduleRequest": .allOf([
                .object(
                    [
                        "name": .matching(PathName.pattern), "expr": .matching(CronExpression.pattern),
                        // Empty is the host's zone.
                        "tz": .enumeration([""] + CronSchedule.zoneNames), "user": .matching(AccountName.pattern),
                        "group": .matching(AccountName.pattern), "command": .matching(CommandText.pattern),
                        "timeout": .bounded(CommandParameters.bashTimeouts), "agents": .array(OpenAPI.agentSN), "tags": OpenAPI.tags(),
                        "enabled": .boolean, "replace": .boolean,
                    ],
                    required: ["name", "expr", "command"]
                ),
                OpenAPI.targets,
            ]),
            "Schedule": .object(
                [
                    "name": .string, "expr": .string, "tz": .string, "user": .string, "group": .string, "command": .string,
                    "timeout": .integer, "agents": .array(.string), "tags": .object([:], additional: .string), "enabled": .boolean,
                    "next": .array(OpenAPI.time), "gmt_create": OpenAPI.time, "gmt_modify": OpenAPI.time,
                ],
                required: ["name", "expr", "user", "command", "enabled", "agents", "tags", "next"]
            ),
            // As `ImportCrontab` takes it: the crontab's grammar depends on fields and with_user.
            "CrontabImport": .allOf([
                .object(
                    [
                        "crontab": .string, "prefix": .matching(PathName.prefixPattern), "agents": .array(OpenAPI.agentSN), "tags": OpenAPI.tags(),
                        "tz": .enumeration([""] + CronSchedule.zoneNames), "user": .matching(AccountName.pattern),
                        "timeout": .bounded(CommandParameters.bashTimeouts), "fields": .integers([0, 5, 6]), "with_user": .boolean, "replace": .boolean,
                    ],
                    required: ["crontab"]
                ),
                OpenAPI.targets,
                .oneOf([0, 5, 6].flatMap { (fields: Int64) in
                    [false, true].map { withUser in
                        .object(
                            [
                                "fields": .integers([fields]), "with_user": .flag(withUser),
                                "crontab": .matching(Crontab.pattern(fields: fields == 0 ? nil : Int(fields), user: withUser ? AccountName.namePattern : nil)),
                            ],
                            required: (fields == 0 ? [] : ["fields"]) + (withUser ? ["with_user"] : []), additional: .any
                        )
                    }
                }),
            ]),
            "ScheduleRun": .object(
                ["name": .string, "agentsn": .string, "due": OpenAPI.time, "result": .ref("CommandResult")],
                required: ["name", "agentsn", "due", "result"]
            ),
        ]
    }

    var endpoints: [Endpoint] {
        [
            Endpoint(
                Route(
                    id: "listSchedules",
                    rpc: "ListSchedules", method: "GET", path: "/api/v1/server/schedule",
                    summary: "Scheduled commands by name, each with its next fire times; with name, that one (404 when none).",
                    query: [
                        Route.query("name", .string, "Only this schedule."),
                        Route.query("agentsn", .string, "Only the schedules that target this host (by AgentSN or its tags)."),
                        Route.query("next", .bounded(1 ... 100), "Next fire times per schedule, 1 to 100 (default 1)."),
                    ],
                    response: .envelope(["schedules": .array(.ref("Schedule"))])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var message = Aspire_V1_ListSchedulesRequest()
                message.name = query.string("name")
                message.agentSn = query.string("agentsn")
                message.next = Int32(try query.integer("next") ?? 1)
                let answer = try await self.gateway.admin.listSchedules(message, metadata: metadata)
                return Answer.success(["schedules": answer.schedules.map(RESTJSON.schedule)])
            },
            Endpoint(
                Route(
                    id: "createSchedule",
                    rpc: "CreateSchedule", method: "POST", path: "/api/v1/server/schedule",
                    summary: """
                        Stores a scheduled command for agents (by AgentSN) and/or the hosts carrying tags. They get it at once \
                        if connected, otherwise when they connect, keep it on disk and run it connected or not. 409 when the \
                        name is taken, unless replace is true.
                        """,
                    body: [(Route.json, .ref("ScheduleRequest"))],
                    response: .envelope(["schedule": .ref("Schedule")])
                )
            ) { route, request, _, metadata in
                let body = try await self.gateway.objectBody(request, route: route)
                try body.allow(["name", "expr", "tz", "user", "group", "command", "timeout", "agents", "tags", "enabled", "replace"])
                var message = Aspire_V1_CreateScheduleRequest()
                message.schedule.name = try body.string("name", required: true)
                message.schedule.expr = try body.string("expr", required: true)
                message.schedule.tz = try body.string("tz")
                message.schedule.user = try body.string("user")
                message.schedule.group = try body.string("group")
                message.schedule.command = try body.string("command", required: true)
                message.schedule.timeout = Int32(try body.integer("timeout", range: CommandParameters.bashTimeouts) ?? 0)
                message.schedule.disabled = !(try body.bool("enabled") ?? true)
                message.agents = try body.stringArray("agents")
                message.tags = try body.stringMap("tags")
                message.replace = try body.bool("replace") ?? false
                let answer = try await self.gateway.admin.createSchedule(message, metadata: metadata)
                return Answer.success(["schedule": RESTJSON.schedule(answer)])
            },
            Endpoint(
                Route(
                    id: "deleteSchedule",
                    rpc: "DeleteSchedule", method: "DELETE", path: "/api/v1/server/schedule", summary: "Deletes a schedule; the agents drop it.",
                    query: [Route.query("name", .string, "The schedule.", required: true)],
                    response: .envelope(["schedule": .ref("Schedule")])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var message = Aspire_V1_DeleteScheduleRequest()
                message.name = query.string("name")
                let answer = try await self.gateway.admin.deleteSchedule(message, metadata: metadata)
                return Answer.success(["schedule": RESTJSON.schedule(answer)])
            },
            Endpoint(
                Route(
                    id: "enableSchedule",
                    rpc: "SetScheduleEnabled", method: "POST", path: "/api/v1/server/schedule/enable",
                    summary: "Enables or disables a schedule (a disabled one stays on the agents and does not run).",
                    body: [(Route.json, .object(["name": .string, "enabled": .boolean], required: ["name", "enabled"]))],
                    response: .envelope(["schedule": .ref("Schedule")])
                )
            ) { route, request, _, metadata in
                let body = try await self.gateway.objectBody(request, route: route)
                try body.allow(["name", "enabled"])
                var message = Aspire_V1_SetScheduleEnabledRequest()
                message.name = try body.string("name", required: true)
                guard let enabled = try body.bool("enabled") else { throw AspireError(.badRequest, "\(body.context): 'enabled' (true or false) is required") }
                message.enabled = enabled
                let answer = try await self.gateway.admin.setScheduleEnabled(message, metadata: metadata)
                return Answer.success(["schedule": RESTJSON.schedule(answer)])
            },
            Endpoint(
                Route(
                    id: "importCrontab",
                    rpc: "ImportCrontab", method: "POST", path: "/api/v1/server/schedule/import",
                    summary: """
                        One schedule per crontab line (6 or 5 time fields, an optional user with with_user, the command), named \
                        <prefix>-<line number>; nothing is stored when a line is wrong, and the error names it.
                        """,
                    body: [(Route.json, .ref("CrontabImport"))],
                    response: .envelope(["schedules": .array(.ref("Schedule"))])
                )
            ) { route, request, _, metadata in
                let body = try await self.gateway.objectBody(request, route: route)
                try body.allow(["crontab", "prefix", "agents", "tags", "tz", "user", "timeout", "fields", "with_user", "replace"])
                var message = Aspire_V1_ImportCrontabRequest()
                message.crontab = try body.string("crontab", required: true)
                message.prefix = try body.string("prefix")
                message.agents = try body.stringArray("agents")
                message.tags = try body.stringMap("tags")
                message.tz = try body.string("tz")
                message.user = try body.string("user")
                message.timeout = Int32(try body.integer("timeout", range: CommandParameters.bashTimeouts) ?? 0)
                message.fields = Int32(try body.integer("fields", range: 0 ... 6) ?? 0)
                message.withUser = try body.bool("with_user") ?? false
                message.replace = try body.bool("replace") ?? false
                let answer = try await self.gateway.admin.importCrontab(message, metadata: metadata)
                return Answer.success(["schedules": answer.schedules.map(RESTJSON.schedule)])
            },
            Endpoint(
                Route(
                    id: "listScheduleRuns",
                    rpc: "ListScheduleRuns", method: "GET", path: "/api/v1/server/schedule/runs", summary: "Runs the agents reported, newest first.",
                    query: [
                        Route.query("name", .string, "Only this schedule's runs."),
                        Route.query("agentsn", .string, "Only this host's runs."),
                    ] + Route.paging,
                    response: .envelope(["count": .integer, "runs": .array(.ref("ScheduleRun"))])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var message = Aspire_V1_ListScheduleRunsRequest()
                message.name = query.string("name")
                message.agentSn = query.string("agentsn")
                (message.offset, message.limit) = try query.page()
                let answer = try await self.gateway.admin.listScheduleRuns(message, metadata: metadata)
                return Answer.success(["count": Int(answer.count), "runs": answer.runs.map(RESTJSON.scheduleRun)])
            },
        ]
    }
}
