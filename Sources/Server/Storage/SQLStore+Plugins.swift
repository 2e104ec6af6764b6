import Foundation
public import RPC
import SQLKit
import SwiftProtobuf

/// A plugin as the server keeps it: what agents fetch and run, and which agents.
public struct PluginRecord: Sendable, Hashable {
    public var plugin: Aspire_V1_Plugin
    /// Targets: these AgentSNs, and the hosts carrying every one of `selector`'s tags.
    public var agents: [String] = []
    public var selector: [String: String] = [:]
    public var created: Int64 = 0
    public var modified: Int64 = 0

    public init(plugin: Aspire_V1_Plugin, agents: [String] = [], selector: [String: String] = [:]) {
        self.plugin = plugin
        self.agents = agents
        self.selector = selector
    }

    public var name: String { self.plugin.name }

    public func targets(agentSN: String, tags: [String: String]) -> Bool {
        HostTargets.match(agents: self.agents, selector: self.selector, agentSN: agentSN, tags: tags)
    }
}

/// How schedules and plugins name their hosts.
enum HostTargets {
    /// Named by AgentSN, or carrying every tag of a non-empty selector.
    static func match(agents: [String], selector: [String: String], agentSN: String, tags: [String: String]) -> Bool {
        if agents.contains(agentSN) { return true }
        return !selector.isEmpty && selector.allSatisfy { tags[$0.key] == $0.value }
    }
}

/// The latest value of one metric of one host (per tag set).
public struct MetricRecord: Sendable, Hashable {
    public var agentSN: String
    public var name: String
    public var tags: [String: String]
    public var value: Double
    /// Set for a value that is not a number (then `value` is 0).
    public var text: String = ""
    /// Unix seconds, as the agent stamped it.
    public var timestamp: Int64
    /// Unix milliseconds, when the server stored it.
    public var received: Int64 = 0

    public init(agentSN: String, name: String, tags: [String: String], value: Double, text: String = "", timestamp: Int64, received: Int64 = 0) {
        self.agentSN = agentSN
        self.name = name
        self.tags = tags
        self.value = value
        self.text = text
        self.timestamp = timestamp
        self.received = received
    }
}

extension SQLStore {
    /// Stores a plugin; one of the same name is replaced when `replace`, refused (409) otherwise.
    public func createPlugin(_ plugin: PluginRecord, replace: Bool) async throws -> PluginRecord {
        let now = Self.now
        let definition = try plugin.plugin.jsonString()
        let agents = try Self.encodeJSON(plugin.agents)
        let selector = try Self.encodeJSON(plugin.selector)
        return try await self.transaction { database in
            var record = plugin
            record.created = now
            record.modified = now
            if let existing = try await database.raw("SELECT gmt_create, gmt_modify FROM plugins WHERE name = \(bind: plugin.name)").first() {
                guard replace else { throw AspireError(.conflict, "plugin '\(plugin.name)' already exists (replace it, or delete it first)") }
                record.created = try existing.decode(column: "gmt_create", as: Int64.self)
                // Only forward: revisions are told apart by it.
                record.modified = max(now, try existing.decode(column: "gmt_modify", as: Int64.self) + 1)
                try await database.raw(
                    """
                    UPDATE plugins SET definition = \(bind: definition), agents = \(bind: agents), selector = \(bind: selector),
                        gmt_modify = \(bind: record.modified)
                    WHERE name = \(bind: plugin.name)
                    """
                ).run()
            } else {
                guard try await database.raw(
                    """
                    INSERT INTO plugins (name, definition, agents, selector, gmt_create, gmt_modify)
                    VALUES (\(bind: plugin.name), \(bind: definition), \(bind: agents), \(bind: selector), \(bind: now), \(bind: now))
                    ON CONFLICT (name) DO NOTHING RETURNING id
                    """
                ).first() != nil else {
                    throw AspireError(.conflict, "plugin '\(plugin.name)' already exists")
                }
            }
            return record
        }
    }

    /// One plugin by name, or every plugin, by name.
    public func plugins(name: String? = nil) async throws -> [PluginRecord] {
        try await self.engine.withConnection { database in
            let filter: SQLQueryString = name.map { "WHERE name = \(bind: $0)" } ?? ""
            return try await database.raw("SELECT * FROM plugins \(filter) ORDER BY name").all().map(Self.plugin(from:))
        }
    }

