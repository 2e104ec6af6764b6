import Foundation
public import RPC
import SQLKit
import SwiftProtobuf

/// One host of a deployment as the store knows it: whether the rollout moved it, what it last
/// reported of the deployment and of the sub-agent.
public struct DeploymentHostView: Sendable {
    public var agentSN: String
    public var hostname: String
    public var online: Bool
    /// Moved to this revision in this wave (nil: not moved).
    public var moved: (revision: Int64, wave: Int)?
    /// What the agent last reported of the deployment, and when (Unix ms).
    public var reported: Aspire_V1_DeploymentState?
    /// The sub-agent as last reported, and when (Unix ms).
    public var subAgent: SubAgentRecord?
    public var reportedAt: Int64 = 0

    public init(agentSN: String, hostname: String = "", online: Bool = true) {
        self.agentSN = agentSN
        self.hostname = hostname
        self.online = online
    }
}

extension SQLStore {
    /// Declares a deployment, or changes one. A change of what hosts run starts a rollout from
    /// the revision every host runs now (the stable one); a change of the selector, the untag
    /// policy or the rollout policy alone applies at once; the same declaration again changes
    /// nothing (`changed` false).
    public func applyDeployment(
        _ spec: Aspire_V1_DeploymentSpec, rollout: Aspire_V1_RolloutPolicy
    ) async throws -> (record: DeploymentRecord, changed: Bool) {
        let now = Self.now
        return try await self.transaction { database in
            let existing = try await database.raw("SELECT * FROM deployments WHERE name = \(bind: spec.name)").first().map(Self.deployment(from:))
            guard var record = existing else {
                var record = DeploymentRecord(spec: spec, rollout: rollout)
                record.created = now
                record.modified = now
                try await database.raw(
                    """
                    INSERT INTO deployments (name, spec, rollout, revision, state, wave, gmt_create, gmt_modify)
                    VALUES (\(bind: spec.name), \(bind: try spec.jsonString()), \(bind: try rollout.jsonString()), 1,
                            \(bind: record.state.rawValue), 0, \(bind: now), \(bind: now))
                    """
                ).run()
                return (record, true)
            }
            let before = record
            if spec.runs != record.spec.runs {
                // Hosts not moved run what every host ran before: the stable revision while a
                // rollout was under way or rolled back, else the one that was done.
                switch record.state {
                case .done:
                    record.stable = record.spec
                    record.stableRevision = record.revision
                case .rolling, .paused, .halted, .rolledBack:
                    if record.stable == nil {
                        record.stable = record.spec
                        record.stableRevision = record.revision
                    }
                }
                record.revision += 1
                record.state = .rolling
                record.wave = -1
                record.waveStarted = now
                record.reason = "choosing the canary"
                try await database.raw("DELETE FROM deployment_moves WHERE deployment = \(bind: spec.name)").run()
            }
            record.spec = spec
            record.rollout = rollout
            guard record != before else { return (record, false) }
            try await Self.save(&record, now: now, on: database)
            return (record, true)
        }
    }

    /// One deployment by name, or every deployment, by name.
    public func deployments(name: String? = nil) async throws -> [DeploymentRecord] {
        try await self.engine.withConnection { database in
            let filter: SQLQueryString = name.map { "WHERE name = \(bind: $0)" } ?? ""
            return try await database.raw("SELECT * FROM deployments \(filter) ORDER BY name").all().map(Self.deployment(from:))
        }
    }

    /// Changes whenever a deployment is declared, changed, moves hosts or deleted, on any node.
    public func deploymentRevision() async throws -> String {
        try await self.revision(of: "deployments")
    }

    /// The hosts moved to each deployment's current revision, by deployment name.
    public func deploymentMoves() async throws -> [String: Set<String>] {
        try await self.engine.withConnection { database in
            var moves: [String: Set<String>] = [:]
            let rows = try await database.raw(
                """
                SELECT m.deployment, m.agentsn FROM deployment_moves m JOIN deployments d ON d.name = m.deployment
                WHERE m.revision = d.revision
                """
            ).all()
            for row in rows {
                moves[try row.decode(column: "deployment", as: String.self), default: []].insert(try row.decode(column: "agentsn", as: String.self))
            }
            return moves
        }
    }

