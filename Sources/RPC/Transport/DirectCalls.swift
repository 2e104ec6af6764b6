import AsyncAlgorithms
public import GRPCCore

/// Calls to a service of this process made without a transport: the request message handed to
/// the service's handler as it is, through the same server interceptors, and the answer handed
/// back as the message itself. The REST gateway reaches the Admin service this way on a server
/// node; through the in-process gRPC transport, every page went to protobuf bytes and was parsed
/// back between two parts of one process (~16 % of a REST task page's CPU, bench/README.md P6).
///
/// What a gRPC server gives a handler is kept: the interceptors in their order, the method's
/// descriptor, and errors turned into `RPCError` as grpc-swift turns them (an `RPCError` as it
/// is, an `RPCErrorConvertible` converted, anything else `unknown`). The context's cancellation
/// handle is never fired (no service reads it): a caller that goes away cancels the handler's
/// task itself, as the handler runs in the caller's task. Each service's client protocol is met
/// by a generated `DirectClient` (scripts/generate-protos.sh) whose methods are one call each to
/// the four shapes below.
public struct DirectCalls: Sendable {
    public typealias Handler<Input: Sendable, Output: Sendable> =
        @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>

    let interceptors: [any ServerInterceptor]
    /// Both peers of every call, as a handler or an audit record sees them.
    let peer: String

    public init(interceptors: [any ServerInterceptor], peer: String = "in-process") {
        self.interceptors = interceptors
        self.peer = peer
    }

    public func unary<Input: Sendable, Output: Sendable, Result: Sendable>(
        _ request: ClientRequest<Input>,
        method: MethodDescriptor,
        handler: @escaping Handler<Input, Output>,
        onResponse: @Sendable @escaping (ClientResponse<Output>) async throws -> Result
    ) async throws -> Result {
        let single = StreamingServerRequest(single: ServerRequest(metadata: request.metadata, message: request.message))
        let response = await self.respond(to: single, method: method, handler: handler)
        return try await onResponse(await Self.single(response))
    }

