import Foundation
import Gateway
import RPC
import Server
import Testing
import TestSupport

/// The REST gateway's routes on a node built in-process, called through Hummingbird's test
/// client: authentication, the envelope and the refusal of bad input, with no socket.
@Suite("Gateway routes (in-process node)")
struct GatewayRouteTests {
    @Test("Every /api route needs the admin bearer token; the seed's agent routes refuse a wrong one")
    func authentication() async throws {
        try await withLocalNode { node in
            try await node.withREST { client in
                let rest = RESTClient(router: client, token: node.node.adminToken)
                var anonymous = rest
                anonymous.token = nil
                var wrong = rest
                wrong.token = "not-the-token"
                let routes = node.node.gateway.routes
                #expect(routes.count >= 20)
                for spec in routes where spec.access == .admin {
                    let body: [String: Any]? = spec.body.isEmpty ? nil : [:]
                    try await anonymous.fails(spec.method, spec.path, json: body, http: 401, code: .unauthenticated)
                    try await wrong.fails(spec.method, spec.path, json: body, http: 401, code: .unauthenticated)
                }
                // Nothing was created by the refused calls.
                let tasks = try await rest.ok("GET", "/api/v1/server/task")
                #expect(tasks["count"] as? Int == 0)

                // The seed's agent routes are off unless the node names the networks they may come from.
                let agent = try await wrong.call("POST", "/agent/status", json: ["hostname": "h1"])
                #expect(try agent.status == 403 && (agent.object)["message"] as? String == "the seed's plain-HTTP agent routes are off on this node: start it with --seed-agents CIDR,... (the networks such agents call from)")
                #expect((try agent.object)["errcode"] as? Int == Int(ErrorCode.permissionDenied.rawValue))
                // Unknown paths answer the envelope, not a bare 404 page.
                try await rest.fails("GET", "/api/v1/server/nothing", http: 404, code: .notFound)
                let put = try await rest.call("PUT", "/api/v1/server/package", json: [:])
                #expect(put.status == 405 && put.code == Int(ErrorCode.badRequest.rawValue) && put.text.contains("use GET, POST, DELETE"))
            }
        }
    }

    @Test("Join tokens and host certificates over REST: create (secret once), list, revoke; a host's identity; ban, lift, delete")
    func identityRoutes() async throws {
        try await withLocalNode { node in
            try await node.withREST { client in
                let rest = RESTClient(router: client, token: node.node.adminToken)
                let created = try await rest.ok("POST", "/api/v1/server/token", json: ["ttl_seconds": 600, "max_uses": 3, "tags": ["env": "qa"], "note": "rest"])
                let token = try #require(created["token"] as? [String: Any])
                let id = try #require(token["id"] as? String)
                #expect((created["secret"] as? String)?.count == 64)
                #expect(token["state"] as? String == "usable" && token["max_uses"] as? Int == 3 && token["uses"] as? Int == 0)
                let listed = try await rest.ok("GET", "/api/v1/server/tokens")
                let tokens = try #require(listed["tokens"] as? [[String: Any]])
                #expect(tokens.contains { $0["id"] as? String == id })
                #expect(!String(describing: listed).contains(created["secret"] as! String))
                try await rest.fails("POST", "/api/v1/server/token", json: ["max_uses": -1], http: 400, code: .badRequest)
                try await rest.fails("POST", "/api/v1/server/token", json: ["tags": ["": "x"]], http: 400, code: .badRequest)
                let revoked = try await rest.ok("DELETE", "/api/v1/server/token?id=\(id)")
                #expect((revoked["token"] as? [String: Any])?["state"] as? String == "revoked")
                try await rest.fails("DELETE", "/api/v1/server/token?id=nope", http: 404, code: .notFound)

                _ = try await ScriptedAgent.identity("rest-host", node: node)
                let enrolled = try await rest.ok("GET", "/api/v1/server/agent?agentsn=rest-host")
                #expect((enrolled["host"] as? [String: Any])?["identity"] as? String == "enrolled")
                let banned = try await rest.ok("POST", "/api/v1/server/agent/ban", json: ["agentsn": "rest-host", "reason": "rest"])
                #expect((banned["host"] as? [String: Any])?["identity"] as? String == "banned")
                _ = try await rest.ok("POST", "/api/v1/server/agent/ban", json: ["agentsn": "rest-host", "lift": true])
                let deleted = try await rest.ok("DELETE", "/api/v1/server/agent?agentsn=rest-host")
                let host = try #require(deleted["host"] as? [String: Any])
                #expect(host["status"] as? String == "deleted" && host["identity"] as? String == "none")
                try await rest.fails("DELETE", "/api/v1/server/agent?agentsn=nobody", http: 404, code: .notFound)
                try await rest.fails("POST", "/api/v1/server/agent/ban", json: ["agentsn": "../x"], http: 400, code: .badRequest)
            }
        }
    }