    /// Moves hosts to the deployment's revision as wave `wave`, if the deployment is still at
    /// `revision`, rolling, and in the wave before (another node may have moved it on first).
    /// Nil when it was not.
    public func moveHosts(_ agentSNs: [String], deployment name: String, revision: Int64, wave: Int) async throws -> DeploymentRecord? {
        let now = Self.now
        return try await self.transaction { database in
            guard var record = try await self.lockedDeployment(name, on: database),
                record.revision == revision, record.state == .rolling, record.wave == wave - 1
            else { return nil }
            for agentSN in agentSNs {
                try await database.raw(
                    """
                    INSERT INTO deployment_moves (deployment, agentsn, revision, wave, moved)
                    VALUES (\(bind: name), \(bind: agentSN), \(bind: revision), \(bind: wave), \(bind: now))
                    ON CONFLICT (deployment, agentsn) DO UPDATE SET revision = excluded.revision, wave = excluded.wave, moved = excluded.moved
                    """
                ).run()
            }
            record.wave = wave
            record.waveStarted = now
            record.reason = ""
            try await Self.save(&record, now: now, on: database)
            return record
        }
    }

    /// Moves a deployment at `revision` from one of `states` to `state`, saying why. Nil when it
    /// was not in one of them (or not at that revision: another change came first).
    public func setRolloutState(
        _ state: RolloutState, reason: String, deployment name: String, revision: Int64, from states: Set<RolloutState>
    ) async throws -> DeploymentRecord? {
        let now = Self.now
        return try await self.transaction { database in
            guard var record = try await self.lockedDeployment(name, on: database), record.revision == revision, states.contains(record.state)
            else { return nil }
            record.state = state
            record.reason = reason
            if state == .rolling { record.waveStarted = now }
            if state == .done || state == .rolledBack {
                try await database.raw("DELETE FROM deployment_moves WHERE deployment = \(bind: name)").run()
            }
            try await Self.save(&record, now: now, on: database)
            return record
        }
    }

    /// Deletes a deployment; nil when there is none of that name.
    public func deleteDeployment(name: String) async throws -> DeploymentRecord? {
        try await self.transaction { database in
            guard let record = try await self.lockedDeployment(name, on: database) else { return nil }
            try await database.raw("DELETE FROM deployment_moves WHERE deployment = \(bind: name)").run()
            try await database.raw("DELETE FROM deployments WHERE name = \(bind: name)").run()
            return record
        }
    }

