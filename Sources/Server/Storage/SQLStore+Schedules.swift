import Foundation
public import RPC
import SQLKit

/// A scheduled command as the server keeps it: what agents run, and which agents.
public struct ScheduleRecord: Sendable, Hashable {
    public var id: Int = 0
    public var name: String
    public var expression: String
    /// IANA zone name; empty is each host's own.
    public var timeZone: String = ""
    public var user: String
    public var group: String = ""
    public var command: String
    /// Seconds; 0 is the bash default.
    public var timeout: Int = 0
    /// Targets: these AgentSNs, and the hosts carrying every one of `selector`'s tags.
    public var agents: [String] = []
    public var selector: [String: String] = [:]
    public var enabled = true
    public var created: Int64 = 0
    public var modified: Int64 = 0

    public init(
        name: String, expression: String, timeZone: String = "", user: String, group: String = "", command: String, timeout: Int = 0,
        agents: [String] = [], selector: [String: String] = [:], enabled: Bool = true
    ) {
        self.name = name
        self.expression = expression
        self.timeZone = timeZone
        self.user = user
        self.group = group
        self.command = command
        self.timeout = timeout
        self.agents = agents
        self.selector = selector
        self.enabled = enabled
    }

    /// True when the schedule is for this host: named by AgentSN, or carrying every tag.
    public func targets(agentSN: String, tags: [String: String]) -> Bool {
        HostTargets.match(agents: self.agents, selector: self.selector, agentSN: agentSN, tags: tags)
    }
}

/// One run an agent reported: the result of `schedule:<name>:<unix seconds>`.
public struct ScheduleRunRecord: Sendable {
    public var name: String
    public var agentSN: String
    public var due: Int64
    public var result: Aspire_V1_CommandResult
}

extension SQLStore {
    /// Stores a schedule; one of the same name is replaced when `replace`, refused (409) otherwise.
    public func createSchedule(_ schedule: ScheduleRecord, replace: Bool) async throws -> ScheduleRecord {
        try await self.createSchedules([schedule], replace: replace)[0]
    }

    /// Stores schedules in one transaction: all of them, or none when a name is taken (and
    /// `replace` is off).
    public func createSchedules(_ schedules: [ScheduleRecord], replace: Bool) async throws -> [ScheduleRecord] {
        let now = Self.now
        return try await self.transaction { database in
            var stored: [ScheduleRecord] = []
            for schedule in schedules {
                let agents = try Self.encodeJSON(schedule.agents)
                let selector = try Self.encodeJSON(schedule.selector)
                let existing = try await database.raw("SELECT id, gmt_create, gmt_modify FROM schedules WHERE name = \(bind: schedule.name)").first()
                var record = schedule
                record.modified = now
                if let existing {
                    guard replace else { throw AspireError(.conflict, "schedule '\(schedule.name)' already exists (replace it, or delete it first)") }
                    // The modification time only moves forward: revisions are told apart by it.
                    record.modified = max(now, try existing.decode(column: "gmt_modify", as: Int64.self) + 1)
                    record.created = try existing.decode(column: "gmt_create", as: Int64.self)
                    record.id = try existing.decode(column: "id", as: Int.self)
                    try await database.raw(
                        """
                        UPDATE schedules SET expr = \(bind: record.expression), tz = \(bind: record.timeZone), "user" = \(bind: record.user),
                            "group" = \(bind: record.group), command = \(bind: record.command), timeout = \(bind: record.timeout),
                            agents = \(bind: agents), selector = \(bind: selector), enabled = \(bind: record.enabled ? 1 : 0),
                            gmt_modify = \(bind: record.modified)
                        WHERE id = \(bind: record.id)
                        """
                    ).run()
                } else {
                    record.created = now
                    guard let row = try await database.raw(
                        """
                        INSERT INTO schedules (name, expr, tz, "user", "group", command, timeout, agents, selector, enabled, gmt_create, gmt_modify)
                        VALUES (\(bind: record.name), \(bind: record.expression), \(bind: record.timeZone), \(bind: record.user),
                                \(bind: record.group), \(bind: record.command), \(bind: record.timeout), \(bind: agents), \(bind: selector),
                                \(bind: record.enabled ? 1 : 0), \(bind: now), \(bind: now))
                        ON CONFLICT (name) DO NOTHING RETURNING id
                        """
                    ).first() else {
                        throw AspireError(.conflict, "schedule '\(schedule.name)' already exists")
                    }
                    record.id = try row.decode(column: "id", as: Int.self)
                }
                stored.append(record)
            }
            return stored
        }
    }