    @Test("Bad bodies get the envelope (400, 413) and change nothing; the node keeps serving")
    func badBodies() async throws {
        try await withLocalNode(configure: { $0.maxBodyBytes = 4096 }) { node in
            try await node.withREST { client in
                let rest = RESTClient(router: client, token: node.node.adminToken)
                let task = "/api/v1/server/task"
                let json = "application/json"

                try await rest.fails("POST", task, body: Data(#"{"command": "sync.bash", "agents": ["#.utf8), contentType: json, http: 400, code: .badRequest)
                try await rest.fails("POST", task, body: Data([0xFF, 0xFE, 0x00]), contentType: json, http: 400, code: .badRequest)
                try await rest.fails("POST", task, body: Data(), contentType: json, http: 400, code: .badRequest)
                try await rest.fails("POST", task, json: ["sync.bash"], http: 400, code: .badRequest)
                var cause = try await rest.fails("POST", task, json: ["command": "sync.bash", "agents": "web-1", "parameters": ["cmd": "true"]], http: 400, code: .badRequest)
                #expect(cause.contains("'agents' must be an array"))
                cause = try await rest.fails("POST", task, json: ["command": 7, "agents": ["web-1"]], http: 400, code: .badRequest)
                #expect(cause.contains("'command' must be a string"))
                cause = try await rest.fails("POST", task, json: ["command": "sync.bash", "agent": ["web-1"]], http: 400, code: .badRequest)
                #expect(cause.contains("unknown field 'agent'"))
                cause = try await rest.fails("POST", task, json: ["command": "sync.bash", "agents": ["web-1"], "parameters": ["cmd": 5]], http: 400, code: .invalidParams)
                #expect(cause.contains("'cmd' must be a string"))
                try await rest.fails("POST", task, json: ["command": "reboot.now", "agents": ["web-1"]], http: 400, code: .invalidParams)
                try await rest.fails("POST", task, json: ["command": "sync.bash", "agents": ["../etc"], "parameters": ["cmd": "true"]], http: 400, code: .badRequest)
                try await rest.fails(
                    "POST", task, json: ["command": "sync.bash", "tags": ["svc": "ecs"], "window": ["start": "yesterday"], "parameters": ["cmd": "true"]],
                    http: 400, code: .badRequest
                )
                let big = ["command": "sync.bash", "agents": ["web-1"], "parameters": ["cmd": String(repeating: "x", count: 8000)]] as [String: Any]
                try await rest.fails("POST", task, json: big, http: 413, code: .payloadTooLarge)
                try await rest.fails("GET", "/api/v1/server/hosts?limit=5000", http: 400, code: .badRequest)
                try await rest.fails("GET", "/api/v1/server/hosts?offset=-1", http: 400, code: .badRequest)
                try await rest.fails("GET", "/api/v1/server/hosts?status=sleeping", http: 400, code: .badRequest)
                try await rest.fails("GET", "/api/v1/server/hosts?tag=svc", http: 400, code: .badRequest)
                try await rest.fails("GET", "/api/v1/server/package?order=sideways", http: 400, code: .badRequest)
                try await rest.fails("GET", "/api/v1/server/package?sortby=password", http: 400, code: .badRequest)
                try await rest.fails("GET", "\(task)?id=abc", http: 400, code: .badRequest)
                try await rest.fails("GET", "\(task)?id=999", http: 404, code: .notFound)
                try await rest.fails("DELETE", task, http: 400, code: .badRequest)
                // Every route refuses a call without a query parameter it requires, naming it.
                var checked = 0
                for route in node.node.gateway.routes where route.access != .agent {
                    guard let required = route.query.first(where: \.required) else { continue }
                    let cause = try await rest.fails(route.method, route.path, http: 400, code: .badRequest)
                    #expect(cause.contains("query parameter '\(required.name)' is required"), "\(route.name): \(cause)")
                    checked += 1
                }
                #expect(checked >= 6)
                let agent = try await rest.call("POST", "/agent/status", body: Data("{".utf8), contentType: json)
                #expect(agent.status == 403, "seed routes are off here; their bad bodies are tested on a node with --seed-agents")

                // Nothing above was stored, and the node still answers.
                let tasks = try await rest.ok("GET", task)
                #expect(tasks["count"] as? Int == 0)
                let hosts = try await rest.ok("GET", "/api/v1/server/hosts")
                #expect(hosts["count"] as? Int == 0)
            }
        }
    }

    @Test("The OpenAPI document describes exactly the routes the router serves, each once, from the controllers' own descriptions")
    func document() async throws {
        try await withLocalNode { node in
            let routes = node.node.gateway.routes
            #expect(Set(routes.map(\.id)).count == routes.count, "operation ids are unique")
            #expect(Set(routes.map(\.name)).count == routes.count, "no method and path twice")
            try await node.withREST { client in
                let rest = RESTClient(router: client, token: node.node.adminToken)
                let document = try await rest.call("GET", "/api/v1/openapi.json")
                let paths = try #require((try document.object)["paths"] as? [String: [String: Any]])
                let described = Set(paths.flatMap { path, operations in operations.keys.map { "\($0.uppercased()) \(path)" } })
                // Every schema a route or a schema refers to is in the document (controllers bring their own).
                let schemas = try #require(((try document.object)["components"] as? [String: Any])?["schemas"] as? [String: Any])
                func references(_ value: Any) -> [String] {
                    switch value {
                    case let object as [String: Any]: (object["$ref"] as? String).map { [$0] } ?? object.values.flatMap(references)
                    case let array as [Any]: array.flatMap(references)
                    default: []
                    }
                }
                let referenced = Set(references(paths) + references(schemas)).map { String($0.split(separator: "/").last ?? "") }
                #expect(!referenced.isEmpty)
                for name in referenced { #expect(schemas[name] != nil, "unresolved schema \(name)") }
                #expect(described == Set(routes.map(\.name)))
                for route in routes {
                    let operation = paths[route.path]?[route.method.lowercased()] as? [String: Any]
                    #expect(operation?["operationId"] as? String == route.id && operation?["summary"] as? String == route.summary)
                    // Every route is served: whatever it answers, it is not "no route".
                    let answer = try await rest.call(route.method, route.path)
                    #expect(answer.code != Int(ErrorCode.notFound.rawValue) || !answer.text.contains("no route"), "\(route.name): \(answer.text)")
                }
            }
        }
    }

    @Test("A node tightens a data directory left open to others, and its TLS directory, to 0700")
    func privateDirectories() async throws {
        try await withLocalNode(configure: { configuration in
            try? FileManager.default.createDirectory(
                atPath: "\(configuration.dataDirectory)/tls", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755]
            )
            try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: configuration.dataDirectory)
        }) { node in
            for path in [node.node.configuration.dataDirectory, "\(node.node.configuration.dataDirectory)/tls"] {
                let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue
                #expect(mode == 0o700, "\(path)")
            }
        }
    }

    @Test("Deployments over REST: declare, read back, the same again changes nothing, a new version rolls out, pause, resume, roll back, delete; bad declarations refused")
    func deploymentRoutes() async throws {
        try await withLocalNode { node in
            try await node.withREST { client in
                let rest = RESTClient(router: client, token: node.node.adminToken)
                let checksum = "SHA256:" + String(repeating: "ab", count: 32)
                let body: [String: Any] = [
                    "name": "web-agent", "version": "1.0", "url": "https://files.example.com/web-agent-1.0.tar.gz", "checksum": checksum,
                    "tags": ["svc": "web"], "envs": ["MODE": "prod"], "limits": ["memory": "64M"], "canary": 1, "batch": "25%",
                    "health_seconds": 30,
                ]
                let created = try #require(try await rest.ok("POST", "/api/v1/server/deployment", json: body)["deployment"] as? [String: Any])
                #expect(created["revision"] as? Int == 1 && created["state"] as? String == "done" && created["on_untag"] as? String == "remove")
                let rollout = try #require(created["rollout"] as? [String: Any])
                #expect(rollout["canary"] as? String == "1" && rollout["batch"] as? String == "25%" && rollout["health_seconds"] as? Int == 30)
                #expect(rollout["auto_rollback"] as? Bool == true && (created["limits"] as? [String: String]) == ["memory": "64M"])
                let same = try #require(try await rest.ok("POST", "/api/v1/server/deployment", json: body)["deployment"] as? [String: Any])
                #expect(same["revision"] as? Int == 1 && same["gmt_modify"] as? String == created["gmt_modify"] as? String)

                // A host of the deployment that never answers: the rollout waits for its canary.
                try await ScriptedAgent.connect("web-1", tags: ["svc": "web"], to: node) { _ in
                    var newer = body
                    newer["version"] = "2.0"
                    newer["url"] = "https://files.example.com/web-agent-2.0.tar.gz"
                    let rolling = try #require(try await rest.ok("POST", "/api/v1/server/deployment", json: newer)["deployment"] as? [String: Any])
                    #expect(rolling["revision"] as? Int == 2 && rolling["state"] as? String == "rolling" && rolling["stable_version"] as? String == "1.0")
                    let listed = try #require(try await rest.ok("GET", "/api/v1/server/deployments")["deployments"] as? [[String: Any]])
                    #expect(listed.map { $0["name"] as? String } == ["web-agent"])
                    let status = try await rest.ok("GET", "/api/v1/server/deployment?name=web-agent")
                    #expect(status["matching"] as? Int == 1 && (status["hosts"] as? [Any])?.count == 1)

                    let control = "/api/v1/server/deployment/control"
                    let paused = try #require(try await rest.ok("POST", control, json: ["name": "web-agent", "action": "pause"])["deployment"] as? [String: Any])
                    #expect(paused["state"] as? String == "paused" && (paused["reason"] as? String)?.contains("paused by admin") == true)
                    try await rest.fails("POST", control, json: ["name": "web-agent", "action": "pause"], http: 409, code: .conflict)
                    try await rest.fails("POST", control, json: ["name": "web-agent", "action": "explode"], http: 400, code: .badRequest)
                    try await rest.fails("POST", control, json: ["name": "nothing", "action": "pause"], http: 404, code: .notFound)
                    _ = try await rest.ok("POST", control, json: ["name": "web-agent", "action": "resume"])
                    let back = try #require(try await rest.ok("POST", control, json: ["name": "web-agent", "action": "rollback"])["deployment"] as? [String: Any])
                    #expect(back["state"] as? String == "rolled_back" && (back["reason"] as? String)?.contains("rolled back to 1.0") == true)
                }

                // Bad declarations: each refused with what is wrong, nothing stored.
                for (change, why) in [
                    (["tags": [String: String]()], "names no tags"), (["name": "../x"], "name"), (["on_untag": "maybe"], "on_untag"),
                    (["checksum": "md5:1"], "checksum"), (["canary": 0], "canary '0'"), (["batch": "120%"], "batch"),
                    (["limits": ["disk": "1G"]], "unknown field 'disk'"), (["surprise": true], "surprise"), (["health_seconds": -1], "health_seconds"),
                    (["url": "", "checksum": ""], "no package"), (["url": ""], "a checksum goes with a url"),
                ] as [([String: Any], String)] {
                    var bad = body
                    bad["name"] = "other"
                    bad.merge(change) { $1 }
                    let answer = try await rest.call("POST", "/api/v1/server/deployment", json: bad)
                    #expect([400, 404].contains(answer.status) && answer.text.contains(why), "\(change): \(answer.text)")
                }
                #expect((try await rest.ok("GET", "/api/v1/server/deployments")["deployments"] as? [Any])?.count == 1)

                // A program without a control script: the seed's daemon.init fields, checked.
                var daemon = body
                daemon["name"] = "mond"
                daemon["daemon"] = ["start": "bin/mond -d", "stop": "kill:HUP", "check": "pidfile", "pidfile": "/run/mond.pid", "hits": 5]
                let declared = try #require(try await rest.ok("POST", "/api/v1/server/deployment", json: daemon)["deployment"] as? [String: Any])
                let spec = try #require(declared["daemon"] as? [String: Any])
                #expect(spec["stop"] as? String == "kill:HUP" && spec["check"] as? String == "pidfile" && spec["hits"] as? Int == 5)
                for (bad, why) in [
                    (["stop": "kill:HUP"], "start"), (["start": "x", "check": "pidfile"], "pidfile"), (["start": "x", "stop": "kill:NOPE"], "signal"),
                    (["start": "x", "colour": "red"], "colour"),
                ] as [([String: Any], String)] {
                    var refused = daemon
                    refused["name"] = "bad-mond"
                    refused["daemon"] = bad
                    let answer = try await rest.call("POST", "/api/v1/server/deployment", json: refused)
                    #expect(answer.status == 400 && answer.text.contains(why), "\(bad): \(answer.text)")
                }
                _ = try await rest.ok("DELETE", "/api/v1/server/deployment?name=mond")
                let deleted = try #require(try await rest.ok("DELETE", "/api/v1/server/deployment?name=web-agent")["deployment"] as? [String: Any])
                #expect(deleted["name"] as? String == "web-agent")
                try await rest.fails("DELETE", "/api/v1/server/deployment?name=web-agent", http: 404, code: .notFound)
            }
        }
    }
}
