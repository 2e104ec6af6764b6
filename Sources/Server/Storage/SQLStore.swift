import Foundation
public import Logging
public import RPC
import SQLKit

/// The store of a server node: one set of SQLKit queries over SQLite or PostgreSQL.
public final class SQLStore: Sendable {
    public let engine: any SQLEngine
    let logger: Logger

    public init(engine: any SQLEngine, logger: Logger) {
        self.engine = engine
        self.logger = logger
    }

    /// Applies pending schema migrations (those up to `version`: a store as an older release
    /// left it, for the tests of the steps after).
    public func migrate(through version: Int = .max) async throws {
        try await Migrations.apply(on: self.engine, through: version, logger: self.logger)
    }

    /// Versions of the applied migrations.
    public func appliedMigrations() async throws -> [Int] {
        try await self.engine.withConnection { database in
            try await database.raw("SELECT version FROM schema_migrations ORDER BY version").all()
                .map { try $0.decode(column: "version", as: Int.self) }
        }
    }

    /// Runs `body` in one transaction on one connection.
    func transaction<Result: Sendable>(_ body: (any SQLDatabase) async throws -> Result) async throws -> Result {
        try await self.engine.withConnection { database in
            try await database.raw(self.engine.kind == .sqlite ? "BEGIN IMMEDIATE" : "BEGIN").run()
            do {
                let result = try await body(database)
                try await database.raw("COMMIT").run()
                return result
            } catch {
                try? await database.raw("ROLLBACK").run()
                throw error
            }
        }
    }

    static var now: Int64 { Date().unixMilliseconds }
}

// MARK: - Hosts

extension SQLStore {
    /// Records an agent that connected: creates its host or updates it (online, on `node`;
    /// the previous version kept as prevers when the version changed). Nothing is read back:
    /// a connecting agent needs no record of itself (one store round trip less per connect).
    public func registerHost(_ registration: HostRegistration) async throws {
        let now = Self.now
        try await self.engine.withConnection { database in
            try await database.raw(
                """
                INSERT INTO hosts (agentsn, hostname, ipaddr, status, curvers, os, arch, node, stream, missing_tools, last_seen, gmt_create, gmt_modify)
                VALUES (\(bind: registration.agentSN), \(bind: registration.hostname), \(bind: registration.ipaddr),
                        \(bind: HostStatus.online.rawValue), \(bind: registration.version), \(bind: registration.os),
                        \(bind: registration.arch), \(bind: registration.node), \(bind: registration.stream),
                        \(bind: registration.missingTools.joined(separator: "\n")), \(bind: now), \(bind: now), \(bind: now))
                ON CONFLICT (agentsn) DO UPDATE SET
                    hostname = excluded.hostname,
                    ipaddr = excluded.ipaddr,
                    status = excluded.status,
                    prevers = CASE WHEN hosts.curvers <> excluded.curvers AND hosts.curvers <> '' THEN hosts.curvers ELSE hosts.prevers END,
                    curvers = excluded.curvers,
                    os = excluded.os,
                    arch = excluded.arch,
                    node = excluded.node,
                    stream = excluded.stream,
                    missing_tools = excluded.missing_tools,
                    last_seen = excluded.last_seen,
                    gmt_modify = excluded.gmt_modify
                """
            ).run()
        }
    }

    /// Marks a host offline if `stream` still holds it: a stream that ends after the agent
    /// came back (on this node or another) changes nothing. False when it did not.
    @discardableResult
    public func releaseHost(agentSN: String, stream: Int64) async throws -> Bool {
        let now = Self.now
        return try await self.engine.withConnection { database in
            try await database.raw(
                """
                UPDATE hosts SET status = \(bind: HostStatus.offline.rawValue), gmt_modify = \(bind: now)
                WHERE agentsn = \(bind: agentSN) AND stream = \(bind: stream) AND status = \(bind: HostStatus.online.rawValue)
                RETURNING id
                """
            ).first() != nil
        }
    }

