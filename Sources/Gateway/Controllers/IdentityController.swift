import Foundation
import GRPCCore
import Hummingbird
import RPC

/// Hosts' certificates (delete, ban) and the join tokens new hosts enroll with.
struct IdentityController: GatewayController {
    let gateway: Gateway

    /// Seconds a join token lives (-1: never), and the uses it allows (0: any).
    static var tokenLifetimes: ClosedRange<Int64> { -1 ... Int64(Int32.max) }
    /// As the store takes it: 1 to 64 printable ASCII characters, no space, no slash.
    static var operatorName: Schema { .matching("^[!-.0-~]{1,64}$") }
    static var tokenUses: ClosedRange<Int64> { 0 ... 1_000_000 }

    var schemas: [String: Schema] {
        [
            "JoinToken": .object(
                [
                    "id": .string, "note": .string, "tags": .object([:], additional: .string), "gmt_create": OpenAPI.time,
                    "expires": OpenAPI.time, "max_uses": .integer, "uses": .integer, "revoked": OpenAPI.time,
                    "state": .enumeration(["usable", "expired", "used up", "revoked"]),
                ],
                required: ["id", "state", "uses", "max_uses"]
            ),
            "AuditEntry": .object(
                [
                    "id": .integer, "time": OpenAPI.time, "actor": .string, "role": .string, "address": .string, "node": .string,
                    "method": .string, "targets": .string, "resolved": .string, "digest": .string, "command": .string,
                    "outcome": .string, "task": .integer, "subtask": .string,
                ],
                required: ["id", "time", "actor", "method", "outcome"]
            ),
            "Operator": .object(
                [
                    "name": .string, "role": .enumeration(Role.names), "scope": .object([:], additional: .string),
                    "gmt_create": OpenAPI.time, "revoked": OpenAPI.time,
                ],
                required: ["name", "role"]
            ),
        ]
    }

