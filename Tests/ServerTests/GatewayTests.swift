import Fleet
import Crypto
import Foundation
import TestSupport
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Gateway
import RPC
import Testing

/// The REST gateway of a real node, over real HTTP: every route, its envelope and its errors.
@Suite("Gateway: REST over HTTP", .stopsChildProcesses)
struct GatewayTests {
    @Test("aspire-server gateway serves the same routes in front of a remote node, over TLS gRPC")
    func remoteGateway() async throws {
        let directory = try makeTemporaryDirectory("gateway-remote")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let addressFile = "\(directory)/gateway.addr"
        let process = try TestProcess.start(
            "aspire-server",
            [
                "gateway", "--upstream", node.address.description, "--ca", node.caFile, "--http-listen", "127.0.0.35:0",
                "--address-file", addressFile, "--enroll-token-file", node.enrollTokenFile, "--admin-token-file", node.adminTokenFile, "--seed-agents", "127.0.0.0/8", "--log-level", "debug",
            ],
            log: "\(directory)/gateway.log"
        )
        try await eventually("the gateway to listen\n\(process.log)") {
            guard process.isRunning else { throw HarnessError("gateway exited:\n\(process.log)") }
            return FileManager.default.fileExists(atPath: addressFile)
        }
        let address = try String(contentsOfFile: addressFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let rest = RESTClient(base: "http://\(address)", token: try node.adminToken)

        let uploaded = try await rest.ok(
            "POST", "/api/v1/server/package/raw?name=Remote&version=1&os=linux&arch=x86_64&file=remote.rpm",
            body: Data(repeating: 1, count: 200_000), contentType: "application/octet-stream"
        )
        #expect((uploaded["package"] as? [String: Any])?["size"] as? Int == 200_000)
        #expect(FileManager.default.fileExists(atPath: "\(node.dataDirectory)/packages/linux/x86_64/remote.rpm"))
        var agent = rest
        agent.token = nil
        let status = try await agent.call("POST", "/agent/status", json: ["hostname": "remote-host", "version": "1"])
        #expect(status.status == 200)
        let dashboard = try await rest.ok("GET", "/api/v1/server/dashboard")
        #expect((dashboard["hosts"] as? [String: Any])?["total"] as? Int == 1)
        // The node, not the gateway, judges the token.
        var wrong = rest
        wrong.token = "nope"
        try await wrong.fails("GET", "/api/v1/server/dashboard", http: 401, code: .unauthenticated)

        // The web console too: a sign-in here is checked by the remote node, whose hosts it lists.
        let jar = "\(directory)/cookies"
        try await ConsoleSignIn.curl(base: "http://\(address)", token: try node.adminToken, jar: jar)
        let (curled, page) = try await ChildProcess.run("curl", ["-s", "-b", jar, "http://\(address)/hosts"])
        #expect(curled == 0 && page.contains(#"id="host-count" data-count="1""#) && page.contains("remote-host"), "\(page.prefix(2000))")
        let (_, anonymous) = try await ChildProcess.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://\(address)/hosts"])
        #expect(anonymous == "302")
    }

    @Test("Packages: raw upload hashed and stored, listing with the seed's paging, conflicts, traversal refused, delete")
    func packages() async throws {
        let directory = try makeTemporaryDirectory("gateway-packages")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address(), arguments: ["--max-package-size", "2000000"])
        let rest = try RESTClient(node)
        let route = "/api/v1/server/package"
        // The raw body has a route of its own: its query names the package.
        let raw = "\(route)/raw"
        let bytes = Data((0 ..< 1_500_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 7) })
        let sha256 = SHA256.hash(data: bytes).hexString
        let octets = "application/octet-stream"

        let uploaded = try await rest.ok(
            "POST", "\(raw)?name=FoobarAgent&version=1.2.3-rc1&os=linux&arch=x86_64&file=FoobarAgent-1.2.3-rc1.x86_64.rpm&sha256=\(sha256)",
            body: bytes, contentType: octets
        )
        let package = try #require(uploaded["package"] as? [String: Any])
        #expect(package["sha256"] as? String == sha256)
        #expect(package["size"] as? Int == bytes.count)
        #expect(package["path"] as? String == "packages/linux/x86_64/FoobarAgent-1.2.3-rc1.x86_64.rpm")
        #expect((package["gmt_create"] as? String)?.hasSuffix("Z") == true)
        let stored = try Data(contentsOf: URL(fileURLWithPath: "\(node.dataDirectory)/packages/linux/x86_64/FoobarAgent-1.2.3-rc1.x86_64.rpm"))
        #expect(stored == bytes)

        // The seed's JSON: base64 content, or a file already in the store.
        _ = try await rest.ok(
            "POST", route,
            json: ["name": "FoobarAgent", "version": "1.2.4", "arch": "x86_64", "os": "linux", "file": "FoobarAgent-1.2.4.x86_64.rpm", "content": Data("small".utf8).base64EncodedString()]
        )
        let seed: [String: Any] = ["name": "BasicAgent", "version": "0.1.1-1", "arch": "x86_64", "os": "linux", "file": "BasicAgent-0.1.1-1.x86_64.rpm"]
        var cause = try await rest.fails("POST", route, json: seed, http: 404, code: .notFound)
        #expect(cause.contains("no file packages/linux/x86_64/BasicAgent-0.1.1-1.x86_64.rpm"))
        try Data("rpm".utf8).write(to: URL(fileURLWithPath: "\(node.dataDirectory)/packages/linux/x86_64/BasicAgent-0.1.1-1.x86_64.rpm"))
        let registered = try await rest.ok("POST", route, json: seed)
        #expect((registered["package"] as? [String: Any])?["sha256"] as? String == SHA256.hash(data: Data("rpm".utf8)).hexString)

