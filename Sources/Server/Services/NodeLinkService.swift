import Foundation
public import GRPCCore
public import Logging
public import RPC

/// `NodeLink`: what the other nodes of the cluster ask of this one (see ``NodeLinks`` for the
/// calling side). Only nodes reach it (``AuthInterceptor``: a node's certificate).
public struct NodeLinkService: Aspire_V1_NodeLink.SimpleServiceProtocol {
    let registry: SessionRegistry
    let store: SQLStore
    let engine: TaskEngine
    let commands: CommandRunner
    let logger: Logger

    public func wake(request: Aspire_V1_WakeRequest, context: ServerContext) async throws -> Aspire_V1_WakeResponse {
        var response = Aspire_V1_WakeResponse()
        response.held = Int32(request.agentSns.filter { self.registry.session(for: $0) != nil }.count)
        await self.engine.dispatch(to: request.agentSns)
        return response
    }

    public func watch(
        request: Aspire_V1_WatchRequest,
        response: RPCWriter<Aspire_V1_CommandEvent>,
        context: ServerContext
    ) async throws {
        try AgentIdentity.validate(agentSN: request.agentSn)
        try CommandID.check(request.commandID)
        let watch = self.registry.watch(request.commandID, of: request.agentSn, follow: request.follow)
        defer { self.registry.unwatch(watch) }
        if request.hasCommand {
            guard request.command.id == request.commandID else {
                throw AspireError(.badRequest, "the command's id is not command_id")
            }
            // Claimed for this node by the caller: sent now, or given back to the store.
            guard self.registry.session(for: request.agentSn)?.send(command: request.command) == true else {
                try await self.store.releaseDispatch([request.commandID])
                return
            }
        } else {
            // Not held here (any more): the caller reads the store.
            guard self.registry.session(for: request.agentSn) != nil else { return }
            // Sent already (by a sweep) and answered before the watch began: it is in the store.
            if let result = try await self.commands.storedResult(request.commandID) {
                var event = Aspire_V1_CommandEvent()
                event.result = result
                try await response.write(event)
                return
            }
            await self.engine.dispatch(to: request.agentSn)
        }
        let wait = Duration.milliseconds(Int64(min(max(request.waitMs, 0), 7 * 86_400_000)))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await Task.sleep(for: wait)
                watch.finish()
            }
            defer { group.cancelAll() }
            while let event = await watch.next() {
                try await response.write(event.message)
                if case .result = event { return }
            }
        }
    }
}
