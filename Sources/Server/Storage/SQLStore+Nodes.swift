import Foundation
public import RPC
import SQLKit

/// A node of the cluster as the store knows it.
public struct NodeRecord: Sendable, Hashable {
    public var name: String
    public var address: String
    /// Unix milliseconds.
    public var started: Int64
    public var heartbeat: Int64
    public var stopped: Int64
    /// An operator asked it to send its agents away (DrainNode).
    public var draining: Bool = false
    /// Hosts online on it.
    public var hosts: Int = 0

    public enum State: String, Sendable {
        case active, draining, stopped, dead
    }

    /// Active (or draining) while its heartbeats come; dead after `deadAfter` without one.
    public func state(now: Int64, deadAfter: Int64) -> State {
        if self.stopped != 0 { return .stopped }
        if now - self.heartbeat > deadAfter { return .dead }
        return self.draining ? .draining : .active
    }
}

extension SQLStore {
    /// Records that `name` is alive (and, the first time or after a restart, when it started: a
    /// node that starts again is active again, whatever drain it was under).
    public func heartbeat(node name: String, address: String, started: Int64) async throws {
        let now = Self.now
        try await self.engine.withConnection { database in
            try await database.raw(
                """
                INSERT INTO nodes (name, address, started, heartbeat, stopped)
                VALUES (\(bind: name), \(bind: address), \(bind: started), \(bind: now), 0)
                ON CONFLICT (name) DO UPDATE SET
                    address = excluded.address, started = excluded.started, heartbeat = excluded.heartbeat, stopped = 0,
                    draining = CASE WHEN nodes.started = excluded.started THEN nodes.draining ELSE 0 END
                """
            ).run()
        }
    }

    /// Records that `name` shut down cleanly.
    public func nodeStopped(_ name: String) async throws {
        try await self.engine.withConnection { database in
            try await database.raw("UPDATE nodes SET stopped = \(bind: Self.now) WHERE name = \(bind: name)").run()
        }
    }

    /// Sets whether `name` drains; false when no node has that name.
    public func setDraining(_ name: String, _ draining: Bool) async throws -> Bool {
        try await self.engine.withConnection { database in
            try await database.raw(
                "UPDATE nodes SET draining = \(bind: draining ? 1 : 0) WHERE name = \(bind: name) RETURNING name"
            ).first() != nil
        }
    }

    /// The node holding each of `agentSNs` that is online (on a stream; the seed's polling
    /// agents, held by no node, are left out).
    public func holders(of agentSNs: [String]) async throws -> [String: String] {
        guard !agentSNs.isEmpty else { return [:] }
        return try await self.engine.withConnection { database in
            var holders: [String: String] = [:]
            for slice in agentSNs.chunks(of: 1000) {
                for row in try await database.raw(
                    """
                    SELECT agentsn, node FROM hosts
                    WHERE agentsn IN (\(binds: Array(slice))) AND status = \(bind: HostStatus.online.rawValue) AND node <> ''
                    """
                ).all() {
                    holders[try row.decode(column: "agentsn", as: String.self)] = try row.decode(column: "node", as: String.self)
                }
            }
            return holders
        }
    }

    /// Every node that ever joined, by name, with the hosts online on each.
    public func nodes() async throws -> [NodeRecord] {
        try await self.engine.withConnection { database in
            let held = try await database.raw(
                "SELECT node, COUNT(*) AS n FROM hosts WHERE status = \(bind: HostStatus.online.rawValue) GROUP BY node"
            ).all().reduce(into: [String: Int]()) { counts, row in
                counts[try row.decode(column: "node", as: String.self)] = try row.decode(column: "n", as: Int.self)
            }
            return try await database.raw("SELECT * FROM nodes ORDER BY name").all().map { row in
                let name = try row.decode(column: "name", as: String.self)
                return NodeRecord(
                    name: name,
                    address: try row.decode(column: "address", as: String.self),
                    started: try row.decode(column: "started", as: Int64.self),
                    heartbeat: try row.decode(column: "heartbeat", as: Int64.self),
                    stopped: try row.decode(column: "stopped", as: Int64.self),
                    draining: try row.decode(column: "draining", as: Int.self) != 0,
                    hosts: held[name] ?? 0
                )
            }
        }
    }
}
