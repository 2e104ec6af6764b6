import Foundation
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