    /// Marks every host held by `node` offline (a node starting again holds none yet).
    public func releaseHosts(of node: String) async throws {
        let now = Self.now
        try await self.engine.withConnection { database in
            try await database.raw(
                """
                UPDATE hosts SET status = \(bind: HostStatus.offline.rawValue), gmt_modify = \(bind: now)
                WHERE node = \(bind: node) AND status = \(bind: HostStatus.online.rawValue)
                """
            ).run()
        }
    }

    /// Hosts of `node` not seen for three of their `step`s go offline; returns how many.
    @discardableResult
    public func expireSilentHosts(of node: String, now: Int64) async throws -> Int {
        try await self.engine.withConnection { database in
            try await database.raw(
                """
                UPDATE hosts SET status = \(bind: HostStatus.offline.rawValue), gmt_modify = \(bind: now)
                WHERE node = \(bind: node) AND status = \(bind: HostStatus.online.rawValue)
                  AND last_seen + 3000 * step < \(bind: now)
                RETURNING id
                """
            ).all().count
        }
    }

    public func host(agentSN: String) async throws -> HostRecord? {
        try await self.engine.withConnection { database in
            let query: SQLQueryString = "SELECT \(unsafeRaw: Self.hostColumns) FROM \(unsafeRaw: Self.hostTables) WHERE hosts.agentsn = \(bind: agentSN)"
            guard let row = try await database.raw(query).first() else {
                return nil
            }
            var host = try Self.host(from: row)
            host.tags = try await Self.tags(ofHostIDs: [host.id], on: database)[host.id] ?? []
            return host
        }
    }

    /// The host, or NOT_FOUND naming it.
    func requireHost(_ agentSN: String) async throws -> HostRecord {
        guard let host = try await self.host(agentSN: agentSN) else { throw AspireError(.notFound, "no host with AgentSN \(agentSN)") }
        return host
    }

    public func hosts(_ query: HostQuery) async throws -> Listing<HostRecord> {
        try await self.engine.withConnection { database in
            var conditions: [SQLQueryString] = []
            if let status = query.status { conditions.append("status = \(bind: status.rawValue)") }
            if let region = query.region { conditions.append("region = \(bind: region)") }
            if let node = query.node { conditions.append("node = \(bind: node)") }
            if let prefix = query.hostnamePrefix, !prefix.isEmpty {
                conditions.append("substr(hostname, 1, CAST(\(bind: prefix.count) AS INTEGER)) = \(bind: prefix)")
            }
            for (name, value) in query.tags.sorted(by: { $0.key < $1.key }) {
                conditions.append(
                    """
                    id IN (SELECT ht.hostid FROM hosts_tags ht JOIN tags t ON t.id = ht.tagid
                           WHERE t.name = \(bind: name) AND t.value = \(bind: value))
                    """
                )
            }
            let filter = Self.whereClause(conditions)
            let counting: SQLQueryString = "SELECT COUNT(*) AS n FROM hosts \(filter)"
            let order: SQLQueryString = query.page.ascending ? "ASC" : "DESC"
            // The count rides along with the page (a subquery that does not depend on the row:
            // SQLite and PostgreSQL both run it once); only a page with no rows asks for it apart.
            let rows = try await database.raw(
                """
                SELECT \(unsafeRaw: Self.hostColumns), (\(counting)) AS listing_count FROM \(unsafeRaw: Self.hostTables) \(filter)
                ORDER BY id \(order) LIMIT \(bind: query.page.limit) OFFSET \(bind: query.page.offset)
                """
            ).all()
            let count =
                if let first = rows.first {
                    try first.decode(column: "listing_count", as: Int.self)
                } else {
                    try await database.raw(counting).first()?.decode(column: "n", as: Int.self) ?? 0
                }
            var hosts = try rows.map(Self.host(from:))
            // One query for the tags of the whole page, not one per host.
            let tags = try await Self.tags(ofHostIDs: hosts.map(\.id), on: database)
            for index in hosts.indices {
                hosts[index].tags = tags[hosts[index].id] ?? []
            }
            return Listing(count: count, items: hosts)
        }
    }

