import Foundation
public import RPC
import SQLKit
import SwiftProtobuf

// Tasks and subtasks. Every change of status is one of these, each made by the function named, in
// one transaction:
//
// Subtask (SubtaskStatus)
//   (new)       → pending, or dispatched for a host held by the creating node   createTask
//   pending     → dispatched     markDispatched (sent), claimDispatch (a place under max_concurrency
//                                and max_errors taken before sending; the task row is locked meanwhile)
//   dispatched  → pending        releaseDispatch (claimed, then the stream closed before it went)
//   dispatched  → dispatched     markDispatched again (re-sent on a new stream or after redeliverAfter)
//   pending/dispatched → succeeded | failed    recordResults (the first result from its own host)
//   pending     → undeliverable  expireUndeliverable (its host never came within the delivery time)
//   pending/dispatched → cancelled  cancelTask; stopTask cancels only the pending ones
//   succeeded, failed, undeliverable, cancelled: final (`isFinal`).
//
// Task (TaskStatus)
//   (new)       → pending, or running when a subtask is stored dispatched   createTask
//   pending     → running        markDispatched / claimDispatch (its first subtask went out), or
//                                recordResults (its first result came)
//   pending/running → done | failed   recordResults when the last subtask of a host-list task
//                                ends (failed when any failed); closeTagTasks when a tag task's
//                                window has ended
//   pending/running → cancelled  cancelTask
//   pending/running → failed     stopTask (more failures than max_errors)
//
// While a subtask is open (pending or dispatched), its `due` says when it is to be sent (again):
// two partial indexes (`subtasks_due`, `subtasks_agent_due`) hold open subtasks only, so the
// sweep and a new stream find what is due among those, and a result, which closes its subtask,
// takes it out of both — and touches no other index.

extension SQLStore {
    /// Open subtasks: the predicate of the partial indexes, written into the SQL rather than
    /// bound, so that SQLite and PostgreSQL both see that a query implies it and use them.
    static let openSubtask = "status < \(SubtaskStatus.succeeded.rawValue)"

    /// Stores a task and a subtask for each of `agents`. A task of one host may name its
    /// subtask's id (a command id the caller chose: it runs at most once, so a second task with
    /// it is refused as a conflict). The subtasks of the hosts in `claimed` are stored
    /// dispatched already (as ``markDispatched(_:retryAfter:sentBefore:)`` would, due again
    /// after `retryAfter`): their sender sends them as soon as this returns, with no second
    /// transaction, and no sweep reads them as due meanwhile.
    public func createTask(
        _ task: NewTask, agents: [String], subtaskID: String? = nil, claimed: Set<String> = [], retryAfter: Int64 = 60_000
    ) async throws -> (task: TaskRecord, subtasks: [SubtaskRecord]) {
        let now = Self.now
        var seen = Set<String>()
        let hosts = agents.filter { seen.insert($0).inserted }
        if subtaskID != nil, hosts.count != 1 {
            throw AspireError(.badRequest, "only a command for one host names its id")
        }
        let selector = task.selector.isEmpty ? "" : try Self.encodeSelector(task.selector)
        let typed: Data? = try task.typed.map { try $0.serializedBytes() }
        let sending = claimed.intersection(hosts)
        // Rows written as they end up, read back by RETURNING: a command to a host held here is
        // five statements (with BEGIN and COMMIT), each a round trip to the store's thread.
        let status = sending.isEmpty ? TaskStatus.pending : .running
        return try await self.transaction { database in
            guard let row = try await database.raw(
                """
                INSERT INTO tasks (status, "user", command, body, command_pb, selector, window_start, window_end, max_concurrency,
                                   max_errors, count, complete, failed, gmt_create, gmt_modify, actor)
                VALUES (\(bind: status.rawValue), \(bind: task.user), \(bind: task.command), \(bind: task.body),
                        \(bind: typed), \(bind: selector), \(bind: task.windowStart), \(bind: task.windowEnd),
                        \(bind: task.maxConcurrency), \(bind: task.maxErrors), \(bind: hosts.count), 0, 0, \(bind: now), \(bind: now),
                        \(bind: task.actor))
                RETURNING *
                """
            ).first() else {
                throw AspireError(.internalError, "the task was not stored")
            }
            let stored = try Self.task(from: row)
            let subtasks = try await Self.insertSubtasks(
                taskID: stored.id, agentSNs: hosts, ids: subtaskID.map { [$0] }, dispatched: sending, due: now + retryAfter, now: now, on: database
            )
            let sent = subtasks.filter { $0.status == .dispatched }.map(\.id)
            let audited = AuditedTask(id: stored.id, actor: task.actor, command: task.command, body: task.body)
            for slice in sent.chunks(of: 1000) {
                try await Self.auditDispatches(Array(slice), of: [audited], at: now, in: database)
            }
            return (stored, subtasks)
        }
    }

