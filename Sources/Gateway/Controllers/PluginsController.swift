import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import RPC
import SwiftProtobuf

/// Plugins: stored, listed, deleted (their runs on hosts are tasks).
struct PluginsController: GatewayController {
    let gateway: Gateway

    /// The schemas its routes refer to, for the OpenAPI document.
    var schemas: [String: Schema] {
        [
            // As `CreatePlugin` and `Plugin.check` take it: a name, whom it is for, and one source.
            "PluginRequest": .allOf([
                .object(
                    [
                        "name": .matching(PathName.pattern), "url": .string, "checksum": .matching(CommandParameters.checksumPattern),
                        "package": .string, "version": .string, "git": .string, "ref": .matching(Aspire_V1_Plugin.refPattern),
                        "allow_moving_ref": .boolean, "period": .bounded(Self.periods), "user": .matching(AccountName.pattern),
                        "timeout": .bounded(Self.timeouts), "param": .string, "agents": .array(OpenAPI.agentSN), "tags": OpenAPI.tags(),
                        "replace": .boolean,
                    ],
                    required: ["name"]
                ),
                OpenAPI.targets,
                .oneOf(Self.sources),
            ]),
            "Plugin": .object(
                [
                    "name": .string, "url": .string, "checksum": .string, "git": .string, "ref": .string, "allow_moving_ref": .boolean,
                    "period": .integer, "user": .string, "timeout": .integer, "param": .string, "agents": .array(.string),
                    "tags": .object([:], additional: .string), "gmt_create": OpenAPI.time, "gmt_modify": OpenAPI.time,
                ],
                required: ["name", "period", "user", "timeout", "agents", "tags"]
            ),
        ]
    }

    /// Seconds between runs (0: on demand only), and a run's timeout (0: 10 s).
    static var periods: ClosedRange<Int64> { 0 ... 86_400 * 7 }
    static var timeouts: ClosedRange<Int64> { 0 ... 86_400 }

    /// A plugin's sources, one of them: a built-in collector, an archive with its checksum, a
    /// package of the store (by its aspire:// url, or by name and version), or a git repository
    /// pinned to a commit or allowed to move.
    static var sources: [Schema] {
        let none = Schema.enumeration([""])
        return [
            .object(["url": .matching(BuiltinCollector.pattern), "git": none, "package": none], required: ["url"], additional: .any),
            .object(
                ["url": .matching(Aspire_V1_Plugin.archivePattern), "checksum": .nonEmpty, "git": none, "package": none],
                required: ["url", "checksum"], additional: .any
            ),
            .object(["url": .matching(StoreFile.storeURLPattern), "checksum": none, "git": none], required: ["url"], additional: .any),
            .object(["package": .nonEmpty, "version": .nonEmpty, "url": none, "git": none], required: ["package", "version"], additional: .any),
            .allOf([
                .object(["git": .matching(Aspire_V1_Plugin.gitPattern), "url": none, "checksum": none, "package": none], required: ["git"], additional: .any),
                .anyOf([
                    .object(["ref": .matching(Aspire_V1_Plugin.commitPattern)], required: ["ref"], additional: .any),
                    .object(["allow_moving_ref": .flag(true)], required: ["allow_moving_ref"], additional: .any),
                ]),
            ]),
        ]
    }

    var endpoints: [Endpoint] {
        [
            Endpoint(
                Route(
                    id: "listPlugins",
                    rpc: "ListPlugins", method: "GET", path: "/api/v1/server/plugin",
                    summary: "Plugins by name; with name, that one (404 when none). Their state on hosts: a plugin.list task.",
                    query: [
                        Route.query("name", .string, "Only this plugin."),
                        Route.query("agentsn", .string, "Only the plugins that target this host (by AgentSN or its tags)."),
                    ],
                    response: .envelope(["plugins": .array(.ref("Plugin"))])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var message = Aspire_V1_ListPluginsRequest()
                message.name = query.string("name")
                message.agentSn = query.string("agentsn")
                let answer = try await self.gateway.admin.listPlugins(message, metadata: metadata)
                return Answer.success(["plugins": answer.plugins.map(RESTJSON.pluginInfo)])
            },
            Endpoint(
                Route(
                    id: "createPlugin",
                    rpc: "CreatePlugin", method: "POST", path: "/api/v1/server/plugin",
                    summary: """
                        Stores a plugin for agents (by AgentSN) and/or the hosts carrying tags: a tar archive with plugin.sh \
                        (url and checksum, or a package and version of the store), a built-in collector (builtin://port?ports=, \
                        builtin://process?names=&pidfiles=) or a git repository (git, pinned by ref to a commit, or allow_moving_ref). \
                        The agents fetch it and run it every period seconds (0: only on demand), as user (nobody by default). Run, \
                        enable, disable, update and list it on hosts with tasks: command plugin.run {name, timeout, param}, \
                        plugin.enable {name}, plugin.disable {name, seconds}, plugin.update {name}, plugin.list.
                        """,
                    body: [(Route.json, .ref("PluginRequest"))],
                    response: .envelope(["plugin": .ref("Plugin")])
                )
            ) { route, request, _, metadata in
                let body = try await self.gateway.objectBody(request, route: route)
                try body.allow([
                    "name", "url", "checksum", "package", "version", "git", "ref", "allow_moving_ref", "period", "user", "timeout", "param",
                    "agents", "tags", "replace",
                ])
                var message = Aspire_V1_CreatePluginRequest()
                message.plugin.name = try body.string("name", required: true)
                message.plugin.url = try body.string("url")
                message.plugin.checksum = try body.string("checksum")
                message.package = try body.string("package")
                message.version = try body.string("version")
                message.plugin.git = try body.string("git")
                message.plugin.allowMovingRef = try body.bool("allow_moving_ref") ?? false
                message.plugin.ref = try body.string("ref")
                message.plugin.period = Int32(try body.integer("period", range: Self.periods) ?? 0)
                message.plugin.user = try body.string("user")
                message.plugin.timeout = Int32(try body.integer("timeout", range: Self.timeouts) ?? 0)
                message.plugin.param = try body.string("param")
                message.agents = try body.stringArray("agents")
                message.tags = try body.stringMap("tags")
                message.replace = try body.bool("replace") ?? false
                let answer = try await self.gateway.admin.createPlugin(message, metadata: metadata)
                return Answer.success(["plugin": RESTJSON.pluginInfo(answer)])
            },
            Endpoint(
                Route(
                    id: "deletePlugin",
                    rpc: "DeletePlugin", method: "DELETE", path: "/api/v1/server/plugin", summary: "Deletes a plugin; the agents stop it and remove its files.",
                    query: [Route.query("name", .string, "The plugin.", required: true)],
                    response: .envelope(["plugin": .ref("Plugin")])
                )
            ) { _, request, _, metadata in
                let query = Query(request)
                var message = Aspire_V1_DeletePluginRequest()
                message.name = query.string("name")
                let answer = try await self.gateway.admin.deletePlugin(message, metadata: metadata)
                return Answer.success(["plugin": RESTJSON.pluginInfo(answer)])
            },
        ]
    }
}