    /// Counts of hosts by status (the dashboard).
    public func hostCounts() async throws -> [HostStatus: Int] {
        try await self.engine.withConnection { database in
            var counts: [HostStatus: Int] = [:]
            for row in try await database.raw("SELECT status, COUNT(*) AS n FROM hosts GROUP BY status").all() {
                if let status = HostStatus(rawValue: try row.decode(column: "status", as: Int.self)) {
                    counts[status] = try row.decode(column: "n", as: Int.self)
                }
            }
            return counts
        }
    }

    /// How often the host counts are kept, and for how long.
    public static let hostCountStep: Int64 = 5 * 60_000
    public static let hostCountKeep: Int64 = 8 * 86_400_000

    /// Keeps the host counts of the step `now` falls in, unless a node already did; drops those
    /// older than ``hostCountKeep``.
    public func recordHostCounts(now: Int64) async throws {
        let counts = try await self.hostCounts()
        let bucket = now - now % Self.hostCountStep
        let total = counts.values.reduce(0, +)
        let online = counts[.online] ?? 0
        try await self.engine.withConnection { database in
            try await database.raw(
                "INSERT INTO host_counts (bucket, total, online) VALUES (\(bind: bucket), \(bind: total), \(bind: online)) ON CONFLICT (bucket) DO NOTHING"
            ).run()
            try await database.raw("DELETE FROM host_counts WHERE bucket < \(bind: bucket - Self.hostCountKeep)").run()
        }
    }

    /// The host counts kept since `since`, oldest first.
    public func hostCountHistory(since: Int64) async throws -> [(time: Int64, total: Int, online: Int)] {
        try await self.engine.withConnection { database in
            try await database.raw("SELECT bucket, total, online FROM host_counts WHERE bucket >= \(bind: since) ORDER BY bucket").all().map { row in
                (
                    try row.decode(column: "bucket", as: Int64.self), try row.decode(column: "total", as: Int.self),
                    try row.decode(column: "online", as: Int.self)
                )
            }
        }
    }

    /// Hosts with what the store knows of their certificates: `SELECT hostColumns FROM hostTables`.
    static let hostColumns = "hosts.*, ai.serial AS cert_serial, ai.banned AS cert_banned, ai.not_after AS cert_not_after"
    static let hostTables = "hosts LEFT JOIN agent_identities ai ON ai.agentsn = hosts.agentsn"

    static func host(from row: any SQLRow) throws -> HostRecord {
        var host = HostRecord(
            id: try row.decode(column: "id", as: Int.self),
            agentSN: try row.decode(column: "agentsn", as: String.self),
            hostname: try row.decode(column: "hostname", as: String.self),
            ipaddr: try row.decode(column: "ipaddr", as: String.self),
            region: try row.decode(column: "region", as: Int.self),
            status: HostStatus(rawValue: try row.decode(column: "status", as: Int.self)) ?? .unknown,
            feature: try row.decode(column: "feature", as: Int.self),
            step: try row.decode(column: "step", as: Int.self),
            prevers: try row.decode(column: "prevers", as: String.self),
            curvers: try row.decode(column: "curvers", as: String.self),
            os: try row.decode(column: "os", as: String.self),
            arch: try row.decode(column: "arch", as: String.self),
            node: try row.decode(column: "node", as: String.self),
            lastSeen: try row.decode(column: "last_seen", as: Int64.self),
            created: try row.decode(column: "gmt_create", as: Int64.self),
            modified: try row.decode(column: "gmt_modify", as: Int64.self)
        )
        host.missingTools = (try? row.decode(column: "missing_tools", as: String.self)).map { $0.split(separator: "\n").map(String.init) } ?? []
        if (try? row.decode(column: "cert_banned", as: Int64?.self)).flatMap({ $0 }) ?? 0 != 0 {
            host.identity = .banned
        } else if let serial = (try? row.decode(column: "cert_serial", as: String?.self)).flatMap({ $0 }), !serial.isEmpty {
            host.identity = .enrolled
            host.certificateNotAfter = (try? row.decode(column: "cert_not_after", as: Int64?.self)).flatMap({ $0 }) ?? 0
        }
        return host
    }

