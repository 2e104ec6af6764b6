import Fleet
import Foundation
import RPC
import Testing
import TestSupport

/// Seed 002's agent-local interface on a real agent, over --control-listen: metrics pushed by
/// local programs, logs read from an offset, port and process checks as built-in collectors.
@Suite("End to end: the agent's local interface", .stopsChildProcesses)
struct LocalInterfaceEndToEndTests {
    @Test("POST /post pushes metrics to the server; GET /log/offset tails the agent's own log and nothing else; builtin port and process collectors report")
    func localInterface() async throws {
        let directory = try makeTemporaryDirectory("local-e2e")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let listen = "\(Loopback.address()):\(Int.random(in: 20000 ... 30000))"
        let logFile = "\(directory)/boot.log"
        let agent = try TestAgent.start(in: directory, name: "local0", connectingTo: node, arguments: ["--control-listen", listen, "-L", logFile])
        try await node.waitForAgent(agent.agentSN, agentLog: (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "")
        let rest = try RESTClient(node)
        let local = RESTClient(base: "http://\(listen)", token: nil)
        try await eventually(timeout: .seconds(60), "the local interface on \(listen)") {
            (try? await local.call("GET", "/me/status").status) == 200
        }

        // Metrics from local programs: checked as plugin output, named post.<ns>.<name>.
        let posted = try await local.call(
            "POST", "/post?ns=app",
            json: [["name": "queue.depth", "value": 5, "tags": ["queue": "mail"]], ["name": "bad name!", "value": 1], ["name": "mode", "value": "draining"]]
        )
        let answer = try #require(posted.json as? [String: Any])
        #expect(posted.status == 200 && answer["accepted"] as? Int == 2 && (answer["problems"] as? [String])?.count == 1, "\(posted.text)")
        try await eventually(timeout: .seconds(90), "the posted metrics at the server, the text one as text") {
            let metrics = try await rest.ok("GET", "/api/v1/server/metric?agentsn=\(agent.agentSN)&prefix=post.app.")["metrics"] as? [[String: Any]] ?? []
            return metrics.contains { $0["name"] as? String == "post.app.queue.depth" && $0["value"] as? Double == 5 && ($0["tags"] as? [String: String])?["queue"] == "mail" }
                && metrics.contains { $0["name"] as? String == "post.app.mode" && $0["text"] as? String == "draining" }
        }
        // A gauge has no place for text: /metrics leaves it out and keeps the number.
        let exported = try await rest.call("GET", "/metrics").text
        #expect(exported.contains("post_app_queue_depth{") && !exported.contains("post_app_mode"), "\(exported.prefix(2000))")
        #expect(try await local.call("POST", "/post?ns=app", body: Data("not json".utf8)).status == 400)
        #expect(try await local.call("POST", "/post?ns=a/b", json: []).status == 400)
        #expect(try await local.call("POST", "/post", body: Data(repeating: 0x20, count: 5 << 20)).status == 413)

        // The agent's own log, from an offset, whole lines; no other file.
        let first = try #require(try await local.call("GET", "/log/offset?name=boot&offset=0&num=3").json as? [String: Any])
        #expect(first["lines"] as? Int == 3 && (first["data"] as? String)?.split(separator: "\n").count == 3, "\(first)")
        let next = try #require(first["next"] as? Int)
        let second = try #require(try await local.call("GET", "/log/offset?fpath=\(logFile)&offset=\(next)&num=2").json as? [String: Any])
        let whole = try String(contentsOfFile: logFile, encoding: .utf8)
        let expected = whole.split(separator: "\n", omittingEmptySubsequences: false).dropFirst(3).prefix(2).joined(separator: "\n") + "\n"
        #expect(second["data"] as? String == expected && second["offset"] as? Int == next)
        for forbidden in ["fpath=/etc/passwd", "fpath=\(directory)/local0/agent.key", "name=../../etc/passwd", "fpath=\(logFile)/../node.log"] {
            #expect(try await local.call("GET", "/log/offset?\(forbidden)").status == 403, "\(forbidden)")
        }
        #expect(try await local.call("GET", "/log/offset?name=boot&offset=-1").status == 400)

        // Built-in collectors: a port listening and one not, processes by name and pidfile.
        let pidfile = "\(directory)/self.pid"
        try "\(agent.process.pid)\n".write(toFile: pidfile, atomically: true, encoding: .utf8)
        for (name, url) in [
            ("ports", "builtin://port?ports=\(node.httpAddress.port),1"),
            ("procs", "builtin://process?names=boot,no-such-process&pidfiles=\(pidfile)"),
        ] {
            _ = try await rest.ok("POST", "/api/v1/server/plugin", json: ["name": name, "url": url, "period": 1, "agents": [agent.agentSN]])
        }
        var metrics: [[String: Any]] = []
        // Generous: on a loaded 2-core machine a debug agent's first runs and the node's ingest crawl.
        try await eventually(
            timeout: .seconds(120),
            "the built-in collectors' metrics at the server; the server has \(metrics)\n--- the agent's log, its end:\n\(((try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "").suffix(6000))"
        ) {
            metrics = try await rest.ok("GET", "/api/v1/server/metric?agentsn=\(agent.agentSN)&prefix=plugin.")["metrics"] as? [[String: Any]] ?? []
            func value(_ name: String, _ tag: String, _ tagValue: String) -> Double? {
                metrics.first { $0["name"] as? String == name && ($0["tags"] as? [String: String])?[tag] == tagValue }?["value"] as? Double
            }
            return value("plugin.ports.port.up", "port", "\(node.httpAddress.port)") == 1 && value("plugin.ports.port.up", "port", "1") == 0
                && (value("plugin.procs.process.count", "process", "boot") ?? 0) >= 1 && value("plugin.procs.process.up", "process", "no-such-process") == 0
                && value("plugin.procs.pidfile.up", "pidfile", pidfile) == 1
        }
        let refused = try await rest.call("POST", "/api/v1/server/plugin", json: ["name": "odd", "url": "builtin://disk?x=1", "period": 1, "agents": [agent.agentSN]])
        #expect(refused.status == 400 && refused.text.contains("port and process"), "\(refused.text)")
    }

    @Test("--control-listen takes only a loopback address")
    func loopbackOnly() async throws {
        let (status, output) = try await ChildProcess.run(
            "\(TestProcess.binDirectory)/boot", ["-f", "--insecure", "--server", "127.0.0.1:1", "--control-listen", "10.1.2.3:8002", "--data-dir", NSTemporaryDirectory() + "x"]
        )
        #expect(status != 0 && output.contains("--control-listen must be a loopback address"), "\(output)")
    }
}
