import Crypto
import Foundation
public import RPC

/// Decides whether a node holds an agent that calls Init, or sends it elsewhere.
public enum RedirectPolicy: Sendable, Hashable {
    /// Rendezvous hashing of the AgentSN over the cluster's active nodes as the `nodes` table
    /// says (``ClusterView``): a node that joins takes its share of the agents that connect from
    /// then on, and a dead or draining one gets none. One node alone holds every agent.
    case cluster
    /// This node holds every agent.
    case acceptAll
    /// This node holds no agent: it sends each to these servers, in order (a pure redirector,
    /// the seed's `{"method":"redirect","server":"a,b"}`).
    case redirectAll([HostPort])
    /// Rendezvous hashing of the AgentSN over a fixed list of `peers` (which include this node
    /// as `current`): every node with the same peer list sends an agent to the same node, with
    /// the rest of the list as fallbacks in the same order.
    case rendezvous(current: HostPort, peers: [HostPort])

    public enum Decision: Sendable, Hashable {
        case accept
        case redirect([HostPort])
    }

    /// The decision for an agent. Servers in `visited` are never sent again, so redirects
    /// cannot loop; when nothing is left the node accepts. A `draining` node sends agents to the
    /// others while there are any.
    public func decide(agentSN: String, visited: Set<String>, cluster: ClusterView? = nil, draining: Bool = false) -> Decision {
        switch self {
        case .acceptAll:
            return .accept
        case .redirectAll(let servers):
            return Self.redirect(to: servers, visited: visited)
        case .rendezvous(let current, let peers):
            var all = peers.map { ClusterView.Peer(name: $0.description, address: $0) }
            if !peers.contains(current) { all.append(ClusterView.Peer(name: current.description, address: current)) }
            return Self.rank(agentSN, over: all, current: current.description, visited: visited, draining: draining)
        case .cluster:
            guard let cluster else { return .accept }
            let all = cluster.active
            if !all.contains(where: { $0.name == cluster.nodeName }) {
                // Not in the table yet (its first heartbeat), or draining: it never wins.
                return Self.redirect(to: Self.ranked(agentSN, all).map(\.address), visited: visited)
            }
            return Self.rank(agentSN, over: all, current: cluster.nodeName, visited: visited, draining: draining)
        }
    }

    /// Accepts when `current` ranks first for the agent, else redirects to the others in rank
    /// order; a draining node always redirects while another is left.
    private static func rank(_ agentSN: String, over peers: [ClusterView.Peer], current: String, visited: Set<String>, draining: Bool) -> Decision {
        let ranked = Self.ranked(agentSN, draining ? peers.filter { $0.name != current } : peers)
        guard let winner = ranked.first, winner.name != current else { return .accept }
        return Self.redirect(to: ranked.filter { $0.name != current }.map(\.address), visited: visited)
    }

    private static func ranked(_ agentSN: String, _ peers: [ClusterView.Peer]) -> [ClusterView.Peer] {
        peers.sorted {
            let a = Self.weight(agentSN, $0.name)
            let b = Self.weight(agentSN, $1.name)
            return a != b ? a > b : $0.name < $1.name
        }
    }

    private static func redirect(to servers: [HostPort], visited: Set<String>) -> Decision {
        let targets = servers.filter { !visited.contains($0.description) }
        return targets.isEmpty ? .accept : .redirect(targets)
    }

    static func weight(_ agentSN: String, _ key: String) -> UInt64 {
        let digest = SHA256.hash(data: Data("\(agentSN)|\(key)".utf8))
        return digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}
