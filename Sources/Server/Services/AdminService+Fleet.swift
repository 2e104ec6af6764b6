import Foundation
public import GRPCCore
import Logging
public import RPC

/// Hosts, tags, regions, events and the dashboard.
extension AdminService {
    public func listHosts(request: Aspire_V1_ListHostsRequest, context: ServerContext) async throws -> Aspire_V1_ListHostsResponse {
        var query = HostQuery()
        if !request.status.isEmpty {
            guard let status = HostStatus(name: request.status) else {
                throw AspireError(.badRequest, "status must be one of \(HostStatus.allCases.map(\.name).joined(separator: ", "))")
            }
            query.status = status
        }
        if request.hasRegion { query.region = Int(request.region) }
        query.tags = request.tags
        query.hostnamePrefix = request.hostnamePrefix.isEmpty ? nil : request.hostnamePrefix
        query.node = request.node.isEmpty ? nil : request.node
        query.page = try Self.page(offset: request.offset, limit: request.limit, descending: request.descending)
        let listing = try await self.store.hosts(query)
        var response = Aspire_V1_ListHostsResponse()
        response.count = Int32(listing.count)
        response.offset = Int32(query.page.offset)
        response.limit = Int32(query.page.limit)
        response.hosts = listing.items.map(Aspire_V1_Host.init(_:))
        return response
    }

    public func getHost(request: Aspire_V1_GetHostRequest, context: ServerContext) async throws -> Aspire_V1_Host {
        let host = try await self.store.requireHost(request.agentSn)
        var message = Aspire_V1_Host(host)
        message.recent = try await self.store.recentSubtasks(agentSN: host.agentSN, limit: 10).map { recent in
            var result = Aspire_V1_HostResult()
            result.taskID = Int64(recent.subtask.taskID)
            result.command = recent.command
            result.subtask = Aspire_V1_Subtask(recent.subtask)
            return result
        }
        message.agents = try await self.store.subAgents(agentSN: host.agentSN).map { record in
            var agent = Aspire_V1_SubAgentStatus()
            agent.name = record.name
            agent.version = record.version
            agent.status = record.status
            agent.pid = Int32(record.pid)
            agent.restarts = Int32(record.restarts)
            agent.uptime = record.uptime
            agent.message = record.message
            agent.previousVersion = record.previousVersion
            return agent
        }
        return message
    }

    public func listNodes(request: Aspire_V1_ListNodesRequest, context: ServerContext) async throws -> Aspire_V1_ListNodesResponse {
        let now = Date().unixMilliseconds
        var response = Aspire_V1_ListNodesResponse()
        response.nodes = try await self.store.nodes().map { Aspire_V1_NodeInfo($0, now: now) }
        return response
    }

    public func drainNode(request: Aspire_V1_DrainNodeRequest, context: ServerContext) async throws -> Aspire_V1_NodeInfo {
        guard try await self.store.setDraining(request.name, !request.undrain) else {
            throw AspireError(.notFound, "no node \(request.name) in the cluster (aspirectl nodes lists them)")
        }
        self.logger.notice(request.undrain ? "node made active again" : "node drain asked", metadata: ["node.name": "\(request.name)"])
        guard let node = try await self.store.nodes().first(where: { $0.name == request.name }) else {
            throw AspireError(.notFound, "no node \(request.name) in the cluster")
        }
        return Aspire_V1_NodeInfo(node, now: Date().unixMilliseconds)
    }

    public func listTags(request: Aspire_V1_ListTagsRequest, context: ServerContext) async throws -> Aspire_V1_ListTagsResponse {
        var response = Aspire_V1_ListTagsResponse()
        response.tags = try await self.store.tags().map(Aspire_V1_Tag.init(_:))
        return response
    }

    public func createTag(request: Aspire_V1_CreateTagRequest, context: ServerContext) async throws -> Aspire_V1_Tag {
        Aspire_V1_Tag(try await self.store.createTag(name: request.name, value: request.value))
    }

    public func deleteTag(request: Aspire_V1_DeleteTagRequest, context: ServerContext) async throws -> Aspire_V1_DeleteTagResponse {
        guard try await self.store.deleteTag(id: Int(request.id)) else {
            throw AspireError(.notFound, "no tag \(request.id)")
        }
        return Aspire_V1_DeleteTagResponse()
    }

    public func bindTag(request: Aspire_V1_BindTagRequest, context: ServerContext) async throws -> Aspire_V1_BindTagResponse {
        guard !request.agentSns.isEmpty else { throw AspireError(.badRequest, "name the hosts (agent_sns)") }
        var response = Aspire_V1_BindTagResponse()
        for agent in request.agentSns {
            if request.unbind {
                if try await self.store.unbindTag(name: request.name, value: request.value, from: agent) { response.changed += 1 }
            } else {
                try await self.store.bindTag(name: request.name, value: request.value, to: agent)
                response.changed += 1
            }
        }
        return response
    }

    public func setHostRegion(request: Aspire_V1_SetHostRegionRequest, context: ServerContext) async throws -> Aspire_V1_SetHostRegionResponse {
        guard !request.agentSns.isEmpty else { throw AspireError(.badRequest, "name the hosts (agent_sns)") }
        for sn in request.agentSns { try AgentIdentity.validate(agentSN: sn) }
        let regions = try await self.store.regions()
        let region: Int
        if !request.regionName.isEmpty {
            guard let found = regions.first(where: { $0.name == request.regionName }) else {
                throw AspireError(.notFound, "no region named \(request.regionName) (create it first)")
            }
            region = found.id
        } else {
            region = Int(request.region)
            guard region == 0 || regions.contains(where: { $0.id == region }) else { throw AspireError(.notFound, "no region \(region)") }
        }
        var response = Aspire_V1_SetHostRegionResponse()
        var missing: [String] = []
        for sn in request.agentSns {
            if try await self.store.setHostRegion(agentSN: sn, region: region) { response.changed += 1 } else { missing.append(sn) }
        }
        guard missing.isEmpty else {
            throw AspireError(.notFound, "no host with AgentSN \(missing.joined(separator: ", ")) (the \(response.changed) others were moved)")
        }
        response.region = Int64(region)
        return response
    }

