import GRPCCore
import GRPCNIOTransportHTTP2
import RPC

/// A node a test talks to over gRPC, in this process (``LocalNode``) or a real `aspire-server`
/// (``TestNode``): the calls tests make of either, written once.
protocol NodeUnderTest: Sendable {
    /// Its agent listener.
    var address: HostPort { get }
    var caFile: String { get }
    var adminToken: String { get throws }
}

extension NodeUnderTest {
    /// Runs `body` with one gRPC client of this node (TLS, verified against its CA) carrying
    /// `token`, the admin token by default.
    func withClient<Result: Sendable>(
        token: String? = nil,
        _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws -> Result {
        let transport = try Transports.client(address: self.address, security: .tls(caFile: self.caFile))
        let interceptors: [any ClientInterceptor] = try [BearerTokenInterceptor(token: token ?? self.adminToken)]
        return try await withGRPCClient(transport: transport, interceptors: interceptors, handleClient: body)
    }

    func admin<Result: Sendable>(_ body: (Aspire_V1_Admin.Client<HTTP2ClientTransport.Posix>) async throws -> Result) async throws -> Result {
        try await self.withClient { try await body(Aspire_V1_Admin.Client(wrapping: $0)) }
    }

    func createTask(_ request: Aspire_V1_CreateTaskRequest) async throws -> Aspire_V1_TaskDetail {
        try await self.admin { try await $0.createTask(request) }
    }

    func task(_ id: Int64) async throws -> Aspire_V1_TaskDetail {
        var request = Aspire_V1_GetTaskRequest()
        request.id = id
        return try await self.admin { try await $0.getTask(request) }
    }
}