    /// Adds the subtask of a tag task for a host that matched it; nil when it already has one
    /// or the task no longer takes hosts.
    public func addSubtask(taskID: Int, agentSN: String) async throws -> SubtaskRecord? {
        let now = Self.now
        return try await self.transaction { database in
            guard let task = try await Self.task(id: taskID, on: database), task.status.isOpen else {
                return nil
            }
            let exists = try await database.raw(
                "SELECT id FROM subtasks WHERE taskid = \(bind: taskID) AND agentsn = \(bind: agentSN)"
            ).first()
            guard exists == nil else { return nil }
            let subtask = try await Self.insertSubtask(taskID: taskID, agentSN: agentSN, now: now, on: database)
            try await database.raw("UPDATE tasks SET count = count + 1, gmt_modify = \(bind: now) WHERE id = \(bind: taskID)").run()
            return subtask
        }
    }

    /// Subtasks of `agentSN` due for delivery now, oldest first; with `inFlight`, also those
    /// sent and not answered yet (for a new stream: the old one may have lost them).
    public func dueSubtasks(agentSN: String, inFlight: Bool = false, limit: Int = 100) async throws -> [SubtaskRecord] {
        let now = Self.now
        return try await self.engine.withConnection { database in
            try await database.raw(
                """
                SELECT * FROM subtasks
                WHERE agentsn = \(bind: agentSN) AND \(unsafeRaw: Self.openSubtask) AND (due <= \(bind: now) OR \(bind: inFlight ? 1 : 0) = 1)
                ORDER BY gmt_create, id LIMIT \(bind: limit)
                """
            ).all().map(Self.subtask(from:))
        }
    }

    /// The subtasks due for delivery now of each of `agentSNs`, oldest first (a few statements
    /// for a task's thousands of hosts).
    public func dueSubtasks(agentSNs: [String]) async throws -> [SubtaskRecord] {
        guard !agentSNs.isEmpty else { return [] }
        let now = Self.now
        return try await self.engine.withConnection { database in
            var due: [SubtaskRecord] = []
            for slice in agentSNs.chunks(of: 1000) {
                due += try await database.raw(
                    """
                    SELECT * FROM subtasks
                    WHERE agentsn IN (\(binds: Array(slice))) AND \(unsafeRaw: Self.openSubtask) AND due <= \(bind: now)
                    ORDER BY gmt_create, id
                    """
                ).all().map(Self.subtask(from:))
            }
            return due
        }
    }

    /// AgentSNs that have deliveries due now (the sweep of a node looks for the ones it holds).
    public func agentsWithDueSubtasks(limit: Int = 1000) async throws -> [String] {
        let now = Self.now
        return try await self.engine.withConnection { database in
            try await database.raw(
                """
                SELECT DISTINCT agentsn FROM subtasks WHERE \(unsafeRaw: Self.openSubtask) AND due <= \(bind: now)
                ORDER BY agentsn LIMIT \(bind: limit)
                """
            ).all().map { try $0.decode(column: "agentsn", as: String.self) }
        }
    }