        // multipart/form-data as curl -F sends it: text fields, then the file part (or after
        // some of them, as a form in another order sends it).
        func form(_ fields: [(String, String)], file: (name: String, bytes: Data)?, fieldsBeforeFile: Int = .max) -> Data {
            var parts = fields.map { name, value in Data("--XyZ\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8) }
            if let file {
                let part = Data("--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(file.name)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
                parts.insert(part + file.bytes + Data("\r\n".utf8), at: min(fieldsBeforeFile, parts.count))
            }
            return parts.reduce(Data(), +) + Data("--XyZ--\r\n".utf8)
        }
        let multipart = "multipart/form-data; boundary=XyZ"
        let formBytes = Data(bytes.prefix(700_000))
        let formed = try await rest.ok(
            "POST", route, body: form([("name", "FormAgent"), ("version", "2.0"), ("os", "linux"), ("arch", "aarch64")], file: ("FormAgent-2.0.rpm", formBytes)),
            contentType: multipart
        )
        #expect((formed["package"] as? [String: Any])?["path"] as? String == "packages/linux/aarch64/FormAgent-2.0.rpm")
        #expect((formed["package"] as? [String: Any])?["sha256"] as? String == SHA256.hash(data: formBytes).hexString)
        // Fields in any order: the file before the names that place it (alphabetical, as schemathesis sends a form).
        let late = try await rest.ok(
            "POST", route,
            body: form(
                [("arch", "aarch64"), ("name", "LateAgent"), ("os", "linux"), ("sha256", SHA256.hash(data: formBytes).hexString), ("version", "2.1")],
                file: ("LateAgent-2.1.rpm", formBytes), fieldsBeforeFile: 1
            ),
            contentType: multipart
        )
        #expect((late["package"] as? [String: Any])?["path"] as? String == "packages/linux/aarch64/LateAgent-2.1.rpm")
        #expect((late["package"] as? [String: Any])?["sha256"] as? String == SHA256.hash(data: formBytes).hexString)
        let lateWrong = form([("name", "LateAgent"), ("version", "2.2"), ("os", "linux"), ("arch", "aarch64"), ("sha256", String(repeating: "0", count: 64))], file: ("LateAgent-2.2.rpm", formBytes), fieldsBeforeFile: 0)
        try await rest.fails("POST", route, body: lateWrong, contentType: multipart, http: 422, code: .unprocessable)
        // (Other tests may be uploading small files meanwhile: only this one's spool is this big.)
        let spooled = {
            ((try? FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())) ?? []).filter { name in
                let size = (try? FileManager.default.attributesOfItem(atPath: NSTemporaryDirectory() + name))?[.size] as? Int ?? 0
                return name.hasPrefix("aspire-upload-") && size > 1_000_000
            }
        }
        cause = try await rest.fails("POST", route, body: form([("name", "Huge"), ("version", "1"), ("os", "linux"), ("arch", "x86_64")], file: ("huge.rpm", Data(count: 2_500_000)), fieldsBeforeFile: 0), contentType: multipart, http: 413, code: .payloadTooLarge)
        #expect(spooled().isEmpty, "the gateway's spool files are removed: \(spooled())")
        cause = try await rest.fails("POST", route, body: form([("name", "FormAgent")], file: ("x.rpm", Data("x".utf8))), contentType: multipart, http: 400, code: .badRequest)
        #expect(cause.contains("'version' is required"))
        try await rest.fails("POST", route, body: form([("name", "A"), ("version", "1"), ("os", "linux"), ("arch", "x86_64")], file: ("../../evil.rpm", Data("x".utf8))), contentType: multipart, http: 422, code: .unprocessable)
        try await rest.fails("POST", route, body: form([("name", "A"), ("version", "1"), ("os", "linux"), ("arch", "x86_64")], file: nil), contentType: multipart, http: 400, code: .badRequest)
        _ = try await rest.ok("DELETE", "\(route)?name=FormAgent")
        _ = try await rest.ok("DELETE", "\(route)?name=LateAgent")

        // Refusals leave nothing behind: no record, no file, nothing in the incoming directory.
        try await rest.fails("POST", "\(raw)?name=FoobarAgent&version=1.2.3-rc1&os=linux&arch=x86_64&file=other.rpm", body: bytes, contentType: octets, http: 409, code: .conflict)
        try await rest.fails("POST", "\(raw)?name=Other&version=1&os=linux&arch=x86_64&file=FoobarAgent-1.2.3-rc1.x86_64.rpm", body: bytes, contentType: octets, http: 409, code: .conflict)
        for (field, value) in [("file", "..%2F..%2Fetc%2Fpasswd"), ("file", ".."), ("file", ".hidden"), ("os", "..%2Fetc"), ("arch", "x86%5C64"), ("name", "a%00b")] {
            var query = ["name": "Evil", "version": "1", "os": "linux", "arch": "x86_64", "file": "evil.rpm"]
            query[field] = value
            let text = query.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
            // The gateway refuses them by the document's pattern (400) before the store would (422, as for the
            // JSON and multipart forms above and below).
            let cause = try await rest.fails("POST", "\(raw)?\(text)", body: Data("x".utf8), contentType: octets, http: 400, code: .badRequest)
            #expect(cause.contains("query parameter '\(field)' must match"), "\(cause)")
            try await rest.fails("POST", route, json: query.merging(["content": "eA=="]) { $1 }.mapValues { $0.removingPercentEncoding ?? $0 }, http: 422, code: .unprocessable)
        }
        try await rest.fails("POST", "\(raw)?name=Evil&version=1&os=linux&arch=x86_64&file=evil.rpm&sha256=\(String(repeating: "0", count: 64))", body: Data("x".utf8), contentType: octets, http: 422, code: .unprocessable)
        try await rest.fails("POST", "\(raw)?name=Huge&version=1&os=linux&arch=x86_64&file=huge.rpm", body: Data(count: 2_500_000), contentType: octets, http: 413, code: .payloadTooLarge)
        try await rest.fails("POST", "\(raw)?name=NoFile", body: Data("x".utf8), contentType: octets, http: 400, code: .badRequest)
        // The query names a raw body only; the form and the JSON name it themselves.
        cause = try await rest.fails("POST", route, body: Data("x".utf8), contentType: octets, http: 415, code: .unsupportedMediaType)
        #expect(cause.contains("/api/v1/server/package/raw"), "\(cause)")
        cause = try await rest.fails(
            "POST", "\(route)?version=3.0", body: form([("name", "FormAgent"), ("os", "linux"), ("arch", "aarch64")], file: ("FormAgent-3.0.rpm", formBytes)),
            contentType: multipart, http: 400, code: .badRequest
        )
        #expect(cause.contains("'version' is required"), "\(cause)")
        // Base64 exactly as the document's pattern says (Foundation alone takes "====" and reads a byte).
        for content in ["%%%", "====", "QQ", "QUJD\n", "QQ==QQ=="] {
            try await rest.fails("POST", route, json: ["name": "X", "version": "1", "arch": "x86_64", "os": "linux", "file": "x.rpm", "content": content], http: 400, code: .badRequest)
        }
        let incoming = try FileManager.default.contentsOfDirectory(atPath: "\(node.dataDirectory)/packages/.incoming")
        #expect(incoming.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "\(node.dataDirectory)/packages/linux/x86_64/evil.rpm"))
        #expect(!FileManager.default.fileExists(atPath: "\(node.dataDirectory)/packages/linux/x86_64/huge.rpm"))
        #expect(!FileManager.default.fileExists(atPath: "\(node.dataDirectory)/etc"))

        // The seed's listing: count, offset, limit, packages, with filters, order and sortby.
        let all = try await rest.ok("GET", "\(route)?offset=0&limit=10&order=asc&sortby=id")
        #expect(all["count"] as? Int == 3 && all["offset"] as? Int == 0 && all["limit"] as? Int == 10)
        #expect((all["packages"] as? [[String: Any]])?.compactMap { $0["version"] as? String } == ["1.2.3-rc1", "1.2.4", "0.1.1-1"])
        let foobar = try await rest.ok("GET", "\(route)?name=FoobarAgent&order=desc&sortby=version&limit=1")
        #expect(foobar["count"] as? Int == 2)
        #expect((foobar["packages"] as? [[String: Any]])?.compactMap { $0["version"] as? String } == ["1.2.4"])
        let none = try await rest.ok("GET", "\(route)?name=FoobarAgent&version=9")
        #expect(none["count"] as? Int == 0)

        // Delete removes the record and the file; again is not found.
        let deleted = try await rest.ok("DELETE", "\(route)?name=FoobarAgent&version=1.2.3-rc1")
        #expect(deleted["count"] as? Int == 1)
        #expect(!FileManager.default.fileExists(atPath: "\(node.dataDirectory)/packages/linux/x86_64/FoobarAgent-1.2.3-rc1.x86_64.rpm"))
        cause = try await rest.fails("DELETE", "\(route)?name=FoobarAgent&version=1.2.3-rc1", http: 404, code: .notFound)
        #expect(cause == "no agent package found")
        // Naming nothing matches nothing (and never everything).
        cause = try await rest.fails("DELETE", route, http: 404, code: .notFound)
        #expect(cause.hasPrefix("no package to delete"))
        let left = try await rest.ok("GET", route)
        #expect(left["count"] as? Int == 2)
    }

    @Test("Numbers past what a field holds (2^63, -2^63, 1e300) are refused with 400, and the node keeps serving (schemathesis found each crashing it)")
    func hugeNumbers() async throws {
        let directory = try makeTemporaryDirectory("gateway-numbers")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let rest = try RESTClient(node)
        let bodies: [(String, [String: Any])] = [
            ("/api/v1/server/regions/hosts", ["agents": ["a"], "region": 9_223_372_036_854_775_808.0]),
            ("/api/v1/server/task", ["command": "sync.bash", "agents": ["a"], "max_errors": -9_223_372_036_854_775_809.0]),
            ("/api/v1/server/task", ["command": "sync.bash", "agents": ["a"], "max_concurrency": 1e300]),
            ("/api/v1/server/token", ["ttl_seconds": 9_223_372_036_854_775_808.0]),
            ("/api/v1/server/token", ["max_uses": 1e300]),
            ("/api/v1/server/token", ["tags": ["k": 1e300]]),
        ]
        for (path, body) in bodies {
            let answer = try await rest.call("POST", path, json: body)
            #expect(answer.status == 400 || answer.status == 422, "\(path) \(body): HTTP \(answer.status) \(answer.text)")
        }
        _ = try await rest.ok("GET", "/api/v1/server/whoami")
    }

    @Test("A task's shape rules (the document's) answer 400; a well-formed task refused for what it meets answers 422")
    func taskRefusals() async throws {
        let directory = try makeTemporaryDirectory("gateway-task-refusals")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let rest = try RESTClient(node)
        let route = "/api/v1/server/task"
        func bash(_ parameters: [String: Any], _ extra: [String: Any] = [:]) -> [String: Any] {
            ["command": "sync.bash", "agents": ["a"], "parameters": parameters].merging(extra) { $1 }
        }
        let shape: [([String: Any], String)] = [
            (bash(["cmd": " \t\n"]), "'cmd' is blank"),
            (bash(["cmd": "true", "timeout": "+10"]), "'timeout' must be a number"),
            (bash(["cmd": "true", "timeout": "1e1"]), "'timeout' must be a number"),
            (bash(["cmd": "true", "timeout": "010"]), "'timeout' must be a number"),
            (bash(["cmd": "true"], ["max_concurrency": "0.5%"]), "a share from 1% to 100%"),
            (bash(["cmd": "true"], ["max_errors": " 10"]), "expected a number from 0"),
            (bash(["cmd": "true"], ["agents": ["a"], "tags": ["k": "v"]]), "not both"),
            (bash(["cmd": "true"], ["agents": [], "tags": ["k": "v"], "window": ["start": "2026-12-02T10:00:00Zjunk"]]), "RFC 3339"),
            (bash(["cmd": "true"], ["agents": [], "tags": ["k": "v"], "window": ["start": 10.5]]), "whole Unix seconds"),
            (["command": "install", "agents": ["a"], "parameters": ["name": "A"]], "give a version"),
            (["command": "install", "agents": ["a"], "parameters": ["name": "A", "url": "aspire://package/linux/x"]], "aspire://package/OS/ARCH/FILE"),
            (["command": "install", "agents": ["a"], "parameters": ["name": "A", "version": "1", "checksum": "SHA256:" + String(repeating: "０", count: 64)]], "checksum"),
            (["command": "config", "agents": ["a"], "parameters": ["svrlist": "a:1, b:2"]], "svrlist"),
            (["command": "daemon.init", "agents": ["a"], "parameters": ["name": "D", "version": "1", "start": "d", "stop": "kill:ſigterm"]], "names no signal"),
            (["command": "daemon.init", "agents": ["a"], "parameters": ["name": "D", "version": "1", "start": "d", "check": "socket"]], "check socket needs a socket"),
        ]
        for (body, cause) in shape {
            // 130003 bad request for the task's own fields, 3021 invalid params for its parameters: both 400.
            let refused = try await rest.call("POST", route, json: body)
            #expect(refused.status == 400 && refused.text.contains(cause), "\(body): HTTP \(refused.status) \(refused.text)")
        }
        let world: [([String: Any], String)] = [
            (bash(["cmd": "true"], ["agents": [], "tags": ["k": "v"], "window": ["start": 2_000_000_000, "end": 1_900_000_000]]), "must end after it starts"),
            (bash(["cmd": "true"], ["agents": [], "tags": ["k": "v"], "window": ["start": "2027-02-29T00:00:00Z"]]), "has no February 29"),
            (["command": "install", "agents": ["a"], "parameters": ["name": "A", "version": "1"]], "no package A 1 in the store"),
            (["command": "install", "agents": ["a"], "parameters": ["name": "A", "url": "http://repo/latest.rpm"]], "give a version"),
        ]
        for (body, cause) in world {
            let refused = try await rest.fails("POST", route, json: body, http: 422, code: .unprocessable)
            #expect(refused.contains(cause), "\(body): \(refused)")
        }
        // The same texts written well are taken.
        _ = try await rest.ok("POST", route, json: bash(["cmd": "true", "timeout": "10"], ["max_concurrency": "2.5%", "max_errors": 3]))
        _ = try await rest.ok("POST", route, json: bash(["cmd": "true"], ["agents": [], "tags": ["k": "v"], "window": ["start": "2028-02-29T10:00:00+08:00", "end": "4000000000"]]))
        _ = try await rest.ok(
            "POST", route,
            json: ["command": "daemon.init", "agents": ["a"], "parameters": ["name": "D", "version": "1", "url": "http://repo/D-1.tar.gz", "checksum": "SHA256:" + String(repeating: "ab", count: 32), "start": "d", "stop": "kill:sigterm", "check": "socket", "socket": "[::1]:8080", "limits": ["HITS": "3", "cpu": 50]]]
        )
    }

    @Test("The seed's agent routes answer only the networks of --seed-agents")
    func seedAgentNetworks() async throws {
        let directory = try makeTemporaryDirectory("gateway-seed-networks")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address(), arguments: ["--seed-agents", "10.0.0.0/8,192.168.0.0/16"])
        var agent = try RESTClient(node)
        agent.token = nil
        let refused = try await agent.call("POST", "/agent/status", json: ["hostname": "h"], headers: ["X-Agent-SN": "outsider"])
        #expect(try refused.status == 403 && (refused.object["message"] as? String)?.contains("is not in --seed-agents") == true, "\(refused.text)")
        let hosts = try await RESTClient(node).ok("GET", "/api/v1/server/hosts")
        #expect(hosts["count"] as? Int == 0)
    }

