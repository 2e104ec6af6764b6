import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import RPC
import SwiftProtobuf

/// Declared deployments and their rollouts.
struct DeploymentsController: GatewayController {
    let gateway: Gateway

    /// A deployment's status, as GET answers it beside status and message.
    static var status: [String: Schema] {
        [
            "deployment": .ref("Deployment"), "matching": .integer,
            "counts": .array(.object(["version": .string, "state": .enumeration(HostRolloutPhase.allCases.map(\.rawValue)), "hosts": .integer])),
            "hosts": .array(
                .object([
                    "agentsn": .string, "hostname": .string, "version": .string, "revision": .integer,
                    "state": .enumeration(HostRolloutPhase.allCases.map(\.rawValue)), "message": .string, "moved": .boolean, "wave": .integer, "online": .boolean,
                ])
            ),
        ]
    }

    // A rollout's numbers: the document's and the handler's.
    static var maxFailures: ClosedRange<Int64> { 0 ... 1_000_000 }
    static var healthSeconds: ClosedRange<Int64> { 0 ... 86_400 }
    static var waveTimeouts: ClosedRange<Int64> { 0 ... 604_800 }

    /// The schemas its routes refer to, for the OpenAPI document.
    var schemas: [String: Schema] {
        let spec: [String: Schema] = [
            "name": .string, "version": .string, "url": .string, "checksum": .string, "envs": .object([:], additional: .string),
            "limits": .object(["cpu": .string, "memory": .string, "pids": .string]), "user": .string, "group": .string,
            "tags": .object([:], additional: .string), "on_untag": .enumeration(["remove", "keep"]),
            "daemon": .object(
                [
                    "precheck": .string, "start": .string, "stop": .string, "check": .enumeration(DaemonCheck.allCases.map(\.rawValue)),
                    "pidfile": .string, "socket": .string,
                ].merging(Aspire_V1_DaemonSpec.ranges.map { ($0.key, Schema.bounded($0.value)) }) { $1 },
                required: ["start"]
            ),
        ]
        // A wave moves a count of hosts from 1, or a share.
        let wave = RateLimitText.schema(minimumCount: 1)
        let account = Schema.matching(AccountName.pattern)
        return [
            // As `DeploymentSpec.checked` and `RolloutPolicy.checked` take it.
            "DeploymentRequest": .allOf([
                .object(
                    spec.merging([
                        "name": .matching(PathName.pattern), "version": .matching(PathName.pattern), "url": .string,
                        "checksum": .matching(CommandParameters.checksumPattern), "user": account, "group": account,
                        "on_untag": .enumeration(["", "remove", "keep"]),
                        "daemon": .allOf(
                            [.object(Aspire_V1_DaemonSpec.schemaFields(numbersAsText: false, hits: true), required: ["start"])]
                                + Aspire_V1_DaemonSpec.schemaRules
                        ),
                        "canary": wave, "batch": wave, "max_failures": .bounded(Self.maxFailures), "health_seconds": .bounded(Self.healthSeconds),
                        "wave_timeout_seconds": .bounded(Self.waveTimeouts), "no_auto_rollback": .boolean, "tags": OpenAPI.tags(minimum: 1),
                    ]) { $1 },
                    required: ["name", "version", "tags"]
                ),
                // A store package (no url, no checksum), a command:// install, or a url with its checksum.
                .anyOf([
                    .object(["url": .enumeration([""]), "checksum": .enumeration([""])], additional: .any),
                    .object(["url": .matching("^command://")], required: ["url"], additional: .any),
                    .object(["url": .nonEmpty, "checksum": .nonEmpty], required: ["url", "checksum"], additional: .any),
                ]),
            ]),
            "Deployment": .object(
                spec.merging([
                    "rollout": .object([
                        "canary": .string, "batch": .string, "max_failures": .integer, "health_seconds": .integer,
                        "wave_timeout_seconds": .integer, "auto_rollback": .boolean,
                    ]),
                    "revision": .integer, "state": .enumeration(RolloutState.allCases.map(\.rawValue)), "stable_version": .string, "stable_revision": .integer,
                    "wave": .integer, "reason": .string, "gmt_create": OpenAPI.time, "gmt_modify": OpenAPI.time,
                ]) { $1 },
                required: ["name", "version", "tags", "revision", "state", "wave"]
            ),
        ]
    }