    /// Claims subtasks for sending: marks them dispatched, due again after `retryAfter`
    /// milliseconds if no result came (the agent runs a command id once, so a repeat only
    /// fetches its result), and answers the ids it claimed: the deliveries due now, atomically
    /// (two senders reading the same due subtask at once, a sweep beside a wake-up, send it
    /// once), and those last sent before `sentBefore` (a new stream sends again what was sent
    /// before it began and may be lost, not what it carried already). Nil: only due ones.
    @discardableResult
    public func markDispatched(_ ids: [String], retryAfter: Int64, sentBefore: Int64? = Int64.max / 4) async throws -> [String] {
        guard !ids.isEmpty else { return [] }
        let now = Self.now
        return try await self.transaction { database in
            var claimed: [String] = []
            for slice in ids.chunks(of: 1000) {
                let rows = try await database.raw(
                    """
                    UPDATE subtasks SET status = \(bind: SubtaskStatus.dispatched.rawValue), due = \(bind: now + retryAfter), gmt_modify = \(bind: now)
                    WHERE id IN (\(binds: Array(slice))) AND \(unsafeRaw: Self.openSubtask)
                      AND (due <= \(bind: now) OR due < \(bind: sentBefore.map { $0 + retryAfter } ?? 0))
                    RETURNING id, taskid
                    """
                ).all()
                guard !rows.isEmpty else { continue }
                let mine = try rows.map { try $0.decode(column: "id", as: String.self) }
                let tasks = try rows.map { try $0.decode(column: "taskid", as: Int.self) }
                try await Self.dispatched(mine, of: Set(tasks), at: now, in: database)
                claimed += mine
            }
            return claimed
        }
    }

    /// What a claim for places got.
    public enum Claim: Sendable, Equatable {
        /// These subtasks are marked dispatched: the caller sends exactly these.
        case claimed([String])
        /// The task has failed more often than it allows: nothing more goes out.
        case overErrors(failed: Int)
    }

    /// Marks as dispatched as many of `ids` (subtasks of task `taskID` waiting to be sent) as fit
    /// under `limit` subtasks in flight (any number without one), unless the task has failed more
    /// than `maxFailures` times or is no longer open. The task's row stays locked until the
    /// transaction ends (SQLite's write lock does the same), so deliveries running at once
    /// (results freeing places, the sweep, another node) never pass either limit together.
    public func claimDispatch(taskID: Int, ids: [String], limit: Int?, maxFailures: Int?, retryAfter: Int64) async throws -> Claim {
        guard !ids.isEmpty else { return .claimed([]) }
        let now = Self.now
        return try await self.transaction { database in
            guard
                let row = try await database.raw(
                    "UPDATE tasks SET gmt_modify = gmt_modify WHERE id = \(bind: taskID) RETURNING failed, status"
                ).first(),
                TaskStatus(rawValue: try row.decode(column: "status", as: Int.self))?.isOpen == true
            else { return .claimed([]) }
            let failed = try row.decode(column: "failed", as: Int.self)
            if let maxFailures, failed > maxFailures { return .overErrors(failed: failed) }
            var room = ids.count
            if let limit {
                let inFlight =
                    try await database.raw(
                        "SELECT COUNT(*) AS n FROM subtasks WHERE taskid = \(bind: taskID) AND status = \(bind: SubtaskStatus.dispatched.rawValue)"
                    ).first()?.decode(column: "n", as: Int.self) ?? 0
                room = limit - inFlight
            }
            var claimed: [String] = []
            // The places go to the oldest of those still waiting: some of `ids` may have been
            // claimed meanwhile, and a place must not go to one of them and be lost.
            for slice in ids.chunks(of: 1000) where claimed.count < room {
                claimed += try await database.raw(
                    """
                    UPDATE subtasks SET status = \(bind: SubtaskStatus.dispatched.rawValue), due = \(bind: now + retryAfter), gmt_modify = \(bind: now)
                    WHERE id IN (
                        SELECT id FROM subtasks
                        WHERE id IN (\(binds: Array(slice))) AND taskid = \(bind: taskID) AND status = \(bind: SubtaskStatus.pending.rawValue)
                        ORDER BY gmt_create, id LIMIT \(bind: room - claimed.count)
                    )
                    RETURNING id
                    """
                ).all().map { try $0.decode(column: "id", as: String.self) }
            }
            try await Self.dispatched(claimed, of: claimed.isEmpty ? [] : [taskID], at: now, in: database)
            return .claimed(claimed)
        }
    }

