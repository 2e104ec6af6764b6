import Foundation
import RPC
import SQLKit
import Server
import Testing
import TestSupport

/// Tasks, subtasks and deliveries, on SQLite and on a real PostgreSQL server.
@Suite("Store conformance: tasks")
struct StoreTaskTests {
    static func result(_ id: String, retcode: Int32 = 0, resp: Aspire_V1_CommandResult.Resp = .success, data: String = "out") -> Aspire_V1_CommandResult {
        var result = Aspire_V1_CommandResult()
        result.id = id
        result.resp = resp
        result.retcode = retcode
        result.message = "Normal termination"
        result.data = Data(data.utf8)
        result.stderr = Data([0, 1, 2, 255])
        result.startedUnixMs = 1000
        result.finishedUnixMs = 2000
        return result
    }

    @Test("A task by host list makes one subtask and one delivery per distinct host", arguments: StoreHarness.engines)
    func createByHosts(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let (task, subtasks) = try await store.createTask(
                NewTask(user: "ops", command: "sync.bash", body: #"{"cmd":"uptime"}"#),
                agents: ["a", "b", "a"]
            )
            #expect(task.count == 2 && task.complete == 0 && task.status == .pending)
            #expect(task.user == "ops" && task.command == "sync.bash" && task.body == #"{"cmd":"uptime"}"#)
            #expect(Set(subtasks.map(\.agentSN)) == ["a", "b"])
            #expect(Set(subtasks.map(\.id)).count == 2)
            #expect(try await store.dueSubtasks(agentSN: "a").map(\.id) == subtasks.filter { $0.agentSN == "a" }.map(\.id))
            #expect(try await store.agentsWithDueSubtasks() == ["a", "b"])
        }
    }

