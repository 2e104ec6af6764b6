import Foundation
import Logging
public import GRPCCore
public import RPC

/// Hosts' certificates and the join tokens new hosts enroll with.
extension AdminService {
    public func deleteHost(request: Aspire_V1_DeleteHostRequest, context: ServerContext) async throws -> Aspire_V1_Host {
        try AgentIdentity.validate(agentSN: request.agentSn)
        let host = try await self.store.deleteHost(agentSN: request.agentSn)
        self.logger.notice("host deleted; its certificate is taken back", metadata: ["agent.sn": "\(request.agentSn)"])
        await self.revocations.closeRevoked(request.agentSn)
        return Aspire_V1_Host(host)
    }

    public func banHost(request: Aspire_V1_BanHostRequest, context: ServerContext) async throws -> Aspire_V1_Host {
        try AgentIdentity.validate(agentSN: request.agentSn)
        guard request.reason.utf8.count <= 1024 else { throw AspireError(.badRequest, "reason: at most 1024 bytes") }
        let host = try await self.store.banHost(agentSN: request.agentSn, reason: request.reason, lift: request.lift)
        if request.lift {
            self.logger.notice("host ban lifted; it may enroll again", metadata: ["agent.sn": "\(request.agentSn)"])
        } else {
            self.logger.notice("host banned", metadata: ["agent.sn": "\(request.agentSn)", "reason": "\(request.reason)"])
            await self.revocations.closeRevoked(request.agentSn)
        }
        return Aspire_V1_Host(host)
    }

    public func createJoinToken(
        request: Aspire_V1_CreateJoinTokenRequest,
        context: ServerContext
    ) async throws -> Aspire_V1_CreateJoinTokenResponse {
        guard request.note.utf8.count <= 256 else { throw AspireError(.badRequest, "note: at most 256 bytes") }
        let ttl: Int64? = request.ttlSeconds < 0 ? nil : (request.ttlSeconds == 0 ? 24 * 3600 : request.ttlSeconds)
        let (token, secret) = try await self.store.createJoinToken(
            ttl: ttl, maxUses: Int(request.maxUses), tags: request.tags, note: request.note
        )
        self.logger.notice(
            "join token created",
            metadata: ["join_token": "\(token.id)", "join_token.max_uses": "\(token.maxUses)", "join_token.expires": "\(token.expires)"]
        )
        var response = Aspire_V1_CreateJoinTokenResponse()
        response.token = Aspire_V1_JoinToken(token)
        response.secret = secret
        return response
    }

    public func listJoinTokens(request: Aspire_V1_ListJoinTokensRequest, context: ServerContext) async throws -> Aspire_V1_ListJoinTokensResponse {
        var response = Aspire_V1_ListJoinTokensResponse()
        response.tokens = try await self.store.joinTokens(all: request.all).map(Aspire_V1_JoinToken.init(_:))
        return response
    }

    public func revokeJoinToken(request: Aspire_V1_RevokeJoinTokenRequest, context: ServerContext) async throws -> Aspire_V1_JoinToken {
        guard !request.id.isEmpty else { throw AspireError(.badRequest, "id is required") }
        let token = try await self.store.revokeJoinToken(id: request.id)
        self.logger.notice("join token revoked", metadata: ["join_token": "\(token.id)"])
        return Aspire_V1_JoinToken(token)
    }
}

extension Aspire_V1_JoinToken {
    init(_ record: JoinTokenRecord) {
        self.init()
        self.id = record.id
        self.note = record.note
        self.tags = record.tags
        self.createdUnixMs = record.created
        self.expiresUnixMs = record.expires
        self.maxUses = Int32(record.maxUses)
        self.uses = Int32(record.uses)
        self.revokedUnixMs = record.revoked
        self.state = record.state(now: Date().unixMilliseconds).rawValue
    }
}
