import Foundation
public import RPC
import SQLKit

/// A sub-agent of a host as its BootAgent reports it.
public struct SubAgentRecord: Sendable, Hashable {
    public var name: String
    public var version: String
    /// stoped, running, fatal or killed (the seed's states).
    public var status: String
    public var pid: Int
    public var restarts: Int
    public var uptime: Int64
    /// What happened last, in the agent's words.
    public var message: String
    /// The version kept for rollback (the seed's prevers).
    public var previousVersion: String

    public init(
        name: String, version: String, status: String, pid: Int = 0, restarts: Int = 0, uptime: Int64 = 0, message: String = "",
        previousVersion: String = ""
    ) {
        self.name = name
        self.version = version
        self.status = status
        self.pid = pid
        self.restarts = restarts
        self.uptime = uptime
        self.message = message
        self.previousVersion = previousVersion
    }
}

/// How many hosts run a version of a sub-agent.
public struct SubAgentVersionCount: Sendable, Hashable {
    public var name: String
    public var version: String
    public var hosts: Int
    public var running: Int
    public var stopped = 0
    public var fatal = 0
    public var killed = 0
}

extension SQLStore {
    /// Records a status report: the host was seen now, reports every `step` seconds, and runs
    /// exactly these sub-agents and these deployment revisions. False when the host is unknown.
    ///
    /// Every host reports every few seconds, and most reports change only when it was seen: that
    /// is one statement, which also says whether the host has sub-agent or deployment rows
    /// stored; the rows are replaced (in a transaction of their own) only when there are some to
    /// write or to remove.
    @discardableResult
    public func recordStatus(
        agentSN: String, step: Int, subAgents: [SubAgentRecord], deployments: [Aspire_V1_DeploymentState] = []
    ) async throws -> Bool {
        let now = Self.now
        let seen = try await self.engine.withConnection { database in
            try await database.raw(
                """
                UPDATE hosts SET last_seen = \(bind: now), step = CASE WHEN \(bind: step) > 0 THEN \(bind: step) ELSE step END
                WHERE agentsn = \(bind: agentSN)
                RETURNING id,
                    CASE WHEN EXISTS (SELECT 1 FROM hosts_agents WHERE hostid = hosts.id) THEN 1 ELSE 0 END AS has_agents,
                    CASE WHEN EXISTS (SELECT 1 FROM hosts_deployments WHERE hostid = hosts.id) THEN 1 ELSE 0 END AS has_deployments
                """
            ).first()
        }
        guard let seen else { return false }
        let hostID = try seen.decode(column: "id", as: Int.self)
        let replaceAgents = try !subAgents.isEmpty || seen.decode(column: "has_agents", as: Int.self) != 0
        let replaceDeployments = try !deployments.isEmpty || seen.decode(column: "has_deployments", as: Int.self) != 0
        guard replaceAgents || replaceDeployments else { return true }
        let agentRows: [SQLQueryString] = subAgents.map { agent in
            """
            (\(bind: hostID), \(bind: agent.name), \(bind: agent.version),
             (SELECT MIN(id) FROM agents WHERE name = \(bind: agent.name) AND version = \(bind: agent.version)),
             \(bind: agent.status), \(bind: agent.pid), \(bind: agent.restarts), \(bind: agent.uptime),
             \(bind: String(agent.message.prefix(1000))), \(bind: agent.previousVersion), \(bind: now))
            """
        }
        let deploymentRows: [SQLQueryString] = deployments.map { deployment in
            """
            (\(bind: hostID), \(bind: deployment.name), \(bind: deployment.revision), \(bind: deployment.version),
             \(bind: String(deployment.error.prefix(1000))), \(bind: now))
            """
        }
        try await self.transaction { database in
            if replaceAgents {
                try await Self.replaceHostRows(
                    "hosts_agents", columns: "hostid, name, version, agentid, status, pid, restarts, uptime, message, prevers, gmt_modify",
                    with: agentRows, of: hostID, in: database
                )
            }
            if replaceDeployments {
                try await Self.replaceHostRows(
                    "hosts_deployments", columns: "hostid, name, revision, version, error, gmt_modify", with: deploymentRows, of: hostID, in: database
                )
            }
        }
        return true
    }