    @Test("The seed's plain-HTTP agent: status registers the host, jobs come in the answer, results are stored once")
    func seedAgent() async throws {
        let directory = try makeTemporaryDirectory("gateway-seed-agent")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address(), arguments: ["--seed-agents", "127.0.0.0/8"])
        let rest = try RESTClient(node)
        var agent = try RESTClient(node)
        agent.token = nil

        // A malformed body gets the seed's error form; the node keeps serving.
        let malformed = try await agent.call("POST", "/agent/status", body: Data("{".utf8), contentType: "application/json")
        #expect(try malformed.status == 400 && (malformed.object["errcode"] as? Int) == Int(ErrorCode.badRequest.rawValue))

        // The seed's report, as written there, plus the host's AgentSN in a header.
        let report: [String: Any] = [
            "hostname": "web-7", "version": "bootagent-1.2.4-x86_64", "uptime": 1234, "timestamp": 1232, "step": 600,
            "agents": [["name": "BasicAgent", "version": "1.2.3", "status": "stoped", "uptime": 123]],
        ]
        var answer = try await agent.call("POST", "/agent/status", json: report, headers: ["X-Agent-SN": "9b62aabb-eda4-4d62-b036-b605d887bde3"])
        #expect(answer.status == 200)
        #expect(try answer.object["errcode"] as? Int == 0)
        #expect((try answer.object["jobs"] as? [Any])?.isEmpty == true)