    static func whereClause(_ conditions: [SQLQueryString]) -> SQLQueryString {
        guard var clause = conditions.first.map({ "WHERE " + $0 }) else { return "" }
        for condition in conditions.dropFirst() {
            clause = clause + " AND " + condition
        }
        return clause
    }
}

// MARK: - Tags and regions

extension SQLStore {
    /// Creates a tag; a tag with the same name and value is a conflict.
    public func createTag(name: String, value: String) async throws -> TagRecord {
        try Self.validateTag(name: name, value: value)
        let now = Self.now
        return try await self.engine.withConnection { database in
            let row = try await database.raw(
                """
                INSERT INTO tags (name, value, gmt_create, gmt_modify) VALUES (\(bind: name), \(bind: value), \(bind: now), \(bind: now))
                ON CONFLICT (name, value) DO NOTHING RETURNING id
                """
            ).first()
            guard let row else { throw AspireError(.conflict, "tag \(name)=\(value) already exists") }
            return TagRecord(id: try row.decode(column: "id", as: Int.self), name: name, value: value, created: now, modified: now)
        }
    }

    /// Every tag with the number of hosts bound to it.
    public func tags() async throws -> [TagRecord] {
        try await self.engine.withConnection { database in
            try await database.raw(
                """
                SELECT t.id, t.name, t.value, t.gmt_create, t.gmt_modify, COUNT(ht.hostid) AS hosts
                FROM tags t LEFT JOIN hosts_tags ht ON ht.tagid = t.id
                GROUP BY t.id, t.name, t.value, t.gmt_create, t.gmt_modify ORDER BY t.name, t.value
                """
            ).all().map { row in
                var tag = try Self.tag(from: row)
                tag.hosts = try row.decode(column: "hosts", as: Int.self)
                return tag
            }
        }
    }

    /// Deletes a tag and its bindings; false when there was none.
    @discardableResult
    public func deleteTag(id: Int) async throws -> Bool {
        try await self.transaction { database in
            let deleted = try await !database.raw("DELETE FROM tags WHERE id = \(bind: id) RETURNING id").all().isEmpty
            if deleted { try await Self.bump("tags", on: database) }
            return deleted
        }
    }

    /// Binds every `name=value` to a host (in name order), creating tags that do not exist yet.
    public func bindTags(_ tags: [String: String], to agentSN: String) async throws {
        guard tags.count <= Self.maxTagsPerHost else {
            throw AspireError(.unprocessable, "\(tags.count) tags for host \(agentSN): at most \(Self.maxTagsPerHost) per host")
        }
        // Every status report carries the agent's tags, bound long ago as a rule: one read of
        // what the host carries instead of a transaction of three statements per tag.
        let carried = tags.isEmpty ? [:] : try await self.tags(ofAgents: [agentSN])[agentSN] ?? [:]
        for (name, value) in tags.sorted(by: { $0.key < $1.key }) where carried[name] != value {
            try await self.bindTag(name: name, value: value, to: agentSN)
        }
    }

    /// Tags one host carries at most.
    public static let maxTagsPerHost = 64
    /// The longest event message kept (longer ones are cut, and say so).
    public static let maxEventBytes = 4096