    /// Deletes a plugin; nil when there is none of that name.
    public func deletePlugin(name: String) async throws -> PluginRecord? {
        try await self.transaction { database in
            guard let row = try await database.raw("SELECT * FROM plugins WHERE name = \(bind: name)").first() else { return nil }
            try await database.raw("DELETE FROM plugins WHERE name = \(bind: name)").run()
            return try Self.plugin(from: row)
        }
    }

    /// Changes whenever a plugin is created, changed or deleted, on any node.
    public func pluginRevision() async throws -> String {
        try await self.revision(of: "plugins")
    }

    static func plugin(from row: any SQLRow) throws -> PluginRecord {
        var record = PluginRecord(
            plugin: try Aspire_V1_Plugin(jsonString: try row.decode(column: "definition", as: String.self)),
            agents: Self.jsonColumn(row, "agents", default: []),
            selector: Self.jsonColumn(row, "selector", default: [:])
        )
        record.created = try row.decode(column: "gmt_create", as: Int64.self)
        record.modified = try row.decode(column: "gmt_modify", as: Int64.self)
        return record
    }

    // MARK: Metrics

    /// Keeps the latest value of each metric: a point older than the stored one changes
    /// nothing. Answers how many rows were written.
    @discardableResult
    public func storeMetrics(_ metrics: [MetricRecord]) async throws -> Int {
        let now = Self.now
        // One row per key in a statement (PostgreSQL refuses to update a row twice in one).
        var latest: [String: (MetricRecord, String)] = [:]
        for metric in metrics {
            let tags = try Self.encodeJSON(metric.tags)
            let key = "\(metric.agentSN)\u{0}\(metric.name)\u{0}\(tags)"
            if let kept = latest[key], kept.0.timestamp > metric.timestamp { continue }
            latest[key] = (metric, tags)
        }
        guard !latest.isEmpty else { return 0 }
        var written = 0
        for chunk in Array(latest.values).chunks(of: 1000) {
            let rows: [SQLQueryString] = chunk.map { metric, tags in
                "(\(bind: metric.agentSN), \(bind: metric.name), \(bind: tags), \(bind: metric.value), \(bind: metric.text), \(bind: metric.timestamp), \(bind: now))"
            }
            written += try await self.engine.withConnection { database in
                try await database.raw(
                    """
                    INSERT INTO metrics (agentsn, name, tags, value, text, ts, gmt_receive) VALUES \(rows.joined(separator: ", "))
                    ON CONFLICT (agentsn, name, tags) DO UPDATE SET value = excluded.value, text = excluded.text, ts = excluded.ts,
                        gmt_receive = excluded.gmt_receive
                    WHERE excluded.ts >= metrics.ts
                    RETURNING agentsn
                    """
                ).all().count
            }
        }
        return written
    }

    /// Latest metric values by host and name; `receivedSince` (Unix ms) leaves out what no
    /// agent has sent since.
    public func metrics(agentSN: String? = nil, prefix: String? = nil, receivedSince: Int64? = nil, page: Page = Page(limit: 1000)) async throws -> Listing<MetricRecord> {
        var conditions: [SQLQueryString] = []
        if let agentSN { conditions.append("agentsn = \(bind: agentSN)") }
        if let prefix, !prefix.isEmpty {
            // Not LIKE (a '_' or '%' in the prefix would widen it), nor a range (collations differ).
            conditions.append("SUBSTR(name, 1, CAST(\(bind: prefix.unicodeScalars.count) AS INTEGER)) = \(bind: prefix)")
        }
        if let receivedSince { conditions.append("gmt_receive >= \(bind: receivedSince)") }
        let filter = Self.whereClause(conditions)
        return try await self.engine.withConnection { database in
            let count = try await database.raw("SELECT COUNT(*) AS n FROM metrics \(filter)").first()?.decode(column: "n", as: Int.self) ?? 0
            let rows = try await database.raw(
                "SELECT * FROM metrics \(filter) ORDER BY name, agentsn, tags LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)"
            ).all()
            let metrics = try rows.map { row in
                MetricRecord(
                    agentSN: try row.decode(column: "agentsn", as: String.self),
                    name: try row.decode(column: "name", as: String.self),
                    tags: Self.jsonColumn(row, "tags", default: [:]),
                    value: try row.decode(column: "value", as: Double.self),
                    text: try row.decode(column: "text", as: String.self),
                    timestamp: try row.decode(column: "ts", as: Int64.self),
                    received: try row.decode(column: "gmt_receive", as: Int64.self)
                )
            }
            return Listing(count: count, items: metrics)
        }
    }
}
