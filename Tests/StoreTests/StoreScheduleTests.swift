import Foundation
import RPC
import Server
import Testing

/// Schedules and their runs, on SQLite and on a real PostgreSQL server.
@Suite("Store conformance: schedules")
struct StoreScheduleTests {
    static func schedule(_ name: String, expression: String = "0 0 2 * * *", tags: [String: String] = ["role": "db"]) -> ScheduleRecord {
        ScheduleRecord(name: name, expression: expression, timeZone: "Asia/Shanghai", user: "nobody", command: "echo \(name)", timeout: 30, selector: tags)
    }

    @Test("Schedules: unique names, replace on request, all or nothing, enable, delete; every change moves the revision", arguments: StoreHarness.engines)
    func schedules(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let empty = try await store.scheduleRevision()
            let backup = try await store.createSchedule(Self.schedule("backup"), replace: false)
            #expect(backup.id > 0 && backup.created > 0 && backup.modified == backup.created)
            let afterCreate = try await store.scheduleRevision()
            #expect(afterCreate != empty)

            await #expect(throws: AspireError.self) { try await store.createSchedule(Self.schedule("backup"), replace: false) }
            // A batch with a taken name stores nothing.
            await #expect(throws: AspireError.self) {
                try await store.createSchedules([Self.schedule("rotate"), Self.schedule("backup")], replace: false)
            }
            #expect(try await store.schedules().map(\.name) == ["backup"])
            #expect(try await store.scheduleRevision() == afterCreate)

            var changed = Self.schedule("backup", expression: "0 30 3 * * *", tags: [:])
            changed.agents = ["sn-2", "sn-1"]
            let replaced = try await store.createSchedule(changed, replace: true)
            #expect(replaced.id == backup.id && replaced.created == backup.created && replaced.modified > backup.modified)
            let stored = try #require(try await store.schedules(name: "backup").first)
            #expect(stored.expression == "0 30 3 * * *" && stored.agents == ["sn-2", "sn-1"] && stored.selector.isEmpty)
            #expect(stored.timeZone == "Asia/Shanghai" && stored.user == "nobody" && stored.timeout == 30 && stored.enabled)
            let afterReplace = try await store.scheduleRevision()
            #expect(afterReplace != afterCreate)

            let disabled = try await store.setScheduleEnabled(name: "backup", false)
            #expect(disabled?.enabled == false)
            let afterDisable = try await store.scheduleRevision()
            #expect(afterDisable != afterReplace)
            #expect(try await store.setScheduleEnabled(name: "nothing", true) == nil)

            #expect(try await store.deleteSchedule(name: "backup")?.name == "backup")
            #expect(try await store.deleteSchedule(name: "backup") == nil)
            #expect(try await store.schedules().isEmpty)
            #expect(try await store.scheduleRevision() != afterDisable)
        }
    }

    @Test("Schedules target hosts by AgentSN or by all of their tags", arguments: StoreHarness.engines)
    func targets(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            for sn in ["db-1", "db-2", "web-1"] {
                try await store.registerHost(HostRegistration(agentSN: sn, hostname: sn, ipaddr: "10.0.0.1", os: "linux", arch: "x86_64", version: "1", node: "n1"))
            }
            try await store.bindTags(["role": "db", "dc": "sh"], to: "db-1")
            try await store.bindTags(["role": "db"], to: "db-2")
            let tags = try await store.tags(ofAgents: ["db-1", "db-2", "web-1"])
            #expect(tags["db-1"] == ["role": "db", "dc": "sh"] && tags["db-2"] == ["role": "db"] && tags["web-1"] == nil)
            let schedule = Self.schedule("x", tags: ["role": "db", "dc": "sh"])
            #expect(schedule.targets(agentSN: "db-1", tags: tags["db-1"] ?? [:]))
            #expect(!schedule.targets(agentSN: "db-2", tags: tags["db-2"] ?? [:]))
            var byName = Self.schedule("y", tags: [:])
            byName.agents = ["web-1"]
            #expect(byName.targets(agentSN: "web-1", tags: [:]) && !byName.targets(agentSN: "db-1", tags: tags["db-1"] ?? [:]))
        }
    }

    @Test("Runs are stored once per host, schedule and due second, newest first; other results are not runs", arguments: StoreHarness.engines)
    func runs(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let results = [
                AgentResult(result: StoreTaskTests.result("schedule:backup:1700000000", data: "first"), agentSN: "sn-1"),
                AgentResult(result: StoreTaskTests.result("schedule:backup:1700000000", data: "copy"), agentSN: "sn-1"),
                AgentResult(result: StoreTaskTests.result("schedule:backup:1700000060", retcode: 3039, resp: .failed), agentSN: "sn-1"),
                AgentResult(result: StoreTaskTests.result("schedule:backup:1700000000"), agentSN: "sn-2"),
                AgentResult(result: StoreTaskTests.result("4b7e0c52-task-subtask"), agentSN: "sn-1"),
                AgentResult(result: StoreTaskTests.result("schedule:bad"), agentSN: "sn-1"),
            ]
            #expect(try await store.recordScheduleRuns(Array(results.prefix(1))) == 1)
            #expect(try await store.recordScheduleRuns(results) == 2, "the copy and the strangers change nothing")
            let all = try await store.scheduleRuns(name: "backup")
            #expect(all.count == 3)
            #expect(all.items.map(\.due) == [1_700_000_060_000, 1_700_000_000_000, 1_700_000_000_000])
            let mine = try await store.scheduleRuns(agentSN: "sn-1", page: Page(offset: 0, limit: 1))
            #expect(mine.count == 2 && mine.items.count == 1)
            #expect(mine.items[0].result.retcode == 3039 && mine.items[0].result.resp == .failed)
            let first = try #require(try await store.scheduleRuns(name: "backup", agentSN: "sn-1").items.last)
            #expect(String(decoding: first.result.data, as: UTF8.self) == "first")
            #expect(first.result.stderr == Data([0, 1, 2, 255]) && first.result.id == "schedule:backup:1700000000")
        }
    }
}
