import Foundation
import RPC
import Server
import Testing

/// Plugins and the latest metric values, on SQLite and on a real PostgreSQL server.
@Suite("Store conformance: plugins and metrics")
struct StorePluginTests {
    static func plugin(_ name: String, period: Int32 = 60) -> PluginRecord {
        var plugin = Aspire_V1_Plugin()
        plugin.name = name
        plugin.git = "https://git.example.com/\(name).git"
        plugin.period = period
        plugin.user = "nobody"
        return PluginRecord(plugin: plugin, agents: ["sn-1"], selector: ["role": "db"])
    }

    @Test("Plugins: unique names, replace on request, delete; every change moves the revision", arguments: StoreHarness.engines)
    func plugins(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let empty = try await store.pluginRevision()
            let load = try await store.createPlugin(Self.plugin("load"), replace: false)
            #expect(load.created > 0)
            let afterCreate = try await store.pluginRevision()
            #expect(afterCreate != empty)
            await #expect(throws: AspireError.self) { try await store.createPlugin(Self.plugin("load"), replace: false) }
            let replaced = try await store.createPlugin(Self.plugin("load", period: 5), replace: true)
            #expect(replaced.created == load.created && replaced.modified > load.modified)
            let stored = try #require(try await store.plugins(name: "load").first)
            #expect(stored.plugin.period == 5 && stored.plugin.git == "https://git.example.com/load.git" && stored.agents == ["sn-1"])
            #expect(stored.targets(agentSN: "sn-2", tags: ["role": "db", "dc": "x"]) && !stored.targets(agentSN: "sn-2", tags: [:]))
            #expect(try await store.pluginRevision() != afterCreate)
            #expect(try await store.deletePlugin(name: "load")?.name == "load")
            #expect(try await store.deletePlugin(name: "load") == nil)
            #expect(try await store.plugins().isEmpty)
        }
    }

    @Test("Metrics keep the latest value per host, name and tag set; an older point changes nothing; prefixes are literal", arguments: StoreHarness.engines)
    func latestMetrics(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            func point(_ agent: String, _ name: String, _ tags: [String: String], _ value: Double, at time: Int64) -> MetricRecord {
                MetricRecord(agentSN: agent, name: name, tags: tags, value: value, timestamp: time)
            }
            // Two points of one key in one batch: the later one (PostgreSQL refuses to touch a row twice in one statement).
            try await store.storeMetrics([
                point("sn-1", "plugin.disk.used", ["mount": "/"], 10, at: 100),
                point("sn-1", "plugin.disk.used", ["mount": "/"], 11, at: 101),
                point("sn-1", "plugin.disk.used", ["mount": "/var"], 50, at: 100),
                point("sn-2", "plugin.disk.used", ["mount": "/"], 70, at: 100),
                point("sn-1", "plugin.load.load1", [:], 0.5, at: 100),
                point("sn-1", "plugin_x.y", [:], 1, at: 100),
            ])
            try await store.storeMetrics([point("sn-1", "plugin.disk.used", ["mount": "/"], 9, at: 99)])
            try await store.storeMetrics([point("sn-1", "plugin.load.load1", [:], 0.75, at: 160)])

            let disk = try await store.metrics(agentSN: "sn-1", prefix: "plugin.disk.").items
            #expect(disk.map(\.value).sorted() == [11, 50])
            #expect(disk.first { $0.tags["mount"] == "/" }?.timestamp == 101)
            let load = try #require(try await store.metrics(prefix: "plugin.load.load1").items.first)
            #expect(load.value == 0.75 && load.timestamp == 160 && load.received > 0)
            // '_' is not a wildcard.
            #expect(try await store.metrics(prefix: "plugin_").items.map(\.name) == ["plugin_x.y"])
            let all = try await store.metrics(page: Page(offset: 0, limit: 2))
            #expect(all.count == 5 && all.items.count == 2)
            #expect(try await store.metrics(receivedSince: Date().unixMilliseconds + 60_000).count == 0)

            // A value that is not a number is kept as text, and a newer number replaces it.
            try await store.storeMetrics([MetricRecord(agentSN: "sn-9", name: "plugin.app.mode", tags: [:], value: 0, text: "draining", timestamp: 200)])
            #expect(try await store.metrics(agentSN: "sn-9").items.map(\.text) == ["draining"])
            try await store.storeMetrics([MetricRecord(agentSN: "sn-9", name: "plugin.app.mode", tags: [:], value: 3, timestamp: 201)])
            let mode = try #require(try await store.metrics(agentSN: "sn-9").items.first)
            #expect(mode.text == "" && mode.value == 3)
        }
    }
}
