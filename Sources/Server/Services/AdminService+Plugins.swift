import Foundation
public import GRPCCore
import Logging
public import RPC

/// Plugins: stored here, fetched and run by the agents they target; their metrics, latest
/// value per host, queried here and exported for Prometheus.
extension AdminService {
    public func createPlugin(request: Aspire_V1_CreatePluginRequest, context: ServerContext) async throws -> Aspire_V1_PluginInfo {
        var plugin = request.plugin
        // Before the store is asked for its package: the name is part of what it is asked.
        try PathName.check(plugin.name, field: "plugin name", code: .badRequest)
        if !request.package.isEmpty || (StoreFile.isStoreURL(plugin.url) && plugin.checksum.isEmpty) {
            guard plugin.git.isEmpty else { throw AspireError(.badRequest, "plugin '\(plugin.name)': give a package or git, not both") }
            let package = try await self.store.storedPackage(
                name: request.package, version: request.version, url: plugin.url, context: "plugin '\(plugin.name)'"
            )
            plugin.url = package.url
            plugin.checksum = "SHA256:\(package.sha256)"
        }
        let record = try Self.pluginRecord(plugin, agents: request.agents, tags: request.tags)
        let stored = try await self.store.createPlugin(record, replace: request.replace)
        self.logger.info(
            "plugin stored",
            metadata: ["plugin": "\(stored.name)", "plugin.source": "\(stored.plugin.git.isEmpty ? stored.plugin.url : stored.plugin.git)"]
        )
        await self.distributor.sweep()
        return Aspire_V1_PluginInfo(stored)
    }

    public func listPlugins(request: Aspire_V1_ListPluginsRequest, context: ServerContext) async throws -> Aspire_V1_ListPluginsResponse {
        var records = try await self.store.plugins(name: request.name.isEmpty ? nil : request.name)
        if !request.name.isEmpty, records.isEmpty {
            throw AspireError(.notFound, "no plugin named '\(request.name)'")
        }
        if !request.agentSn.isEmpty {
            let tags = try await self.store.tags(ofAgents: [request.agentSn])[request.agentSn] ?? [:]
            records = records.filter { $0.targets(agentSN: request.agentSn, tags: tags) }
        }
        var response = Aspire_V1_ListPluginsResponse()
        response.plugins = records.map(Aspire_V1_PluginInfo.init(_:))
        return response
    }

    public func deletePlugin(request: Aspire_V1_DeletePluginRequest, context: ServerContext) async throws -> Aspire_V1_PluginInfo {
        guard let deleted = try await self.store.deletePlugin(name: request.name) else {
            throw AspireError(.notFound, "no plugin named '\(request.name)'")
        }
        self.logger.info("plugin deleted", metadata: ["plugin": "\(deleted.name)"])
        await self.distributor.sweep()
        return Aspire_V1_PluginInfo(deleted)
    }

    public func queryMetrics(request: Aspire_V1_QueryMetricsRequest, context: ServerContext) async throws -> Aspire_V1_QueryMetricsResponse {
        let page = try Self.page(offset: request.offset, limit: request.limit, descending: false, defaultLimit: 1000, maxLimit: 10_000)
        let listing = try await self.store.metrics(
            agentSN: request.agentSn.isEmpty ? nil : request.agentSn, prefix: request.prefix.isEmpty ? nil : request.prefix, page: page
        )
        var response = Aspire_V1_QueryMetricsResponse()
        response.count = Int32(clamping: listing.count)
        response.metrics = listing.items.map { record in
            var metric = Aspire_V1_MetricValue()
            metric.agentSn = record.agentSN
            metric.name = record.name
            metric.tags = record.tags
            metric.value = record.value
            metric.text = record.text
            metric.timestamp = record.timestamp
            metric.receivedUnixMs = record.received
            return metric
        }
        return response
    }

    public func exportMetrics(request: Aspire_V1_ExportMetricsRequest, context: ServerContext) async throws -> Aspire_V1_ExportMetricsResponse {
        var response = Aspire_V1_ExportMetricsResponse()
        response.text = try await self.metrics.export()
        return response
    }

    static func pluginRecord(_ plugin: Aspire_V1_Plugin, agents: [String], tags: [String: String]) throws(AspireError) -> PluginRecord {
        try plugin.check(code: .badRequest)
        var plugin = plugin
        if plugin.user.isEmpty { plugin.user = "nobody" }
        if plugin.timeout == 0 { plugin.timeout = 10 }
        try AccountName.check([plugin.user], owner: "plugin '\(plugin.name)'")
        try Self.checkTargets(agents: agents, tags: tags, owner: "plugin '\(plugin.name)'")
        return PluginRecord(plugin: plugin, agents: Array(Set(agents)).sorted(), selector: tags)
    }
}

extension Aspire_V1_PluginInfo {
    init(_ record: PluginRecord) {
        self.init()
        self.plugin = record.plugin
        self.agents = record.agents
        self.tags = record.selector
        self.createdUnixMs = record.created
        self.modifiedUnixMs = record.modified
    }
}
