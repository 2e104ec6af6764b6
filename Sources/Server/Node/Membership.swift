import Foundation
public import Logging
import RPC
import ServiceLifecycle

/// This node's place in the cluster's `nodes` table: a heartbeat every `interval`, and `stopped`
/// when it shuts down cleanly. A node whose heartbeats stop for ``deadAfter`` is dead to the others.
public struct Membership: Sendable {
    /// No heartbeat for this long: the node is dead.
    public static let deadAfter: Duration = .seconds(10)

    let store: SQLStore
    let name: String
    let address: @Sendable () async -> String
    let interval: Duration
    let logger: Logger

    init(store: SQLStore, name: String, interval: Duration, logger: Logger, address: @escaping @Sendable () async -> String) {
        self.store = store
        self.name = name
        self.interval = interval
        self.logger = logger
        self.address = address
    }

    func run() async throws {
        let started = Date().unixMilliseconds
        let address = await self.address()
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await self.store.heartbeat(node: self.name, address: address, started: started)
                } catch {
                    self.logger.error("cannot record this node's heartbeat", metadata: ["error": "\(String(reflecting: error))"])
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
}
