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

/// Operators: named credentials with a role and a scope.
extension AdminService {
    public func createOperator(request: Aspire_V1_CreateOperatorRequest, context: ServerContext) async throws -> Aspire_V1_CreateOperatorResponse {
        guard let role = Role(rawValue: request.role) else {
            throw AspireError(.badRequest, "role must be one of \(Role.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let (record, secret) = try await self.store.createOperator(Principal(name: request.name, role: role, scope: request.scope))
        self.logger.notice(
            "operator created",
            metadata: ["operator.name": "\(request.name)", "operator.role": "\(role.rawValue)", "operator.scope": "\(request.scope)"]
        )
        var response = Aspire_V1_CreateOperatorResponse()
        response.operator = Aspire_V1_OperatorInfo(record)
        response.secret = secret
        return response
    }

    public func listOperators(request: Aspire_V1_ListOperatorsRequest, context: ServerContext) async throws -> Aspire_V1_ListOperatorsResponse {
        var response = Aspire_V1_ListOperatorsResponse()
        response.operators = try await self.store.operators().map(Aspire_V1_OperatorInfo.init(_:))
        return response
    }

    public func revokeOperator(request: Aspire_V1_RevokeOperatorRequest, context: ServerContext) async throws -> Aspire_V1_OperatorInfo {
        let record = try await self.store.revokeOperator(name: request.name)
        self.logger.notice("operator revoked", metadata: ["operator.name": "\(request.name)"])
        return Aspire_V1_OperatorInfo(record)
    }
}

extension Aspire_V1_OperatorInfo {
    init(_ record: OperatorRecord) {
        self.init()
        self.name = record.principal.name
        self.role = record.principal.role.rawValue
        self.scope = record.principal.scope
        self.createdUnixMs = record.created
        self.revokedUnixMs = record.revoked
    }
}

extension AdminService {
    public func whoAmI(request: Aspire_V1_WhoAmIRequest, context: ServerContext) async throws -> Aspire_V1_OperatorInfo {
        guard let principal = CallContext.principal else {
            throw RPCError(code: .internalError, message: "the call reached its handler without an operator")
        }
        return Aspire_V1_OperatorInfo(OperatorRecord(principal: principal))
    }
}

/// The audit trail.
extension AdminService {
    public func listAudit(request: Aspire_V1_ListAuditRequest, context: ServerContext) async throws -> Aspire_V1_ListAuditResponse {
        var query = AuditQuery()
        query.actor = request.operator.isEmpty ? nil : request.operator
        query.since = request.sinceUnixMs > 0 ? request.sinceUnixMs : nil
        query.method = request.method.isEmpty ? nil : request.method
        query.page = try Self.page(offset: request.offset, limit: request.limit == 0 ? 100 : request.limit, descending: true)
        let listing = try await self.store.audit(query)
        var response = Aspire_V1_ListAuditResponse()
        response.count = Int32(listing.count)
        response.entries = listing.items.map { record in
            var entry = Aspire_V1_AuditEntry()
            entry.id = Int64(record.id)
            entry.timeUnixMs = record.time
            entry.actor = record.actor
            entry.role = record.role
            entry.address = record.address
            entry.node = record.node
            entry.method = record.method
            entry.targets = record.targets
            entry.resolved = record.resolved
            entry.digest = record.digest
            entry.command = record.command
            entry.outcome = record.outcome
            entry.task = Int64(record.task)
            entry.subtask = record.subtask
            return entry
        }
        return response
    }
}