    /// One schedule by name, or every schedule, by name.
    public func schedules(name: String? = nil) async throws -> [ScheduleRecord] {
        try await self.engine.withConnection { database in
            let filter: SQLQueryString = name.map { "WHERE name = \(bind: $0)" } ?? ""
            return try await database.raw("SELECT * FROM schedules \(filter) ORDER BY name").all().map(Self.schedule(from:))
        }
    }

    /// Deletes a schedule; nil when there is none of that name.
    public func deleteSchedule(name: String) async throws -> ScheduleRecord? {
        try await self.transaction { database in
            guard let row = try await database.raw("SELECT * FROM schedules WHERE name = \(bind: name)").first() else { return nil }
            try await database.raw("DELETE FROM schedules WHERE name = \(bind: name)").run()
            return try Self.schedule(from: row)
        }
    }

    /// Enables or disables a schedule; nil when there is none of that name.
    public func setScheduleEnabled(name: String, _ enabled: Bool) async throws -> ScheduleRecord? {
        let now = Self.now
        return try await self.engine.withConnection { database in
            try await database.raw(
                """
                UPDATE schedules SET enabled = \(bind: enabled ? 1 : 0),
                    gmt_modify = CASE WHEN gmt_modify < \(bind: now) THEN \(bind: now) ELSE gmt_modify + 1 END
                WHERE name = \(bind: name) RETURNING *
                """
            ).first().map(Self.schedule(from:))
        }
    }

    /// Changes whenever a schedule is created, changed or deleted (on any node).
    public func scheduleRevision() async throws -> String {
        try await self.revision(of: "schedules")
    }

    /// What agents' sets are made of, at one revision, in one query: schedules, plugins,
    /// deployments, packages (a deployment's store build) and the tags counter (tags decide which
    /// hosts a set targets). The distributor reads it every sweep on every node.
    public func distributionRevision() async throws -> String {
        try await self.engine.withConnection { database in
            let parts = ["schedules", "plugins", "deployments", "agents"].map { table in
                "(SELECT CAST(COUNT(*) AS BIGINT) FROM \(table)) AS \(table)_n, (SELECT CAST(COALESCE(SUM(gmt_modify), 0) AS BIGINT) FROM \(table)) AS \(table)_sum"
            }
            let sql = "SELECT \(parts.joined(separator: ", ")), (SELECT value FROM revisions WHERE name = 'tags') AS tags"
            guard let row = try await database.raw(SQLQueryString(sql)).first() else { return "" }
            var revision = ""
            for table in ["schedules", "plugins", "deployments", "agents"] {
                revision += "\(try row.decode(column: "\(table)_n", as: Int64.self)):\(try row.decode(column: "\(table)_sum", as: Int64.self))/"
            }
            return revision + "\(try row.decode(column: "tags", as: Int64?.self) ?? 0)"
        }
    }

    /// A table's revision: the count of its rows and the sum of their modification times, which
    /// only move forward — so it changes with every insert, update and delete, on any node.
    func revision(of table: String) async throws -> String {
        try await self.engine.withConnection { database in
            guard
                let row = try await database.raw(
                    "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(gmt_modify), 0) AS BIGINT) AS total FROM \(unsafeRaw: table)"
                ).first()
            else {
                return "0:0"
            }
            return "\(try row.decode(column: "n", as: Int64.self)):\(try row.decode(column: "total", as: Int64.self))"
        }
    }

    /// The tags of each host, by AgentSN (hosts without tags are absent).
    public func tags(ofAgents agentSNs: [String]) async throws -> [String: [String: String]] {
        try await self.engine.withConnection { database in
            var tags: [String: [String: String]] = [:]
            for chunk in agentSNs.chunks(of: 500) {
                let rows = try await database.raw(
                    """
                    SELECT h.agentsn, t.name, t.value FROM hosts h JOIN hosts_tags ht ON ht.hostid = h.id JOIN tags t ON t.id = ht.tagid
                    WHERE h.agentsn IN (\(binds: Array(chunk)))
                    """
                ).all()
                for row in rows {
                    tags[try row.decode(column: "agentsn", as: String.self), default: [:]][try row.decode(column: "name", as: String.self)] =
                        try row.decode(column: "value", as: String.self)
                }
            }
            return tags
        }
    }

    // MARK: Runs

