import Crypto
import Foundation
public import RPC
import SQLKit

/// One row of the audit trail.
public struct AuditRecord: Sendable, Hashable {
    public var id: Int = 0
    /// Unix milliseconds.
    public var time: Int64
    /// The operator, or `host:<AgentSN>` for a host's own calls (enrollment, renewal).
    public var actor: String
    public var role: String = ""
    /// Where the call came from (the gRPC peer; the gateway's own for REST calls).
    public var address: String = ""
    public var node: String = ""
    /// The method (`CreateTask`, ...), or `dispatch` for a command sent to one host.
    public var method: String
    /// The targets as the call gave them (JSON: agents and tags, or a name).
    public var targets: String = ""
    /// The hosts they resolved to (JSON list), when known.
    public var resolved: String = ""
    /// SHA-256 of `command`.
    public var digest: String = ""
    /// The call's message (JSON), or the dispatched command.
    public var command: String = ""
    /// `ok`, or the error code and message.
    public var outcome: String = ""
    public var task: Int = 0
    public var subtask: String = ""

    public init(time: Int64, actor: String, method: String) {
        self.time = time
        self.actor = actor
        self.method = method
    }

    /// Sets the command text and its digest.
    public mutating func record(command text: String) {
        self.command = text
        self.digest = SHA256.hash(data: Data(text.utf8)).hexString
    }
}

/// Filters of the audit trail.
public struct AuditQuery: Sendable, Hashable {
    public var actor: String?
    /// Unix milliseconds.
    public var since: Int64?
    public var method: String?
    public var page = Page(offset: 0, limit: 100, ascending: false)

    public init() {}
}

extension SQLStore {
    /// Appends a row: the trail is never updated or deleted from.
    public func appendAudit(_ record: AuditRecord) async throws {
        try await self.engine.withConnection { database in
            try await database.raw(
                """
                INSERT INTO audit (ts, actor, role, address, node, method, targets, resolved, digest, command, outcome, task, subtask)
                VALUES (\(bind: record.time), \(bind: record.actor), \(bind: record.role), \(bind: record.address), \(bind: record.node),
                        \(bind: record.method), \(bind: record.targets), \(bind: record.resolved), \(bind: record.digest),
                        \(bind: record.command), \(bind: record.outcome), \(bind: record.task), \(bind: record.subtask))
                """
            ).run()
        }
    }

    /// Rows, newest first.
    public func audit(_ query: AuditQuery) async throws -> Listing<AuditRecord> {
        try await self.engine.withConnection { database in
            var conditions: [SQLQueryString] = []
            if let actor = query.actor { conditions.append("actor = \(bind: actor)") }
            if let since = query.since { conditions.append("ts >= \(bind: since)") }
            if let method = query.method { conditions.append("method = \(bind: method)") }
            let filter = Self.whereClause(conditions)
            let count = try await database.raw("SELECT COUNT(*) AS n FROM audit \(filter)").first()?.decode(column: "n", as: Int.self) ?? 0
            let order: SQLQueryString = query.page.ascending ? "ASC" : "DESC"
            let rows = try await database.raw(
                "SELECT * FROM audit \(filter) ORDER BY id \(order) LIMIT \(bind: query.page.limit) OFFSET \(bind: query.page.offset)"
            ).all()
            return Listing(count: count, items: try rows.map(Self.auditRecord(from:)))
        }
    }

    /// One row per subtask sent the first time, in the name of the task's creator (the unique
    /// index on `subtask` keeps a re-sent one from being recorded again). `tasks`: the subtasks'
    /// tasks when the caller has them at hand (a task being stored); read otherwise.
    static func auditDispatches(_ ids: [String], of tasks: [AuditedTask]? = nil, at now: Int64, in database: any SQLDatabase) async throws {
        let tasks = if let tasks { tasks } else { try await Self.auditedTasks(of: ids, in: database) }
        for task in tasks {
            var record = AuditRecord(time: now, actor: task.actor, method: "dispatch")
            record.record(command: task.command + " " + task.body)
            try await database.raw(
                """
                INSERT INTO audit (ts, actor, method, targets, resolved, digest, command, outcome, task, subtask)
                SELECT \(bind: now), \(bind: record.actor), 'dispatch', s.agentsn, s.agentsn, \(bind: record.digest), \(bind: record.command),
                       'sent', s.taskid, s.id
                FROM subtasks s WHERE s.id IN (\(binds: ids)) AND s.taskid = \(bind: task.id)
                ON CONFLICT DO NOTHING
                """
            ).run()
        }
    }

    /// What a dispatch's audit row names of its task.
    struct AuditedTask {
        var id: Int
        var actor: String
        var command: String
        var body: String
    }

    private static func auditedTasks(of ids: [String], in database: any SQLDatabase) async throws -> [AuditedTask] {
        try await database.raw(
            "SELECT DISTINCT t.id, t.actor, t.command, t.body FROM tasks t JOIN subtasks s ON s.taskid = t.id WHERE s.id IN (\(binds: ids))"
        ).all().map {
            AuditedTask(
                id: try $0.decode(column: "id", as: Int.self), actor: try $0.decode(column: "actor", as: String.self),
                command: try $0.decode(column: "command", as: String.self), body: try $0.decode(column: "body", as: String.self)
            )
        }
    }

    static func auditRecord(from row: any SQLRow) throws -> AuditRecord {
        var record = AuditRecord(
            time: try row.decode(column: "ts", as: Int64.self),
            actor: try row.decode(column: "actor", as: String.self),
            method: try row.decode(column: "method", as: String.self)
        )
        record.id = try row.decode(column: "id", as: Int.self)
        record.role = try row.decode(column: "role", as: String.self)
        record.address = try row.decode(column: "address", as: String.self)
        record.node = try row.decode(column: "node", as: String.self)
        record.targets = try row.decode(column: "targets", as: String.self)
        record.resolved = try row.decode(column: "resolved", as: String.self)
        record.digest = try row.decode(column: "digest", as: String.self)
        record.command = try row.decode(column: "command", as: String.self)
        record.outcome = try row.decode(column: "outcome", as: String.self)
        record.task = try row.decode(column: "task", as: Int.self)
        record.subtask = try row.decode(column: "subtask", as: String.self)
        return record
    }
}