    /// Gives back claimed subtasks that could not be sent after all (the stream closed): they
    /// wait again, and free their places.
    public func releaseDispatch(_ ids: [String]) async throws {
        guard !ids.isEmpty else { return }
        let now = Self.now
        try await self.transaction { database in
            for slice in ids.chunks(of: 1000) {
                let chunk = Array(slice)
                try await database.raw(
                    """
                    UPDATE subtasks SET status = \(bind: SubtaskStatus.pending.rawValue), due = \(bind: now), gmt_modify = \(bind: now)
                    WHERE id IN (\(binds: chunk)) AND status = \(bind: SubtaskStatus.dispatched.rawValue)
                    """
                ).run()
            }
        }
    }

    /// The rest of marking subtasks dispatched (their rows say so, and when they are due
    /// again, already): the sending is audited, and their tasks are running.
    static func dispatched(_ ids: [String], of tasks: Set<Int>, at now: Int64, in database: any SQLDatabase) async throws {
        guard !ids.isEmpty else { return }
        try await Self.auditDispatches(ids, at: now, in: database)
        guard !tasks.isEmpty else { return }
        try await database.raw(
            """
            UPDATE tasks SET status = \(bind: TaskStatus.running.rawValue), gmt_modify = \(bind: now)
            WHERE id IN (\(binds: tasks.sorted())) AND status = \(bind: TaskStatus.pending.rawValue)
            """
        ).run()
    }

    /// Stores a result once: the first result of a subtask finishes it and counts in its task;
    /// any later copy (the agent re-sends until acknowledged) changes nothing and returns nil.
    @discardableResult
    public func recordResult(_ result: Aspire_V1_CommandResult, agentSN: String) async throws -> TaskRecord? {
        try await self.recordResults([AgentResult(result: result, agentSN: agentSN)])[0]
    }

    /// Batches of results up to this many bind every value (see `recordResults`).
    static let resultsBound = 32