    /// `text` cut to at most `bytes` UTF-8 bytes (on a character boundary), saying it was cut.
    static func bounded(_ text: String, bytes: Int) -> String {
        guard text.utf8.count > bytes else { return text }
        let marker = " …(cut)"
        var cut = Substring(text)
        while cut.utf8.count > bytes - marker.utf8.count { cut = cut.dropLast() }
        return cut + marker
    }

    /// Binds `name=value` to a host, creating the tag when it does not exist yet; a host carries
    /// at most ``maxTagsPerHost`` tags.
    public func bindTag(name: String, value: String, to agentSN: String) async throws {
        try Self.validateTag(name: name, value: value)
        let now = Self.now
        try await self.transaction { database in
            guard let host = try await database.raw("SELECT id FROM hosts WHERE agentsn = \(bind: agentSN)").first() else {
                throw AspireError(.notFound, "no host with AgentSN \(agentSN)")
            }
            let hostID = try host.decode(column: "id", as: Int.self)
            let carried = try await database.raw(
                """
                SELECT COUNT(*) AS n, SUM(CASE WHEN t.name = \(bind: name) AND t.value = \(bind: value) THEN 1 ELSE 0 END) AS bound
                FROM hosts_tags ht JOIN tags t ON t.id = ht.tagid WHERE ht.hostid = \(bind: hostID)
                """
            ).first()
            let count = try carried?.decode(column: "n", as: Int.self) ?? 0
            let bound = (try? carried?.decode(column: "bound", as: Int?.self)).flatMap { $0 } ?? 0
            guard bound > 0 || count < Self.maxTagsPerHost else {
                throw AspireError(.unprocessable, "host \(agentSN) carries \(Self.maxTagsPerHost) tags already (at most \(Self.maxTagsPerHost) per host)")
            }
            try await database.raw(
                """
                INSERT INTO tags (name, value, gmt_create, gmt_modify) VALUES (\(bind: name), \(bind: value), \(bind: now), \(bind: now))
                ON CONFLICT (name, value) DO NOTHING
                """
            ).run()
            let added = try await database.raw(
                """
                INSERT INTO hosts_tags (hostid, tagid)
                SELECT \(bind: hostID), id FROM tags WHERE name = \(bind: name) AND value = \(bind: value)
                ON CONFLICT (hostid, tagid) DO NOTHING RETURNING hostid
                """
            ).first()
            if added != nil { try await Self.bump("tags", on: database) }
        }
    }

    /// Unbinds `name=value` from a host; false when it was not bound.
    @discardableResult
    public func unbindTag(name: String, value: String, from agentSN: String) async throws -> Bool {
        try await self.transaction { database in
            let unbound = try await !database.raw(
                """
                DELETE FROM hosts_tags
                WHERE hostid = (SELECT id FROM hosts WHERE agentsn = \(bind: agentSN))
                  AND tagid = (SELECT id FROM tags WHERE name = \(bind: name) AND value = \(bind: value))
                RETURNING tagid
                """
            ).all().isEmpty
            if unbound { try await Self.bump("tags", on: database) }
            return unbound
        }
    }

    /// Moves a counter of the `revisions` table (in the caller's transaction).
    static func bump(_ counter: String, on database: any SQLDatabase) async throws {
        try await database.raw("UPDATE revisions SET value = value + 1 WHERE name = \(bind: counter)").run()
    }

    /// Changes whenever a tag is bound to a host or unbound, on any node.
    public func tagRevision() async throws -> Int64 {
        try await self.engine.withConnection { database in
            try await database.raw("SELECT value FROM revisions WHERE name = 'tags'").first()?.decode(column: "value", as: Int64.self) ?? 0
        }
    }

    /// AgentSNs of the hosts carrying every tag in `selector`.
    public func agentSNs(matching selector: [String: String]) async throws -> [String] {
        var query = HostQuery()
        query.tags = selector
        query.page = Page(offset: 0, limit: Int(Int32.max))
        return try await self.hosts(query).items.map(\.agentSN)
    }

