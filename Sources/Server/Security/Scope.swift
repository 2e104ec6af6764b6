import GRPCCore
import RPC

/// Whether an operator's call stays on the hosts its scope selects: every host named by AgentSN
/// carries every scope tag, a tag selector includes every scope tag, and what the call changes
/// (a task to cancel, a schedule or plugin to replace, disable or delete) was itself in scope.
struct ScopeCheck: Sendable {
    let store: SQLStore

    /// What a call names as its hosts.
    struct Targets {
        var agents: [String] = []
        var selector: [String: String] = [:]

        /// The hosts a call's message names itself, by AgentSN and by tags; nil for a message
        /// that names none (the trail and the scope check read them the same way).
        static func given(by message: Any) -> Targets? {
            switch message {
            case let request as Aspire_V1_RunCommandRequest: Targets(agents: [request.agentSn])
            case let request as Aspire_V1_CreateTaskRequest: Targets(agents: request.agents, selector: request.tags)
            case let request as Aspire_V1_CreateScheduleRequest: Targets(agents: request.agents, selector: request.tags)
            case let request as Aspire_V1_ImportCrontabRequest: Targets(agents: request.agents, selector: request.tags)
            case let request as Aspire_V1_CreatePluginRequest: Targets(agents: request.agents, selector: request.tags)
            case let request as Aspire_V1_ApplyDeploymentRequest: Targets(selector: request.spec.tags)
            case let request as Aspire_V1_BindTagRequest: Targets(agents: request.agentSns)
            case let request as Aspire_V1_SetHostRegionRequest: Targets(agents: request.agentSns)
            case let request as Aspire_V1_DeleteHostRequest: Targets(agents: [request.agentSn])
            case let request as Aspire_V1_BanHostRequest: Targets(agents: [request.agentSn])
            case let request as Aspire_V1_EnrollRequest: Targets(agents: [request.agentSn])
            default: nil
            }
        }
    }

    func check(_ message: Any, scope: [String: String], caller: String) async throws {
        for targets in try await self.targets(of: message) {
            try await self.require(targets, within: scope, caller: caller)
        }
    }

    /// The targets a call names, and those of what it would change.
    private func targets(of message: Any) async throws -> [Targets] {
        let given = Targets.given(by: message).map { [$0] } ?? []
        switch message {
        case is Aspire_V1_RunCommandRequest, is Aspire_V1_CreateTaskRequest:
            return given
        case let request as Aspire_V1_CancelTaskRequest:
            guard let task = try await self.store.task(id: Int(request.id)) else { return [] }
            return [Targets(agents: try await self.store.subtasks(taskID: task.id).map(\.agentSN), selector: task.selector)]
        case let request as Aspire_V1_CreateScheduleRequest:
            return given + (try await self.schedule(request.schedule.name))
        case let request as Aspire_V1_DeleteScheduleRequest:
            return try await self.schedule(request.name)
        case let request as Aspire_V1_SetScheduleEnabledRequest:
            return try await self.schedule(request.name)
        case let request as Aspire_V1_ImportCrontabRequest:
            let existing = try await self.store.schedules().filter { !request.prefix.isEmpty && $0.name.hasPrefix(request.prefix) }
            return given + existing.map { Targets(agents: $0.agents, selector: $0.selector) }
        case let request as Aspire_V1_CreatePluginRequest:
            return given + (try await self.plugin(request.plugin.name))
        case let request as Aspire_V1_DeletePluginRequest:
            return try await self.plugin(request.name)
        case let request as Aspire_V1_ApplyDeploymentRequest:
            return given + (try await self.deployment(request.spec.name))
        case let request as Aspire_V1_ControlDeploymentRequest:
            return try await self.deployment(request.name)
        case let request as Aspire_V1_DeleteDeploymentRequest:
            return try await self.deployment(request.name)
        default:
            throw RPCError(code: .permissionDenied, message: "this call cannot be checked against a scope")
        }
    }

    private func schedule(_ name: String) async throws -> [Targets] {
        try await self.store.schedules(name: name).map { Targets(agents: $0.agents, selector: $0.selector) }
    }

    private func plugin(_ name: String) async throws -> [Targets] {
        try await self.store.plugins(name: name).map { Targets(agents: $0.agents, selector: $0.selector) }
    }

    private func deployment(_ name: String) async throws -> [Targets] {
        try await self.store.deployments(name: name).map { Targets(selector: $0.spec.tags) }
    }

    private func require(_ targets: Targets, within scope: [String: String], caller: String) async throws {
        let described = scope.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        if !targets.selector.isEmpty, let missing = scope.first(where: { targets.selector[$0.key] != $0.value }) {
            throw RPCError(
                code: .permissionDenied,
                message: "operator \(caller) is scoped to \(described): a tag selector must include \(missing.key)=\(missing.value)"
            )
        }
        guard !targets.agents.isEmpty else { return }
        let tags = try await self.store.tags(ofAgents: targets.agents)
        for agent in targets.agents where !scope.allSatisfy({ tags[agent]?[$0.key] == $0.value }) {
            throw RPCError(code: .permissionDenied, message: "host \(agent) is outside operator \(caller)'s scope (\(described))")
        }
    }
}