    /// Stores many results in one transaction and a handful of statements (one multi-row
    /// UPDATE, one UPDATE per task), whatever their number: what makes ten thousand
    /// answers a matter of milliseconds. Each answer is the result's task when the result was
    /// new, nil for a copy or a result that matches no subtask of that agent.
    public func recordResults(_ results: [AgentResult]) async throws -> [TaskRecord?] {
        guard !results.isEmpty else { return [] }
        let now = Self.now
        var answers = [TaskRecord?](repeating: nil, count: results.count)
        // A subtask's first copy from its own agent wins, as it would one at a time.
        struct Key: Hashable {
            var id: String
            var agentSN: String
        }
        var positions: [Key: Int] = [:]
        for (index, incoming) in results.enumerated() {
            let key = Key(id: incoming.result.id, agentSN: incoming.agentSN)
            if positions[key] == nil { positions[key] = index }
        }
        // A few results at a time (the usual) are all bound, so that the statement's text is the
        // same each time and stays prepared. At thousands of rows a batch, a bind's encoding costs
        // more than parsing a number, and the numbers are written into the statement.
        let bindNumbers = positions.count <= Self.resultsBound
        var statement = SQLText(self.engine.kind)
        statement.append("WITH v (resp, retcode, truncated, started, finished, id, agentsn, message, data, stderr) AS (VALUES ")
        for (row, index) in positions.values.sorted().enumerated() {
            let (result, agentSN) = (results[index].result, results[index].agentSN)
            statement.append(row == 0 ? "(" : ", (")
            for number in [result.resp.rawValue, Int(result.retcode), result.truncated ? 1 : 0, Int(result.startedUnixMs), Int(result.finishedUnixMs)] {
                if bindNumbers { statement.append(bind: number) } else { statement.append(literal: number) }
                statement.append(", ")
            }
            statement.append(bind: result.id)
            statement.append(", ")
            statement.append(bind: agentSN)
            statement.append(", ")
            statement.append(bind: result.message)
            statement.append(", ")
            statement.append(bind: result.data)
            statement.append(", ")
            statement.append(bind: result.stderr)
            statement.append(")")
        }
        statement.append(
            """
            )
            UPDATE subtasks SET
                status = CASE WHEN v.resp = \(Aspire_V1_CommandResult.Resp.success.rawValue) AND v.retcode = 0
                    THEN \(SubtaskStatus.succeeded.rawValue) ELSE \(SubtaskStatus.failed.rawValue) END,
                resp = v.resp, retcode = v.retcode, message = v.message, data = v.data,
                stderr = v.stderr, truncated = v.truncated, started = v.started, finished = v.finished
            """
        )
        statement.append(", gmt_modify = ")
        statement.append(bind: now)
        statement.append(
            """

            FROM v
            WHERE subtasks.id = v.id AND subtasks.agentsn = v.agentsn AND subtasks.\(Self.openSubtask)
            RETURNING subtasks.id AS id, subtasks.agentsn AS agentsn, subtasks.taskid AS taskid
            """
        )
        return try await self.transaction { [statement] database in
            let stored = try await database.raw("\(statement)").all()
            guard !stored.isEmpty else { return answers }
            var perTask: [Int: (finished: Int, failed: Int, indices: [Int])] = [:]
            for row in stored {
                let key = Key(id: try row.decode(column: "id", as: String.self), agentSN: try row.decode(column: "agentsn", as: String.self))
                let taskID = try row.decode(column: "taskid", as: Int.self)
                guard let index = positions[key] else { continue }
                let result = results[index].result
                perTask[taskID, default: (0, 0, [])].finished += 1
                perTask[taskID, default: (0, 0, [])].failed += result.resp == .success && result.retcode == 0 ? 0 : 1
                perTask[taskID, default: (0, 0, [])].indices.append(index)
            }
            for (taskID, counts) in perTask.sorted(by: { $0.key < $1.key }) {
                let task = try await Self.countFinished(taskID: taskID, failed: counts.failed, finished: counts.finished, now: now, on: database)
                for index in counts.indices { answers[index] = task }
            }
            return answers
        }
    }

    /// Subtasks still waiting for their host since before `cutoff` become undeliverable.
    /// Returns how many.
    @discardableResult
    public func expireUndeliverable(createdBefore cutoff: Int64) async throws -> Int {
        let now = Self.now
        return try await self.transaction { database in
            let rows = try await database.raw(
                """
                UPDATE subtasks SET status = \(bind: SubtaskStatus.undeliverable.rawValue),
                    message = 'the host did not connect within the delivery time', gmt_modify = \(bind: now)
                WHERE \(unsafeRaw: Self.openSubtask) AND status = \(bind: SubtaskStatus.pending.rawValue) AND gmt_create < \(bind: cutoff)
                RETURNING taskid
                """
            ).all()
            var perTask: [Int: Int] = [:]
            for row in rows {
                perTask[try row.decode(column: "taskid", as: Int.self), default: 0] += 1
            }
            for (taskID, count) in perTask {
                _ = try await Self.countFinished(taskID: taskID, failed: count, finished: count, now: now, on: database)
            }
            return rows.count
        }
    }