    public func listRegions(request: Aspire_V1_ListRegionsRequest, context: ServerContext) async throws -> Aspire_V1_ListRegionsResponse {
        var response = Aspire_V1_ListRegionsResponse()
        response.regions = try await self.store.regions().map { region in
            var message = Aspire_V1_Region()
            message.id = Int64(region.id)
            message.name = region.name
            return message
        }
        return response
    }

    public func createRegion(request: Aspire_V1_CreateRegionRequest, context: ServerContext) async throws -> Aspire_V1_Region {
        let region = try await self.store.createRegion(name: request.name)
        var message = Aspire_V1_Region()
        message.id = Int64(region.id)
        message.name = region.name
        return message
    }

    public func listEvents(request: Aspire_V1_ListEventsRequest, context: ServerContext) async throws -> Aspire_V1_ListEventsResponse {
        let page = try Self.page(offset: request.offset, limit: request.limit, descending: true)
        let listing = try await self.store.events(agentSN: request.agentSn.isEmpty ? nil : request.agentSn, page: page)
        var response = Aspire_V1_ListEventsResponse()
        response.count = Int32(listing.count)
        response.events = listing.items.map { event in
            var entry = Aspire_V1_EventEntry()
            entry.id = Int64(event.id)
            entry.agentSn = event.agentSN
            entry.category = event.category
            entry.localID = event.localID
            entry.occurredUnixMs = event.occurred
            entry.message = event.message
            entry.createdUnixMs = event.created
            return entry
        }
        return response
    }

    public func dashboard(request: Aspire_V1_DashboardRequest, context: ServerContext) async throws -> Aspire_V1_DashboardResponse {
        let counts = try await self.store.hostCounts()
        var response = Aspire_V1_DashboardResponse()
        response.hostsTotal = Int32(counts.values.reduce(0, +))
        response.hostsOnline = Int32(counts[.online] ?? 0)
        response.hostsOffline = Int32(counts[.offline] ?? 0)
        response.connectedHere = Int32(self.registry.count)
        let now = Date().unixMilliseconds
        response.nodes = try await self.store.nodes().map { Aspire_V1_NodeInfo($0, now: now) }
        response.history = try await self.store.hostCountHistory(since: now - 86_400_000).map { sample in
            var message = Aspire_V1_HostCountSample()
            message.timeUnixMs = sample.time
            message.total = Int32(sample.total)
            message.online = Int32(sample.online)
            return message
        }
        response.deployments = try await self.store.subAgentVersions().map { record in
            var deployment = Aspire_V1_Deployment()
            deployment.name = record.name
            deployment.version = record.version
            deployment.hosts = Int32(record.hosts)
            deployment.running = Int32(record.running)
            deployment.stopped = Int32(record.stopped)
            deployment.fatal = Int32(record.fatal)
            deployment.killed = Int32(record.killed)
            return deployment
        }
        return response
    }

    /// A request's paging: a limit of 0 is `defaultLimit`.
    static func page(offset: Int32, limit: Int32, descending: Bool, defaultLimit: Int = 50, maxLimit: Int32 = 1000) throws(AspireError) -> Page {
        guard offset >= 0, limit >= 0, limit <= maxLimit else {
            throw AspireError(.badRequest, "offset must not be negative and limit must be from 0 to \(maxLimit)")
        }
        return Page(offset: Int(offset), limit: limit == 0 ? defaultLimit : Int(limit), ascending: !descending)
    }
}

extension Aspire_V1_Host {
    init(_ record: HostRecord) {
        self.init()
        self.id = Int64(record.id)
        self.agentSn = record.agentSN
        self.hostname = record.hostname
        self.ipaddr = record.ipaddr
        self.region = Int64(record.region)
        self.status = record.status.name
        self.feature = Int32(record.feature)
        self.step = Int32(record.step)
        self.prevers = record.prevers
        self.curvers = record.curvers
        self.os = record.os
        self.arch = record.arch
        self.node = record.node
        self.lastSeenUnixMs = record.lastSeen
        self.createdUnixMs = record.created
        self.modifiedUnixMs = record.modified
        self.tags = record.tags.map(Aspire_V1_Tag.init(_:))
        self.identity = record.identity.rawValue
        self.certificateNotAfter = record.certificateNotAfter / 1000
        self.missingTools = record.missingTools
    }
}

extension Aspire_V1_Tag {
    init(_ record: TagRecord) {
        self.init()
        self.id = Int64(record.id)
        self.name = record.name
        self.value = record.value
        self.hosts = Int32(record.hosts)
        self.createdUnixMs = record.created
        self.modifiedUnixMs = record.modified
    }
}

extension Aspire_V1_NodeInfo {
    init(_ node: NodeRecord, now: Int64) {
        self.init()
        self.name = node.name
        self.address = node.address
        self.startedUnixMs = node.started
        self.heartbeatUnixMs = node.heartbeat
        self.state = node.state(now: now, deadAfter: Membership.deadAfter.milliseconds).rawValue
        self.hosts = Int32(node.hosts)
    }
}