    public func regions() async throws -> [RegionRecord] {
        try await self.engine.withConnection { database in
            try await database.raw("SELECT id, name FROM regions ORDER BY id").all().map {
                RegionRecord(id: try $0.decode(column: "id", as: Int.self), name: try $0.decode(column: "name", as: String.self))
            }
        }
    }

    /// Puts the host in `region` (0: global); false when no host has that AgentSN.
    @discardableResult
    public func setHostRegion(agentSN: String, region: Int) async throws -> Bool {
        let now = Self.now
        return try await self.engine.withConnection { database in
            try await database.raw(
                "UPDATE hosts SET region = \(bind: region), gmt_modify = \(bind: now) WHERE agentsn = \(bind: agentSN) RETURNING id"
            ).first() != nil
        }
    }

    public func createRegion(name: String) async throws -> RegionRecord {
        guard !name.isEmpty, name.count <= 64 else { throw AspireError(.badRequest, "a region name is 1 to 64 characters") }
        let now = Self.now
        return try await self.engine.withConnection { database in
            let row = try await database.raw(
                "INSERT INTO regions (name, gmt_create, gmt_modify) VALUES (\(bind: name), \(bind: now), \(bind: now)) ON CONFLICT (name) DO NOTHING RETURNING id"
            ).first()
            guard let row else { throw AspireError(.conflict, "region \(name) already exists") }
            return RegionRecord(id: try row.decode(column: "id", as: Int.self), name: name)
        }
    }

    /// The tags of each of `ids`, by host id, ordered by name and value.
    static func tags(ofHostIDs ids: [Int], on database: any SQLDatabase) async throws -> [Int: [TagRecord]] {
        var tags: [Int: [TagRecord]] = [:]
        for chunk in ids.chunks(of: 500) {
            let rows = try await database.raw(
                """
                SELECT ht.hostid, t.id, t.name, t.value, t.gmt_create, t.gmt_modify FROM tags t JOIN hosts_tags ht ON ht.tagid = t.id
                WHERE ht.hostid IN (\(binds: Array(chunk))) ORDER BY t.name, t.value
                """
            ).all()
            for row in rows {
                tags[try row.decode(column: "hostid", as: Int.self), default: []].append(try Self.tag(from: row))
            }
        }
        return tags
    }

    static func tag(from row: any SQLRow) throws -> TagRecord {
        TagRecord(
            id: try row.decode(column: "id", as: Int.self),
            name: try row.decode(column: "name", as: String.self),
            value: try row.decode(column: "value", as: String.self),
            created: try row.decode(column: "gmt_create", as: Int64.self),
            modified: try row.decode(column: "gmt_modify", as: Int64.self)
        )
    }

    static func validateTag(name: String, value: String) throws(AspireError) {
        // Counted as JSON Schema counts: by Unicode scalars, not by Swift's characters.
        guard !name.isEmpty, name.unicodeScalars.count <= 64, value.unicodeScalars.count <= 64 else {
            throw AspireError(.badRequest, "a tag name is 1 to 64 characters and its value at most 64")
        }
    }
}

// MARK: - Packages

extension SQLStore {
    /// Records a package version; the same name, os, arch and version twice is a conflict.
    public func addPackage(_ package: PackageRecord) async throws -> PackageRecord {
        let now = Self.now
        return try await self.engine.withConnection { database in
            let row = try await database.raw(
                """
                INSERT INTO agents (name, os, arch, version, file, path, sha256, size, gmt_create, gmt_modify)
                VALUES (\(bind: package.name), \(bind: package.os), \(bind: package.arch), \(bind: package.version),
                        \(bind: package.file), \(bind: package.path), \(bind: package.sha256), \(bind: package.size),
                        \(bind: now), \(bind: now))
                ON CONFLICT (name, os, arch, version) DO NOTHING RETURNING id
                """
            ).first()
            guard let row else {
                throw AspireError(
                    .conflict,
                    "package \(package.name) \(package.version) for \(package.os)/\(package.arch) already exists"
                )
            }
            var stored = package
            stored.id = try row.decode(column: "id", as: Int.self)
            stored.created = now
            stored.modified = now
            return stored
        }
    }

