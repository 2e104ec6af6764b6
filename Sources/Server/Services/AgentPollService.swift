import Foundation
public import GRPCCore
public import Logging
public import RPC

/// `AgentPoll`: the seed's plain-HTTP agents, which report their status now and then and pick
/// up due commands in the answer. The gateway maps `POST /agent/status` and
/// `POST /agent/job/result` onto it; the same task engine and store serve both kinds of agent.
///
/// Such hosts are recorded on the node name ``polledNode``; they are online while they report
/// and go offline after three missed `step`s (the task engine's sweep).
struct AgentPollService: Aspire_V1_AgentPoll.SimpleServiceProtocol {
    /// The `node` of hosts that poll instead of holding a stream.
    static let polledNode = "http"

    let store: SQLStore
    let engine: TaskEngine
    let logger: Logger

    func report(request: Aspire_V1_PollRequest, context: ServerContext) async throws -> Aspire_V1_PollResponse {
        try AgentIdentity.validate(agentSN: request.agentSn)
        try await self.requirePlainHost(request.agentSn)
        let status = request.status
        let known = try await self.store.host(agentSN: request.agentSn)
        if known == nil || known?.status != .online || known?.curvers != status.version || known?.hostname != status.hostname {
            var registration = HostRegistration(
                agentSN: request.agentSn, hostname: status.hostname, ipaddr: request.ipaddr, os: known?.os ?? "",
                arch: known?.arch ?? "", version: status.version, node: Self.polledNode
            )
            if registration.hostname.isEmpty { registration.hostname = known?.hostname ?? "" }
            try await self.store.registerHost(registration)
            self.logger.info(
                "polling agent online",
                metadata: ["agent.sn": "\(request.agentSn)", "agent.hostname": "\(status.hostname)", "agent.address": "\(request.ipaddr)"]
            )
        }
        try await self.store.recordStatus(status, agentSN: request.agentSn)
        var response = Aspire_V1_PollResponse()
        response.commands = try await self.engine.poll(for: request.agentSn)
        return response
    }

    /// Stores the results of a host's jobs. The seed's result body names no host: then each job's
    /// id (unguessable, made for one host) says whose it is; a result for no known job is taken
    /// and dropped, so the agent does not send it for ever.
    func submitResults(request: Aspire_V1_SubmitResultsRequest, context: ServerContext) async throws -> Aspire_V1_SubmitResultsResponse {
        if !request.agentSn.isEmpty { try AgentIdentity.validate(agentSN: request.agentSn) }
        for result in request.results where result.id.isEmpty {
            throw AspireError(.badRequest, "every result needs the id of its job")
        }
        let owners = request.agentSn.isEmpty ? try await self.store.subtaskHosts(ids: request.results.map(\.id)) : [:]
        var response = Aspire_V1_SubmitResultsResponse()
        for result in request.results {
            guard let host = request.agentSn.isEmpty ? owners[result.id] : request.agentSn else {
                response.stored.append(result.id)
                continue
            }
            try await self.requirePlainHost(host)
            if await self.engine.resultArrived(result, from: host) {
                response.stored.append(result.id)
            }
        }
        return response
    }

    /// A host holding a certificate (or banned) is driven only over its own mutual-TLS stream:
    /// nobody speaks for it here, where callers are known by nothing but their address.
    private func requirePlainHost(_ agentSN: String) async throws {
        guard let identity = try await self.store.identity(agentSN: agentSN) else { return }
        let why = identity.banned != 0 ? "is banned" : "holds a certificate: it reports over its own mutual-TLS stream only"
        self.logger.warning("seed agent route refused", metadata: ["agent.sn": "\(agentSN)", "reason": "\(why)"])
        throw AspireError(.permissionDenied, "host \(agentSN) \(why)")
    }
}
