public import GRPCCore

/// Adds `authorization: Bearer <token>` to every outgoing call.
public struct BearerTokenInterceptor: ClientInterceptor {
    private let value: String

    public init(token: String) {
        self.value = "Bearer \(token)"
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingClientRequest<Input>,
        context: ClientContext,
        next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
    ) async throws -> StreamingClientResponse<Output> {
        var request = request
        request.metadata.replaceOrAddString(self.value, forKey: "authorization")
        return try await next(request, context)
    }
}
