import Foundation
public import Logging
import RPC
import ServiceLifecycle

/// Sends a draining node's agents to the other active nodes, a wave a second, so the cluster
/// sees a bounded reconnect rate instead of a storm: each agent of a wave gets a `Redirect`
/// naming the nodes its AgentSN ranks first among the active ones (where Init would send it),
/// with a random delay within the second, and goes there itself.
///
/// A node drains while an operator says so (DrainNode, read at each heartbeat), and, with
/// ``Configuration/onStop``, when it is asked to stop: before its streams are closed it marks
/// itself draining and sends its agents away for up to ``Configuration/stopTimeout``.
public struct Drainer: Sendable {
    public struct Configuration: Sendable {
        /// Agents redirected per second at most.
        public var rate = 200
        /// Drain before stopping (SIGTERM), instead of closing every stream at once.
        public var onStop = false
        /// How long a drain before stopping may take; the streams left are closed then.
        public var stopTimeout: Duration = .seconds(60)

        public init() {}
    }

    let configuration: Configuration
    let policy: RedirectPolicy
    let cluster: ClusterView
    let registry: SessionRegistry
    let store: SQLStore
    let logger: Logger

    /// A redirected agent that is still here after this is sent the redirect again.
    static let resendAfter: Duration = .seconds(30)

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var redirected: [String: ContinuousClock.Instant] = [:]
            while !Task.isCancelled {
                if self.cluster.draining {
                    self.wave(&redirected)
                } else {
                    redirected.removeAll()
                }
                try await Task.sleep(for: .seconds(1))
            }
        }
        guard self.configuration.onStop, self.registry.count > 0 else { return }
        await self.drainBeforeStop()
    }

    /// Marks this node draining, so no node sends it new agents, then sends its own away
    /// until none is left or the time is up.
    private func drainBeforeStop() async {
        var redirected: [String: ContinuousClock.Instant] = [:]
        let held = self.registry.count
        self.logger.notice("draining before stopping", metadata: ["hosts": "\(held)", "drain.rate": "\(self.configuration.rate)"])
        do {
            _ = try await self.store.setDraining(self.cluster.nodeName, true)
            self.cluster.update(try await self.store.nodes())
        } catch {
            self.logger.error("cannot mark this node draining", metadata: ["error": "\(String(reflecting: error))"])
        }
        let deadline = ContinuousClock.now + self.configuration.stopTimeout
        while self.registry.count > 0, ContinuousClock.now < deadline {
            guard self.wave(&redirected) || !redirected.isEmpty else { break }
            try? await Task.sleep(for: .seconds(1))
        }
        self.logger.notice(
            "drain before stopping ended",
            metadata: ["hosts.moved": "\(held - self.registry.count)", "hosts.left": "\(self.registry.count)"]
        )
    }

    /// Redirects the next `rate` agents not redirected lately; false when there is nowhere to
    /// send them (no other active node).
    @discardableResult
    private func wave(_ redirected: inout [String: ContinuousClock.Instant]) -> Bool {
        let now = ContinuousClock.now
        var sent = 0
        var nowhere = 0
        for session in self.registry.sessions where sent < self.configuration.rate {
            if let last = redirected[session.agentSN], now - last < Self.resendAfter { continue }
            guard case .redirect(let servers) = self.policy.decide(agentSN: session.agentSN, visited: [], cluster: self.cluster, draining: true)
            else {
                nowhere += 1
                continue
            }
            var message = Aspire_V1_ServerMessage()
            message.redirect.servers = servers.map(\.description)
            message.redirect.maxDelayMs = 1000
            if session.send(message) {
                redirected[session.agentSN] = now
                sent += 1
            }
        }
        let present = Set(self.registry.sessions.map(\.agentSN))
        redirected = redirected.filter { present.contains($0.key) }
        if sent > 0 {
            self.logger.info("drain wave: agents sent to the other nodes", metadata: ["hosts": "\(sent)", "hosts.left": "\(present.count)"])
        } else if nowhere > 0 {
            self.logger.warning("draining, but no other active node can take this node's agents", metadata: ["hosts": "\(nowhere)"])
        }
        return nowhere == 0
    }
}
