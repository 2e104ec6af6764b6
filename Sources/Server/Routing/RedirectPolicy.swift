import Crypto
import Foundation
public import RPC

/// Decides whether a node holds an agent that calls Init, or sends it elsewhere.
public enum RedirectPolicy: Sendable, Hashable {
    /// This node holds every agent.
    case acceptAll
    /// This node holds no agent: it sends each to these servers, in order (a pure redirector,
    /// the seed's `{"method":"redirect","server":"a,b"}`).
    case redirectAll([HostPort])
    /// Rendezvous hashing of the AgentSN over `peers` (which include this node as `current`):
    /// every node with the same peer list sends an agent to the same node, with the rest of the
    /// list as fallbacks in the same order.
    case rendezvous(current: HostPort, peers: [HostPort])

    public enum Decision: Sendable, Hashable {
        case accept
        case redirect([HostPort])
    }

    /// The decision for an agent. Servers in `visited` are never sent again, so redirects
    /// cannot loop; when nothing is left the node accepts.
    public func decide(agentSN: String, visited: Set<String>) -> Decision {
        switch self {
        case .acceptAll:
            return .accept
        case .redirectAll(let servers):
            let targets = servers.filter { !visited.contains($0.description) }
            return targets.isEmpty ? .accept : .redirect(targets)
        case .rendezvous(let current, let peers):
            var all = peers
            if !all.contains(current) { all.append(current) }
            let ranked = all.sorted {
                let a = Self.weight(agentSN, $0)
                let b = Self.weight(agentSN, $1)
                return a != b ? a > b : $0.description < $1.description
            }
            guard let winner = ranked.first, winner != current else { return .accept }
            let targets = ranked.filter { $0 != current && !visited.contains($0.description) }
            return targets.isEmpty ? .accept : .redirect(targets)
        }
    }

    static func weight(_ agentSN: String, _ server: HostPort) -> UInt64 {
        let digest = SHA256.hash(data: Data("\(agentSN)|\(server.description)".utf8))
        return digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}
