import GRPCCore
import HTTPTypes
import Hummingbird
import RPC

extension Gateway {
    /// The seed's agents, which send no token (or the enrollment token), are served by the
    /// gateway on its own credential: the admin token, the only one AgentPoll takes.
    func agentMetadata(_ request: Request) throws -> Metadata {
        // A caller with a token of its own other than the enrollment token (an operator's) is
        // forwarded with it; the service checks it.
        if let header = request.headers[.authorization] {
            let token = Secret.bearerToken(header)
            if token == nil || self.configuration.agentToken.map({ !Secret.matches(token!, $0) }) ?? true {
                return ["authorization": .string(header)]
            }
        }
        return try self.ownMetadata()
    }

    /// The seed's agent routes answer only the networks `--seed-agents` names.
    func requireSeedAgent(from address: String) throws {
        guard !self.configuration.seedAgents.isEmpty else {
            throw AspireError(
                .permissionDenied,
                "the seed's plain-HTTP agent routes are off on this node: start it with --seed-agents CIDR,... (the networks such agents call from)"
            )
        }
        guard self.configuration.seedAgents.contains(where: { $0.contains(address) }) else {
            throw AspireError(.permissionDenied, "\(address.isEmpty ? "this caller" : address) is not in --seed-agents")
        }
    }

    /// The gateway's own credential, for calls it makes for callers that hold no admin token.
    func ownMetadata() throws -> Metadata {
        guard let token = self.configuration.adminToken else {
            throw AspireError(.unauthenticated, "this gateway serves no plain-HTTP agents: start it with the node's admin token (--admin-token-file)")
        }
        return ["authorization": .string("Bearer \(token)")]
    }
}
