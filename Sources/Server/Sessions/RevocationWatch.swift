public import Logging
import ServiceLifecycle

/// Closes the streams of hosts whose certificates were taken back (deleted or banned) on any
/// node of the cluster: every node follows the store's list of revocations, so a stream held
/// by another node ends within one `interval`. The node that took the certificate back closes
/// its own stream at once (``closeRevoked(_:)``).
public struct RevocationWatch: Sendable {
    let store: SQLStore
    let registry: SessionRegistry
    let interval: Duration
    let logger: Logger

    public init(store: SQLStore, registry: SessionRegistry, interval: Duration = .seconds(2), logger: Logger) {
        self.store = store
        self.registry = registry
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            var cursor = try await self.store.latestRevocation()
            while !Task.isCancelled {
                try await Task.sleep(for: self.interval)
                do {
                    for revocation in try await self.store.revocations(after: cursor) {
                        cursor = revocation.id
                        await self.closeRevoked(revocation.agentSN)
                    }
                } catch {
                    self.logger.error("cannot read certificate revocations", metadata: ["error": "\(String(reflecting: error))"])
                }
            }
        }
    }

    /// Closes the host's stream on this node unless it holds its current certificate (it
    /// enrolled again after the revocation).
    public func closeRevoked(_ agentSN: String) async {
        guard let session = self.registry.session(for: agentSN) else { return }
        let identity = try? await self.store.identity(agentSN: agentSN)
        if let identity, identity.banned == 0, let serial = session.certificateSerial, identity.serial == serial { return }
        self.logger.notice("closing the stream of a host whose certificate was taken back", metadata: ["agent.sn": "\(agentSN)"])
        session.close()
    }
}