    /// The one package of the store a command or plugin names: by `name` and `version`, or by
    /// its `aspire://package/OS/ARCH/FILE` url. Errors say what to give instead.
    public func storedPackage(name: String, version: String, url: String, context: String) async throws -> PackageRecord {
        var query = PackageQuery()
        if url.isEmpty {
            guard !version.isEmpty else {
                throw AspireError(.badRequest, "\(context): give a version (of a package in the store) or a url")
            }
            query.name = name
            query.version = version
        } else {
            guard let named = StoreFile(url: url) else {
                throw AspireError(.badRequest, "\(context): url '\(url)' must be aspire://package/OS/ARCH/FILE")
            }
            (query.os, query.arch, query.file) = (named.os, named.arch, named.file)
        }
        query.page = Page(offset: 0, limit: 10)
        let found = try await self.packages(query).items
        guard let package = found.first else {
            // The request names something that is not there: its values are wrong (422).
            throw AspireError(
                .unprocessable,
                url.isEmpty
                    ? "no package \(name) \(version) in the store: upload it first (aspirectl deploy --file, POST /api/v1/server/package) or give a url"
                    : "no package \(url.dropFirst(StoreFile.urlPrefix.count)) in the store"
            )
        }
        guard found.count == 1 else {
            let builds = found.map { "\($0.os)/\($0.arch)" }.joined(separator: ", ")
            // What the store holds decides: well-formed, and still refused.
            throw AspireError(.unprocessable, "\(name) \(version) has several packages in the store (\(builds)); pick one with url aspire://package/OS/ARCH/FILE")
        }
        return package
    }

    public func packages(_ query: PackageQuery) async throws -> Listing<PackageRecord> {
        let sortable = ["id", "name", "version", "os", "arch", "gmt_create", "gmt_modify"]
        guard sortable.contains(query.sortBy) else {
            throw AspireError(.badRequest, "sortby must be one of \(sortable.joined(separator: ", "))")
        }
        return try await self.engine.withConnection { database in
            let filter = Self.whereClause(Self.packageConditions(query))
            let count = try await database.raw("SELECT COUNT(*) AS n FROM agents \(filter)").first()?
                .decode(column: "n", as: Int.self) ?? 0
            let order: SQLQueryString = query.page.ascending ? "ASC" : "DESC"
            let rows = try await database.raw(
                """
                SELECT * FROM agents \(filter) ORDER BY \(unsafeRaw: query.sortBy) \(order), id \(order)
                LIMIT \(bind: query.page.limit) OFFSET \(bind: query.page.offset)
                """
            ).all()
            return Listing(count: count, items: try rows.map(Self.package(from:)))
        }
    }

    /// Deletes the package versions matching `query` (at least a name or an id is required by
    /// callers); returns what was deleted so its files can go too.
    public func deletePackages(_ query: PackageQuery, id: Int? = nil) async throws -> [PackageRecord] {
        var conditions = Self.packageConditions(query)
        if let id { conditions.append("id = \(bind: id)") }
        guard !conditions.isEmpty else {
            throw AspireError(.badRequest, "say which package to delete: id, or name (and version, os, arch)")
        }
        let filter = Self.whereClause(conditions)
        return try await self.engine.withConnection { database in
            try await database.raw("DELETE FROM agents \(filter) RETURNING *").all().map(Self.package(from:))
        }
    }