    var endpoints: [Endpoint] {
        [
            Endpoint(
                Route(
                    id: "deleteHost",
                    rpc: "DeleteHost", method: "DELETE", path: "/api/v1/server/agent",
                    summary: "Deletes a host: its certificate is taken back on every node and its stream closed; it may enroll again.",
                    query: [Route.query("agentsn", OpenAPI.agentSN, "The host's AgentSN.", required: true)],
                    response: .envelope(["host": .ref("Host")])
                )
            ) { _, request, _, metadata in
                var message = Aspire_V1_DeleteHostRequest()
                message.agentSn = Query(request).string("agentsn")
                return Answer.success(["host": RESTJSON.host(try await self.gateway.admin.deleteHost(message, metadata: metadata))])
            },
            Endpoint(
                Route(
                    id: "banHost",
                    rpc: "BanHost", method: "POST", path: "/api/v1/server/agent/ban",
                    summary: "Bans a host (refused by every node, may not enroll), or lifts its ban with \"lift\": true.",
                    body: [(Route.json, .object(["agentsn": OpenAPI.agentSN, "reason": .string, "lift": .boolean], required: ["agentsn"]))],
                    response: .envelope(["host": .ref("Host")])
                )
            ) { route, request, _, metadata in
                let body = try await self.gateway.objectBody(request, route: route)
                try body.allow(["agentsn", "reason", "lift"])
                var message = Aspire_V1_BanHostRequest()
                message.agentSn = try body.string("agentsn", required: true)
                message.reason = try body.string("reason")
                message.lift = try body.bool("lift") ?? false
                return Answer.success(["host": RESTJSON.host(try await self.gateway.admin.banHost(message, metadata: metadata))])
            },
            Endpoint(
                Route(
                    id: "listJoinTokens",
                    rpc: "ListJoinTokens", method: "GET", path: "/api/v1/server/tokens", summary: "Join tokens (usable ones unless all=true); never their secrets.",
                    query: [Route.query("all", .boolean, "Also revoked, expired and used-up tokens.")],
                    response: .envelope(["tokens": .array(.ref("JoinToken"))])
                )
            ) { _, request, _, metadata in
                var message = Aspire_V1_ListJoinTokensRequest()
                message.all = Query(request).string("all") == "true"
                let answer = try await self.gateway.admin.listJoinTokens(message, metadata: metadata)
                return Answer.success(["tokens": answer.tokens.map(Self.token)])
            },
            Endpoint(
                Route(
                    id: "createJoinToken",
                    rpc: "CreateJoinToken", method: "POST", path: "/api/v1/server/token",
                    summary: "Makes a join token; the answer carries its secret, shown this once.",
                    body: [
                        (
                            Route.json,
                            .object([
                                "ttl_seconds": .bounded(Self.tokenLifetimes), "max_uses": .bounded(Self.tokenUses), "tags": OpenAPI.tags(),
                                "note": .string,
                            ])
                        )
                    ],
                    response: .envelope(["token": .ref("JoinToken"), "secret": .string])
                )
            ) { route, request, _, metadata in
                let body = try await self.gateway.objectBody(request, route: route)
                try body.allow(["ttl_seconds", "max_uses", "tags", "note"])
                var message = Aspire_V1_CreateJoinTokenRequest()
                message.ttlSeconds = try body.integer("ttl_seconds", range: Self.tokenLifetimes) ?? 0
                message.maxUses = Int32(try body.integer("max_uses", range: Self.tokenUses) ?? 0)
                message.tags = try body.stringMap("tags")
                message.note = try body.string("note")
                let answer = try await self.gateway.admin.createJoinToken(message, metadata: metadata)
                return Answer.success(["token": Self.token(answer.token), "secret": answer.secret])
            },
            Endpoint(
                Route(
                    id: "revokeJoinToken",
                    rpc: "RevokeJoinToken", method: "DELETE", path: "/api/v1/server/token", summary: "Revokes a join token.",
                    query: [Route.query("id", .string, "The token's id.", required: true)],
                    response: .envelope(["token": .ref("JoinToken")])
                )
            ) { _, request, _, metadata in
                var message = Aspire_V1_RevokeJoinTokenRequest()
                message.id = Query(request).string("id")
                return Answer.success(["token": Self.token(try await self.gateway.admin.revokeJoinToken(message, metadata: metadata))])
            },
            Endpoint(
                Route(
                    id: "listAudit", rpc: "ListAudit", method: "GET", path: "/api/v1/server/audit",
                    summary: "The audit trail, newest first: every mutating call and every dispatch.",
                    query: [
                        Route.query("operator", .string, "Only this operator's rows (a host's: host:<AgentSN>)."),
                        Route.query("since", .bounded(0 ... Int64.max), "Only rows at or after this time, Unix milliseconds."),
                        Route.query("method", .string, "Only this method (CreateTask, dispatch, ...)."),
                    ] + Route.paging,
                    response: .envelope(["count": .integer, "entries": .array(.ref("AuditEntry"))])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var message = Aspire_V1_ListAuditRequest()
                message.operator = query.string("operator")
                message.sinceUnixMs = try query.integer("since") ?? 0
                message.method = query.string("method")
                (message.offset, message.limit) = try query.page()
                let answer = try await self.gateway.admin.listAudit(message, metadata: metadata)
                return Answer.success([
                    "count": Int(answer.count),
                    "entries": answer.entries.map { entry in
                        [
                            "id": Int(entry.id), "time": RESTJSON.time(entry.timeUnixMs), "actor": entry.actor, "role": entry.role,
                            "address": entry.address, "node": entry.node, "method": entry.method, "targets": entry.targets,
                            "resolved": entry.resolved, "digest": entry.digest, "command": entry.command, "outcome": entry.outcome,
                            "task": Int(entry.task), "subtask": entry.subtask,
                        ] as RESTJSON.Object
                    },
                ])
            },
            Endpoint(
                Route(
                    id: "whoAmI", rpc: "WhoAmI", method: "GET", path: "/api/v1/server/whoami",
                    summary: "The operator the bearer token belongs to: name, role and scope.",
                    response: .envelope(["operator": .ref("Operator")])
                )
            ) { _, _, _, metadata in
                let answer = try await self.gateway.admin.whoAmI(Aspire_V1_WhoAmIRequest(), metadata: metadata)
                return Answer.success(["operator": Self.operatorObject(answer)])
            },
            Endpoint(
                Route(
                    id: "listOperators",
                    rpc: "ListOperators", method: "GET", path: "/api/v1/server/operators", summary: "Operators; never their tokens.",
                    response: .envelope(["operators": .array(.ref("Operator"))])
                )
            ) { _, _, _, metadata in
                let answer = try await self.gateway.admin.listOperators(Aspire_V1_ListOperatorsRequest(), metadata: metadata)
                return Answer.success(["operators": answer.operators.map(Self.operatorObject)])
            },
            Endpoint(
                Route(
                    id: "createOperator",
                    rpc: "CreateOperator", method: "POST", path: "/api/v1/server/operator",
                    summary: "Makes an operator; the answer carries its token, shown this once.",
                    body: [
                        (
                            Route.json,
                            // Only the operator role has a scope.
                            .oneOf([
                                .object(
                                    ["name": Self.operatorName, "role": .enumeration([Role.operator.rawValue]), "scope": OpenAPI.tags()],
                                    required: ["name", "role"]
                                ),
                                .object(
                                    [
                                        "name": Self.operatorName, "role": .enumeration(Role.names.filter { $0 != Role.operator.rawValue }),
                                        "scope": .object([:], additional: .never),
                                    ],
                                    required: ["name", "role"]
                                ),
                            ])
                        )
                    ],
                    response: .envelope(["operator": .ref("Operator"), "secret": .string])
                )
            ) { route, request, _, metadata in
                let body = try await self.gateway.objectBody(request, route: route)
                try body.allow(["name", "role", "scope"])
                var message = Aspire_V1_CreateOperatorRequest()
                message.name = try body.string("name", required: true)
                message.role = try body.string("role", required: true)
                message.scope = try body.stringMap("scope")
                let answer = try await self.gateway.admin.createOperator(message, metadata: metadata)
                return Answer.success(["operator": Self.operatorObject(answer.operator), "secret": answer.secret])
            },
            Endpoint(
                Route(
                    id: "revokeOperator",
                    rpc: "RevokeOperator", method: "DELETE", path: "/api/v1/server/operator", summary: "Revokes an operator's token.",
                    query: [Route.query("name", .string, "The operator's name.", required: true)],
                    response: .envelope(["operator": .ref("Operator")])
                )
            ) { _, request, _, metadata in
                var message = Aspire_V1_RevokeOperatorRequest()
                message.name = Query(request).string("name")
                return Answer.success(["operator": Self.operatorObject(try await self.gateway.admin.revokeOperator(message, metadata: metadata))])
            },
        ]
    }

    static func operatorObject(_ entry: Aspire_V1_OperatorInfo) -> RESTJSON.Object {
        [
            "name": entry.name, "role": entry.role, "scope": entry.scope, "gmt_create": RESTJSON.time(entry.createdUnixMs),
            "revoked": RESTJSON.time(entry.revokedUnixMs),
        ]
    }

    static func token(_ token: Aspire_V1_JoinToken) -> RESTJSON.Object {
        [
            "id": token.id, "note": token.note, "tags": token.tags, "gmt_create": RESTJSON.time(token.createdUnixMs),
            "expires": RESTJSON.time(token.expiresUnixMs), "max_uses": Int(token.maxUses), "uses": Int(token.uses),
            "revoked": RESTJSON.time(token.revokedUnixMs), "state": token.state,
        ]
    }
}