        let host = try await rest.ok("GET", "/api/v1/server/agent?agentsn=\"9b62aabb-eda4-4d62-b036-b605d887bde3\"")
        let record = try #require(host["host"] as? [String: Any])
        #expect(record["status"] as? String == "online" && record["hostname"] as? String == "web-7")
        #expect(record["curvers"] as? String == "bootagent-1.2.4-x86_64" && record["ipaddr"] as? String == "127.0.0.1")
        let subAgents = try #require(record["agents"] as? [[String: Any]])
        #expect(subAgents.count == 1 && subAgents[0]["name"] as? String == "BasicAgent" && subAgents[0]["status"] as? String == "stoped")
        let dashboard = try await rest.ok("GET", "/api/v1/server/dashboard")
        #expect((dashboard["hosts"] as? [String: Any])?["online"] as? Int == 1)
        let deployments = try #require(dashboard["deployments"] as? [[String: Any]])
        #expect(deployments.count == 1 && deployments[0]["name"] as? String == "BasicAgent" && deployments[0]["version"] as? String == "1.2.3")

        // The seed's task body; the job comes back in the seed's job form.
        let created = try await rest.ok(
            "POST", "/api/v1/server/task",
            json: [
                "command": "install", "agents": ["9b62aabb-eda4-4d62-b036-b605d887bde3"],
                "parameters": [
                    "name": "BasicAgent", "version": "1.5.6", "url": "http://repo/BasicAgent-1.5.6.rpm",
                    "checksum": "SHA256:4a34b8d7d3009bb9ef9475fbf33e7bbe4a1e8db003aefc578a241c2f51c2c2f2",
                    "envs": ["PATH": "/usr/bin;/usr/local/bin"], "limits": ["CPU": "10%", "memory": "20M"],
                ],
            ]
        )
        let taskID = try #require(created["id"] as? Int)
        #expect((created["results"] as? [[String: Any]])?.first?["AgentSN"] as? String == "9b62aabb-eda4-4d62-b036-b605d887bde3")
        answer = try await agent.call("POST", "/agent/status", json: report.merging(["agentsn": "9b62aabb-eda4-4d62-b036-b605d887bde3"]) { $1 })
        let jobs = try #require(try answer.object["jobs"] as? [[String: Any]])
        #expect(jobs.count == 1)
        let job = jobs[0]
        #expect(job["action"] as? String == "install" && job["name"] as? String == "BasicAgent")
        #expect(job["checksum"] as? String == "SHA256:4a34b8d7d3009bb9ef9475fbf33e7bbe4a1e8db003aefc578a241c2f51c2c2f2")
        #expect((job["limits"] as? [String: String]) == ["CPU": "10%", "memory": "20M"])
        let jobID = try #require(job["id"] as? String)
        let running = try await rest.ok("GET", "/api/v1/server/task?id=\(taskID)")
        #expect((running["task"] as? [String: Any])?["status"] as? String == "running")