    /// Stores the runs among `results` (``ScheduleRunID``s); a copy of a run
    /// already stored changes nothing. Answers how many were new.
    @discardableResult
    public func recordScheduleRuns(_ results: [AgentResult]) async throws -> Int {
        let now = Self.now
        let rows: [SQLQueryString] = results.compactMap { incoming in
            guard let run = ScheduleRunID(incoming.result.id) else { return nil }
            let result = incoming.result
            return """
                (\(bind: incoming.agentSN), \(bind: run.name), \(bind: run.due * 1000), \(bind: result.resp.rawValue), \(bind: Int(result.retcode)),
                 \(bind: result.message), \(bind: result.data), \(bind: result.stderr), \(bind: result.truncated ? 1 : 0),
                 \(bind: result.startedUnixMs), \(bind: result.finishedUnixMs), \(bind: now))
                """
        }
        guard !rows.isEmpty else { return 0 }
        return try await self.engine.withConnection { database in
            try await database.raw(
                """
                INSERT INTO schedule_runs (agentsn, name, due, resp, retcode, message, data, stderr, truncated, started, finished, gmt_create)
                VALUES \(rows.joined(separator: ", "))
                ON CONFLICT (agentsn, name, due) DO NOTHING RETURNING due
                """
            ).all().count
        }
    }

    /// Runs, newest first, of one schedule and/or one host.
    public func scheduleRuns(name: String? = nil, agentSN: String? = nil, page: Page = Page()) async throws -> Listing<ScheduleRunRecord> {
        var conditions: [SQLQueryString] = []
        if let name { conditions.append("name = \(bind: name)") }
        if let agentSN { conditions.append("agentsn = \(bind: agentSN)") }
        let filter = Self.whereClause(conditions)
        return try await self.engine.withConnection { database in
            let count = try await database.raw("SELECT COUNT(*) AS n FROM schedule_runs \(filter)").first()?.decode(column: "n", as: Int.self) ?? 0
            let rows = try await database.raw(
                "SELECT * FROM schedule_runs \(filter) ORDER BY due DESC, agentsn LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)"
            ).all()
            let runs = try rows.map { row in
                let name = try row.decode(column: "name", as: String.self)
                let due = try row.decode(column: "due", as: Int64.self)
                var result = Aspire_V1_CommandResult()
                result.id = ScheduleRunID(name: name, due: due / 1000).id
                result.resp = Aspire_V1_CommandResult.Resp(rawValue: try row.decode(column: "resp", as: Int.self)) ?? .failed
                result.retcode = Int32(try row.decode(column: "retcode", as: Int.self))
                result.message = try row.decode(column: "message", as: String.self)
                result.data = try row.decode(column: "data", as: Data?.self) ?? Data()
                result.stderr = try row.decode(column: "stderr", as: Data?.self) ?? Data()
                result.truncated = try row.decode(column: "truncated", as: Int.self) != 0
                result.startedUnixMs = try row.decode(column: "started", as: Int64.self)
                result.finishedUnixMs = try row.decode(column: "finished", as: Int64.self)
                return ScheduleRunRecord(name: name, agentSN: try row.decode(column: "agentsn", as: String.self), due: due, result: result)
            }
            return Listing(count: count, items: runs)
        }
    }

    // MARK: Rows

    static func schedule(from row: any SQLRow) throws -> ScheduleRecord {
        var record = ScheduleRecord(
            name: try row.decode(column: "name", as: String.self),
            expression: try row.decode(column: "expr", as: String.self),
            timeZone: try row.decode(column: "tz", as: String.self),
            user: try row.decode(column: "user", as: String.self),
            group: try row.decode(column: "group", as: String.self),
            command: try row.decode(column: "command", as: String.self),
            timeout: try row.decode(column: "timeout", as: Int.self),
            agents: Self.jsonColumn(row, "agents", default: []),
            selector: Self.jsonColumn(row, "selector", default: [:]),
            enabled: try row.decode(column: "enabled", as: Int.self) != 0
        )
        record.id = try row.decode(column: "id", as: Int.self)
        record.created = try row.decode(column: "gmt_create", as: Int64.self)
        record.modified = try row.decode(column: "gmt_modify", as: Int64.self)
        return record
    }

    /// A column holding JSON (a list of AgentSNs, a tag map); `default` when it cannot be read.
    static func jsonColumn<Value: Decodable>(_ row: any SQLRow, _ column: String, default value: Value) -> Value {
        (try? JSONDecoder().decode(Value.self, from: Data(try row.decode(column: column, as: String.self).utf8))) ?? value
    }

    static func encodeJSON(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