    var endpoints: [Endpoint] {
        [
            Endpoint(
                Route(
                    id: "listDeployments", rpc: "ListDeployments", method: "GET", path: "/api/v1/server/deployments",
                    summary: "Declared deployments by name.",
                    response: .envelope(["deployments": .array(.ref("Deployment"))])
                )
            ) { _, _, _, metadata in
                let answer = try await self.gateway.admin.listDeployments(Aspire_V1_ListDeploymentsRequest(), metadata: metadata)
                return Answer.success(["deployments": answer.deployments.map(Self.deployment)])
            },
            Endpoint(
                Route(
                    id: "getDeployment", rpc: "GetDeployment", method: "GET", path: "/api/v1/server/deployment",
                    summary: """
                        One deployment: its matching hosts counted per version and state (pending, starting, healthy, failed), \
                        the hosts (failed first), the current wave and why the rollout stopped.
                        """,
                    query: [Route.query("name", .string, "The deployment.", required: true)],
                    response: .envelope(Self.status)
                )
            ) { _, request, _, metadata in
                var message = Aspire_V1_GetDeploymentRequest()
                message.name = Query(request).string("name")
                let status = try await self.gateway.admin.getDeployment(message, metadata: metadata)
                return Answer.success([
                    "deployment": Self.deployment(status.deployment), "matching": Int(status.matching),
                    "counts": status.counts.map { ["version": $0.version, "state": $0.state, "hosts": Int($0.hosts)] as RESTJSON.Object },
                    "hosts": status.hosts.map { host -> RESTJSON.Object in
                        [
                            "agentsn": host.agentSn, "hostname": host.hostname, "version": host.version, "revision": Int(host.revision),
                            "state": host.state, "message": host.message, "moved": host.moved, "wave": Int(host.wave), "online": host.online,
                        ]
                    },
                ])
            },
            Endpoint(
                Route(
                    id: "applyDeployment", rpc: "ApplyDeployment", method: "POST", path: "/api/v1/server/deployment",
                    summary: """
                        Declares what every host carrying all of `tags` must run (a store package by name and version, or url and \
                        checksum), or changes it: a new version rolls out in waves (canary, then batch, each promoted when its hosts \
                        ran it for health_seconds; past max_failures it halts and, unless no_auto_rollback, the moved hosts go back). \
                        The same declaration again changes nothing.
                        """,
                    body: [(Route.json, .ref("DeploymentRequest"))],
                    response: .envelope(["deployment": .ref("Deployment")])
                )
            ) { route, request, _, metadata in
                let body = try await self.gateway.objectBody(request, route: route)
                try body.allow([
                    "name", "version", "url", "checksum", "envs", "limits", "user", "group", "tags", "on_untag", "canary", "batch",
                    "max_failures", "health_seconds", "wave_timeout_seconds", "no_auto_rollback", "daemon",
                ])
                var message = Aspire_V1_ApplyDeploymentRequest()
                message.spec.name = try body.string("name", required: true)
                message.spec.version = try body.string("version", required: true)
                message.spec.url = try body.string("url")
                message.spec.checksum = try body.string("checksum")
                message.spec.envs = try body.stringMap("envs")
                if let object = try body.object("limits") {
                    // A field of its own each: null is absent, as everywhere in a body.
                    let limits = JSONFields(object.fields, context: "\(route.name): limits", code: .badRequest)
                    try limits.allow(["cpu", "memory", "pids"])
                    var given = Aspire_V1_ResourceLimits()
                    given.cpu = try limits.string("cpu")
                    given.memory = try limits.string("memory")
                    given.pids = try limits.string("pids")
                    if given != Aspire_V1_ResourceLimits() { message.spec.limits = given }
                }
                message.spec.user = try body.string("user")
                message.spec.group = try body.string("group")
                message.spec.tags = try body.stringMap("tags")
                message.spec.onUntag = try body.string("on_untag")
                if let daemon = try body.object("daemon") {
                    message.spec.daemon = try Self.daemon(JSONFields(daemon.fields, context: "\(route.method) \(route.path): daemon", code: .badRequest))
                }
                message.rollout.canary = try body.numberOrString("canary")
                message.rollout.batch = try body.numberOrString("batch")
                message.rollout.maxFailures = Int32(try body.integer("max_failures", range: Self.maxFailures) ?? 0)
                message.rollout.healthSeconds = Int32(try body.integer("health_seconds", range: Self.healthSeconds) ?? 0)
                message.rollout.waveTimeoutSeconds = Int32(try body.integer("wave_timeout_seconds", range: Self.waveTimeouts) ?? 0)
                message.rollout.noAutoRollback = try body.bool("no_auto_rollback") ?? false
                let answer = try await self.gateway.admin.applyDeployment(message, metadata: metadata)
                return Answer.success(["deployment": Self.deployment(answer)])
            },
            Endpoint(
                Route(
                    id: "controlDeployment", rpc: "ControlDeployment", method: "POST", path: "/api/v1/server/deployment/control",
                    summary: "pause (no further wave), resume (a paused rollout goes on) or rollback (every host back to the stable version).",
                    body: [(Route.json, .object(["name": .string, "action": .enumeration(["pause", "resume", "rollback"])], required: ["name", "action"]))],
                    response: .envelope(["deployment": .ref("Deployment")])
                )
            ) { route, request, _, metadata in
                let body = try await self.gateway.objectBody(request, route: route)
                try body.allow(["name", "action"])
                var message = Aspire_V1_ControlDeploymentRequest()
                message.name = try body.string("name", required: true)
                message.action = try body.string("action", required: true)
                let answer = try await self.gateway.admin.controlDeployment(message, metadata: metadata)
                return Answer.success(["deployment": Self.deployment(answer)])
            },
            Endpoint(
                Route(
                    id: "deleteDeployment", rpc: "DeleteDeployment", method: "DELETE", path: "/api/v1/server/deployment",
                    summary: "Deletes a deployment; its hosts remove the sub-agent, or keep it when on_untag is keep.",
                    query: [Route.query("name", .string, "The deployment.", required: true)],
                    response: .envelope(["deployment": .ref("Deployment")])
                )
            ) { _, request, _, metadata in
                var message = Aspire_V1_DeleteDeploymentRequest()
                message.name = Query(request).string("name")
                let answer = try await self.gateway.admin.deleteDeployment(message, metadata: metadata)
                return Answer.success(["deployment": Self.deployment(answer)])
            },
        ]
    }

