import Foundation
import Logging
import SwiftProtobuf
import GRPCCore
import RPC
import Server
import Testing
import TestSupport

/// What one host or one agent can make a node hold: tags, event text, metric series, streams.
@Suite("Bounds")
struct BoundsTests {
    @Test("A host carries at most 64 tags; a long event message is cut and says so; a host's metric series stop at the limit")
    func perHost() async throws {
        try await withLocalNode(configure: { $0.metrics.maxSeriesPerHost = 50 }) { node in
            let store = node.store
            try await store.registerHost(
                HostRegistration(agentSN: "bounded", hostname: "b", ipaddr: "", os: "linux", arch: "x86_64", version: "1", node: "n")
            )
            let tags = Dictionary(uniqueKeysWithValues: (0 ..< SQLStore.maxTagsPerHost).map { ("k\($0)", "v") })
            try await store.bindTags(tags, to: "bounded")
            let error = await #expect(throws: AspireError.self) { try await store.bindTag(name: "one", value: "more", to: "bounded") }
            #expect(error?.code == .unprocessable && error?.cause.contains("at most 64") == true)
            try await store.bindTag(name: "k1", value: "v", to: "bounded")  // already carried: fine
            let tooMany = Dictionary(uniqueKeysWithValues: (0 ... SQLStore.maxTagsPerHost).map { ("x\($0)", "v") })
            await #expect(throws: AspireError.self) { try await store.bindTags(tooMany, to: "bounded") }
            #expect(try await store.host(agentSN: "bounded")?.tags.count == 64)

            let long = String(repeating: "é", count: 5000)
            #expect(try await store.recordEvent(EventRecord(agentSN: "bounded", category: "test", localID: 1, occurred: 1, message: long)))
            let event = try #require(try await store.events(agentSN: "bounded").items.first)
            #expect(event.message.utf8.count <= SQLStore.maxEventBytes && event.message.hasSuffix("(cut)"))

            var batch = Aspire_V1_MetricBatch()
            batch.metrics = (0 ..< 80).map { index in
                var metric = Aspire_V1_Metric()
                metric.name = "plugin.probe.value"
                metric.tags = ["run": "\(index)"]
                metric.value = Double(index)
                metric.timestamp = 1
                return metric
            }
            node.node.metrics.receive(batch, from: "bounded")
            node.node.metrics.receive(batch, from: "bounded")  // the same series again: taken
            await node.node.metrics.flush()
            let stored = try await store.metrics(agentSN: "bounded")
            #expect(stored.count == 50)
        }
    }

    @Test("--max-agents holds at Hello too: an agent that skips Init is refused when the node is full, and gets in when a place frees")
    func fullAtHello() async throws {
        try await withLocalNode(configure: { $0.maxAgents = 1 }) { node in
            try await ScriptedAgent.connect("first", to: node) { _ in
                let refused = await #expect(throws: (any Error).self) {
                    try await ScriptedAgent.connect("second", to: node) { _ in }
                }
                #expect("\(String(describing: refused))".contains("maximum of 1 agents"), "\(String(describing: refused))")
            }
            try await eventually("the first stream to be gone") { node.node.registry.count == 0 }
            try await ScriptedAgent.connect("second", to: node) { _ in }
        }
    }
}

/// A stream to an agent that never reads: every write waits (until the test ends it).
struct StalledWriter: RPCWriterProtocol {
    func write(_ element: Aspire_V1_ServerMessage) async throws {
        try await Task.sleep(for: .seconds(3600))
    }

    func write(contentsOf elements: some Sequence<Aspire_V1_ServerMessage>) async throws {
        try await Task.sleep(for: .seconds(3600))
    }
}

extension BoundsTests {
    @Test("An agent that does not read its stream gets at most the queue's worth of messages queued; the rest are refused to the sender")
    func outboundQueue() async throws {
        try await withLocalNode { node in
            var configuration = AgentChannelService.Configuration(nodeName: "node")
            configuration.outboundQueue = 4
            let (stream, input) = node.agentStream(node.channelService(configuration), writer: StalledWriter())
            var hello = Aspire_V1_AgentMessage()
            hello.hello.agentSn = "stalled"
            hello.hello.hostname = "stalled"
            input.yield(hello)
            defer {
                input.finish()
                stream.cancel()
            }
            try await eventually("the stalled agent to be registered") { node.node.registry.session(for: "stalled") != nil }
            let session = try #require(node.node.registry.session(for: "stalled"))
            let command = Aspire_V1_Command(id: "c", .bash, .bash(Aspire_V1_BashParams.with { $0.cmd = "true" }))
            let queued = (0 ..< 20).filter { _ in session.send(command: command) }.count
            #expect(queued <= 4, "\(queued) messages queued for an agent that reads nothing")
        }
    }
}
