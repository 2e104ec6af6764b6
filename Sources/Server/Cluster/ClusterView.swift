import Foundation
public import RPC
import Synchronization

/// What this node knows of its cluster's nodes: the `nodes` table as of its last heartbeat
/// (every few seconds). Init spreads agents over the active ones, a command for a host held
/// elsewhere is sent to that node's address, and a draining node sends its agents away.
public final class ClusterView: Sendable {
    /// A node agents may be sent to.
    public struct Peer: Sendable, Hashable {
        public var name: String
        public var address: HostPort
    }

    public let nodeName: String
    private let state = Mutex<[NodeRecord]>([])

    public init(nodeName: String) {
        self.nodeName = nodeName
    }

    /// The table as read now.
    func update(_ nodes: [NodeRecord]) {
        self.state.withLock { $0 = nodes }
    }

    var nodes: [NodeRecord] { self.state.withLock { $0 } }

    /// Active nodes (heartbeats coming, not draining), this one included when it is.
    public var active: [Peer] {
        let now = Date().unixMilliseconds
        return self.nodes.compactMap { node in
            guard node.state(now: now, deadAfter: Membership.deadAfter.milliseconds) == .active,
                let address = try? HostPort(parsing: node.address)
            else { return nil }
            return Peer(name: node.name, address: address)
        }
    }

    /// Whether an operator asked this node to drain.
    public var draining: Bool {
        self.nodes.first { $0.name == self.nodeName }?.draining ?? false
    }

    /// Where `node` listens, while it is alive (active or draining).
    public func address(of node: String) -> HostPort? {
        let now = Date().unixMilliseconds
        guard let record = self.nodes.first(where: { $0.name == node }),
            [.active, .draining].contains(record.state(now: now, deadAfter: Membership.deadAfter.milliseconds))
        else { return nil }
        return try? HostPort(parsing: record.address)
    }
}
