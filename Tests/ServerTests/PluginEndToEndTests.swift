import Crypto
import Fleet
import Foundation
import Hummingbird
import RPC
import Synchronization
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Plugins through a real node and a real agent: stored by REST, fetched by the agent (from
/// the server's package store, a file URL with its checksum, a git repository), run on their
/// period and on demand, their metrics visible through REST and `/metrics`.
@Suite("End to end: plugins and metrics", .stopsChildProcesses)
struct PluginEndToEndTests {
    static var runUser: String { ScheduleEndToEndTests.runUser }

    /// A tar.gz of a directory holding `plugin.sh`.
    static func archive(_ script: String, named name: String, in directory: String) async throws -> String {
        let tree = "\(directory)/\(name)-src"
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        try script.write(toFile: "\(tree)/plugin.sh", atomically: true, encoding: .utf8)
        chmod("\(tree)/plugin.sh", 0o755)
        let archive = "\(directory)/\(name).tar.gz"
        let (status, output) = try await ChildProcess.run("tar", ["-czf", archive, "-C", directory, "\(name)-src"])
        guard status == 0 else { throw HarnessError("tar: \(output)") }
        return archive
    }

    static func metrics(_ rest: RESTClient, _ query: String) async throws -> [[String: Any]] {
        try await rest.ok("GET", "/api/v1/server/metric?\(query)")["metrics"] as? [[String: Any]] ?? []
    }

    /// Runs one plugin command on the agent as a task; answers its result's data as JSON.
    static func task(_ node: TestNode, _ rest: RESTClient, _ command: String, _ parameters: [String: Any], on agent: TestAgent) async throws
        -> (result: Aspire_V1_CommandResult, data: [String: Any])
    {
        let created = try await rest.ok("POST", "/api/v1/server/task", json: ["command": command, "agents": [agent.agentSN], "parameters": parameters])
        let detail = try await node.waitForTask(Int64(try #require(created["id"] as? Int)), timeout: .seconds(60))
        let result = try #require(detail.subtasks.first?.result)
        return (result, (try? JSONSerialization.jsonObject(with: result.data) as? [String: Any]) ?? [:])
    }

    /// What the agent says of its plugins (plugin.list), by name.
    static func states(_ node: TestNode, _ rest: RESTClient, on agent: TestAgent) async throws -> [String: [String: Any]] {
        let created = try await rest.ok("POST", "/api/v1/server/task", json: ["command": "plugin.list", "agents": [agent.agentSN]])
        let detail = try await node.waitForTask(Int64(try #require(created["id"] as? Int)), timeout: .seconds(60))
        let data = try #require(detail.subtasks.first?.result.data)
        let list = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        return Dictionary(uniqueKeysWithValues: list.map { ($0["name"] as? String ?? "", $0) })
    }

    @Test("A store plugin runs on its period as its user, a git plugin on demand with its param; metrics reach REST and /metrics; disable, enable, bad output, delete")
    func pluginsEndToEnd() async throws {
        let directory = try makeTemporaryDirectory("e2e-plugin")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        chmod(directory, 0o755)  // nobody reaches the plugins below it
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let agent = try TestAgent.start(in: directory, connectingTo: node, arguments: ["--tag", "role=metrics"])
        try await node.waitForAgent(agent)
        let rest = try RESTClient(node)

        // A periodic plugin from the server's package store, for a tag.
        let load = try await Self.archive(
            """
            #!/bin/sh
            printf '[{"name":"load1","timestamp":0,"tags":{"cpu":"all"},"value":%s},' "$(cut -d' ' -f1 /proc/loadavg)"
            printf '{"name":"uid","timestamp":%s,"tags":{},"value":%s},' "$(date +%s)" "$(id -u)"
            printf '{"name":"cwd_ok","timestamp":%s000,"tags":{},"value":%s}]' "$(date +%s)" "$([ -x ./plugin.sh ] && echo 1 || echo 0)"
            """,
            named: "load", in: directory
        )
        _ = try await rest.ok(
            "POST", "/api/v1/server/package/raw?name=load-plugin&version=1.0&os=linux&arch=x86_64&file=load.tar.gz",
            body: try Data(contentsOf: URL(fileURLWithPath: load)), contentType: "application/octet-stream"
        )
        let created = try await rest.ok(
            "POST", "/api/v1/server/plugin",
            json: ["name": "load", "package": "load-plugin", "version": "1.0", "period": 1, "user": Self.runUser, "tags": ["role": "metrics"]]
        )
        let plugin = try #require(created["plugin"] as? [String: Any])
        #expect(plugin["url"] as? String == "aspire://package/linux/x86_64/load.tar.gz")
        #expect((plugin["checksum"] as? String)?.hasPrefix("SHA256:") == true)

        let uid = Double(geteuid() == 0 ? 65534 : geteuid())
        try await eventually(timeout: .seconds(30), "the load plugin's metrics to reach the server\n\(agent.process.log)") {
            let metrics = try await Self.metrics(rest, "agentsn=\(agent.agentSN)&prefix=plugin.load.")
            let byName = Dictionary(metrics.map { ($0["name"] as? String ?? "", $0) }) { a, _ in a }
            guard let load1 = byName["plugin.load.load1"], let user = byName["plugin.load.uid"], let cwd = byName["plugin.load.cwd_ok"] else { return false }
            let tags = load1["tags"] as? [String: String] ?? [:]
            let now = Date().timeIntervalSince1970
            // A timestamp of 0 and one in milliseconds both become now, in seconds.
            return tags["cpu"] == "all" && tags["host"]?.isEmpty == false && user["value"] as? Double == uid && cwd["value"] as? Double == 1
                && abs(Double(load1["timestamp"] as? Int ?? 0) - now) < 120 && abs(Double(cwd["timestamp"] as? Int ?? 0) - now) < 120
        }
        // The run itself is a metric: plugin.load, its exit status.
        #expect(try await Self.metrics(rest, "agentsn=\(agent.agentSN)&prefix=plugin.load").contains { $0["name"] as? String == "plugin.load" && $0["value"] as? Double == 0 })

        // /metrics: the host's latest values, and the node's own; only with the admin token.
        let exposition = try await rest.call("GET", "/metrics")
        #expect(exposition.status == 200, "\(exposition.text)")
        #expect(exposition.text.contains("# TYPE plugin_load_uid gauge\nplugin_load_uid{agentsn=\"\(agent.agentSN)\",host=\""), "\(exposition.text)")
        #expect(exposition.text.contains("} \(Int(uid))\n"), "\(exposition.text)")
        #expect(exposition.text.contains("plugin_load_load1{agentsn=\"\(agent.agentSN)\",cpu=\"all\",host=\""), "\(exposition.text)")
        #expect(exposition.text.contains("aspire_agents_connected 1.0\n"), "\(exposition.text)")
        #expect(exposition.text.contains("aspire_plugin_metrics_received_total "), "\(exposition.text)")
        var anonymous = try RESTClient(node)
        anonymous.token = nil
        #expect(try await anonymous.call("GET", "/metrics").status == 401)

        // An on-demand plugin from a git repository, run with a param through a task.
        let repository = "\(directory)/probe-repo"
        try FileManager.default.createDirectory(atPath: repository, withIntermediateDirectories: true)
        try #"""
            #!/bin/sh
            printf '[{"name":"param","timestamp":0,"tags":{"via":"git"},"value":%s}]' "${1:-0}"
            """#.write(toFile: "\(repository)/plugin.sh", atomically: true, encoding: .utf8)
        chmod("\(repository)/plugin.sh", 0o755)
        for arguments in [["init", "-q", "-b", "main"], ["add", "plugin.sh"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "probe"]] {
            let (status, output) = try await ChildProcess.run("git", ["-C", repository] + arguments)
            try #require(status == 0, "git \(arguments): \(output)")
        }
        // A branch can move under the hosts: refused unless allowed; a commit is a pin.
        let moving = try await rest.fails(
            "POST", "/api/v1/server/plugin",
            json: ["name": "probe", "git": "file://\(repository)", "ref": "main", "period": 0, "user": Self.runUser, "agents": [agent.agentSN]],
            http: 400, code: .badRequest
        )
        #expect(moving.contains("can move") && moving.contains("allow_moving_ref"), "\(moving)")
        let (revParsed, head) = try await ChildProcess.run("git", ["-C", repository, "rev-parse", "HEAD"])
        try #require(revParsed == 0)
        let commit = head.trimmingCharacters(in: .whitespacesAndNewlines)
        _ = try await rest.ok(
            "POST", "/api/v1/server/plugin",
            json: ["name": "probe", "git": "file://\(repository)", "ref": commit, "period": 0, "user": Self.runUser, "agents": [agent.agentSN]]
        )
        try await eventually(timeout: .seconds(30), "the agent to clone the probe plugin\n\(agent.process.log)") {
            FileManager.default.fileExists(atPath: "\(agent.dataDirectory).plugins/probe/plugin.sh")
        }
        let ran = try await Self.task(node, rest, "plugin.run", ["name": "probe", "param": "42", "timeout": 20], on: agent)
        #expect(ran.result.resp == .success, "\(ran.result)")
        #expect((ran.data["metrics"] as? [[String: Any]])?.contains { $0["name"] as? String == "plugin.probe.param" && $0["value"] as? Double == 42 } == true, "\(ran.data)")
        try await eventually(timeout: .seconds(20), "the on-demand run's metric to reach the server") {
            try await Self.metrics(rest, "prefix=plugin.probe.param").contains { $0["value"] as? Double == 42 && ($0["tags"] as? [String: String])?["via"] == "git" }
        }
        // Never on its own: a period of 0 runs only when asked.
        let states = try await Self.states(node, rest, on: agent)
        #expect(states["probe"]?["period"] as? Int == 0)
        #expect(states["load"]?["enabled"] as? Bool == true)
        #expect(states["load"]?["last_status"] as? Int == 0)

        // Locally, through BasicAgentCtl and the agent's control socket (root only).
        func ctl(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            try await CommandLineTests().run("BasicAgentCtl", ["--socket", "\(agent.dataDirectory).sock"] + arguments, in: directory)
        }
        let socket = try FileManager.default.attributesOfItem(atPath: "\(agent.dataDirectory).sock")
        #expect(socket[.type] as? FileAttributeType == .typeSocket && (socket[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let status = try await ctl(["-c", "me.status"])
        #expect(status.status == 0 && status.output.contains("\"agentsn\":\"\(agent.agentSN)\"") && status.output.contains("\"connected\":true"), "\(status.output)")
        let local = try await ctl(["-c", "plugin.run", "-a", "probe", "--param", "7", "--timeout", "20"])
        #expect(local.status == 0 && local.output.contains(#""name":"plugin.probe.param""#) && local.output.contains(#""value":7}"#), "\(local.output)")
        let listedLocally = try await ctl(["-c", "plugin.list"])
        #expect(listedLocally.status == 0 && listedLocally.output.contains("\"name\":\"probe\""), "\(listedLocally.output)")
        let unknown = try await ctl(["-c", "plugin.run", "-a", "nothing"])
        #expect(unknown.status == 1 && unknown.output.contains("no plugin named 'nothing'"), "\(unknown.output)")
        let traversal = try await ctl(["-c", "plugin.enable", "-a", "../x"])
        #expect(traversal.status == 1 && traversal.output.contains("plugin name"), "\(traversal.output)")
        try await eventually(timeout: .seconds(20), "the locally run metric to reach the server") {
            try await Self.metrics(rest, "prefix=plugin.probe.param").contains { $0["value"] as? Double == 7 }
        }

        // Disabled for an hour: it says until when, does not run, and runs again once enabled.
        let disabled = try await Self.task(node, rest, "plugin.disable", ["name": "load", "seconds": 3600], on: agent)
        #expect(disabled.result.resp == .success, "\(disabled.result)")
        let until = try #require((disabled.data["disabled_until"] as? String).flatMap { try? Date($0, strategy: .iso8601) })
        #expect(abs(until.timeIntervalSinceNow - 3600) < 120)
        #expect(try await Self.states(node, rest, on: agent)["load"]?["enabled"] as? Bool == false)
        let refused = try await Self.task(node, rest, "plugin.run", ["name": "load"], on: agent)
        #expect(refused.result.resp == .failed && refused.result.retcode == ErrorCode.busy.rawValue, "\(refused.result)")
        let disabledLocally = try await ctl(["-c", "plugin.list"])
        #expect(disabledLocally.output.contains("\"disabled_until\""), "\(disabledLocally.output)")
        #expect(try await ctl(["-c", "plugin.enable", "-a", "load"]).status == 0)
        #expect(try await Self.states(node, rest, on: agent)["load"]?["enabled"] as? Bool == true)
        #expect(try await Self.task(node, rest, "plugin.enable", ["name": "load"], on: agent).result.resp == .success)
        let again = try await Self.task(node, rest, "plugin.run", ["name": "load", "timeout": 15], on: agent)
        #expect(again.result.resp == .success || again.result.retcode == ErrorCode.busy.rawValue, "running now or already, not refused as disabled: \(again.result)")

        // Output that is not a metric list: an event says so; the agent and the other plugins go on.
        let broken = try await Self.archive("#!/bin/sh\necho 'this is not json'\n", named: "broken", in: directory)
        let sha256 = SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: broken))).map { String(format: "%02x", $0) }.joined()
        _ = try await rest.ok(
            "POST", "/api/v1/server/plugin",
            json: ["name": "broken", "url": "file://\(broken)", "checksum": "SHA256:\(sha256)", "period": 1, "user": Self.runUser, "agents": [agent.agentSN]]
        )
        try await eventually(timeout: .seconds(30), "an event about the broken plugin's output") {
            let events = try await rest.ok("GET", "/api/v1/server/events?agentsn=\(agent.agentSN)")["events"] as? [[String: Any]] ?? []
            return events.contains { ($0["message"] as? String)?.hasPrefix("plugin broken:") == true }
        }
        #expect(agent.process.isRunning)

        // Refused when stored: no source, two sources, a bad checksum, a name that is a path.
        let base: [String: Any] = ["name": "x", "period": 1, "agents": [agent.agentSN]]
        for (body, cause) in [
            (base, "has no source"),
            (base.merging(["url": "https://example.com/p.tgz", "checksum": "SHA256:\(sha256)", "git": "https://example.com/p.git"]) { $1 }, "not both"),
            (base.merging(["url": "https://example.com/p.tgz", "checksum": "md5:abc"]) { $1 }, "checksum"),
            (base.merging(["name": "../etc", "git": "https://example.com/p.git"]) { $1 }, "plugin name"),
            (base.merging(["git": "git://example.com/p.git"]) { $1 }, "without integrity"),
            (base.merging(["git": "http://example.com/p.git"]) { $1 }, "without integrity"),
        ] {
            let answer = try await rest.call("POST", "/api/v1/server/plugin", json: body)
            #expect(answer.status == 400 && answer.text.contains(cause), "\(answer.text)")
        }

        // The same through aspirectl.
        let environment = ["ASPIRE_SERVER": node.address.description, "ASPIRE_SERVER_DATA": node.dataDirectory]
        func aspirectl(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            try await CommandLineTests().run("aspirectl", arguments, environment: environment, in: directory)
        }
        let listedByCLI = try await aspirectl(["plugin", "list"])
        #expect(listedByCLI.status == 0 && listedByCLI.output.contains("probe") && listedByCLI.output.contains("on demand"), "\(listedByCLI.output)")
        let ranByCLI = try await aspirectl(["plugin", "run", "probe", "--agents", agent.agentSN, "--param", "9"])
        #expect(ranByCLI.status == 0 && ranByCLI.output.contains(#""value":9}"#), "\(ranByCLI.output)")
        try await eventually(timeout: .seconds(20), "aspirectl metrics to show the run") {
            let shown = try await aspirectl(["metrics", "--agent", agent.agentSN, "--prefix", "plugin.probe.param"])
            return shown.status == 0 && shown.output.contains("plugin.probe.param") && shown.output.contains("via=git") && shown.output.contains(" 9.0 ")
        }
        let missing = try await aspirectl(["plugin", "create", "nothing", "--period", "5", "--agents", agent.agentSN])
        #expect(missing.status == 1 && missing.output.contains("has no source"), "\(missing.output)")

        // Deleted: the agent stops it and removes its files.
        _ = try await rest.ok("DELETE", "/api/v1/server/plugin?name=load")
        try await eventually(timeout: .seconds(30), "the agent to remove the load plugin") {
            !FileManager.default.fileExists(atPath: "\(agent.dataDirectory).plugins/load")
        }
        let listed = try await rest.ok("GET", "/api/v1/server/plugin")["plugins"] as? [[String: Any]] ?? []
        #expect(Set(listed.compactMap { $0["name"] as? String }) == ["probe", "broken"])
    }
}

/// Forwarding to InfluxDB: a real HTTP server takes the writes, as InfluxDB's write endpoint.
@Suite("End to end: metrics to InfluxDB", .stopsChildProcesses)
struct InfluxEndToEndTests {
    @Test("--influx-url: a plugin's points arrive in line protocol at second precision, with the host's AgentSN and tags, escaped")
    func forwardsLineProtocol() async throws {
        let directory = try makeTemporaryDirectory("e2e-influx")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        chmod(directory, 0o755)
        let writes = Mutex<[(query: String, body: String)]>([])
        let bound = Mutex<Int?>(nil)
        let router = Router()
        router.post("/write") { request, _ -> HTTPResponse.Status in
            let body = try await request.body.collect(upTo: 1 << 20)
            writes.withLock { $0.append((request.uri.query ?? "", String(buffer: body))) }
            return .noContent
        }
        let receiver = Application(
            router: router, configuration: ApplicationConfiguration(address: .hostname("127.0.0.46", port: 0)),
            onServerRunning: { channel in bound.withLock { $0 = channel.localAddress?.port } }
        )
        let failure = Mutex<String?>(nil)
        let serving = Task {
            do { try await receiver.run() } catch { failure.withLock { $0 = "\(error)" } }
        }
        defer { serving.cancel() }
        // The whole suite on two cores may keep a new server's first event-loop turn waiting for seconds.
        try await eventually(timeout: .seconds(60), "the receiver to listen") {
            if let reason = failure.withLock({ $0 }) { throw HarnessError("the receiver stopped: \(reason)") }
            return bound.withLock { $0 } != nil
        }
        let port = try #require(bound.withLock { $0 })

        let node = try await TestNode.start(in: directory, host: "127.0.0.46", arguments: ["--influx-url", "http://127.0.0.46:\(port)/write?db=aspire"])
        let agent = try TestAgent.start(in: directory, connectingTo: node)
        try await node.waitForAgent(agent)
        let archive = try await PluginEndToEndTests.archive(
            #"#!/bin/sh\#nprintf '[{"name":"disk_free","timestamp":1700000000,"tags":{"mount":"/var,log x"},"value":7.5}]'\#n"#,
            named: "disk", in: directory
        )
        let sha256 = SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: archive))).map { String(format: "%02x", $0) }.joined()
        let rest = try RESTClient(node)
        _ = try await rest.ok(
            "POST", "/api/v1/server/plugin",
            json: ["name": "disk", "url": "file://\(archive)", "checksum": "SHA256:\(sha256)", "period": 1, "user": PluginEndToEndTests.runUser, "agents": [agent.agentSN]]
        )
        try await eventually(timeout: .seconds(30), "a write with the plugin's point\n\(node.process.log)") {
            writes.withLock { writes in
                writes.contains { write in
                    write.query.contains("db=aspire") && write.query.contains("precision=s")
                        && write.body.split(separator: "\n").contains { line in
                            line.hasPrefix("plugin.disk.disk_free,agentsn=\(agent.agentSN),host=")
                                && line.hasSuffix(#",mount=/var\,log\ x value=7.5 1700000000"#)
                        }
                }
            }
        }
    }
}