        // The result, twice (the seed re-sends until errcode 0): stored once.
        for _ in 0 ..< 2 {
            answer = try await agent.call(
                "POST", "/agent/job/result", json: [["id": jobID, "errcode": 0, "message": "success"]],
                headers: ["X-Agent-SN": "9b62aabb-eda4-4d62-b036-b605d887bde3"]
            )
            #expect(try answer.object["errcode"] as? Int == 0)
        }
        let done = try await rest.ok("GET", "/api/v1/server/task?id=\(taskID)")
        let task = try #require(done["task"] as? [String: Any])
        #expect(task["status"] as? String == "done" && task["complete"] as? Int == 1 && task["count"] as? Int == 1 && task["failed"] as? Int == 0)
        let subtask = try #require((done["subtasks"] as? [[String: Any]])?.first)
        #expect(subtask["status"] as? String == "succeeded")
        #expect((subtask["result"] as? [String: Any])?["message"] as? String == "success")

        // Another host cannot answer for this one's jobs.
        let second = try await rest.ok("POST", "/api/v1/server/task", json: ["command": "getinfo.kernel", "agents": ["9b62aabb-eda4-4d62-b036-b605d887bde3"]])
        answer = try await agent.call("POST", "/agent/status", json: report, headers: ["X-Agent-SN": "9b62aabb-eda4-4d62-b036-b605d887bde3"])
        let other = try #require((try answer.object["jobs"] as? [[String: Any]])?.first?["id"] as? String)
        _ = try await agent.call("POST", "/agent/job/result?agentsn=intruder", json: [["id": other, "errcode": 0]])
        let untouched = try await rest.ok("GET", "/api/v1/server/task?id=\(second["id"] as? Int ?? 0)")
        #expect((untouched["task"] as? [String: Any])?["complete"] as? Int == 0)
        // The seed's exact body names no host: the job's id says whose it is.
        answer = try await agent.call("POST", "/agent/job/result", json: [["id": other, "errcode": 0, "message": "success"]])
        #expect(try answer.object["errcode"] as? Int == 0, "\(answer.text)")
        let answered = try await rest.ok("GET", "/api/v1/server/task?id=\(second["id"] as? Int ?? 0)")
        #expect((answered["task"] as? [String: Any])?["complete"] as? Int == 1)
        #expect((answered["subtasks"] as? [[String: Any]])?.first?["status"] as? String == "succeeded")
        // A result for a job no host was sent is taken and dropped, so the agent stops sending it.
        answer = try await agent.call("POST", "/agent/job/result", json: [["id": "no-such-job", "errcode": 0]])
        #expect(try answer.object["errcode"] as? Int == 0, "\(answer.text)")
        // A bad result body is refused with the seed's errcode.
        answer = try await agent.call("POST", "/agent/job/result", json: [["errcode": 0]], headers: ["X-Agent-SN": "9b62aabb-eda4-4d62-b036-b605d887bde3"])
        let refusal = try answer.object
        #expect(answer.status == 400 && refusal["errcode"] as? Int == Int(ErrorCode.badRequest.rawValue))
    }

    @Test("The seed's plain-HTTP agent gets store packages as signed links it can fetch without a token; a job without a version takes its file name's")
    func seedAgentPackages() async throws {
        let directory = try makeTemporaryDirectory("gateway-seed-packages")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address(), arguments: ["--seed-agents", "127.0.0.0/8"])
        let rest = try RESTClient(node)
        var agent = try RESTClient(node)
        agent.token = nil
        let sn = "5c0ffee0-1111-4222-8333-944445555666"
        let bytes = Data((0 ..< 300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) })
        let sha256 = SHA256.hash(data: bytes).hexString
        _ = try await rest.ok(
            "POST", "/api/v1/server/package/raw?name=MiniAgent&version=1.0&os=linux&arch=x86_64&file=MiniAgent%2B1.0.tar.gz&sha256=\(sha256)",
            body: bytes, contentType: "application/octet-stream"
        )
        // The host reports sub-agents in every state; the dashboard counts them.
        let report: [String: Any] = [
            "hostname": "seed-7", "version": "bootagent-1.2.4",
            "agents": [
                ["name": "A", "version": "1", "status": "running"], ["name": "B", "version": "1", "status": "fatal"],
                ["name": "C", "version": "2", "status": "killed"], ["name": "D", "version": "1", "status": "stoped"],
            ],
        ]
        _ = try await agent.call("POST", "/agent/status", json: report, headers: ["X-Agent-SN": sn])
        let dashboard = try await rest.ok("GET", "/api/v1/server/dashboard")
        let counts = try #require(dashboard["deployments"] as? [[String: Any]]).map { deployment in
            ["running", "stoped", "fatal", "killed"].map { deployment[$0] as? Int ?? -1 }
        }
        #expect(counts == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0]])

        // An install from the store: the job names this gateway's download route, signed.
        _ = try await rest.ok("POST", "/api/v1/server/task", json: ["command": "install", "agents": [sn], "parameters": ["name": "MiniAgent", "version": "1.0"]])
        var answer = try await agent.call("POST", "/agent/status", json: report, headers: ["X-Agent-SN": sn])
        let job = try #require((try answer.object["jobs"] as? [[String: Any]])?.first)
        let link = try #require(job["url"] as? String)
        #expect(link.hasPrefix("http://\(node.httpAddress)/api/v1/server/package/download?os=linux&arch=x86_64&file=MiniAgent%2B1.0.tar.gz&expires="))
        #expect(job["checksum"] as? String == "SHA256:\(sha256)" && job["version"] as? String == "1.0")
        func fetch(_ url: String) async throws -> (Int, Data) {
            let (data, response) = try await URLSession.shared.data(from: URL(string: url)!)
            return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
        }
        let (status, fetched) = try await fetch(link)
        #expect(status == 200 && SHA256.hash(data: fetched).hexString == sha256)
        // A changed signature, another file under the same signature, or no signature: refused.
        let signature = try #require(link.split(separator: "sig=").last)
        let forged = link.dropLast() + (signature.last == "0" ? "1" : "0")
        let other = link.replacingOccurrences(of: "MiniAgent%2B1.0.tar.gz", with: "Other-1.0.tar.gz")
        let unsigned = link.components(separatedBy: "&expires=")[0]
        for url in [String(forged), other, unsigned] {
            let (refused, body) = try await fetch(url)
            #expect(refused == 401, "\(url): \(String(decoding: body, as: UTF8.self))")
            #expect(!body.contains(bytes.prefix(64)))
        }

        // The seed's own job body names no version: its package file name gives it.
        _ = try await rest.ok(
            "POST", "/api/v1/server/task",
            json: [
                "command": "upgrade", "agents": [sn],
                "parameters": [
                    "name": "BasicAgent", "url": "ftp://server:21/BasicAgent/BasicAgent-1.5.6..rpm",
                    "checksum": "SHA256:4a34b8d7d3009bb9ef9475fbf33e7bbe4a1e8db003aefc578a241c2f51c2c2f2",
                ],
            ]
        )
        answer = try await agent.call("POST", "/agent/status", json: report, headers: ["X-Agent-SN": sn])
        let upgrade = try #require((try answer.object["jobs"] as? [[String: Any]])?.first { $0["action"] as? String == "upgrade" })
        #expect(upgrade["version"] as? String == "1.5.6" && upgrade["url"] as? String == "ftp://server:21/BasicAgent/BasicAgent-1.5.6..rpm")
        let cause = try await rest.fails(
            "POST", "/api/v1/server/task",
            json: ["command": "install", "agents": [sn], "parameters": ["name": "BasicAgent", "url": "http://repo/latest.rpm", "checksum": "SHA256:" + sha256]],
            http: 422, code: .unprocessable
        )
        #expect(cause.contains("give a version"))
    }

    @Test("Hosts, tags, regions, events, connected agents and the sync command route, with a real agent")
    func fleetRoutes() async throws {
        let directory = try makeTemporaryDirectory("gateway-fleet")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        _ = try TestAgent.start(in: directory, connectingTo: node, arguments: ["--tag", "svc=ecs"], agentSN: "rest-1")
        try await node.waitForAgent("rest-1")
        let rest = try RESTClient(node)

        // The seed's sync form plus agentsn, answered in the seed's result form.
        let result = try await rest.call(
            "POST", "/api/v1/server/command",
            json: ["id": "rest-cmd-1", "method": "sync.bash", "cmd": "echo hello; exit 3", "timeout": 10, "user": "root", "agentsn": "rest-1"]
        )
        #expect(result.status == 200)
        let seed = try result.object
        #expect(seed["id"] as? String == "rest-cmd-1" && seed["resp"] as? String == "success")
        #expect(seed["retcode"] as? Int == 3 && seed["data"] as? String == "hello\n")
        try await rest.fails("POST", "/api/v1/server/command", json: ["method": "sync.bash", "cmd": "true", "agentsn": "gone-1"], http: 409, code: .agentOffline)
        try await rest.fails("POST", "/api/v1/server/command", json: ["method": "sync.bash", "agentsn": "rest-1"], http: 400, code: .invalidParams)

        // Followed as Server-Sent Events: the task, the lines as they come, then the result.
        let streamed = try await rest.call(
            "POST", "/api/v1/server/command/stream", json: ["method": "sync.bash", "cmd": "echo one; sleep 1; echo two >&2", "agentsn": "rest-1"]
        )
        #expect(streamed.status == 200 && streamed.text.hasPrefix("event: accepted\n"))
        let sse = streamed.text.components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { block -> (String, [String: Any]) in
            let lines = block.split(separator: "\n")
            let name = lines.first { $0.hasPrefix("event: ") }.map { String($0.dropFirst(7)) } ?? ""
            let data = lines.first { $0.hasPrefix("data: ") }.map { Data($0.dropFirst(6).utf8) } ?? Data()
            return (name, (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
        }
        #expect(sse.map(\.0) == ["accepted", "output", "output", "result"], "\(streamed.text)")
        #expect(sse.first?.1["task"] as? Int ?? 0 > 0)
        #expect(sse.dropFirst().prefix(2).map { "\($0.1["stream"] ?? ""):\($0.1["data"] ?? "")" } == ["stdout:one\n", "stderr:two\n"])
        #expect(sse.last?.1["resp"] as? String == "success" && sse.last?.1["data"] as? String == "one\n")
        // Refused before it begins: an HTTP error with the envelope, as on every route (not a 200 stream of one error).
        try await rest.fails("POST", "/api/v1/server/command/stream", json: ["method": "sync.bash", "cmd": "true", "agentsn": "gone-1"], http: 409, code: .agentOffline)
        try await rest.fails("POST", "/api/v1/server/command/stream", json: ["method": "sync.bash", "cmd": "true", "agentsn": "rest-1", "id": "schedule:x:1"], http: 400, code: .badRequest)

        // async: the task's id at once; the result is read from the task.
        let detached = try await rest.ok("POST", "/api/v1/server/command", json: ["method": "sync.bash", "cmd": "echo later", "agentsn": "rest-1", "async": true])
        let detachedTask = try #require(detached["task"] as? Int)
        try await eventually("the detached command's result") {
            let detail = try await rest.ok("GET", "/api/v1/server/task?id=\(detachedTask)")
            let subtask = (detail["subtasks"] as? [[String: Any]])?.first
            return subtask?["status"] as? String == "succeeded" && subtask?["id"] as? String == detached["id"] as? String
        }
        try await rest.fails("POST", "/api/v1/server/nodes/drain", json: ["name": "no-such-node"], http: 404, code: .notFound)

        let connected = try await rest.ok("GET", "/api/v1/server/agents")
        #expect((connected["agents"] as? [[String: Any]])?.compactMap { $0["agentsn"] as? String } == ["rest-1"])
        var hosts = try await rest.ok("GET", "/api/v1/server/hosts?status=online&tag=svc=ecs&hostname=\(ProcessInfo.processInfo.hostName.prefix(3))")
        #expect(hosts["count"] as? Int == 1)
        hosts = try await rest.ok("GET", "/api/v1/server/hosts?status=offline")
        #expect(hosts["count"] as? Int == 0)
        try await rest.fails("GET", "/api/v1/server/agent?agentsn=nobody", http: 404, code: .notFound)
        try await rest.fails("GET", "/api/v1/server/agent", http: 400, code: .badRequest)

        let tag = try await rest.ok("POST", "/api/v1/server/tags", json: ["name": "env", "value": "prod"])
        let tagID = try #require((tag["tag"] as? [String: Any])?["id"] as? Int)
        try await rest.fails("POST", "/api/v1/server/tags", json: ["name": "env", "value": "prod"], http: 409, code: .conflict)
        let bound = try await rest.ok("POST", "/api/v1/server/tags/bind", json: ["name": "env", "value": "prod", "agents": ["rest-1"]])
        #expect(bound["changed"] as? Int == 1)
        hosts = try await rest.ok("GET", "/api/v1/server/hosts?tag=env=prod&tag=svc=ecs")
        #expect(hosts["count"] as? Int == 1)
        var tags = try await rest.ok("GET", "/api/v1/server/tags")
        #expect((tags["tags"] as? [[String: Any]])?.first { $0["id"] as? Int == tagID }?["hosts"] as? Int == 1)
        let unbound = try await rest.ok("POST", "/api/v1/server/tags/unbind", json: ["name": "env", "value": "prod", "agents": ["rest-1"]])
        #expect(unbound["changed"] as? Int == 1)
        _ = try await rest.ok("DELETE", "/api/v1/server/tags?id=\(tagID)")
        try await rest.fails("DELETE", "/api/v1/server/tags?id=\(tagID)", http: 404, code: .notFound)
        tags = try await rest.ok("GET", "/api/v1/server/tags")
        #expect((tags["tags"] as? [[String: Any]])?.contains { $0["id"] as? Int == tagID } == false)

        let region = try await rest.ok("POST", "/api/v1/server/regions", json: ["name": "eu-west"])
        #expect((region["region"] as? [String: Any])?["name"] as? String == "eu-west")
        let regions = try await rest.ok("GET", "/api/v1/server/regions")
        #expect((regions["regions"] as? [[String: Any]])?.compactMap { $0["name"] as? String }.sorted() == ["eu-west", "global"])
        try await rest.fails("POST", "/api/v1/server/regions", json: ["name": ""], http: 400, code: .badRequest)

        let events = try await rest.ok("GET", "/api/v1/server/events?agentsn=rest-1&limit=10")
        #expect(events["count"] is Int)

        // A task by tag reaches the tagged, connected agent; cancel answers the task.
        let created = try await rest.ok(
            "POST", "/api/v1/server/task",
            json: ["command": "sync.bash", "tags": ["svc": "ecs"], "window": ["start": Int(Date().timeIntervalSince1970), "end": "2099-01-01T00:00:00Z"], "parameters": ["cmd": "true"]]
        )
        let taskID = try #require(created["id"] as? Int)
        #expect((created["results"] as? [[String: Any]])?.compactMap { $0["AgentSN"] as? String } == ["rest-1"])
        try await eventually("tag task subtask to succeed") {
            let detail = try await rest.ok("GET", "/api/v1/server/task?id=\(taskID)")
            return (detail["subtasks"] as? [[String: Any]])?.first?["status"] as? String == "succeeded"
        }
        let cancelled = try await rest.ok("DELETE", "/api/v1/server/task?id=\(taskID)")
        #expect((cancelled["task"] as? [String: Any])?["status"] as? String == "cancelled")
        let list = try await rest.ok("GET", "/api/v1/server/task?limit=5")
        // The sync commands above are tasks of one host too; the tag task is the newest.
        #expect((list["count"] as? Int ?? 0) > 1 && list["limit"] as? Int == 5)
        #expect(((list["tasks"] as? [[String: Any]])?.first?["id"] as? Int) == taskID)
    }
}

/// The OpenAPI document against the routes the node really serves and the answers it gives.
@Suite("Gateway: OpenAPI document", .stopsChildProcesses)
struct OpenAPIDocumentTests {
    /// Written here, not taken from the gateway's table, so a route dropped from either fails.
    static let routes: Set<String> = [
        "GET /api/v1/server/package", "POST /api/v1/server/package", "DELETE /api/v1/server/package", "POST /api/v1/server/package/raw",
        "POST /api/v1/server/task", "GET /api/v1/server/task", "DELETE /api/v1/server/task",
        "GET /api/v1/server/agent", "GET /api/v1/server/hosts", "GET /api/v1/server/agents",
        "DELETE /api/v1/server/agent", "POST /api/v1/server/agent/ban",
        "GET /api/v1/server/tokens", "POST /api/v1/server/token", "DELETE /api/v1/server/token",
        "GET /api/v1/server/whoami", "GET /api/v1/server/audit", "GET /api/v1/server/nodes", "GET /api/v1/server/operators", "POST /api/v1/server/operator", "DELETE /api/v1/server/operator",
        "GET /api/v1/server/tags", "POST /api/v1/server/tags", "DELETE /api/v1/server/tags",
        "POST /api/v1/server/tags/bind", "POST /api/v1/server/tags/unbind",
        "GET /api/v1/server/regions", "POST /api/v1/server/regions", "POST /api/v1/server/regions/hosts", "GET /api/v1/server/events",
        "GET /api/v1/server/deployments", "GET /api/v1/server/deployment", "POST /api/v1/server/deployment", "POST /api/v1/server/deployment/control",
        "DELETE /api/v1/server/deployment",
        "GET /api/v1/server/dashboard", "POST /api/v1/server/command", "POST /api/v1/server/command/stream", "POST /api/v1/server/nodes/drain",
        "POST /agent/status", "POST /agent/job/result", "GET /api/v1/openapi.json",
        "GET /api/v1/server/package/download",
        "GET /api/v1/server/schedule", "POST /api/v1/server/schedule", "DELETE /api/v1/server/schedule",
        "POST /api/v1/server/schedule/enable", "POST /api/v1/server/schedule/import", "GET /api/v1/server/schedule/runs",
        "GET /api/v1/server/plugin", "POST /api/v1/server/plugin", "DELETE /api/v1/server/plugin", "GET /api/v1/server/metric",
        "GET /metrics",
    ]

    @Test("It lists every route with request and response schemas, and the node serves each one")
    func document() async throws {
        let directory = try makeTemporaryDirectory("gateway-openapi")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address(), arguments: ["--seed-agents", "127.0.0.0/8"])
        let rest = try RESTClient(node)

        let document = try await rest.call("GET", "/api/v1/openapi.json").object
        #expect((document["openapi"] as? String)?.hasPrefix("3.") == true)
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        var listed: Set<String> = []
        for (path, operations) in paths {
            for (method, value) in operations {
                let operation = try #require(value as? [String: Any])
                let name = "\(method.uppercased()) \(path)"
                listed.insert(name)
                let responses = try #require(operation["responses"] as? [String: Any], "\(name)")
                let ok = try #require(responses["200"] as? [String: Any], "\(name)")
                #expect(Self.schema(of: ok) != nil, "\(name) has no response schema")
                if ["POST"].contains(method.uppercased()) || name == "POST /api/v1/server/package" {
                    let body = try #require(operation["requestBody"] as? [String: Any], "\(name) has no request body")
                    #expect(Self.schema(of: body) != nil, "\(name) has no request schema")
                }
                // Served: never the router's "no route" answer.
                let answer = try await rest.call(method.uppercased(), path, json: method == "get" || method == "delete" ? nil : [String: Any]())
                #expect(!(answer.status == 404 && answer.text.contains("no route")), "\(name) is not served")
            }
        }
        #expect(listed == Self.routes)

        // Every reference resolves.
        let components = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: Any])
        let text = String(decoding: try JSONSerialization.data(withJSONObject: document), as: UTF8.self)
        let references = text.matches(of: /#\\?\/components\\?\/schemas\\?\/([A-Za-z]+)/).map { String($0.1) }
        #expect(!references.isEmpty)
        for name in Set(references) {
            #expect(components[name] != nil, "unresolved reference \(name)")
        }

        // Real answers match their documented schemas.
        let validator = SchemaValidator(components: components)
        _ = try await rest.ok("POST", "/api/v1/server/tags", json: ["name": "svc", "value": "ecs"])
        _ = try await rest.ok("POST", "/api/v1/server/package/raw?name=A&version=1&os=linux&arch=x86_64&file=a.rpm", body: Data("a".utf8), contentType: "application/octet-stream")
        _ = try await rest.ok("POST", "/api/v1/server/task", json: ["command": "getinfo.os", "agents": ["h-1"]])
        _ = try await rest.ok("POST", "/api/v1/server/plugin", json: ["name": "p", "git": "https://example.com/p.git", "ref": String(repeating: "a", count: 40), "agents": ["h-1"], "period": 60])
        var agent = try RESTClient(node)
        agent.token = nil
        let first = try await agent.call("POST", "/agent/status", json: ["hostname": "h-1", "version": "1", "step": 60, "agents": [["name": "A", "version": "1", "status": "running"]]])
        // The host is known by its name when the report gives no AgentSN; its job comes at once.
        #expect((try first.object["jobs"] as? [Any])?.count == 1)
        for (method, path) in [
            ("GET", "/api/v1/server/package"), ("GET", "/api/v1/server/task"), ("GET", "/api/v1/server/task?id=1"),
            ("GET", "/api/v1/server/hosts"), ("GET", "/api/v1/server/agent?agentsn=h-1"), ("GET", "/api/v1/server/tags"),
            ("GET", "/api/v1/server/regions"), ("GET", "/api/v1/server/events"), ("GET", "/api/v1/server/dashboard"),
            ("GET", "/api/v1/server/agents"), ("GET", "/api/v1/server/plugin"), ("GET", "/api/v1/server/metric"),
        ] {
            let answer = try await rest.call(method, path)
            let bare = String(path.split(separator: "?")[0])
            let operation = try #require(paths[bare]?[method.lowercased()] as? [String: Any])
            let schema = try #require(Self.okSchema(operation))
            #expect(validator.problems(answer.json as Any, schema).isEmpty, "\(method) \(path): \(validator.problems(answer.json as Any, schema))")
        }
        let status = try await agent.call("POST", "/agent/status", json: ["hostname": "h-1", "version": "1"], headers: ["X-Agent-SN": "h-1"])
        let statusSchema = try #require(Self.okSchema(paths["/agent/status"]?["post"] as? [String: Any] ?? [:]))
        #expect(validator.problems(status.json as Any, statusSchema).isEmpty)
        // Sent already: not again before the redelivery time.
        #expect((try status.object["jobs"] as? [Any])?.count == 0)
        // The validator itself notices a wrong answer.
        #expect(!validator.problems(["status": "zero"], ["$ref": "#/components/schemas/Error"]).isEmpty)
    }

    /// The schema of an operation's 200 answer.
    static func okSchema(_ operation: [String: Any]) -> [String: Any]? {
        ((operation["responses"] as? [String: Any])?["200"] as? [String: Any]).flatMap(Self.schema(of:))
    }

    static func schema(of object: [String: Any]) -> [String: Any]? {
        guard let content = object["content"] as? [String: Any], let first = content.values.first as? [String: Any] else { return nil }
        return first["schema"] as? [String: Any]
    }
}