    /// The seed's daemon.init fields, with `hits` among them.
    static func daemon(_ fields: JSONFields) throws(AspireError) -> Aspire_V1_DaemonSpec {
        try fields.allow(Aspire_V1_DaemonSpec.fieldNames.union(["hits"]))
        var daemon = try Aspire_V1_DaemonSpec(fields: fields)
        daemon.hits = Int32(try fields.integer("hits", range: Aspire_V1_DaemonSpec.range("hits")) ?? 0)
        return daemon
    }

    static func deployment(_ info: Aspire_V1_DeploymentInfo) -> RESTJSON.Object {
        let spec = info.spec
        var object: RESTJSON.Object = [
            "name": spec.name, "version": spec.version, "tags": spec.tags, "on_untag": spec.onUntag, "revision": Int(info.revision),
            "state": info.state, "wave": Int(info.wave), "reason": info.reason, "stable_revision": Int(info.stableRevision),
            "gmt_create": RESTJSON.time(info.createdUnixMs), "gmt_modify": RESTJSON.time(info.modifiedUnixMs),
            "rollout": [
                "canary": info.rollout.canary, "batch": info.rollout.batch, "max_failures": Int(info.rollout.maxFailures),
                "health_seconds": Int(info.rollout.healthSeconds), "wave_timeout_seconds": Int(info.rollout.waveTimeoutSeconds),
                "auto_rollback": !info.rollout.noAutoRollback,
            ] as RESTJSON.Object,
        ]
        if !spec.url.isEmpty { object["url"] = spec.url }
        if !spec.checksum.isEmpty { object["checksum"] = spec.checksum }
        if !spec.envs.isEmpty { object["envs"] = spec.envs }
        if spec.hasLimits {
            object["limits"] = ["cpu": spec.limits.cpu, "memory": spec.limits.memory, "pids": spec.limits.pids].filter { !$0.value.isEmpty }
        }
        if spec.hasDaemon {
            let daemon = spec.daemon
            var fields: RESTJSON.Object = [
                "precheck": daemon.precheck, "precheck_retries": Int(daemon.precheckRetries), "start": daemon.start,
                "start_delay": Int(daemon.startDelay), "stop": daemon.stop, "stop_timeout": Int(daemon.stopTimeout),
                "check_interval": Int(daemon.checkInterval), "pidfile": daemon.pidfile, "socket": daemon.socket, "hits": Int(daemon.hits),
            ]
            // No check given: the field is absent (its schema is the enum of checks).
            if !daemon.check.isEmpty { fields["check"] = daemon.check }
            object["daemon"] = fields
        }
        if !spec.user.isEmpty { object["user"] = spec.user }
        if !spec.group.isEmpty { object["group"] = spec.group }
        if !info.stableVersion.isEmpty { object["stable_version"] = info.stableVersion }
        return object
    }
}