    @Test(
        "Hosts held by the creating node are stored dispatched (due again later), their task running, each dispatch audited once; a command id runs once, and a second use stores nothing",
        arguments: StoreHarness.engines
    )
    func createHeld(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            var new = NewTask(command: "sync.bash", body: #"{"cmd":"id"}"#)
            new.actor = "alice"
            let (task, subtasks) = try await store.createTask(new, agents: ["held", "away", "held"], claimed: ["held", "stranger"], retryAfter: 60_000)
            #expect(task.status == .running && task.count == 2)
            #expect(try await store.task(id: task.id) == task)
            let held = try #require(subtasks.first { $0.agentSN == "held" })
            let away = try #require(subtasks.first { $0.agentSN == "away" })
            #expect(held.status == .dispatched && away.status == .pending)
            #expect(Set(try await store.subtasks(taskID: task.id)) == Set(subtasks))
            #expect(try await store.dueSubtasks(agentSN: "held").isEmpty)
            #expect(try await store.dueSubtasks(agentSN: "held", inFlight: true).map(\.id) == [held.id])
            #expect(try await store.dueSubtasks(agentSN: "away").map(\.id) == [away.id])
            var dispatches = AuditQuery()
            dispatches.method = "dispatch"
            let audited = try await store.audit(dispatches).items
            #expect(audited.map(\.subtask) == [held.id] && audited.map(\.task) == [task.id], "\(audited)")
            #expect(audited.first?.actor == "alice" && audited.first?.targets == "held" && audited.first?.command.contains("sync.bash") == true)

            let (command, one) = try await store.createTask(new, agents: ["held"], subtaskID: "cmd-1", claimed: ["held"])
            #expect(one.map(\.id) == ["cmd-1"] && one.first?.status == .dispatched && command.status == .running)
            let before = try await store.tasks(page: Page(offset: 0, limit: 100, ascending: false)).count
            let again = await #expect(throws: AspireError.self) {
                try await store.createTask(NewTask(command: "sync.bash"), agents: ["other"], subtaskID: "cmd-1")
            }
            #expect(again?.code == .conflict && again?.cause.contains("cmd-1") == true, "\(String(describing: again))")
            #expect(try await store.tasks(page: Page(offset: 0, limit: 100, ascending: false)).count == before)
            #expect(try await store.subtask(id: "cmd-1")?.agentSN == "held")

            let (waiting, _) = try await store.createTask(NewTask(command: "sync.bash"), agents: ["away"], claimed: ["held"])
            #expect(waiting.status == .pending)
        }
    }

    @Test("Dispatch moves a task to running and delays redelivery", arguments: StoreHarness.engines)
    func dispatch(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let (task, subtasks) = try await store.createTask(NewTask(command: "sync.bash"), agents: ["a"])
            try await store.markDispatched(subtasks.map(\.id), retryAfter: 60_000)
            #expect(try await store.task(id: task.id)?.status == .running)
            #expect(try await store.subtasks(taskID: task.id).first?.status == .dispatched)
            #expect(try await store.dueSubtasks(agentSN: "a").isEmpty, "not due again before retryAfter")
            try await store.markDispatched(subtasks.map(\.id), retryAfter: -1)
            #expect(try await store.dueSubtasks(agentSN: "a").count == 1, "due again once retryAfter passed")
        }
    }

    @Test("A task keeps the typed command it was made with; one stored without has none", arguments: StoreHarness.engines)
    func typedCommand(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            var bash = Aspire_V1_BashParams()
            bash.cmd = "uptime"
            bash.user = "nobody"
            let typed = Aspire_V1_Command(.bash, .bash(bash))
            let (task, _) = try await store.createTask(NewTask(command: "sync.bash", body: #"{"cmd":"uptime","user":"nobody"}"#, typed: typed), agents: ["a"])
            #expect(try await store.task(id: task.id)?.typed == typed)
            #expect(try await store.openTagTasks(at: 0).isEmpty)
            let (old, _) = try await store.createTask(NewTask(command: "sync.bash", body: #"{"cmd":"uptime"}"#), agents: ["a"])
            #expect(try await store.task(id: old.id)?.typed == nil)
        }
    }

    @Test("Claims for places under max_concurrency never pass the limit, however many run at once; released ones wait again", arguments: StoreHarness.engines)
    func claims(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let hosts = (0 ..< 12).map { "h\($0)" }
            let (task, subtasks) = try await store.createTask(NewTask(command: "sync.bash"), agents: hosts)
            // Every host's delivery claims its own subtask at once, as results and the sweep do.
            let claimed = try await withThrowingTaskGroup(of: [String].self) { group in
                for subtask in subtasks {
                    group.addTask { try await Self.claimed(store, task.id, [subtask.id], limit: 3) }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(claimed.count == 3)
            #expect(try await store.subtasks(taskID: task.id).filter { $0.status == .dispatched }.count == 3)
            #expect(try await store.task(id: task.id)?.status == .running)
            // Full: nothing more, even for a whole list.
            #expect(try await Self.claimed(store, task.id, subtasks.map(\.id), limit: 3).isEmpty)
            // A claim that could not be sent gives its place back, and its host's delivery is due again.
            let back = claimed[0]
            try await store.releaseDispatch([back])
            let host = try #require(subtasks.first { $0.id == back }).agentSN
            #expect(try await store.dueSubtasks(agentSN: host).map(\.id) == [back])
            // The place goes to one still waiting, even when the list starts with those in flight.
            let inFlightFirst = Array(claimed.dropFirst()) + subtasks.map(\.id).filter { !claimed.dropFirst().contains($0) }
            let again = try await Self.claimed(store, task.id, inFlightFirst, limit: 3)
            #expect(again.count == 1)
            // Without a concurrency limit every waiting subtask goes at once; past max_errors none does.
            #expect(try await Self.claimed(store, task.id, subtasks.map(\.id), limit: nil).count == 9, "the nine still waiting")
            let (other, others) = try await store.createTask(NewTask(command: "sync.bash"), agents: ["x", "y", "z"])
            _ = try await Self.claimed(store, other.id, [others[0].id], limit: nil)
            _ = try await store.recordResult(Self.result(others[0].id, retcode: 1, resp: .failed), agentSN: others[0].agentSN)
            #expect(try await store.claimDispatch(taskID: other.id, ids: [others[1].id], limit: nil, maxFailures: 0, retryAfter: 60_000) == .overErrors(failed: 1))
            #expect(try await store.claimDispatch(taskID: other.id, ids: [others[1].id], limit: nil, maxFailures: 1, retryAfter: 60_000) == .claimed([others[1].id]))
        }
    }

    static func claimed(_ store: SQLStore, _ task: Int, _ ids: [String], limit: Int?) async throws -> [String] {
        guard case .claimed(let ids) = try await store.claimDispatch(taskID: task, ids: ids, limit: limit, maxFailures: nil, retryAfter: 60_000) else {
            throw HarnessError("the claim found the task over its errors")
        }
        return ids
    }

    @Test("Results are stored once by command id; counts and status follow", arguments: StoreHarness.engines)
    func results(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let (task, subtasks) = try await store.createTask(NewTask(command: "sync.bash"), agents: ["a", "b"])
            let a = try #require(subtasks.first { $0.agentSN == "a" })
            let b = try #require(subtasks.first { $0.agentSN == "b" })

            #expect(try await store.recordResult(Self.result(a.id), agentSN: "b") == nil, "a result from the wrong host is ignored")
            let afterA = try #require(try await store.recordResult(Self.result(a.id), agentSN: "a"))
            #expect(afterA.complete == 1 && afterA.failed == 0 && afterA.status == .running)
            #expect(try await store.recordResult(Self.result(a.id, data: "second copy"), agentSN: "a") == nil)
            #expect(try await store.dueSubtasks(agentSN: "a").isEmpty)

            let afterB = try #require(try await store.recordResult(Self.result(b.id, retcode: 2), agentSN: "b"))
            #expect(afterB.complete == 2 && afterB.failed == 1 && afterB.status == .failed)

            let stored = try await store.subtasks(taskID: task.id)
            let storedA = try #require(stored.first { $0.id == a.id })
            #expect(storedA.status == .succeeded)
            #expect(String(decoding: storedA.data, as: UTF8.self) == "out", "the first result is kept")
            #expect(storedA.stderr == [0, 1, 2, 255], "bytes survive the round trip")
            #expect(storedA.started == 1000 && storedA.finished == 2000)
            #expect(stored.first { $0.id == b.id }?.status == .failed)
            #expect(try await store.recordResult(Self.result("unknown-id"), agentSN: "a") == nil)
        }
    }

    @Test("One batch stores many results: first copy wins, strangers and copies are ignored, counts per task", arguments: StoreHarness.engines)
    func batchedResults(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let hosts = (0 ..< 1500).map { "h\($0)" }
            let (big, subtasks) = try await store.createTask(NewTask(command: "sync.bash"), agents: hosts)
            #expect(subtasks.count == 1500 && Set(subtasks.map(\.id)).count == 1500, "multi-row inserts keep every host")
            let (small, other) = try await store.createTask(NewTask(command: "sync.bash"), agents: ["x"])
            var batch = subtasks.map { AgentResult(result: Self.result($0.id, retcode: $0.agentSN.hasSuffix("7") ? 3 : 0), agentSN: $0.agentSN) }
            batch.append(AgentResult(result: Self.result(subtasks[0].id, data: "copy in the same batch"), agentSN: "h0"))
            batch.append(AgentResult(result: Self.result(other[0].id), agentSN: "not-x"))
            batch.append(AgentResult(result: Self.result(other[0].id), agentSN: "x"))
            let answers = try await store.recordResults(batch)
            #expect(answers.count == batch.count)
            #expect(answers[0]?.id == big.id && answers[1499]?.id == big.id)
            #expect(answers[1500] == nil, "a second copy in one batch is not new")
            #expect(answers[1501] == nil, "a result from the wrong host is ignored")
            #expect(answers[1502]?.id == small.id)
            let final = try #require(try await store.task(id: big.id))
            #expect(final.complete == 1500)
            #expect(final.failed == hosts.filter { $0.hasSuffix("7") }.count)
            #expect(final.status == .failed)
            #expect(try await store.task(id: small.id)?.status == .done)
            #expect(try await store.agentsWithDueSubtasks().isEmpty, "every delivery is settled")
            let first = try #require(try await store.subtasks(taskID: big.id).first { $0.id == subtasks[0].id })
            #expect(String(decoding: first.data, as: UTF8.self) == "out", "the first copy is kept")
            #expect(try await store.recordResults(Array(batch.prefix(10))).allSatisfy { $0 == nil }, "copies in a later batch change nothing")
            // Every field comes back as sent: a signal's negative code, truncation, times past 2^32.
            let (_, killed) = try await store.createTask(NewTask(command: "sync.bash"), agents: ["k"])
            var result = Self.result(killed[0].id, retcode: -9, resp: .failed, data: "partial")
            result.truncated = true
            result.startedUnixMs = 1_780_000_000_123
            result.finishedUnixMs = 1_780_000_000_456
            result.message = "killed: it's over; DROP TABLE subtasks"
            _ = try await store.recordResults([AgentResult(result: result, agentSN: "k")])
            let stored = try #require(try await store.subtask(id: killed[0].id))
            #expect(stored.retcode == -9 && stored.resp == Int(Aspire_V1_CommandResult.Resp.failed.rawValue) && stored.truncated)
            #expect(stored.started == 1_780_000_000_123 && stored.finished == 1_780_000_000_456 && stored.status == .failed)
            #expect(stored.message == result.message && stored.data == Array("partial".utf8) && stored.stderr == [0, 1, 2, 255])
        }
    }

    @Test("A new stream gets again what was sent and not answered", arguments: StoreHarness.engines)
    func inFlightRedelivery(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let (_, subtasks) = try await store.createTask(NewTask(command: "sync.bash"), agents: ["a"])
            try await store.markDispatched(subtasks.map(\.id), retryAfter: 60_000)
            #expect(try await store.dueSubtasks(agentSN: "a").isEmpty)
            #expect(try await store.dueSubtasks(agentSN: "a", inFlight: true).map(\.id) == subtasks.map(\.id))
            try await store.recordResult(Self.result(subtasks[0].id), agentSN: "a")
            #expect(try await store.dueSubtasks(agentSN: "a", inFlight: true).isEmpty, "answered: nothing to send again")
        }
    }

    @Test("A task whose hosts all succeed is done", arguments: StoreHarness.engines)
    func done(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let (task, subtasks) = try await store.createTask(NewTask(command: "getinfo.kernel"), agents: ["a"])
            try await store.recordResult(Self.result(subtasks[0].id), agentSN: "a")
            #expect(try await store.task(id: task.id)?.status == .done)
        }
    }

    @Test("Concurrent results and duplicates keep the counts exact", arguments: StoreHarness.engines)
    func concurrentResults(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let hosts = (0 ..< 30).map { "h\($0)" }
            let (task, subtasks) = try await store.createTask(NewTask(command: "sync.bash"), agents: hosts)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for subtask in subtasks {
                    for copy in 0 ..< 3 {
                        group.addTask {
                            let failed = subtask.agentSN.hasSuffix("7")
                            try await store.recordResult(Self.result(subtask.id, retcode: failed ? 1 : 0, data: "\(copy)"), agentSN: subtask.agentSN)
                        }
                    }
                }
                try await group.waitForAll()
            }
            let final = try #require(try await store.task(id: task.id))
            #expect(final.complete == 30)
            #expect(final.failed == hosts.filter { $0.hasSuffix("7") }.count)
            #expect(final.status == .failed)
        }
    }

    @Test("Hosts that never come make their subtasks undeliverable", arguments: StoreHarness.engines)
    func undeliverable(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let (task, subtasks) = try await store.createTask(NewTask(command: "sync.bash"), agents: ["here", "gone"])
            try await store.markDispatched([subtasks.first { $0.agentSN == "here" }!.id], retryAfter: 60_000)
            #expect(try await store.expireUndeliverable(createdBefore: Date().unixMilliseconds + 1) == 1)
            let stored = try await store.subtasks(taskID: task.id)
            #expect(stored.first { $0.agentSN == "gone" }?.status == .undeliverable)
            #expect(stored.first { $0.agentSN == "here" }?.status == .dispatched)
            let counted = try #require(try await store.task(id: task.id))
            #expect(counted.complete == 1 && counted.failed == 1 && counted.status == .running)
            #expect(try await store.dueSubtasks(agentSN: "gone").isEmpty)
        }
    }

    @Test("Cancelling stops deliveries and keeps finished results", arguments: StoreHarness.engines)
    func cancel(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let (task, subtasks) = try await store.createTask(NewTask(command: "sync.bash"), agents: ["a", "b"])
            try await store.recordResult(Self.result(subtasks.first { $0.agentSN == "a" }!.id), agentSN: "a")
            let cancelled = try await store.cancelTask(id: task.id)
            #expect(cancelled.status == .cancelled)
            let again = await #expect(throws: AspireError.self) { try await store.cancelTask(id: task.id) }
            #expect(again?.code == .conflict)
            let missing = await #expect(throws: AspireError.self) { try await store.cancelTask(id: 999_999) }
            #expect(missing?.code == .notFound)
            #expect(try await store.dueSubtasks(agentSN: "b").isEmpty)
            let stored = try await store.subtasks(taskID: task.id)
            #expect(stored.first { $0.agentSN == "a" }?.status == .succeeded)
            #expect(stored.first { $0.agentSN == "b" }?.status == .cancelled)
            #expect(try await store.recordResult(Self.result(subtasks.first { $0.agentSN == "b" }!.id), agentSN: "b") == nil)
        }
    }

    @Test("Tag tasks take matching hosts once, within their window, and close when it ends", arguments: StoreHarness.engines)
    func tagTasks(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let now = Date().unixMilliseconds
            let (task, subtasks) = try await store.createTask(
                NewTask(command: "sync.bash", selector: ["svc": "ecs"], windowStart: now - 1000, windowEnd: now + 60_000),
                agents: []
            )
            #expect(subtasks.isEmpty && task.selector == ["svc": "ecs"])
            #expect(try await store.openTagTasks(at: now).map(\.id) == [task.id])
            #expect(try await store.openTagTasks(at: now + 120_000).isEmpty)
            let added = try #require(try await store.addSubtask(taskID: task.id, agentSN: "tagged"))
            #expect(try await store.addSubtask(taskID: task.id, agentSN: "tagged") == nil)
            #expect(try await store.task(id: task.id)?.count == 1)
            try await store.recordResult(Self.result(added.id), agentSN: "tagged")
            #expect(try await store.task(id: task.id)?.status == .running, "a tag task stays open through its window")
            try await store.closeTagTasks(endedBefore: now + 120_000)
            #expect(try await store.task(id: task.id)?.status == .done)
            #expect(try await store.addSubtask(taskID: task.id, agentSN: "late") == nil)
        }
    }

    @Test("Task lists are newest first with a total count", arguments: StoreHarness.engines)
    func list(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            for index in 0 ..< 5 {
                _ = try await store.createTask(NewTask(command: "c\(index)"), agents: ["a"])
            }
            let page = try await store.tasks(page: Page(offset: 0, limit: 2, ascending: false))
            #expect(page.count == 5)
            #expect(page.items.map(\.command) == ["c4", "c3"])
            #expect(try await store.appliedMigrations() == Array(1 ... 17))
        }
    }

    @Test("A store from before migration 16 keeps its deliveries: due ones are sent, sent ones wait their turn, and results close them", arguments: StoreHarness.engines)
    func deliveriesMigrateIntoTheSubtask(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind, migratedThrough: 15) { store in
            let now = Date().unixMilliseconds
            let later = now + 3_600_000
            // As release 15 stored them: a subtask waiting (due now), one sent (due again in an
            // hour), one finished (no delivery row), each with its row in `pendings`.
            try await store.engine.withConnection { database in
                try await database.raw(
                    """
                    INSERT INTO tasks (id, status, "user", command, body, count, complete, failed, gmt_create, gmt_modify)
                    VALUES (7, 1, 'u', 'sync.bash', '{}', 3, 1, 0, \(bind: now), \(bind: now))
                    """
                ).run()
                try await database.raw(
                    """
                    INSERT INTO subtasks (id, taskid, agentsn, status, gmt_create, gmt_modify) VALUES
                    ('waits', 7, 'a', 0, \(bind: now - 2), \(bind: now)),
                    ('sent', 7, 'b', 1, \(bind: now - 1), \(bind: now)),
                    ('done', 7, 'c', 2, \(bind: now), \(bind: now))
                    """
                ).run()
                try await database.raw(
                    """
                    INSERT INTO pendings (subtaskid, taskid, agentsn, status, gmt_schedule, gmt_create) VALUES
                    ('waits', 7, 'a', 0, \(bind: now - 2), \(bind: now - 2)), ('sent', 7, 'b', 1, \(bind: later), \(bind: now - 1))
                    """
                ).run()
            }
            try await store.migrate()
            #expect(try await store.appliedMigrations() == Array(1 ... 17))
            #expect(try await store.agentsWithDueSubtasks() == ["a"])
            #expect(try await store.dueSubtasks(agentSN: "a").map(\.id) == ["waits"])
            #expect(try await store.dueSubtasks(agentSN: "b").isEmpty, "sent an hour's redelivery ago: not due yet")
            #expect(try await store.dueSubtasks(agentSN: "b", inFlight: true).map(\.id) == ["sent"])
            #expect(try await store.dueSubtasks(agentSN: "c", inFlight: true).isEmpty, "finished: never again")
            #expect(try await store.markDispatched(["waits", "sent", "done"], retryAfter: 60_000, sentBefore: nil) == ["waits"])
            _ = try await store.recordResults([AgentResult(result: Self.result("sent"), agentSN: "b"), AgentResult(result: Self.result("waits"), agentSN: "a")])
            #expect(try await store.dueSubtasks(agentSN: "a", inFlight: true).isEmpty)
            #expect(try await store.dueSubtasks(agentSN: "b", inFlight: true).isEmpty)
            let task = try #require(try await store.task(id: 7))
            #expect(task.complete == 3 && task.status == .done)
        }
    }
}
