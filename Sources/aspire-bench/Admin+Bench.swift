import Fleet
import GRPCCore
import RPC
import SwiftProtobuf
import TestSupport

extension Aspire_V1_Admin.Client {
    /// The host's status as the store has it ("online", "offline", ...), or nil for no host.
    func hostStatus(_ agentSN: String) async throws -> String? {
        var request = Aspire_V1_GetHostRequest()
        request.agentSn = agentSN
        do {
            return try await self.getHost(request).status
        } catch let error as RPCError where error.code == .notFound {
            return nil
        }
    }

    /// Waits until the host of `agentSN` has `status`.
    func waitForHost(_ agentSN: String, status: String, timeout: Duration = .seconds(60)) async throws {
        try await eventually(timeout: timeout, interval: .milliseconds(5), "host \(agentSN) \(status)") {
            try await self.hostStatus(agentSN) == status
        }
    }

    /// Runs `cmd` on one agent through the node that holds it and waits for the result.
    func run(_ cmd: String, on agentSN: String) async throws -> Aspire_V1_CommandResult {
        var request = Aspire_V1_RunCommandRequest()
        request.agentSn = agentSN
        request.command.method = CommandMethod.bash.name
        request.command.bash.cmd = cmd
        request.waitSeconds = 30
        return try await self.runCommand(request).result
    }
}

extension Aspire_V1_Admin.Client {
    /// Task `id` once every subtask has an outcome, or as it is after `timeout` (what is still
    /// missing then counts as lost).
    func settledTask(_ id: Int64, timeout: Duration) async throws -> Aspire_V1_Task {
        var get = Aspire_V1_GetTaskRequest()
        get.id = id
        var task = try await self.getTask(get).task
        try? await eventually(timeout: timeout, interval: .milliseconds(50), "task \(id) complete") {
            task = try await self.getTask(get).task
            return task.complete >= task.count
        }
        return task
    }
}

extension Aspire_V1_CreateTaskRequest {
    /// `true` on `agents`: the task the fan-out and storm benchmarks send.
    static func trueTask(on agents: [String]) throws -> Self {
        var request = Self()
        request.command = CommandMethod.bash.taskName
        request.agents = agents
        request.parameters = try Google_Protobuf_Struct(jsonString: #"{"cmd": "true"}"#)
        return request
    }
}
