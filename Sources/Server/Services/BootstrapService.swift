import Foundation
public import GRPCCore
public import Logging
public import RPC
import Crypto
import X509

/// `Bootstrap`: a new host enrolls (a join token buys it a certificate of its own), an enrolled
/// one renews its certificate, and `Init` accepts the agent on this node or redirects it, by the
/// redirect policy. A node that holds `maxAgents` streams refuses new agents
/// (RESOURCE_EXHAUSTED), so they try their next address or come back later, instead of the node
/// running out of descriptors; one over its connect rate (`admission`) tells each when to come back.
public struct BootstrapService: Aspire_V1_Bootstrap.ServiceProtocol {
    let nodeName: String
    let policy: RedirectPolicy
    /// The cluster's live nodes, for ``RedirectPolicy/cluster``, and whether this one drains.
    let cluster: ClusterView?
    let registry: SessionRegistry
    let store: SQLStore
    /// The CA that signs agents' certificates; nil on a node without TLS.
    let signer: CertificateAuthority.Signer?
    /// How long the certificates it signs are valid.
    let certificateLifetime: Duration
    let maxAgents: Int
    let admission: ConnectAdmission?
    let logger: Logger

    public init(
        nodeName: String, policy: RedirectPolicy, cluster: ClusterView? = nil, registry: SessionRegistry, store: SQLStore,
        signer: CertificateAuthority.Signer?, certificateLifetime: Duration = .seconds(CertificateAuthority.Signer.agentLifetime),
        maxAgents: Int = .max, admission: ConnectAdmission? = nil, logger: Logger
    ) {
        self.admission = admission
        self.cluster = cluster
        self.certificateLifetime = certificateLifetime
        self.nodeName = nodeName
        self.policy = policy
        self.registry = registry
        self.store = store
        self.signer = signer
        self.maxAgents = maxAgents
        self.logger = logger
    }

    public func enroll(
        request: ServerRequest<Aspire_V1_EnrollRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Aspire_V1_EnrollResponse> {
        // The interceptor let the call through with a bearer token; the enrollment takes a use
        // of it, or refuses it, in the same transaction that records the certificate.
        let secret = request.metadata[stringValues: "authorization"].first(where: { _ in true }).flatMap(Secret.bearerToken) ?? ""
        return ServerResponse(message: try await self.enroll(request.message, joinToken: secret, context: context))
    }

    func enroll(_ request: Aspire_V1_EnrollRequest, joinToken secret: String, context: ServerContext) async throws -> Aspire_V1_EnrollResponse {
        try AgentIdentity.validate(agentSN: request.agentSn)
        let signer = try self.requireSigner()
        let certificate = try signer.issueAgentCertificate(requestDER: Array(request.csr), agentSN: request.agentSn, lifetime: self.certificateLifetime.seconds)
        let notAfter = certificate.notValidAfter.unixMilliseconds
        let token: JoinTokenRecord
        do {
            token = try await self.store.enroll(
                agentSN: request.agentSn, hostname: String(request.hostname.prefix(255)), joinToken: secret,
                serial: AgentIdentity.serial(of: certificate), notAfter: notAfter,
                keyDigest: SHA256.hash(data: certificate.publicKey.subjectPublicKeyInfoBytes).hexString
            )
        } catch let error as AspireError {
            self.logger.warning(
                "enrollment refused",
                metadata: ["agent.sn": "\(request.agentSn)", "agent.peer": "\(context.remotePeer)", "reason": "\(error.cause)"]
            )
            throw error
        }
        self.logger.notice(
            "host enrolled",
            metadata: [
                "agent.sn": "\(request.agentSn)", "agent.peer": "\(context.remotePeer)", "join_token": "\(token.id)",
                "cert.serial": "\(AgentIdentity.serial(of: certificate))", "cert.not_after": "\(certificate.notValidAfter)",
            ]
        )
        var response = Aspire_V1_EnrollResponse()
        response.certificate = try certificate.pemText
        response.notAfter = Int64(certificate.notValidAfter.timeIntervalSince1970)
        return response
    }

    public func renew(
        request: ServerRequest<Aspire_V1_RenewRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Aspire_V1_EnrollResponse> {
        ServerResponse(message: try await self.renew(request.message, context: context))
    }

    func renew(_ request: Aspire_V1_RenewRequest, context: ServerContext) async throws -> Aspire_V1_EnrollResponse {
        let signer = try self.requireSigner()
        guard let caller = VerifiedPeer.of(context), let agentSN = caller.agentSN else {
            throw RPCError(code: .unauthenticated, message: "renew with the certificate being renewed (mutual TLS)")
        }
        let certificate = try signer.issueAgentCertificate(requestDER: Array(request.csr), agentSN: agentSN, lifetime: self.certificateLifetime.seconds)
        let newSerial = AgentIdentity.serial(of: certificate)
        guard
            try await self.store.renewIdentity(
                agentSN: agentSN, serial: caller.serial, newSerial: newSerial, notAfter: certificate.notValidAfter.unixMilliseconds
            )
        else {
            throw RPCError(code: .permissionDenied, message: "this certificate of \(agentSN) is no longer its current one")
        }
        self.logger.info(
            "agent certificate renewed",
            metadata: ["agent.sn": "\(agentSN)", "cert.serial": "\(newSerial)", "cert.not_after": "\(certificate.notValidAfter)"]
        )
        var response = Aspire_V1_EnrollResponse()
        response.certificate = try certificate.pemText
        response.notAfter = Int64(certificate.notValidAfter.timeIntervalSince1970)
        return response
    }

    private func requireSigner() throws -> CertificateAuthority.Signer {
        guard let signer = self.signer else {
            throw RPCError(
                code: .failedPrecondition,
                message: "this node runs without TLS (--insecure): agents connect with a join token and get no certificate"
            )
        }
        return signer
    }

    public func `init`(
        request: ServerRequest<Aspire_V1_InitRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Aspire_V1_InitResponse> {
        ServerResponse(message: try await self.`init`(request.message, context: context))
    }

    func `init`(_ request: Aspire_V1_InitRequest, context: ServerContext) async throws -> Aspire_V1_InitResponse {
        try VerifiedPeer.claim(request.agentSn, by: VerifiedPeer.of(context), in: "Init", peer: context.remotePeer, logger: self.logger)
        var response = Aspire_V1_InitResponse()
        response.node = self.nodeName
        let decision = self.policy.decide(
            agentSN: request.agentSn, visited: Set(request.visited), cluster: self.cluster, draining: self.cluster?.draining ?? false
        )
        switch decision {
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
            if let wait = self.admission?.admit(request.agentSn) {
                self.logger.debug("agent over the connect rate, given a later slot", metadata: ["agent.sn": "\(request.agentSn)", "admission.wait_ms": "\(wait.milliseconds)"])
                throw Admission.refusal(node: self.nodeName, wait: wait)
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
