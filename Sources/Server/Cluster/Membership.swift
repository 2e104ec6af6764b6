import Foundation
public import Logging
import RPC
import ServiceLifecycle

/// This node's place in the cluster's `nodes` table: a heartbeat every `interval`, and `stopped`
/// when it shuts down cleanly. A node whose heartbeats stop for ``deadAfter`` is dead to the
/// others. Each beat also reads the table into the ``ClusterView``, and marks offline the hosts
/// a dead node still held: their work waits in the store until they connect to another node.
public struct Membership: Sendable {
    /// No heartbeat for this long: the node is dead.
    public static let deadAfter: Duration = .seconds(10)

    let store: SQLStore
    let cluster: ClusterView
    let address: @Sendable () async -> String
    let interval: Duration
    let logger: Logger

    init(store: SQLStore, cluster: ClusterView, interval: Duration, logger: Logger, address: @escaping @Sendable () async -> String) {
        self.store = store
        self.cluster = cluster
        self.interval = interval
        self.logger = logger
        self.address = address
    }

    var name: String { self.cluster.nodeName }

    func run() async throws {
        let started = Date().unixMilliseconds
        let address = await self.address()
        try? await cancelWhenGracefulShutdown {
            var counted: Int64 = -1
            while !Task.isCancelled {
                await self.beat(started: started, address: address)
                // The cluster's host counts, once a step (the dashboard's chart of the last day).
                let now = Date().unixMilliseconds
                if now / SQLStore.hostCountStep != counted {
                    counted = now / SQLStore.hostCountStep
                    do {
                        try await self.store.recordHostCounts(now: now)
                    } catch {
                        self.logger.warning("cannot keep the host counts", metadata: ["error": "\(String(reflecting: error))"])
                    }
                }
                try await Task.sleep(for: self.interval)
            }
        }
        do {
            try await self.store.nodeStopped(self.name)
        } catch {
            self.logger.warning("cannot record that this node stopped", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    /// One heartbeat: this node's row, then the table as it is now.
    func beat(started: Int64, address: String) async {
        do {
            try await self.store.heartbeat(node: self.name, address: address, started: started)
            let nodes = try await self.store.nodes()
            let wasDraining = self.cluster.draining
            self.cluster.update(nodes)
            if self.cluster.draining != wasDraining {
                self.logger.notice(self.cluster.draining ? "node draining: sending its agents to the other nodes" : "node active again")
            }
            let now = Date().unixMilliseconds
            for node in nodes where node.hosts > 0 && node.state(now: now, deadAfter: Self.deadAfter.milliseconds) == .dead {
                try await self.store.releaseHosts(of: node.name)
                self.logger.notice(
                    "node dead: the hosts it held are offline until they reconnect",
                    metadata: ["node.dead": "\(node.name)", "hosts": "\(node.hosts)"]
                )
            }
        } catch {
            self.logger.error("cannot record this node's heartbeat", metadata: ["error": "\(String(reflecting: error))"])
        }
    }
}
