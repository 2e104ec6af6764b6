public import GRPCCore
import RPC

/// Checks the bearer token of every call before any handler sees it: Admin calls need the
/// admin token, agent calls (Bootstrap, AgentChannel, AgentPoll, PackageStore) the enrollment token; operators may
/// download packages with the admin token too. Calls to any other service are refused. One place, so per-agent
/// certificates can join it later.
public struct AuthInterceptor: ServerInterceptor {
    /// Which token a service wants.
    public enum Role: Sendable {
        case admin
        case agent
    }

    private let tokens: [Role: String]
    private let roles: [String: [Role]]

    public init(adminToken: String, enrollmentToken: String) {
        self.tokens = [.admin: adminToken, .agent: enrollmentToken]
        self.roles = [
            "aspire.v1.Admin": [.admin],
            "aspire.v1.Bootstrap": [.agent],
            "aspire.v1.AgentChannel": [.agent],
            "aspire.v1.AgentPoll": [.agent],
            "aspire.v1.PackageStore": [.agent, .admin],
        ]
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let service = context.descriptor.service.fullyQualifiedService
        guard let roles = self.roles[service], !roles.isEmpty else {
            return StreamingServerResponse(error: RPCError(code: .unauthenticated, message: "no access to \(service)"))
        }
        guard let header = request.metadata[stringValues: "authorization"].first(where: { _ in true }) else {
            return StreamingServerResponse(
                error: RPCError(code: .unauthenticated, message: "missing 'authorization: Bearer <token>' metadata")
            )
        }
        guard let token = Secret.bearerToken(header), roles.contains(where: { self.tokens[$0].map { Secret.matches(token, $0) } ?? false }) else {
            return StreamingServerResponse(
                error: RPCError(
                    code: .unauthenticated,
                    message: roles == [.admin] ? "wrong admin token" : "wrong enrollment token"
                )
            )
        }
        return try await next(request, context)
    }
}