    static func packageConditions(_ query: PackageQuery) -> [SQLQueryString] {
        var conditions: [SQLQueryString] = []
        if let name = query.name { conditions.append("name = \(bind: name)") }
        if let version = query.version { conditions.append("version = \(bind: version)") }
        if let os = query.os { conditions.append("os = \(bind: os)") }
        if let arch = query.arch { conditions.append("arch = \(bind: arch)") }
        if let file = query.file { conditions.append("file = \(bind: file)") }
        return conditions
    }

    static func package(from row: any SQLRow) throws -> PackageRecord {
        PackageRecord(
            id: try row.decode(column: "id", as: Int.self),
            name: try row.decode(column: "name", as: String.self),
            os: try row.decode(column: "os", as: String.self),
            arch: try row.decode(column: "arch", as: String.self),
            version: try row.decode(column: "version", as: String.self),
            file: try row.decode(column: "file", as: String.self),
            path: try row.decode(column: "path", as: String.self),
            sha256: try row.decode(column: "sha256", as: String.self),
            size: try row.decode(column: "size", as: Int64.self),
            created: try row.decode(column: "gmt_create", as: Int64.self),
            modified: try row.decode(column: "gmt_modify", as: Int64.self)
        )
    }
}

// MARK: - Events

extension SQLStore {
    /// Records an event once: the same agent, local id and time again is ignored (false).
    @discardableResult
    public func recordEvent(_ event: EventRecord) async throws -> Bool {
        let now = Self.now
        var event = event
        event.message = Self.bounded(event.message, bytes: Self.maxEventBytes)
        event.category = Self.bounded(event.category, bytes: 64)
        return try await self.engine.withConnection { database in
            try await !database.raw(
                """
                INSERT INTO events (agentsn, category, localid, occured, message, gmt_create)
                VALUES (\(bind: event.agentSN), \(bind: event.category), \(bind: event.localID), \(bind: event.occurred),
                        \(bind: event.message), \(bind: now))
                ON CONFLICT (agentsn, localid, occured) DO NOTHING RETURNING id
                """
            ).all().isEmpty
        }
    }

    /// Records what the server itself saw happen — a host online or offline, a task created or
    /// finished, a deployment's wave — as an event of `category` (of the host, when it is about
    /// one). Never fails the caller: an event that cannot be written is logged.
    public func recordServerEvent(_ category: String, _ message: String, agentSN: String = "") async {
        do {
            // A local id no agent uses (theirs count up from 1), so the event is never taken as
            // a repeat of another at the same millisecond.
            try await self.recordEvent(
                EventRecord(agentSN: agentSN, category: category, localID: -Int64.random(in: 1 ... Int64.max), occurred: Self.now, message: message)
            )
        } catch {
            self.logger.warning("cannot record an event", metadata: ["event.category": "\(category)", "error": "\(String(reflecting: error))"])
        }
    }

    /// Events, newest first, optionally of one agent.
    public func events(agentSN: String? = nil, page: Page = Page()) async throws -> Listing<EventRecord> {
        try await self.engine.withConnection { database in
            let filter: SQLQueryString = agentSN.map { "WHERE agentsn = \(bind: $0)" } ?? ""
            let count = try await database.raw("SELECT COUNT(*) AS n FROM events \(filter)").first()?
                .decode(column: "n", as: Int.self) ?? 0
            let rows = try await database.raw(
                "SELECT * FROM events \(filter) ORDER BY occured DESC, id DESC LIMIT \(bind: page.limit) OFFSET \(bind: page.offset)"
            ).all()
            let events = try rows.map { row in
                EventRecord(
                    id: try row.decode(column: "id", as: Int.self),
                    agentSN: try row.decode(column: "agentsn", as: String.self),
                    category: try row.decode(column: "category", as: String.self),
                    localID: try row.decode(column: "localid", as: Int64.self),
                    occurred: try row.decode(column: "occured", as: Int64.self),
                    message: try row.decode(column: "message", as: String.self),
                    created: try row.decode(column: "gmt_create", as: Int64.self)
                )
            }
            return Listing(count: count, items: events)
        }
    }
}