/// Enough JSON Schema to check answers: type (and 3.1's nullable type arrays), required,
/// properties, items, enum, oneOf, anyOf, $ref.
struct SchemaValidator {
    let components: [String: Any]

    func problems(_ value: Any, _ schema: [String: Any], at path: String = "$") -> [String] {
        if let reference = schema["$ref"] as? String {
            let name = String(reference.split(separator: "/").last ?? "")
            guard let target = self.components[name] as? [String: Any] else { return ["\(path): unresolved \(reference)"] }
            return self.problems(value, target, at: path)
        }
        if let choices = (schema["oneOf"] ?? schema["anyOf"]) as? [[String: Any]] {
            return choices.contains { self.problems(value, $0, at: path).isEmpty } ? [] : ["\(path): matches none of oneOf/anyOf"]
        }
        // OpenAPI 3.1: a nullable value's type is [T, "null"].
        let types = (schema["type"] as? [String]) ?? (schema["type"] as? String).map { [$0] } ?? []
        if value is NSNull { return types.isEmpty || types.contains("null") ? [] : ["\(path): null, where the schema is \(types)"] }
        switch types.first(where: { $0 != "null" }) {
        case "string"?:
            guard let text = value as? String else { return ["\(path): expected a string, got \(value)"] }
            if let values = schema["enum"] as? [String], !values.contains(text) { return ["\(path): '\(text)' not in \(values)"] }
            return []
        case "integer"?:
            guard type(of: value) != Bool.self, let number = value as? NSNumber, number.doubleValue.rounded() == number.doubleValue else {
                return ["\(path): expected an integer, got \(value)"]
            }
            return []
        case "number"?:
            return value is NSNumber ? [] : ["\(path): expected a number"]
        case "boolean"?:
            return value is Bool ? [] : ["\(path): expected a boolean"]
        case "array"?:
            guard let items = value as? [Any] else { return ["\(path): expected an array"] }
            let itemSchema = schema["items"] as? [String: Any] ?? [:]
            return items.enumerated().flatMap { self.problems($0.element, itemSchema, at: "\(path)[\($0.offset)]") }
        case "object"?:
            guard let object = value as? [String: Any] else { return ["\(path): expected an object"] }
            var found: [String] = []
            for key in schema["required"] as? [String] ?? [] where object[key] == nil {
                found.append("\(path): missing \(key)")
            }
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for (key, item) in object {
                if let property = properties[key] as? [String: Any] {
                    found += self.problems(item, property, at: "\(path).\(key)")
                } else if let additional = schema["additionalProperties"] as? [String: Any] {
                    found += self.problems(item, additional, at: "\(path).\(key)")
                } else if !properties.isEmpty {
                    found.append("\(path): undocumented field \(key)")
                }
            }
            return found
        default:
            return []
        }
    }
}
