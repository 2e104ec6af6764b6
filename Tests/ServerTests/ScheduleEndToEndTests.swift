import Fleet
import Foundation
import RPC
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Scheduled commands through a real node and a real agent: stored by REST and aspirectl, sent
/// to the agents they target, run on time, connected or not, and their runs reported.
@Suite("End to end: scheduled commands", .stopsChildProcesses)
struct ScheduleEndToEndTests {
    /// The user the runs are made as: nobody when the tests can switch users, else ourselves.
    static var runUser: String {
        geteuid() == 0 ? "nobody" : (ProcessInfo.processInfo.environment["USER"] ?? "root")
    }

    /// The schedules the agent keeps on disk, by name → enabled.
    static func saved(_ agent: TestAgent) -> [String: Bool] {
        guard let data = FileManager.default.contents(atPath: "\(agent.dataDirectory)/schedules.json"),
            let list = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]]
        else { return [:] }
        return Dictionary(list.compactMap { entry in (entry["name"] as? String).map { ($0, entry["enabled"] as? Bool ?? true) } }) { a, _ in a }
    }

    static func runs(_ rest: RESTClient, _ name: String) async throws -> [[String: Any]] {
        try await rest.ok("GET", "/api/v1/server/schedule/runs?name=\(name)&limit=1000")["runs"] as? [[String: Any]] ?? []
    }

    static func due(_ run: [String: Any]) -> Date? {
        (run["due"] as? String).flatMap { try? Date($0, strategy: .iso8601) }
    }

    @Test("A schedule for a tag runs every second on the agent, keeps running while the node is down, and those runs arrive after it comes back")
    func runsWhileDisconnected() async throws {
        let directory = try makeTemporaryDirectory("e2e-schedule")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try await TestNode.start(in: directory, host: Loopback.address())
        let agent = try TestAgent.start(in: directory, connectingTo: first, arguments: ["--tag", "role=cron"])
        try await first.waitForAgent(agent)
        let rest = try RESTClient(first)

        let created = try await rest.ok(
            "POST", "/api/v1/server/schedule",
            json: [
                "name": "tick", "expr": "* * * * * *", "user": Self.runUser, "command": "echo tick-$(id -un)",
                "tags": ["role": "cron"], "timeout": 30,
            ]
        )
        let schedule = try #require(created["schedule"] as? [String: Any])
        #expect(schedule["enabled"] as? Bool == true)
        #expect((schedule["next"] as? [String])?.count == 1)
        try await eventually(timeout: .seconds(20), "the agent to keep 'tick'\n\(agent.process.log)") { Self.saved(agent)["tick"] == true }
        try await eventually(timeout: .seconds(20), "a run of 'tick' to be reported\n\(agent.process.log)") {
            try await Self.runs(rest, "tick").contains { run in
                let result = run["result"] as? [String: Any]
                return run["agentsn"] as? String == agent.agentSN && (result?["data"] as? String) == "tick-\(Self.runUser)\n"
            }
        }
        // The same schedule, by AgentSN, from the targeting side: listed for this host.
        let listed = try await rest.ok("GET", "/api/v1/server/schedule?agentsn=\(agent.agentSN)&next=3")
        let forHost = try #require((listed["schedules"] as? [[String: Any]])?.first)
        #expect(forHost["name"] as? String == "tick")
        #expect((forHost["next"] as? [String])?.count == 3)

        // The node goes away; the agent goes on.
        await first.process.stop()
        let down = Date()
        try await Task.sleep(for: .seconds(3))
        let second = try await TestNode.start(in: directory, host: first.address.host, port: first.address.port)
        let up = Date()
        try await second.waitForAgent(agent)
        let again = try RESTClient(second)
        try await eventually(timeout: .seconds(30), "runs made while the node was down to arrive") {
            let whileDown = try await Self.runs(again, "tick").compactMap(Self.due).filter { $0 > down.addingTimeInterval(0.5) && $0 < up }
            return whileDown.count >= 2
        }
        // Each due second once, however often the outbox sent it.
        let dues = try await Self.runs(again, "tick").compactMap(Self.due)
        #expect(Set(dues).count == dues.count)

        // Disabled: the agent keeps it and does not run it; deleted: the agent drops it.
        let disabled = try await again.ok("POST", "/api/v1/server/schedule/enable", json: ["name": "tick", "enabled": false])
        #expect((disabled["schedule"] as? [String: Any])?["enabled"] as? Bool == false)
        try await eventually(timeout: .seconds(20), "the agent to disable 'tick'") { Self.saved(agent)["tick"] == false }
        _ = try await again.ok("DELETE", "/api/v1/server/schedule?name=tick")
        try await eventually(timeout: .seconds(20), "the agent to drop 'tick'") { Self.saved(agent)["tick"] == nil }
        try await again.fails("DELETE", "/api/v1/server/schedule?name=tick", http: 404, code: .notFound)
    }

    @Test("Bad schedules are refused with the field and token at fault; names are unique; a host without the user refuses only that schedule")
    func badSchedules() async throws {
        let directory = try makeTemporaryDirectory("e2e-schedule-bad")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let agent = try TestAgent.start(in: directory, connectingTo: node)
        try await node.waitForAgent(agent)
        let rest = try RESTClient(node)
        let base: [String: Any] = ["name": "nightly", "expr": "0 0 2 * * *", "command": "true", "agents": [agent.agentSN]]
        func with(_ changes: [String: Any]) -> [String: Any] { base.merging(changes) { $1 } }

        let badMinute = try await rest.call("POST", "/api/v1/server/schedule", json: with(["expr": "0 61 * * * *"]))
        #expect(badMinute.status == 400 && badMinute.text.contains("minute field: '61'"), "\(badMinute.text)")
        let badDay = try await rest.call("POST", "/api/v1/server/schedule", json: with(["expr": "0 0 0 * * FUNDAY"]))
        #expect(badDay.status == 400 && badDay.text.contains("day-of-week field: 'FUNDAY'"), "\(badDay.text)")
        let badZone = try await rest.call("POST", "/api/v1/server/schedule", json: with(["tz": "Mars/Olympus"]))
        #expect(badZone.status == 400 && badZone.text.contains("Mars/Olympus"), "\(badZone.text)")
        let traversal = try await rest.call("POST", "/api/v1/server/schedule", json: with(["name": "../../etc/passwd"]))
        #expect(traversal.status == 400, "\(traversal.text)")
        let nowhere = try await rest.call("POST", "/api/v1/server/schedule", json: with(["agents": [String]()]))
        #expect(nowhere.status == 400 && nowhere.text.contains("targets nothing"), "\(nowhere.text)")
        let unknownField = try await rest.call("POST", "/api/v1/server/schedule", json: with(["cron": "x"]))
        #expect(unknownField.status == 400, "\(unknownField.text)")
        let malformed = try await rest.call("POST", "/api/v1/server/schedule", body: Data("{\"name\": ".utf8), contentType: "application/json")
        #expect(malformed.status == 400, "\(malformed.text)")

        _ = try await rest.ok("POST", "/api/v1/server/schedule", json: base)
        let twice = try await rest.call("POST", "/api/v1/server/schedule", json: base)
        #expect(twice.status == 409, "\(twice.text)")
        _ = try await rest.ok("POST", "/api/v1/server/schedule", json: with(["expr": "0 0 3 * * *", "replace": true]))
        let one = try await rest.ok("GET", "/api/v1/server/schedule?name=nightly")
        #expect(((one["schedules"] as? [[String: Any]])?.first)?["expr"] as? String == "0 0 3 * * *")
        try await rest.fails("GET", "/api/v1/server/schedule?name=nothing", http: 404, code: .notFound)

        // The server cannot know the host's users: the agent refuses that one schedule, keeps
        // the other, and says why in an event.
        _ = try await rest.ok(
            "POST", "/api/v1/server/schedule",
            json: ["name": "ghost", "expr": "*/5 * * * *", "command": "true", "user": "no-such-user-here", "agents": [agent.agentSN]]
        )
        try await eventually(timeout: .seconds(20), "the agent to refuse 'ghost' and keep 'nightly'") {
            Self.saved(agent) == ["nightly": true]
        }
        try await eventually(timeout: .seconds(20), "an event naming the refused schedule") {
            let events = try await rest.ok("GET", "/api/v1/server/events?agentsn=\(agent.agentSN)")["events"] as? [[String: Any]] ?? []
            return events.contains { ($0["message"] as? String)?.contains("no-such-user-here") == true }
        }
        #expect(agent.process.isRunning)
    }

    @Test("aspirectl schedule: create, list, disable, import the seed's crontab lines (and refuse a bad one, naming its line), delete")
    func aspirectlSchedules() async throws {
        let directory = try makeTemporaryDirectory("e2e-schedule-cli")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address())
        let environment = ["ASPIRE_SERVER": node.address.description, "ASPIRE_SERVER_DATA": node.dataDirectory]
        func ctl(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            let (status, output) = try await CommandLineTests().run("aspirectl", arguments, environment: environment, in: directory)
            return (status, output)
        }

        let created = try await ctl(["schedule", "create", "report", "0 0 9-17 * * MON-FRI", "--tag", "role=web", "--tz", "Asia/Shanghai", "--", "echo", "hi"])
        #expect(created.status == 0, "\(created.output)")
        #expect(created.output.contains("stored schedule report, next run 20"), "\(created.output)")
        let bad = try await ctl(["schedule", "create", "broken", "0 0 25 * * *", "--tag", "role=web", "--", "true"])
        #expect(bad.status == 1 && bad.output.contains("hour field: '25'"), "\(bad.output)")

        let crontab = "\(directory)/crontab"
        try """
            # the seed's lines
            0 23-7/2,8 * * * /usr/bin/rotate
            0 11 4 * 1-3 /usr/bin/weekly
            45 4 1,10,22 * * /usr/bin/monthly
            2 8-16/3 * * * /usr/bin/day
            0-59/30 18-23 * * * /usr/bin/evening
            """.write(toFile: crontab, atomically: true, encoding: .utf8)
        let imported = try await ctl(["schedule", "import", crontab, "--prefix", "seed", "--tag", "role=web"])
        #expect(imported.status == 0, "\(imported.output)")
        #expect(imported.output.contains("stored schedule seed-2: 0 23-7/2,8 * * *  /usr/bin/rotate"), "\(imported.output)")
        #expect(imported.output.contains("stored schedule seed-6: 0-59/30 18-23 * * *  /usr/bin/evening"), "\(imported.output)")

        try "0 0 * * * /ok\n61 * * * * /bad\n".write(toFile: crontab, atomically: true, encoding: .utf8)
        let refused = try await ctl(["schedule", "import", crontab, "--prefix", "broken", "--tag", "role=web"])
        #expect(refused.status == 1 && refused.output.contains("line 2"), "\(refused.output)")

        let listed = try await ctl(["schedule", "list"])
        #expect(listed.status == 0, "\(listed.output)")
        for name in ["report", "seed-2", "seed-3", "seed-4", "seed-5", "seed-6"] {
            #expect(listed.output.contains("\(name) "), "\(listed.output)")
        }
        #expect(!listed.output.contains("broken"), "nothing of the bad crontab was stored")

        #expect(try await ctl(["schedule", "disable", "report"]).status == 0)
        let json = try await ctl(["schedule", "list", "report", "-o", "json"])
        let document = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        let schedule = ((document?["schedules"] as? [[String: Any]])?.first)?["schedule"] as? [String: Any]
        #expect(schedule?["disabled"] as? Bool == true, "\(json.output)")
        #expect(try await ctl(["schedule", "delete", "report"]).status == 0)
        #expect(try await ctl(["schedule", "delete", "report"]).status == 4, "not found: exit 4")
    }
}
