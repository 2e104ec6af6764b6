public import GRPCCore
public import Logging
public import RPC
import SwiftProtobuf
import X509

/// Checks every call before any handler sees it, in one place for the agent listener and the
/// gateway's in-process calls alike:
/// - Admin (and the seed agents' AgentPoll, which only the gateway calls): an operator's token
///   (the node's `admin.token`, or one made by CreateOperator) whose role has the permission the
///   method needs in ``AccessTable``; an operator with a scope acts only on the hosts it selects
///   (``ScopeCheck``);
/// - Bootstrap.Enroll: a join token (the enrollment itself takes one use of it, atomically);
/// - Bootstrap.Init: an agent's certificate, or a join token (it only says where to go);
/// - every other agent call: the host's client certificate, which must be the host's current
///   one in the store and not banned. On a node started `--insecure` (no TLS, so no
///   certificates) agents call with a join token and are taken at their word;
/// - PackageStore: an agent's certificate, or an operator who may read;
/// - NodeLink: another node of the cluster, by its certificate (``NodeIdentity``), or on nodes
///   started `--insecure` the admin token the cluster's nodes share.
/// Calls to any other service are refused.
public struct AuthInterceptor: ServerInterceptor {
    enum Access: Sendable {
        case operatorCall(Permission)
        case join
        case agent
        /// Init: an agent's certificate, or a usable join token (a host not enrolled yet asks
        /// where to go, then enrolls at the node that accepts it).
        case agentOrJoin
        case agentOrAdmin
        case node
    }

    private let adminToken: String
    private let store: SQLStore
    private let insecure: Bool
    private let audit: CallAudit
    private let logger: Logger

    public init(adminToken: String, store: SQLStore, insecure: Bool, nodeName: String, logger: Logger) {
        self.adminToken = adminToken
        self.store = store
        self.insecure = insecure
        self.audit = CallAudit(store: store, node: nodeName, logger: logger)
        self.logger = logger
    }