    /// Cancels a task: subtasks not finished are cancelled and no longer delivered.
    public func cancelTask(id: Int) async throws -> TaskRecord {
        let now = Self.now
        return try await self.transaction { database in
            guard let task = try await Self.task(id: id, on: database) else {
                throw AspireError(.notFound, "no task \(id)")
            }
            guard task.status.isOpen else {
                throw AspireError(.conflict, "task \(id) is already \(task.status.name)")
            }
            try await database.raw(
                """
                UPDATE subtasks SET status = \(bind: SubtaskStatus.cancelled.rawValue), gmt_modify = \(bind: now)
                WHERE taskid = \(bind: id) AND \(unsafeRaw: Self.openSubtask)
                """
            ).run()
            try await database.raw(
                "UPDATE tasks SET status = \(bind: TaskStatus.cancelled.rawValue), gmt_modify = \(bind: now) WHERE id = \(bind: id)"
            ).run()
            return try await Self.task(id: id, on: database) ?? task
        }
    }

    /// Hosts of a task whose subtask waits to be sent.
    public func waitingAgents(taskID: Int) async throws -> [String] {
        try await self.engine.withConnection { database in
            try await database.raw(
                "SELECT agentsn FROM subtasks WHERE taskid = \(bind: taskID) AND status = \(bind: SubtaskStatus.pending.rawValue) ORDER BY agentsn"
            ).all().map { try $0.decode(column: "agentsn", as: String.self) }
        }
    }

    /// Stops a task that failed too often: what was not sent yet is cancelled, what is running
    /// still reports, and the task ends failed.
    public func stopTask(id: Int) async throws {
        let now = Self.now
        try await self.transaction { database in
            try await database.raw(
                """
                UPDATE subtasks SET status = \(bind: SubtaskStatus.cancelled.rawValue),
                    message = 'not sent: the task exceeded max_errors', gmt_modify = \(bind: now)
                WHERE taskid = \(bind: id) AND status = \(bind: SubtaskStatus.pending.rawValue)
                """
            ).run()
            try await database.raw(
                "UPDATE tasks SET status = \(bind: TaskStatus.failed.rawValue), gmt_modify = \(bind: now) WHERE id = \(bind: id)"
            ).run()
        }
    }

    public func task(id: Int) async throws -> TaskRecord? {
        try await self.engine.withConnection { try await Self.task(id: id, on: $0) }
    }

    /// The host each of `ids` (subtask ids, the command ids agents see) was sent to; ids that
    /// name no subtask are left out.
    public func subtaskHosts(ids: [String]) async throws -> [String: String] {
        guard !ids.isEmpty else { return [:] }
        return try await self.engine.withConnection { database in
            var hosts: [String: String] = [:]
            for slice in ids.chunks(of: 1000) {
                for row in try await database.raw("SELECT id, agentsn FROM subtasks WHERE id IN (\(binds: Array(slice)))").all() {
                    hosts[try row.decode(column: "id", as: String.self)] = try row.decode(column: "agentsn", as: String.self)
                }
            }
            return hosts
        }
    }

    public func subtask(id: String) async throws -> SubtaskRecord? {
        try await self.engine.withConnection { database in
            try await database.raw("SELECT * FROM subtasks WHERE id = \(bind: id)").first().map(Self.subtask(from:))
        }
    }

    /// A host's latest parts of tasks, newest first, each with its task's command.
    public func recentSubtasks(agentSN: String, limit: Int) async throws -> [(subtask: SubtaskRecord, command: String)] {
        try await self.engine.withConnection { database in
            try await database.raw(
                """
                SELECT subtasks.*, tasks.command AS task_command FROM subtasks JOIN tasks ON tasks.id = subtasks.taskid
                WHERE subtasks.agentsn = \(bind: agentSN) ORDER BY subtasks.gmt_modify DESC, subtasks.taskid DESC LIMIT \(bind: limit)
                """
            ).all().map { row in (try Self.subtask(from: row), try row.decode(column: "task_command", as: String.self)) }
        }
    }

    public func subtasks(taskID: Int) async throws -> [SubtaskRecord] {
        try await self.engine.withConnection { database in
            try await database.raw("SELECT * FROM subtasks WHERE taskid = \(bind: taskID) ORDER BY agentsn").all()
                .map(Self.subtask(from:))
        }
    }

