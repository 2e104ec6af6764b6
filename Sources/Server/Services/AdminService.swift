import Foundation
public import GRPCCore
import Logging
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
    let logger: Logger

    init(
        nodeName: String, registry: SessionRegistry, store: SQLStore, engine: TaskEngine, packages: PackageFiles,
        distributor: ConfigDistributor, metrics: MetricIngest, revocations: RevocationWatch, logger: Logger
    ) {
        self.nodeName = nodeName
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
        guard !request.agentSn.isEmpty else {
            throw AspireError(.badRequest, "agent_sn is required")
        }
        guard request.hasCommand, !request.command.method.isEmpty else {
            throw AspireError(.badRequest, "command.method is required")
        }
        guard request.waitSeconds >= 0 else {
            throw AspireError(.badRequest, "wait_seconds must not be negative")
        }
        var command = request.command
        if command.id.isEmpty {
            command.id = UUID().uuidString.lowercased()
        }
        let wait: Duration
        if request.waitSeconds > 0 {
            wait = .seconds(Int(request.waitSeconds))
        } else if case .bash(let bash)? = command.params, bash.timeout > 0 {
            wait = .seconds(Int(bash.timeout) + 30)
        } else {
            wait = .seconds(150)
        }
        self.logger.info(
            "running command",
            metadata: ["agent.sn": "\(request.agentSn)", "command.id": "\(command.id)", "command.method": "\(command.method)"]
        )
        var response = Aspire_V1_RunCommandResponse()
        response.result = try await self.registry.run(command, on: request.agentSn, wait: wait)
        response.node = self.nodeName
        return response
    }

    public func listAgents(request: Aspire_V1_ListAgentsRequest, context: ServerContext) async throws -> Aspire_V1_ListAgentsResponse {
        var response = Aspire_V1_ListAgentsResponse()
        response.agents = self.registry.sessions.map { session in
            var agent = Aspire_V1_ConnectedAgent()
            agent.agentSn = session.agentSN
            agent.hostname = session.hello.hostname
            agent.version = session.hello.version
            agent.os = session.hello.os
            agent.arch = session.hello.arch
            agent.tags = session.hello.tags
            agent.peer = session.peer
            agent.connectedUnixMs = session.connectedAt.unixMilliseconds
            agent.lastSeenUnixMs = session.lastSeen.unixMilliseconds
            agent.node = self.nodeName
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
        return Aspire_V1_TaskDetail(task: task, subtasks: try await self.store.subtasks(taskID: task.id))
    }
}