    /// The hosts matching a deployment's selector (deleted ones aside), each with what the
    /// rollout and the host's reports say of it.
    public func deploymentHosts(_ record: DeploymentRecord) async throws -> [DeploymentHostView] {
        try await self.engine.withConnection { database in
            var conditions: [SQLQueryString] = ["h.status <> \(bind: HostStatus.deleted.rawValue)"]
            for (name, value) in record.spec.tags.sorted(by: { $0.key < $1.key }) {
                conditions.append(
                    """
                    h.id IN (SELECT ht.hostid FROM hosts_tags ht JOIN tags t ON t.id = ht.tagid
                             WHERE t.name = \(bind: name) AND t.value = \(bind: value))
                    """
                )
            }
            let rows = try await database.raw(
                """
                SELECT h.agentsn, h.hostname, h.status,
                       hd.revision AS d_revision, hd.version AS d_version, hd.error AS d_error,
                       ha.version AS a_version, ha.status AS a_status, ha.uptime AS a_uptime, ha.message AS a_message,
                       ha.restarts AS a_restarts, ha.pid AS a_pid, ha.gmt_modify AS a_modify,
                       m.revision AS m_revision, m.wave AS m_wave
                FROM hosts h
                LEFT JOIN hosts_deployments hd ON hd.hostid = h.id AND hd.name = \(bind: record.name)
                LEFT JOIN hosts_agents ha ON ha.hostid = h.id AND ha.name = \(bind: record.name)
                LEFT JOIN deployment_moves m ON m.deployment = \(bind: record.name) AND m.agentsn = h.agentsn
                \(Self.whereClause(conditions))
                ORDER BY h.id
                """
            ).all()
            return try rows.map { row in
                var host = DeploymentHostView(
                    agentSN: try row.decode(column: "agentsn", as: String.self),
                    hostname: try row.decode(column: "hostname", as: String.self),
                    online: try row.decode(column: "status", as: Int.self) == HostStatus.online.rawValue
                )
                if let revision = try row.decode(column: "m_revision", as: Int64?.self) {
                    host.moved = (revision, try row.decode(column: "m_wave", as: Int.self))
                }
                if let revision = try row.decode(column: "d_revision", as: Int64?.self) {
                    var state = Aspire_V1_DeploymentState()
                    state.name = record.name
                    state.revision = revision
                    state.version = try row.decode(column: "d_version", as: String.self)
                    state.error = try row.decode(column: "d_error", as: String.self)
                    host.reported = state
                }
                if let version = try row.decode(column: "a_version", as: String?.self) {
                    host.subAgent = SubAgentRecord(
                        name: record.name, version: version, status: try row.decode(column: "a_status", as: String.self),
                        pid: try row.decode(column: "a_pid", as: Int.self), restarts: try row.decode(column: "a_restarts", as: Int.self),
                        uptime: try row.decode(column: "a_uptime", as: Int64.self), message: try row.decode(column: "a_message", as: String.self)
                    )
                    host.reportedAt = try row.decode(column: "a_modify", as: Int64.self)
                }
                return host
            }
        }
    }

    // MARK: Rows

    private func lockedDeployment(_ name: String, on database: any SQLDatabase) async throws -> DeploymentRecord? {
        // FOR UPDATE on PostgreSQL; SQLite's write transaction is already exclusive.
        let lock: SQLQueryString = self.engine.kind == .postgres ? "FOR UPDATE" : ""
        return try await database.raw("SELECT * FROM deployments WHERE name = \(bind: name) \(lock)").first().map(Self.deployment(from:))
    }

    /// Writes a changed record; its modification time only moves forward (revisions are told
    /// apart by it).
    private static func save(_ record: inout DeploymentRecord, now: Int64, on database: any SQLDatabase) async throws {
        record.modified = max(now, record.modified + 1)
        try await database.raw(
            """
            UPDATE deployments SET spec = \(bind: try record.spec.jsonString()), rollout = \(bind: try record.rollout.jsonString()),
                revision = \(bind: record.revision), stable = \(bind: try record.stable?.jsonString() ?? ""),
                stable_revision = \(bind: record.stableRevision), state = \(bind: record.state.rawValue), wave = \(bind: record.wave),
                wave_started = \(bind: record.waveStarted), reason = \(bind: String(record.reason.prefix(2000))),
                gmt_modify = \(bind: record.modified)
            WHERE name = \(bind: record.name)
            """
        ).run()
    }

    static func deployment(from row: any SQLRow) throws -> DeploymentRecord {
        var record = DeploymentRecord(
            spec: try Aspire_V1_DeploymentSpec(jsonString: try row.decode(column: "spec", as: String.self)),
            rollout: try Aspire_V1_RolloutPolicy(jsonString: try row.decode(column: "rollout", as: String.self))
        )
        record.revision = try row.decode(column: "revision", as: Int64.self)
        let stable = try row.decode(column: "stable", as: String.self)
        record.stable = stable.isEmpty ? nil : try Aspire_V1_DeploymentSpec(jsonString: stable)
        record.stableRevision = try row.decode(column: "stable_revision", as: Int64.self)
        record.state = RolloutState(rawValue: try row.decode(column: "state", as: String.self)) ?? .halted
        record.wave = try row.decode(column: "wave", as: Int.self)
        record.waveStarted = try row.decode(column: "wave_started", as: Int64.self)
        record.reason = try row.decode(column: "reason", as: String.self)
        record.created = try row.decode(column: "gmt_create", as: Int64.self)
        record.modified = try row.decode(column: "gmt_modify", as: Int64.self)
        return record
    }
}
