import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import RPC
import SwiftProtobuf

/// Hosts: one, many, those connected here, their events, and the dashboard.
struct HostsController: GatewayController {
    let gateway: Gateway

    /// The schemas its routes refer to, for the OpenAPI document.
    var schemas: [String: Schema] {
        [
            "Host": .object(
                [
                    "id": .integer, "agentsn": .string, "hostname": .string, "ipaddr": .string, "region": .integer,
                    "status": .enumeration(["unknown", "register", "online", "offline", "deleted"]), "feature": .integer,
                    "step": .integer, "prevers": .string, "curvers": .string, "os": .string, "arch": .string, "node": .string,
                    "last_seen": OpenAPI.time, "gmt_create": OpenAPI.time, "gmt_modify": OpenAPI.time, "tags": .array(.ref("Tag")),
                    "agents": .array(.ref("SubAgent")), "identity": .enumeration(["none", "enrolled", "banned"]),
                    "certificate_expires": OpenAPI.time, "missing_tools": .array(.string),
                    "recent": .array(.object(["task": .integer, "command": .string, "subtask": .ref("Subtask")], required: ["task", "command", "subtask"])),
                ],
                required: ["id", "agentsn", "hostname", "status", "gmt_create", "gmt_modify"]
            ),
            "ConnectedAgent": .object(
                [
                    "agentsn": .string, "hostname": .string, "version": .string, "os": .string, "arch": .string,
                    "tags": .object([:], additional: .string), "peer": .string, "connected": OpenAPI.time, "last_seen": OpenAPI.time,
                    "node": .string,
                ],
                required: ["agentsn", "hostname", "node"]
            ),
            "SubAgent": .object(
                [
                    "name": .string, "version": .string, "status": .enumeration(["stoped", "running", "fatal", "killed", ""]),
                    "uptime": .integer, "pid": .integer, "restarts": .integer, "message": .string, "prevers": .string,
                ],
                required: ["name", "version", "status"]
            ),
            "Event": .object(
                [
                    "id": .integer, "agentsn": .string, "category": .string, "localid": .integer, "occured": OpenAPI.time,
                    "message": .string, "gmt_create": OpenAPI.time,
                ],
                required: ["id", "agentsn", "localid", "occured"]
            ),
            "Node": .object(
                [
                    "name": .string, "address": .string, "started": OpenAPI.time, "heartbeat": OpenAPI.time,
                    "state": .enumeration(["active", "draining", "stopped", "dead"]), "hosts": .integer,
                ],
                required: ["name", "address", "state"]
            ),
            // The dashboard's count of one sub-agent version over the fleet (the seed's "deployments").
            "SubAgentCount": .object(
                [
                    "name": .string, "version": .string, "hosts": .integer, "running": .integer, "stoped": .integer, "fatal": .integer,
                    "killed": .integer,
                ],
                required: ["name", "version", "hosts", "running", "stoped", "fatal", "killed"]
            ),
        ]
    }