    /// Replaces a host's rows of `table` (one per name; the first of a name counts) with `rows`,
    /// many a statement.
    private static func replaceHostRows(
        _ table: String, columns: String, with rows: [SQLQueryString], of hostID: Int, in database: any SQLDatabase
    ) async throws {
        try await database.raw("DELETE FROM \(unsafeRaw: table) WHERE hostid = \(bind: hostID)").run()
        for chunk in rows.chunks(of: 500) {
            try await database.raw(
                "INSERT INTO \(unsafeRaw: table) (\(unsafeRaw: columns)) VALUES \(chunk.joined(separator: ", ")) ON CONFLICT (hostid, name) DO NOTHING"
            ).run()
        }
    }

    /// Records a status report as an agent sends it (on its stream or by HTTP): seen now, its
    /// step, its sub-agents, and the tags it carries bound to its host.
    func recordStatus(_ report: Aspire_V1_StatusReport, agentSN: String) async throws {
        try await self.recordStatus(
            agentSN: agentSN,
            step: Int(report.step),
            subAgents: report.agents.map {
                SubAgentRecord(
                    name: $0.name, version: $0.version, status: $0.status, pid: Int($0.pid), restarts: Int($0.restarts),
                    uptime: $0.uptime, message: $0.message, previousVersion: $0.previousVersion
                )
            },
            deployments: report.deployments
        )
        try await self.bindTags(report.tags, to: agentSN)
    }

    /// The sub-agents a host last reported.
    public func subAgents(agentSN: String) async throws -> [SubAgentRecord] {
        try await self.engine.withConnection { database in
            try await database.raw(
                """
                SELECT ha.* FROM hosts_agents ha JOIN hosts h ON h.id = ha.hostid
                WHERE h.agentsn = \(bind: agentSN) ORDER BY ha.name
                """
            ).all().map { row in
                SubAgentRecord(
                    name: try row.decode(column: "name", as: String.self),
                    version: try row.decode(column: "version", as: String.self),
                    status: try row.decode(column: "status", as: String.self),
                    pid: try row.decode(column: "pid", as: Int.self),
                    restarts: try row.decode(column: "restarts", as: Int.self),
                    uptime: try row.decode(column: "uptime", as: Int64.self),
                    message: try row.decode(column: "message", as: String.self),
                    previousVersion: try row.decode(column: "prevers", as: String.self)
                )
            }
        }
    }

    /// Hosts per sub-agent name and version, and how many of them are in each state.
    public func subAgentVersions() async throws -> [SubAgentVersionCount] {
        try await self.engine.withConnection { database in
            try await database.raw(
                """
                SELECT name, version, COUNT(*) AS hosts,
                       SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS running,
                       SUM(CASE WHEN status = 'stoped' THEN 1 ELSE 0 END) AS stopped,
                       SUM(CASE WHEN status = 'fatal' THEN 1 ELSE 0 END) AS fatal,
                       SUM(CASE WHEN status = 'killed' THEN 1 ELSE 0 END) AS killed
                FROM hosts_agents GROUP BY name, version ORDER BY name, version
                """
            ).all().map { row in
                SubAgentVersionCount(
                    name: try row.decode(column: "name", as: String.self),
                    version: try row.decode(column: "version", as: String.self),
                    hosts: try row.decode(column: "hosts", as: Int.self),
                    running: try row.decode(column: "running", as: Int.self),
                    stopped: try row.decode(column: "stopped", as: Int.self),
                    fatal: try row.decode(column: "fatal", as: Int.self),
                    killed: try row.decode(column: "killed", as: Int.self)
                )
            }
        }
    }
}