    static func access(_ method: MethodDescriptor) -> Access? {
        switch method.service.fullyQualifiedService {
        case "aspire.v1.Bootstrap": ["Enroll": .join, "Init": .agentOrJoin][method.method] ?? .agent
        case "aspire.v1.AgentChannel": .agent
        case "aspire.v1.PackageStore": .agentOrAdmin
        case "aspire.v1.NodeLink": .node
        default: AccessTable.permission(service: method.service.fullyQualifiedService, method: method.method).map(Access.operatorCall)
        }
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        var request = request
        var principal: Principal?
        /// Who the audit trail names for a mutating call; nil for calls it does not record.
        var audited: (actor: String, role: String)?
        /// The call's one message, when the scope check or the trail needs it: read once, and
        /// the call goes on with it.
        var message: (any SwiftProtobuf.Message & Sendable)?
        var messageRead = false
        do {
            guard let access = Self.access(context.descriptor) else {
                throw RPCError(code: .unauthenticated, message: "no access to \(context.descriptor.service.fullyQualifiedService)")
            }
            let bearer = request.metadata[stringValues: "authorization"].first(where: { _ in true }).flatMap(Secret.bearerToken)
            let certificate = VerifiedPeer.of(context)
            switch access {
            case .operatorCall(let permission):
                let caller = try await self.authenticate(bearer)
                let mutating = [.operate, .administer].contains(permission) && context.descriptor.service.fullyQualifiedService == "aspire.v1.Admin"
                do {
                    try Self.require(permission, of: caller, method: context.descriptor.method)
                    if permission == .operate, !caller.scope.isEmpty {
                        (message, messageRead) = (try await Self.takeMessage(&request, context: context), true)
                        if let message { try await ScopeCheck(store: self.store).check(message, scope: caller.scope, caller: caller.name) }
                    }
                } catch {
                    // A refused attempt to change something is recorded too.
                    if mutating {
                        return try await self.audit.around(actor: caller.name, role: caller.role.rawValue, message: nil, context: context) {
                            throw error
                        }
                    }
                    throw error
                }
                principal = caller
                if mutating { audited = (caller.name, caller.role.rawValue) }
            case .join:
                guard bearer != nil else {
                    throw RPCError(code: .unauthenticated, message: "missing 'authorization: Bearer <join token>' metadata")
                }
                audited = ("host", "agent")
            case .agent:
                try await self.requireAgent(certificate, bearer: bearer, context: context)
                if context.descriptor.method == "Renew" {
                    audited = ("host:\(certificate?.agentSN ?? "?")", "agent")
                }
            case .agentOrJoin:
                if certificate == nil, let bearer { try await self.requireJoinToken(bearer) } else {
                    try await self.requireAgent(certificate, bearer: bearer, context: context)
                }
            case .node:
                if let certificate, certificate.nodeName != nil {
                } else if self.insecure, let bearer, Secret.matches(bearer, self.adminToken) {
                } else {
                    throw RPCError(code: .permissionDenied, message: "only the cluster's nodes call NodeLink (with their node certificate)")
                }
            case .agentOrAdmin:
                if certificate == nil, bearer != nil {
                    try Self.require(.read, of: try await self.authenticate(bearer), method: context.descriptor.method)
                } else {
                    try await self.requireAgent(certificate, bearer: bearer, context: context)
                }
            }
        } catch let error as RPCError {
            return StreamingServerResponse(error: error)
        } catch let error as AspireError {
            return StreamingServerResponse(error: RPCError(error))
        } catch {
            self.logger.error("cannot check a call", metadata: ["rpc.method": "\(context.descriptor)", "error": "\(String(reflecting: error))"])
            return StreamingServerResponse(error: RPCError(code: .unavailable, message: "the server cannot check this call now; try again"))
        }
        let call = request
        guard var audited else {
            guard let principal else { return try await next(call, context) }
            return try await CallContext.$principal.withValue(principal) { try await next(call, context) }
        }
        // A mutating call: its one message goes into the trail.
        if !messageRead { message = try await Self.takeMessage(&request, context: context) }
        if let enrolling = message as? Aspire_V1_EnrollRequest { audited.actor = "host:\(enrolling.agentSn)" }
        let forwarded = request
        return try await self.audit.around(actor: audited.actor, role: audited.role, message: message, context: context) {
            guard let principal else { return try await next(forwarded, context) }
            return try await CallContext.$principal.withValue(principal) { try await next(forwarded, context) }
        }
    }

    /// The operator a token belongs to.
    private func authenticate(_ bearer: String?) async throws(RPCError) -> Principal {
        guard let bearer else {
            throw RPCError(code: .unauthenticated, message: "missing 'authorization: Bearer <token>' metadata")
        }
        if Secret.matches(bearer, self.adminToken) { return .admin }
        let record: OperatorRecord?
        do {
            record = try await self.store.operator(secret: bearer)
        } catch {
            throw RPCError(code: .unavailable, message: "the server cannot check tokens now; try again")
        }
        guard let record else { throw RPCError(code: .unauthenticated, message: "wrong admin token (no operator holds this token)") }
        return record.principal
    }

    /// Refuses an operator whose role lacks `permission`.
    private static func require(_ permission: Permission, of principal: Principal, method: String) throws(RPCError) {
        guard principal.role.permissions.contains(permission) else {
            throw RPCError(
                code: .permissionDenied,
                message: "\(principal.name) (\(principal.role.rawValue)) may not call \(method): it needs the \(permission.rawValue) permission"
            )
        }
    }

    /// Reads a unary call's one message and leaves the request carrying it on; nil for a
    /// client-streaming call (a package upload), whose stream is left alone.
    private static func takeMessage<Input: Sendable>(
        _ request: inout StreamingServerRequest<Input>,
        context: ServerContext
    ) async throws -> (any SwiftProtobuf.Message & Sendable)? {
        guard context.descriptor.method != "UploadPackage" else { return nil }
        var iterator = request.messages.makeAsyncIterator()
        guard let first = try await iterator.next() else { return nil }
        request = StreamingServerRequest(metadata: request.metadata, messages: RPCAsyncSequence(wrapping: OneMessage(message: first)))
        return first as? any SwiftProtobuf.Message & Sendable
    }

