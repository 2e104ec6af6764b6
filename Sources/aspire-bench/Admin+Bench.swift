import Fleet
import GRPCCore
import RPC
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
