import GRPCCore
import RPC
import SwiftProtobuf
import Synchronization
import Testing

/// `DirectCalls` and the generated `DirectClient`s: what a gRPC server gives a handler, given
/// without a transport.
@Suite("Direct calls to a service of this process")
struct DirectCallsTests {
    /// A value the test and a service or interceptor share.
    final class Shared<Value: Sendable>: Sendable {
        private let value: Mutex<Value>
        init(_ value: Value) { self.value = Mutex(value) }
        func withLock<Result>(_ body: (inout Value) -> Result) -> Result { self.value.withLock { body(&$0) } }
    }

    /// Records each call it sees, and refuses a call whose metadata names it.
    struct Recorder: ServerInterceptor {
        let name: String
        let seen: Shared<[String]>

        func intercept<Input: Sendable, Output: Sendable>(
            request: StreamingServerRequest<Input>, context: ServerContext,
            next: (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
        ) async throws -> StreamingServerResponse<Output> {
            self.seen.withLock { $0.append("\(self.name) \(context.descriptor.method) from \(context.remotePeer)") }
            if request.metadata["refuse"].contains(where: { $0 == .string(self.name) }) {
                throw RPCError(code: .permissionDenied, message: "\(self.name) refused")
            }
            return try await next(request, context)
        }
    }

    /// AgentPoll: stores every result, or fails a report as its `ipaddr` asks.
    struct Poll: Aspire_V1_AgentPoll.SimpleServiceProtocol {
        func report(request: Aspire_V1_PollRequest, context: ServerContext) async throws -> Aspire_V1_PollResponse {
            switch request.ipaddr {
            case "aspire-error": throw AspireError(.notFound, "no such host")
            case "other-error": throw CancellationError()
            default: return Aspire_V1_PollResponse()
            }
        }

        func submitResults(request: Aspire_V1_SubmitResultsRequest, context: ServerContext) async throws -> Aspire_V1_SubmitResultsResponse {
            Aspire_V1_SubmitResultsResponse.with { $0.stored = request.results.map(\.id) }
        }
    }

    /// PackageStore: a download of endless chunks, numbered by their size; counts the chunks it
    /// wrote and notes that its producer ended.
    struct Endless: Aspire_V1_PackageStore.StreamingServiceProtocol {
        let written: Shared<Int>
        let ended: Shared<Bool>

        func download(
            request: StreamingServerRequest<Aspire_V1_DownloadRequest>, context: ServerContext
        ) async throws -> StreamingServerResponse<Aspire_V1_DownloadChunk> {
            StreamingServerResponse(metadata: ["path": "\(try await ServerRequest(stream: request).message.path)"]) { writer in
                defer { self.ended.withLock { $0 = true } }
                var size: Int64 = 0
                while true {
                    try await writer.write(Aspire_V1_DownloadChunk.with { $0.size = size })
                    self.written.withLock { $0 += 1 }
                    size += 1
                }
            }
        }
    }

    @Test("A unary call passes the interceptors in order to the handler; errors come back as a gRPC server sends them")
    func unary() async throws {
        let seen = Shared<[String]>([])
        let calls = DirectCalls(interceptors: [Recorder(name: "first", seen: seen), Recorder(name: "second", seen: seen)], peer: "test-peer")
        let client = Aspire_V1_AgentPoll.DirectClient(service: Poll(), calls: calls)

        let stored = try await client.submitResults(Aspire_V1_SubmitResultsRequest.with {
            $0.results = [.with { $0.id = "a" }, .with { $0.id = "b" }]
        })
        #expect(stored.stored == ["a", "b"])
        #expect(seen.withLock { $0 } == ["first SubmitResults from test-peer", "second SubmitResults from test-peer"])

        // Refused by the second interceptor: the handler is not reached, the error is the one thrown.
        seen.withLock { $0 = [] }
        let refused = await #expect(throws: RPCError.self) {
            try await client.report(Aspire_V1_PollRequest(), metadata: ["refuse": "second"])
        }
        #expect(refused?.code == .permissionDenied && refused?.message == "second refused")

        // The handler's own errors: an RPCErrorConvertible converted, anything else `unknown`.
        let notFound = await #expect(throws: RPCError.self) { try await client.report(.with { $0.ipaddr = "aspire-error" }) }
        #expect(notFound?.code == .notFound && notFound?.message == "no such host")
        let unknown = await #expect(throws: RPCError.self) { try await client.report(.with { $0.ipaddr = "other-error" }) }
        #expect(unknown?.code == .unknown)
    }

    @Test("A streamed answer is read as it is produced; a reader that stops early ends the call and the producer")
    func serverStreaming() async throws {
        let service = Endless(written: Shared(0), ended: Shared(false))
        let client = Aspire_V1_PackageStore.DirectClient(service: service, calls: DirectCalls(interceptors: []))
        let (path, sizes) = try await client.download(.with { $0.path = "linux/amd64/a.tar.gz" }) { response in
            var sizes: [Int64] = []
            for try await chunk in response.messages {
                sizes.append(chunk.size)
                if sizes.count == 3 { break }
            }
            return (response.metadata["path"].first { _ in true }, sizes)
        }
        #expect(path == .string("linux/amd64/a.tar.gz"))
        #expect(sizes == [0, 1, 2])
        // The producer waits for its reader: it got at most one chunk ahead, and it has ended.
        #expect(service.written.withLock { $0 } <= 4)
        #expect(service.ended.withLock { $0 })
    }

    @Test("A streamed request reaches the handler message by message; the caller's error ends the handler's messages")
    func clientStreaming() async throws {
        let calls = DirectCalls(interceptors: [])
        let method = MethodDescriptor(fullyQualifiedService: "test.Sum", method: "Sum")
        let handler: DirectCalls.Handler<Int, Int> = { request, _ in
            var sum = 0
            for try await number in request.messages { sum += number }
            return StreamingServerResponse(single: ServerResponse(message: sum))
        }
        let sum = try await calls.clientStreaming(
            StreamingClientRequest(of: Int.self) { writer in for number in 1 ... 100 { try await writer.write(number) } },
            method: method, handler: handler
        ) { try $0.message }
        #expect(sum == 5050)

        struct Broken: Error {}
        let failed = await #expect(throws: RPCError.self) {
            try await calls.clientStreaming(
                StreamingClientRequest(of: Int.self) { writer in
                    try await writer.write(1)
                    throw Broken()
                },
                method: method, handler: handler
            ) { try $0.message }
        }
        #expect(failed?.code == .unknown)
    }
}