    /// Tasks, newest first.
    public func tasks(page: Page = Page(ascending: false)) async throws -> Listing<TaskRecord> {
        try await self.engine.withConnection { database in
            let count = try await database.raw("SELECT COUNT(*) AS n FROM tasks").first()?.decode(column: "n", as: Int.self) ?? 0
            let order: SQLQueryString = page.ascending ? "ASC" : "DESC"
            let rows = try await database.raw(
                "SELECT * FROM tasks ORDER BY id \(order) LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)"
            ).all()
            return Listing(count: count, items: try rows.map(Self.task(from:)))
        }
    }

    /// Open tag tasks whose window contains `now` (matched against hosts that connect).
    public func openTagTasks(at now: Int64) async throws -> [TaskRecord] {
        try await self.engine.withConnection { database in
            try await database.raw(
                """
                SELECT * FROM tasks WHERE selector <> '' AND status IN (\(bind: TaskStatus.pending.rawValue), \(bind: TaskStatus.running.rawValue))
                  AND window_start <= \(bind: now) AND (window_end = 0 OR window_end > \(bind: now))
                ORDER BY id
                """
            ).all().map(Self.task(from:))
        }
    }

    /// Tag tasks whose window has closed are finished with what they have.
    public func closeTagTasks(endedBefore now: Int64) async throws {
        try await self.engine.withConnection { database in
            try await database.raw(
                """
                UPDATE tasks SET status = CASE WHEN failed > 0 THEN \(bind: TaskStatus.failed.rawValue) ELSE \(bind: TaskStatus.done.rawValue) END,
                    gmt_modify = \(bind: now)
                WHERE selector <> '' AND window_end > 0 AND window_end <= \(bind: now) AND complete >= count
                  AND status IN (\(bind: TaskStatus.pending.rawValue), \(bind: TaskStatus.running.rawValue))
                """
            ).run()
        }
    }

    // MARK: Rows

    static func insertSubtask(taskID: Int, agentSN: String, now: Int64, on database: any SQLDatabase) async throws -> SubtaskRecord {
        try await self.insertSubtasks(taskID: taskID, agentSNs: [agentSN], now: now, on: database)[0]
    }

    /// Inserts one subtask per host, a few hundred rows a statement: due now, or, for the hosts
    /// in `dispatched`, stored as sent and due again at `due`. Ids given (a command's own) must be
    /// new: a command id runs once, so one that exists is a conflict.
    static func insertSubtasks(
        taskID: Int, agentSNs: [String], ids: [String]? = nil, dispatched: Set<String> = [], due: Int64 = 0, now: Int64,
        on database: any SQLDatabase
    ) async throws -> [SubtaskRecord] {
        let subtasks = agentSNs.enumerated().map { index, agentSN in
            SubtaskRecord(
                id: ids?[index] ?? UUID.random().uuidString.lowercased(), taskID: taskID, agentSN: agentSN,
                status: dispatched.contains(agentSN) ? .dispatched : .pending, resp: 0, retcode: 0,
                message: "", data: [], stderr: [], truncated: false, started: 0, finished: 0, created: now, modified: now
            )
        }
        for chunk in subtasks.chunks(of: 500) {
            let subtaskRows: [SQLQueryString] = chunk.map {
                let dueAt = $0.status == .dispatched ? due : now
                return "(\(bind: $0.id), \(bind: taskID), \(bind: $0.agentSN), \(bind: $0.status.rawValue), \(bind: dueAt), \(bind: now), \(bind: now))"
            }
            let insert: SQLQueryString =
                "INSERT INTO subtasks (id, taskid, agentsn, status, due, gmt_create, gmt_modify) VALUES \(subtaskRows.joined(separator: ", "))"
            guard ids != nil else {
                try await database.raw(insert).run()
                continue
            }
            let stored = Set(
                try await database.raw("\(insert) ON CONFLICT (id) DO NOTHING RETURNING id").all().map { try $0.decode(column: "id", as: String.self) }
            )
            if let taken = chunk.first(where: { !stored.contains($0.id) }) {
                throw AspireError(.conflict, "command \(taken.id) exists already: a command id runs once")
            }
        }
        return subtasks
    }