    private func requireAgent(_ certificate: VerifiedPeer?, bearer: String?, context: ServerContext) async throws(RPCError) {
        guard let certificate else {
            if self.insecure, let bearer { return try await self.requireJoinToken(bearer) }
            throw RPCError(
                code: .unauthenticated,
                message: """
                    agents call with their own client certificate (mutual TLS); a host without one enrolls first with a join \
                    token (Bootstrap.Enroll; boot does it by itself with --token-file)
                    """
            )
        }
        guard let agentSN = certificate.agentSN else {
            throw RPCError(code: .permissionDenied, message: "the client certificate names no AgentSN (SAN aspire://agent/<AgentSN>)")
        }
        let identity: IdentityRecord?
        do {
            identity = try await self.store.identity(agentSN: agentSN)
        } catch {
            self.logger.error("cannot check an agent's certificate", metadata: ["agent.sn": "\(agentSN)", "error": "\(String(reflecting: error))"])
            throw RPCError(code: .unavailable, message: "the server cannot check certificates now; try again")
        }
        let serial = certificate.serial
        guard let identity, identity.banned == 0, identity.serial == serial else {
            let why =
                identity?.banned ?? 0 != 0
                ? "host \(agentSN) is banned"
                : "this certificate of \(agentSN) was taken back (the host was deleted, or holds a newer certificate)"
            self.logger.warning(
                "agent certificate refused",
                metadata: ["agent.sn": "\(agentSN)", "agent.peer": "\(context.remotePeer)", "cert.serial": "\(serial)", "reason": "\(why)"]
            )
            throw RPCError(code: .permissionDenied, message: why)
        }
    }

    private func requireJoinToken(_ secret: String) async throws(RPCError) {
        let token: JoinTokenRecord?
        do {
            token = try await self.store.joinToken(secret: secret)
        } catch {
            throw RPCError(code: .unavailable, message: "the server cannot check join tokens now; try again")
        }
        guard let token else { throw RPCError(code: .unauthenticated, message: "unknown join token") }
        let state = token.state(now: SQLStore.now)
        guard state == .usable else { throw RPCError(code: .unauthenticated, message: "join token \(token.id) is \(state.rawValue)") }
    }
}

extension VerifiedPeer {
    /// The AgentSN a message names, when `caller` may speak for it: its own certificate's, or any
    /// on a node without TLS (no certificate, agents taken at their word). PERMISSION_DENIED (and
    /// a log line) when the caller's certificate names another host.
    @discardableResult
    public static func claim(_ agentSN: String, by caller: VerifiedPeer?, in what: String, peer: String, logger: Logger) throws -> String {
        try AgentIdentity.validate(agentSN: agentSN)
        if let own = caller?.agentSN, own != agentSN {
            logger.warning(
                "agent named another host",
                metadata: ["agent.sn": "\(own)", "claimed.sn": "\(agentSN)", "agent.peer": "\(peer)", "message": "\(what)"]
            )
            throw RPCError(code: .permissionDenied, message: "\(what) names \(agentSN), but this certificate is \(own)'s")
        }
        return agentSN
    }
}

/// A request stream of the one message an interceptor already read.
private struct OneMessage<Element: Sendable>: AsyncSequence, Sendable {
    let message: Element

    struct AsyncIterator: AsyncIteratorProtocol {
        var message: Element?

        mutating func next() async throws -> Element? {
            defer { self.message = nil }
            return self.message
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(message: self.message) }
}

/// What the interceptor learned of a call, for its handler: unary handlers run inside the
/// interceptor's `next`, so they see it.
public enum CallContext {
    /// The operator making the Admin call.
    @TaskLocal public static var principal: Principal?
}
