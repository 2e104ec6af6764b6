import GRPCCore
import HTTPTypes
import Hummingbird
import RPC

extension Gateway {
    /// The enrollment token: the caller's, when it sends one (then it must be right), or the
    /// gateway's own for the seed's agents, which send none.
    func agentMetadata(_ request: Request) throws -> Metadata {
        if let header = request.headers[.authorization] {
            return ["authorization": .string(header)]
        }
        guard let token = self.configuration.agentToken else {
            throw AspireError(.unauthenticated, "send 'Authorization: Bearer <enrollment token>'")
        }
        return ["authorization": .string("Bearer \(token)")]
    }
}