    /// Counts finished subtasks into their task and settles its status when all are in.
    static func countFinished(taskID: Int, failed: Int, finished: Int, now: Int64, on database: any SQLDatabase) async throws -> TaskRecord? {
        try await database.raw(
            """
            UPDATE tasks SET complete = complete + \(bind: finished), failed = failed + \(bind: failed), gmt_modify = \(bind: now),
                status = CASE
                    WHEN status IN (\(bind: TaskStatus.done.rawValue), \(bind: TaskStatus.failed.rawValue), \(bind: TaskStatus.cancelled.rawValue)) THEN status
                    WHEN selector = '' AND complete + \(bind: finished) >= count THEN
                        CASE WHEN failed + \(bind: failed) > 0 THEN \(bind: TaskStatus.failed.rawValue) ELSE \(bind: TaskStatus.done.rawValue) END
                    ELSE \(bind: TaskStatus.running.rawValue) END
            WHERE id = \(bind: taskID)
            RETURNING *
            """
        ).first().map(Self.task(from:))
    }

    static func task(id: Int, on database: any SQLDatabase) async throws -> TaskRecord? {
        try await database.raw("SELECT * FROM tasks WHERE id = \(bind: id)").first().map(Self.task(from:))
    }

    static func task(from row: any SQLRow) throws -> TaskRecord {
        let selector = try row.decode(column: "selector", as: String.self)
        return TaskRecord(
            id: try row.decode(column: "id", as: Int.self),
            status: TaskStatus(rawValue: try row.decode(column: "status", as: Int.self)) ?? .pending,
            user: try row.decode(column: "user", as: String.self),
            command: try row.decode(column: "command", as: String.self),
            body: try row.decode(column: "body", as: String.self),
            typed: try row.decode(column: "command_pb", as: Data?.self).flatMap { try? Aspire_V1_Command(serializedBytes: $0) },
            selector: selector.isEmpty ? [:] : (try? JSONDecoder().decode([String: String].self, from: Data(selector.utf8))) ?? [:],
            windowStart: try row.decode(column: "window_start", as: Int64.self),
            windowEnd: try row.decode(column: "window_end", as: Int64.self),
            maxConcurrency: try row.decode(column: "max_concurrency", as: String.self),
            maxErrors: try row.decode(column: "max_errors", as: String.self),
            count: try row.decode(column: "count", as: Int.self),
            complete: try row.decode(column: "complete", as: Int.self),
            failed: try row.decode(column: "failed", as: Int.self),
            created: try row.decode(column: "gmt_create", as: Int64.self),
            modified: try row.decode(column: "gmt_modify", as: Int64.self)
        )
    }

    static func subtask(from row: any SQLRow) throws -> SubtaskRecord {
        SubtaskRecord(
            id: try row.decode(column: "id", as: String.self),
            taskID: try row.decode(column: "taskid", as: Int.self),
            agentSN: try row.decode(column: "agentsn", as: String.self),
            status: SubtaskStatus(rawValue: try row.decode(column: "status", as: Int.self)) ?? .pending,
            resp: try row.decode(column: "resp", as: Int.self),
            retcode: try row.decode(column: "retcode", as: Int.self),
            message: try row.decode(column: "message", as: String.self),
            data: Array(try row.decode(column: "data", as: Data?.self) ?? Data()),
            stderr: Array(try row.decode(column: "stderr", as: Data?.self) ?? Data()),
            truncated: try row.decode(column: "truncated", as: Int.self) != 0,
            started: try row.decode(column: "started", as: Int64.self),
            finished: try row.decode(column: "finished", as: Int64.self),
            created: try row.decode(column: "gmt_create", as: Int64.self),
            modified: try row.decode(column: "gmt_modify", as: Int64.self)
        )
    }

    static func encodeSelector(_ selector: [String: String]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(selector), as: UTF8.self)
    }
}