    var endpoints: [Endpoint] {
        [
            Endpoint(
                Route(
                    id: "getAgent",
                    rpc: "GetHost", method: "GET", path: "/api/v1/server/agent", summary: "One host by AgentSN, with tags and sub-agents.",
                    query: [Route.query("agentsn", .matching("^[\"']*\(OpenAPI.agentSNText)[\"']*$"), "The host's AgentSN (quotes around it are ignored).", required: true)],
                    response: .envelope(["host": .ref("Host")])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var message = Aspire_V1_GetHostRequest()
                // The seed writes ?agentsn="845d..." with the quotes.
                message.agentSn = query.string("agentsn").trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
                guard !message.agentSn.isEmpty else {
                    throw AspireError(.badRequest, "query parameter 'agentsn' is required")
                }
                return Answer.success(["host": RESTJSON.host(try await self.gateway.admin.getHost(message, metadata: metadata))])
            },
            Endpoint(
                Route(
                    id: "listHosts",
                    rpc: "ListHosts", method: "GET", path: "/api/v1/server/hosts", summary: "Hosts, filtered and paged.",
                    query: [
                        Route.query("status", .enumeration(["unknown", "register", "online", "offline", "deleted"]), "Only hosts in this state."),
                        Route.query("region", .bounded(0 ... Int64.max), "Only this region id."),
                        Route.query("tag", .matching("^[^=:]+[=:][\\s\\S]*$"), "name=value; repeat for hosts carrying every one."),
                        Route.query("hostname", .string, "Host name prefix."),
                        Route.query("node", .string, "Only hosts held by this node."),
                    ] + Route.paging + [Route.query("order", .enumeration(["asc", "desc"]), "By id (default asc).")],
                    response: .envelope(["count": .integer, "offset": .integer, "limit": .integer, "hosts": .array(.ref("Host"))])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var message = try Aspire_V1_ListHostsRequest(filter: query)
                (message.offset, message.limit) = try query.page()
                message.descending = try query.descending()
                let answer = try await self.gateway.admin.listHosts(message, metadata: metadata)
                return Answer.success([
                    "count": Int(answer.count), "offset": Int(answer.offset), "limit": Int(answer.limit),
                    "hosts": answer.hosts.map(RESTJSON.host),
                ])
            },
            Endpoint(
                Route(
                    id: "listConnected",
                    rpc: "ListAgents", method: "GET", path: "/api/v1/server/agents", summary: "Agents holding a stream to the node that answers.",
                    response: .envelope(["agents": .array(.ref("ConnectedAgent"))])
                )
            ) { _, _, _, metadata in
                let answer = try await self.gateway.admin.listAgents(Aspire_V1_ListAgentsRequest(), metadata: metadata)
                return Answer.success(["agents": answer.agents.map(RESTJSON.connected)])
            },
            Endpoint(
                Route(
                    id: "listNodes", rpc: "ListNodes", method: "GET", path: "/api/v1/server/nodes",
                    summary: "The cluster's nodes: address, heartbeat, state (active, stopped, dead) and hosts online on each.",
                    response: .envelope(["nodes": .array(.ref("Node"))])
                )
            ) { _, _, _, metadata in
                let answer = try await self.gateway.admin.listNodes(Aspire_V1_ListNodesRequest(), metadata: metadata)
                return Answer.success([
                    "nodes": answer.nodes.map(Self.node)
                ])
            },
            Endpoint(
                Route(
                    id: "drainNode", rpc: "DrainNode", method: "POST", path: "/api/v1/server/nodes/drain",
                    summary: "Drains a node ({\"name\"}): it takes no new agents and sends its own to the other active nodes; {\"name\", \"undrain\": true} makes it active again.",
                    body: [(Route.json, .object(["name": .string, "undrain": .boolean], required: ["name"]))],
                    response: .envelope(["node": .ref("Node")])
                )
            ) { route, request, _, metadata in
                let body = try await self.gateway.objectBody(request, route: route)
                try body.allow(["name", "undrain"])
                var message = Aspire_V1_DrainNodeRequest()
                message.name = try body.string("name", required: true)
                message.undrain = try body.bool("undrain") ?? false
                let node = try await self.gateway.admin.drainNode(message, metadata: metadata)
                return Answer.success(["node": Self.node(node)])
            },
            Endpoint(
                Route(
                    id: "listEvents",
                    rpc: "ListEvents", method: "GET", path: "/api/v1/server/events", summary: "Events, newest first.",
                    query: [Route.query("agentsn", .string, "Only this host's events.")] + Route.paging,
                    response: .envelope(["count": .integer, "events": .array(.ref("Event"))])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var message = Aspire_V1_ListEventsRequest()
                message.agentSn = query.string("agentsn")
                (message.offset, message.limit) = try query.page()
                let answer = try await self.gateway.admin.listEvents(message, metadata: metadata)
                return Answer.success(["count": Int(answer.count), "events": answer.events.map(RESTJSON.event)])
            },
            Endpoint(
                Route(
                    id: "dashboard",
                    rpc: "Dashboard", method: "GET", path: "/api/v1/server/dashboard", summary: "Host counts (now, and every 5 minutes over the last day), sub-agent deployments per name and version, and the cluster's nodes with the hosts online on each.",
                    response: .envelope([
                        "hosts": .object(["total": .integer, "online": .integer, "offline": .integer]),
                        "connected_here": .integer,
                        "deployments": .array(.ref("SubAgentCount")),
                        "nodes": .array(.ref("Node")),
                        "history": .array(.object(["time": OpenAPI.time, "total": .integer, "online": .integer], required: ["time", "total", "online"])),
                    ])
                )
            ) { _, _, _, metadata in
                let answer = try await self.gateway.admin.dashboard(Aspire_V1_DashboardRequest(), metadata: metadata)
                return Answer.success([
                    "hosts": ["total": Int(answer.hostsTotal), "online": Int(answer.hostsOnline), "offline": Int(answer.hostsOffline)],
                    "connected_here": Int(answer.connectedHere),
                    "nodes": answer.nodes.map(Self.node),
                    "history": answer.history.map { ["time": RESTJSON.time($0.timeUnixMs), "total": Int($0.total), "online": Int($0.online)] as JSONObject },
                    "deployments": answer.deployments.map { deployment -> JSONObject in
                        [
                            "name": deployment.name, "version": deployment.version, "hosts": Int(deployment.hosts),
                            "running": Int(deployment.running), "stoped": Int(deployment.stopped), "fatal": Int(deployment.fatal),
                            "killed": Int(deployment.killed),
                        ]
                    },
                ])
            },
        ]
    }

    static func node(_ node: Aspire_V1_NodeInfo) -> RESTJSON.Object {
        [
            "name": node.name, "address": node.address, "started": RESTJSON.time(node.startedUnixMs),
            "heartbeat": RESTJSON.time(node.heartbeatUnixMs), "state": node.state, "hosts": Int(node.hosts),
        ]
    }
}

extension Aspire_V1_ListHostsRequest {
    /// The host list's filters from a query string, as the REST route and the console's host
    /// list take them: `status`, `region`, `tag=name=value` (repeatable), `hostname` (a prefix)
    /// and `node`.
    init(filter query: Query) throws(AspireError) {
        self.init()
        self.status = query.string("status")
        if let region = try query.integer("region") { self.region = region }
        for pair in query.all("tag") where !pair.isEmpty {
            guard let separator = pair.firstIndex(where: { $0 == "=" || $0 == ":" }), separator != pair.startIndex else {
                throw AspireError(.badRequest, "query parameter 'tag' must be name=value, not '\(pair)'")
            }
            self.tags[String(pair[..<separator])] = String(pair[pair.index(after: separator)...])
        }
        self.hostnamePrefix = query.string("hostname")
        self.node = query.string("node")
    }
}
