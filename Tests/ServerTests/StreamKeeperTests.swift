import Foundation
import GRPCCore
import Logging
import RPC
@testable import Server
import Testing
import TestSupport

/// The node's one keeper of its agents' streams: Hello deadlines, pings, silence.
@Suite("Stream keeper")
struct StreamKeeperTests {
    /// A stream's connection, and what the node queued on it.
    static func stream() -> (Connection, AsyncStream<Aspire_V1_ServerMessage>) {
        let (outbound, continuation) = AsyncStream.makeStream(of: Aspire_V1_ServerMessage.self)
        return (Connection(outbound: continuation), outbound)
    }

    @Test("A stream without Hello by its deadline is ended; one with Hello is kept, pinged an interval after its Hello, then every interval")
    func helloThenPings() async throws {
        let keeper = StreamKeeper(pingInterval: .seconds(60), helloTimeout: .seconds(10))
        let opened = ContinuousClock.now
        let (mute, muteQueue) = Self.stream()
        let (greeted, _) = Self.stream()
        let (outbound, continuation) = AsyncStream.makeStream(of: Aspire_V1_ServerMessage.self)
        var hello = Aspire_V1_Hello()
        hello.agentSn = "greeted"
        keeper.keep(mute, now: opened)
        keeper.keep(greeted, now: opened)
        greeted.session = AgentSession(hello: hello, peer: "ipv4:127.0.0.1:1", outbound: continuation)
        keeper.greeted(greeted, now: opened + .seconds(1))

        keeper.sweep(now: opened + .seconds(9))
        #expect(mute.ended == nil && keeper.count == 2)
        keeper.sweep(now: opened + .seconds(10))
        #expect(mute.ended == .noHello)
        #expect(keeper.count == 1)
        var queued = muteQueue.makeAsyncIterator()
        #expect(await queued.next() == nil, "the stream's queue is finished")

        // Pinged an interval after its Hello, then each interval, nonces rising.
        keeper.sweep(now: opened + .seconds(60))
        keeper.sweep(now: opened + .seconds(61))
        keeper.sweep(now: opened + .seconds(121))
        continuation.finish()
        let pings = await outbound.reduce(into: [UInt64]()) { $0.append($1.ping.nonce) }
        #expect(pings == [1, 2])
        #expect(greeted.ended == nil)
    }

    @Test("A stream whose agent said nothing for three ping intervals is ended as silent; one that spoke is not")
    func silence() async throws {
        let keeper = StreamKeeper(pingInterval: .milliseconds(100), helloTimeout: .seconds(10))
        let (quiet, _) = Self.stream()
        let (talking, _) = Self.stream()
        let (_, continuation) = AsyncStream.makeStream(of: Aspire_V1_ServerMessage.self)
        for (connection, name) in [(quiet, "quiet"), (talking, "talking")] {
            var hello = Aspire_V1_Hello()
            hello.agentSn = name
            keeper.keep(connection)
            connection.session = AgentSession(hello: hello, peer: "ipv4:127.0.0.1:1", outbound: continuation)
            keeper.greeted(connection)
        }
        try await Task.sleep(for: .milliseconds(500))
        talking.session?.touch()
        keeper.sweep()
        #expect(quiet.ended == .silent)
        #expect(talking.ended == nil)
        #expect(keeper.count == 1)
    }

    @Test("A stream that never says Hello is refused DEADLINE_EXCEEDED by the service, and leaves the keeper")
    func serviceEndsMuteStream() async throws {
        try await withLocalNode { node in
            let service = node.channelService(.init(nodeName: "node"))
            let (stream, input) = node.agentStream(service, writer: DroppingWriter())
            defer { input.finish() }
            try await eventually("the stream to be kept") { service.keeper.count == 1 }
            service.keeper.sweep(now: .now + service.configuration.helloTimeout)
            let error = await #expect(throws: RPCError.self) { try await stream.value }
            #expect(error?.code == .deadlineExceeded, "\(String(describing: error))")
            #expect(service.keeper.count == 0)
        }
    }

    @Test("A silent agent that does not read its stream is dropped even while a write to it waits", .timeLimit(.minutes(1)))
    func silentWhileWriteWaits() async throws {
        try await withLocalNode { node in
            var configuration = AgentChannelService.Configuration(nodeName: "node")
            configuration.pingInterval = .milliseconds(100)
            let service = node.channelService(configuration)
            // The welcome's write waits for ever: the agent reads nothing.
            let (stream, input) = node.agentStream(service, writer: StalledWriter())
            defer { input.finish() }
            var hello = Aspire_V1_AgentMessage()
            hello.hello.agentSn = "hung"
            input.yield(hello)
            try await eventually("the agent to be registered") { node.node.registry.session(for: "hung") != nil }
            try await Task.sleep(for: .milliseconds(500))
            service.keeper.sweep()
            // Cancelled with the test when its time is up: a stream that is not ended fails it.
            let error = await #expect(throws: RPCError.self) {
                try await withTaskCancellationHandler { try await stream.value } onCancel: { stream.cancel() }
            }
            #expect(error?.code == .unavailable, "\(String(describing: error))")
            #expect(node.node.registry.session(for: "hung") == nil)
        }
    }
}

/// A stream's writer that drops what it is given.
private struct DroppingWriter: RPCWriterProtocol {
    func write(_ element: Aspire_V1_ServerMessage) async throws {}
    func write(contentsOf elements: some Sequence<Aspire_V1_ServerMessage>) async throws {}
}