    public func serverStreaming<Input: Sendable, Output: Sendable, Result: Sendable>(
        _ request: ClientRequest<Input>,
        method: MethodDescriptor,
        handler: @escaping Handler<Input, Output>,
        onResponse: @Sendable @escaping (StreamingClientResponse<Output>) async throws -> Result
    ) async throws -> Result {
        let single = StreamingServerRequest(single: ServerRequest(metadata: request.metadata, message: request.message))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            let response = await self.respond(to: single, method: method, handler: handler)
            defer { group.cancelAll() }
            return try await onResponse(Self.stream(response, in: &group))
        }
    }

    public func clientStreaming<Input: Sendable, Output: Sendable, Result: Sendable>(
        _ request: StreamingClientRequest<Input>,
        method: MethodDescriptor,
        handler: @escaping Handler<Input, Output>,
        onResponse: @Sendable @escaping (ClientResponse<Output>) async throws -> Result
    ) async throws -> Result {
        try await withThrowingTaskGroup(of: Void.self) { group in
            let response = await self.respond(to: Self.stream(request, in: &group), method: method, handler: handler)
            defer { group.cancelAll() }
            return try await onResponse(await Self.single(response))
        }
    }

    public func bidirectionalStreaming<Input: Sendable, Output: Sendable, Result: Sendable>(
        _ request: StreamingClientRequest<Input>,
        method: MethodDescriptor,
        handler: @escaping Handler<Input, Output>,
        onResponse: @Sendable @escaping (StreamingClientResponse<Output>) async throws -> Result
    ) async throws -> Result {
        try await withThrowingTaskGroup(of: Void.self) { group in
            let response = await self.respond(to: Self.stream(request, in: &group), method: method, handler: handler)
            defer { group.cancelAll() }
            return try await onResponse(Self.stream(response, in: &group))
        }
    }

    /// The request through the interceptors to the handler; whatever they throw becomes the
    /// response's error.
    private func respond<Input: Sendable, Output: Sendable>(
        to request: StreamingServerRequest<Input>, method: MethodDescriptor, handler: @escaping Handler<Input, Output>
    ) async -> StreamingServerResponse<Output> {
        let context = ServerContext(descriptor: method, remotePeer: self.peer, localPeer: self.peer, cancellation: .init())
        do {
            return try await Self.intercept(request, context, self.interceptors[...], handler)
        } catch {
            return StreamingServerResponse(error: Self.rpcError(error))
        }
    }

    private static func intercept<Input: Sendable, Output: Sendable>(
        _ request: StreamingServerRequest<Input>, _ context: ServerContext, _ interceptors: ArraySlice<any ServerInterceptor>,
        _ handler: @escaping Handler<Input, Output>
    ) async throws -> StreamingServerResponse<Output> {
        guard let interceptor = interceptors.first else { return try await handler(request, context) }
        let rest = interceptors.dropFirst()
        return try await interceptor.intercept(request: request, context: context) { try await Self.intercept($0, $1, rest, handler) }
    }

    private static func rpcError(_ error: any Error) -> RPCError {
        switch error {
        case let error as RPCError: error
        case let error as any RPCErrorConvertible: RPCError(error)
        default: RPCError(code: .unknown, message: "Service method threw an unknown error.", cause: error)
        }
    }

    /// A one-message answer: the response's producer run to its end, its last message kept.
    private static func single<Output: Sendable>(_ response: StreamingServerResponse<Output>) async -> ClientResponse<Output> {
        let contents: StreamingServerResponse<Output>.Contents
        switch response.accepted {
        case .failure(let error): return ClientResponse(error: error)
        case .success(let accepted): contents = accepted
        }
        let kept = LastMessage<Output>()
        do {
            let trailing = try await contents.producer(RPCWriter(wrapping: kept))
            guard let message = kept.message else {
                return ClientResponse(metadata: contents.metadata, error: RPCError(code: .internalError, message: "the handler answered no message"))
            }
            return ClientResponse(message: message, metadata: contents.metadata, trailingMetadata: trailing)
        } catch {
            return ClientResponse(metadata: contents.metadata, error: Self.rpcError(error))
        }
    }

    /// A streamed answer: the response's producer run beside the caller, each message handed over
    /// as the caller reads it (the producer waits for the reader, as a transport's flow control
    /// makes it), its end or its error last.
    private static func stream<Output: Sendable>(
        _ response: StreamingServerResponse<Output>, in group: inout ThrowingTaskGroup<Void, any Error>
    ) -> StreamingClientResponse<Output> {
        let contents: StreamingServerResponse<Output>.Contents
        switch response.accepted {
        case .failure(let error): return StreamingClientResponse(error: error)
        case .success(let accepted): contents = accepted
        }
        let parts = AsyncThrowingChannel<StreamingClientResponse<Output>.Contents.BodyPart, any Error>()
        group.addTask {
            do {
                let trailing = try await contents.producer(RPCWriter(wrapping: ChannelWriter(channel: parts) { .message($0) }))
                await parts.send(.trailingMetadata(trailing))
                parts.finish()
            } catch {
                parts.fail(Self.rpcError(error))
            }
        }
        return StreamingClientResponse(accepted: .success(.init(metadata: contents.metadata, bodyParts: RPCAsyncSequence(wrapping: parts))))
    }

    /// A streamed request: the caller's producer run beside the handler, which reads its
    /// messages; a producer's error ends the handler's messages with it.
    private static func stream<Input: Sendable>(
        _ request: StreamingClientRequest<Input>, in group: inout ThrowingTaskGroup<Void, any Error>
    ) -> StreamingServerRequest<Input> {
        let messages = AsyncThrowingChannel<Input, any Error>()
        group.addTask {
            do {
                try await request.producer(RPCWriter(wrapping: ChannelWriter(channel: messages) { $0 }))
                messages.finish()
            } catch {
                messages.fail(error)
            }
        }
        return StreamingServerRequest(metadata: request.metadata, messages: RPCAsyncSequence(wrapping: messages))
    }
}

/// Keeps the last message written (a one-message answer writes one).
private final class LastMessage<Element: Sendable>: RPCWriterProtocol, @unchecked Sendable {
    // Written by the producer only, and read after it returned.
    var message: Element?

    func write(_ element: Element) async throws {
        self.message = element
    }

    func write(contentsOf elements: some Sequence<Element>) async throws {
        for element in elements { self.message = element }
    }
}

/// Writes into a channel, each write waiting for its reader.
private struct ChannelWriter<Element: Sendable, Part: Sendable>: RPCWriterProtocol {
    let channel: AsyncThrowingChannel<Part, any Error>
    let part: @Sendable (Element) -> Part

    func write(_ element: Element) async throws {
        await self.channel.send(self.part(element))
        try Task.checkCancellation()
    }

    func write(contentsOf elements: some Sequence<Element>) async throws {
        for element in elements { try await self.write(element) }
    }
}
