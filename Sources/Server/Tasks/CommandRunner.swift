import Foundation
import GRPCCore
public import Logging
public import RPC

/// The one path of a direct command (Admin RunCommand and RunCommandStream, which the REST
/// `command` routes and `aspirectl run` map onto): a task of one host, checked, stored and
/// routed as every task is, plus a watch that hands its caller the output and the result.
///
/// The watch hears the command wherever its host is: on this node's own stream; through the
/// node that holds the host (``NodeLinks``, whose `Watch` call also sends the command at once);
/// and, whatever happens to those (the host moves, a node dies, a call fails), from the store,
/// read every second, where the result lands exactly once.
public struct CommandRunner: Sendable {
    let nodeName: String
    let store: SQLStore
    let engine: TaskEngine
    let registry: SessionRegistry
    let links: NodeLinks?
    let logger: Logger

    /// How often a waiting caller reads the store for the result.
    static let storeCheck: Duration = .seconds(1)

    /// Makes the command's task and, unless `request.detach`, hands its events to `emit` until
    /// its result (returned) or the end of the wait (nil). The first event is always `accepted`.
    public func run(
        _ request: Aspire_V1_RunCommandRequest,
        actor: String,
        follow: Bool,
        emit: @Sendable (Aspire_V1_CommandEvent) async throws -> Void
    ) async throws -> Aspire_V1_CommandResult? {
        try AgentIdentity.validate(agentSN: request.agentSn)
        guard request.hasCommand, !request.command.method.isEmpty else {
            throw AspireError(.badRequest, "command.method is required")
        }
        guard request.waitSeconds >= 0 else {
            throw AspireError(.badRequest, "wait_seconds must not be negative")
        }
        let command = request.command
        let id = command.id.isEmpty ? UUID.random().uuidString.lowercased() : command.id
        try CommandID.check(id)
        // A host whose stream is here is held here: the store is asked only about the others.
        let holder =
            self.registry.session(for: request.agentSn) != nil
            ? self.nodeName : try await self.store.holders(of: [request.agentSn])[request.agentSn]
        if holder == nil, !request.detach {
            throw AspireError(
                .agentOffline,
                try await self.store.host(agentSN: request.agentSn) == nil
                    ? "no host \(request.agentSn) is known"
                    : "agent \(request.agentSn) is offline (detach to run the command when it connects)"
            )
        }

        var task = Aspire_V1_CreateTaskRequest()
        (task.command, task.parameters) = try CommandParameters.task(of: command)
        task.agents = [request.agentSn]
        var options = TaskEngine.Options()
        options.commandID = id
        options.streamOutput = follow || command.streamOutput
        // Held by another node: stored dispatched for it, and sent by it when this node's
        // watch there hands it over (one transaction here, none there). The seed's polling
        // agents, held by no node, get it at their next poll.
        var relayed: String?
        if let holder, holder != self.nodeName, holder != AgentPollService.polledNode, self.links != nil, !request.detach {
            relayed = holder
        }
        if relayed != nil {
            options.wakePeers = false
            options.sentElsewhere = [request.agentSn]
        }
        let watch = self.registry.watch(id, of: request.agentSn, follow: follow)
        defer { self.registry.unwatch(watch) }
        let (created, subtasks) = try await self.engine.create(task, actor: actor, options: options)
        self.logger.info(
            "command",
            metadata: [
                "agent.sn": "\(request.agentSn)", "command.id": "\(id)", "command.method": "\(command.method)",
                "task.id": "\(created.id)", "agent.node": "\(holder ?? "")",
            ]
        )
        var accepted = Aspire_V1_CommandEvent()
        accepted.accepted.taskID = Int64(created.id)
        accepted.accepted.commandID = id
        accepted.accepted.heldBy = holder ?? ""
        try await emit(accepted)
        guard !request.detach else { return nil }

        let wait = Self.wait(for: request)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await Task.sleep(for: wait)
                watch.finish()
            }
            if let relayed, let links = self.links, let subtask = subtasks.first {
                switch try await self.engine.command(for: subtask, of: created) {
                case .send(let command):
                    group.addTask { await self.relay(command, through: relayed, links: links, into: watch, wait: wait) }
                case .refuse(let result):
                    _ = await self.engine.resultArrived(result, from: request.agentSn)
                    watch.deliver(.result(result))
                }
            }
            group.addTask { await self.readStore(into: watch) }
            defer { group.cancelAll() }
            while let event = await watch.next() {
                try await emit(event.message)
                if case .result(let result) = event { return result }
            }
            return nil
        }
    }

    /// A command id is 1 to 128 letters, digits and `.-_:`, and not a scheduled run's.
    /// How long a caller waits: what it asked, or the command's own timeout and a margin.
    static func wait(for request: Aspire_V1_RunCommandRequest) -> Duration {
        if request.waitSeconds > 0 { return .seconds(Int(request.waitSeconds)) }
        if case .bash(let bash)? = request.command.params, bash.timeout > 0 { return .seconds(Int(bash.timeout) + 30) }
        return .seconds(150)
    }

    /// Has the node holding the host send `command`, and relays its events.
    private func relay(_ command: Aspire_V1_Command, through node: String, links: NodeLinks, into watch: CommandWatch, wait: Duration) async {
        var request = Aspire_V1_WatchRequest()
        request.agentSn = watch.key.agentSN
        request.commandID = watch.id
        request.follow = watch.follow
        request.waitMs = Int32(clamping: wait.milliseconds)
        request.command = command
        do {
            try await links.watch(node, request) { event in
                if let event = CommandWatch.Event(event) { watch.deliver(event) }
            }
        } catch {
            // Perhaps never sent: due again at once, for whichever node holds the host now.
            try? await self.store.releaseDispatch([watch.id])
            self.logger.info(
                "cannot watch a command on its host's node; reading the store",
                metadata: ["node.peer": "\(node)", "command.id": "\(watch.id)", "error": "\(error)"]
            )
        }
    }

    /// Reads the store every ``storeCheck`` until the command's result is there.
    private func readStore(into watch: CommandWatch) async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: Self.storeCheck)
                if let result = try await self.storedResult(watch.id) {
                    watch.deliver(.result(result))
                    return
                }
            } catch is CancellationError {
                return
            } catch {
                self.logger.warning("cannot read a command's result", metadata: ["command.id": "\(watch.id)", "error": "\(error)"])
            }
        }
    }

    /// The command's result once the store has it (an agent's answer, or the end the task gave
    /// it: cancelled, undeliverable).
    func storedResult(_ id: String) async throws -> Aspire_V1_CommandResult? {
        guard let subtask = try await self.store.subtask(id: id), subtask.status.isFinal else { return nil }
        return Aspire_V1_Subtask(subtask).result
    }
}

extension CommandWatch.Event {
    /// The wire form.
    var message: Aspire_V1_CommandEvent {
        var event = Aspire_V1_CommandEvent()
        switch self {
        case .output(let output): event.output = output
        case .lost(let count): event.lostChunks = count
        case .result(let result): event.result = result
        }
        return event
    }

    /// An event relayed from another node; nil for `accepted` (which only its caller sends).
    init?(_ event: Aspire_V1_CommandEvent) {
        switch event.body {
        case .output(let output)?: self = .output(output)
        case .lostChunks(let count)?: self = .lost(count)
        case .result(let result)?: self = .result(result)
        case .accepted?, nil: return nil
        }
    }
}
