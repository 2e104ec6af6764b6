public import GRPCCore
public import Logging
public import RPC

/// `Bootstrap.Init`: accepts the agent on this node or redirects it, by the redirect policy.
/// A node that holds `maxAgents` streams refuses new agents (RESOURCE_EXHAUSTED), so they try
/// their next address or come back later, instead of the node running out of descriptors.
public struct BootstrapService: Aspire_V1_Bootstrap.SimpleServiceProtocol {
    let nodeName: String
    let policy: RedirectPolicy
    let registry: SessionRegistry
    let maxAgents: Int
    let logger: Logger

    public init(nodeName: String, policy: RedirectPolicy, registry: SessionRegistry, maxAgents: Int = .max, logger: Logger) {
        self.nodeName = nodeName
        self.policy = policy
        self.registry = registry
        self.maxAgents = maxAgents
        self.logger = logger
    }

    public func `init`(request: Aspire_V1_InitRequest, context: ServerContext) async throws -> Aspire_V1_InitResponse {
        try AgentIdentity.validate(agentSN: request.agentSn)
        var response = Aspire_V1_InitResponse()
        response.node = self.nodeName
        switch self.policy.decide(agentSN: request.agentSn, visited: Set(request.visited)) {
        case .accept:
            // An agent already held here is reconnecting: its old stream's place is its own.
            if self.registry.count >= self.maxAgents && self.registry.session(for: request.agentSn) == nil {
                self.logger.warning(
                    "node full, agent refused",
                    metadata: ["agent.sn": "\(request.agentSn)", "node.max_agents": "\(self.maxAgents)"]
                )
                throw RPCError(
                    code: .resourceExhausted,
                    message: "node \(self.nodeName) holds its maximum of \(self.maxAgents) agents (--max-agents); try another node or later"
                )
            }
            response.action = .accept
        case .redirect(let servers):
            response.action = .redirect
            response.servers = servers.map(\.description)
            self.logger.debug(
                "redirecting agent",
                metadata: ["agent.sn": "\(request.agentSn)", "redirect.servers": "\(response.servers.joined(separator: ","))"]
            )
        }
        return response
    }
}

/// Rules for what agents say about themselves.
enum AgentIdentity {
    /// An AgentSN is 1 to 64 characters of letters, digits and `.-_:`; it names the host in
    /// the store and in logs, so nothing else is let through.
    static func validate(agentSN: String) throws(AspireError) {
        guard !agentSN.isEmpty else {
            throw AspireError(.badRequest, "agent_sn is empty")
        }
        guard agentSN.utf8.count <= 64,
            agentSN.utf8.allSatisfy({ byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || byte == 0x2E || byte == 0x2D || byte == 0x5F || byte == 0x3A
            })
        else {
            throw AspireError(.badRequest, "agent_sn must be 1-64 characters of letters, digits and . - _ :")
        }
    }
}
