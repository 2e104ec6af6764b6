import Foundation
public import GRPCCore
import Logging
import Synchronization
public import RPC

/// The operator-facing Admin service: commands, tasks, hosts, packages, schedules,
/// plugins and metrics.
public struct AdminService: Aspire_V1_Admin.SimpleServiceProtocol {
    let nodeName: String
    let registry: SessionRegistry
    let store: SQLStore
    let engine: TaskEngine
    let packages: PackageFiles
    let distributor: ConfigDistributor
    let metrics: MetricIngest
    let revocations: RevocationWatch
    let commands: CommandRunner
    let logger: Logger

    init(
        nodeName: String, registry: SessionRegistry, store: SQLStore, engine: TaskEngine, packages: PackageFiles,
        distributor: ConfigDistributor, metrics: MetricIngest, revocations: RevocationWatch, commands: CommandRunner, logger: Logger
    ) {
        self.nodeName = nodeName
        self.commands = commands
        self.revocations = revocations
        self.metrics = metrics
        self.distributor = distributor
        self.packages = packages
        self.registry = registry
        self.store = store
        self.engine = engine
        self.logger = logger
    }

    public func runCommand(request: Aspire_V1_RunCommandRequest, context: ServerContext) async throws -> Aspire_V1_RunCommandResponse {
        var response = Aspire_V1_RunCommandResponse()
        response.node = self.nodeName
        let accepted = Mutex(Aspire_V1_CommandAccepted())
        let result = try await self.commands.run(request, actor: CallContext.principal?.name ?? "", follow: false) { event in
            if case .accepted(let answer)? = event.body { accepted.withLock { $0 = answer } }
        }
        (response.taskID, response.commandID) = accepted.withLock { ($0.taskID, $0.commandID) }
        if let result {
            response.result = result
        } else if !request.detach {
            throw AspireError(
                .agentTimeout,
                "agent \(request.agentSn) did not answer within \(CommandRunner.wait(for: request)); the command is task \(response.taskID): read its result later (aspirectl task show \(response.taskID))"
            )
        }
        return response
    }

    public func runCommandStream(
        request: Aspire_V1_RunCommandRequest,
        response: RPCWriter<Aspire_V1_CommandEvent>,
        context: ServerContext
    ) async throws {
        _ = try await self.commands.run(request, actor: CallContext.principal?.name ?? "", follow: true) { try await response.write($0) }
    }

    public func listAgents(request: Aspire_V1_ListAgentsRequest, context: ServerContext) async throws -> Aspire_V1_ListAgentsResponse {
        var query = HostQuery()
        query.status = .online
        query.page = Page(offset: 0, limit: Int(Int32.max))
        var response = Aspire_V1_ListAgentsResponse()
        response.agents = try await self.store.hosts(query).items.map { host in
            var agent = Aspire_V1_ConnectedAgent()
            agent.agentSn = host.agentSN
            agent.hostname = host.hostname
            agent.version = host.curvers
            agent.os = host.os
            agent.arch = host.arch
            agent.tags = Dictionary(host.tags.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
            agent.peer = host.ipaddr
            agent.lastSeenUnixMs = host.lastSeen
            agent.node = host.node
            // The node holding it knows its stream.
            if let session = self.registry.session(for: host.agentSN) {
                agent.peer = session.peer
                agent.connectedUnixMs = session.connectedAt.unixMilliseconds
                agent.lastSeenUnixMs = session.lastSeen.unixMilliseconds
            }
            return agent
        }
        return response
    }

    public func createTask(request: Aspire_V1_CreateTaskRequest, context: ServerContext) async throws -> Aspire_V1_TaskDetail {
        let (task, subtasks) = try await self.engine.create(request, actor: CallContext.principal?.name ?? "")
        return Aspire_V1_TaskDetail(task: task, subtasks: subtasks)
    }

    public func getTask(request: Aspire_V1_GetTaskRequest, context: ServerContext) async throws -> Aspire_V1_TaskDetail {
        guard let task = try await self.store.task(id: Int(request.id)) else {
            throw AspireError(.notFound, "no task \(request.id)")
        }
        return Aspire_V1_TaskDetail(task: task, subtasks: try await self.store.subtasks(taskID: task.id))
    }

    public func listTasks(request: Aspire_V1_ListTasksRequest, context: ServerContext) async throws -> Aspire_V1_ListTasksResponse {
        guard request.offset >= 0, request.limit >= 0, request.limit <= 1000 else {
            throw AspireError(.badRequest, "offset must not be negative and limit must be from 0 to 1000")
        }
        let page = Page(offset: Int(request.offset), limit: request.limit == 0 ? 50 : Int(request.limit), ascending: false)
        let listing = try await self.store.tasks(page: page)
        var response = Aspire_V1_ListTasksResponse()
        response.count = Int32(listing.count)
        response.tasks = listing.items.map(Aspire_V1_Task.init(_:))
        return response
    }

    public func cancelTask(request: Aspire_V1_CancelTaskRequest, context: ServerContext) async throws -> Aspire_V1_TaskDetail {
        let task = try await self.store.cancelTask(id: Int(request.id))
        self.logger.info("task cancelled", metadata: ["task.id": "\(task.id)"])
        await self.store.recordServerEvent("task", "task \(task.id) cancelled by \(CallContext.principal?.name ?? "an operator")")
        return Aspire_V1_TaskDetail(task: task, subtasks: try await self.store.subtasks(taskID: task.id))
    }
}
