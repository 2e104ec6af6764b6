import ArgumentParser
import Foundation
import RPC

struct Info: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read host facts from an agent (getinfo.*).",
        discussion: """
            aspirectl info --agent SN users -A      all users (-U NAME one, -u normal, -S system)
            aspirectl info --agent SN kernel
            Facts: users, kernel, os, cpu, memory, disk, network, processes (-n COUNT).
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .customLong("agent"), help: "AgentSN to ask.")
    var agent: String

    @Argument(help: "Which facts: users, kernel, os, cpu, memory, disk, network, processes.")
    var what: String

    @Argument(parsing: .captureForPassthrough, help: "Arguments of the method, e.g. -A or -U root.")
    var arguments: [String] = []

    func run() async throws {
        var command = Aspire_V1_Command()
        command.method = "getinfo.\(self.what)"
        var params = Aspire_V1_GetInfoParams()
        params.args = self.arguments.filter { $0 != "--" }.joined(separator: " ")
        command.getinfo = params
        var request = Aspire_V1_RunCommandRequest()
        request.agentSn = self.agent
        request.command = command
        let result: Aspire_V1_CommandResult
        do {
            result = try await self.connection.withAdmin { try await $0.runCommand(request).result }
        } catch {
            throw report(error, prefix: "aspirectl: [\(self.agent)] ")
        }
        guard result.resp == .success else {
            FileHandle.standardError.write("aspirectl: [\(self.agent)] \(result.message) (\(result.retcode))\n")
            throw Exit.usageOrConnection
        }
        let document = try? JSONSerialization.jsonObject(with: result.data)
        let pretty = document.flatMap {
            try? JSONSerialization.data(withJSONObject: $0, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        }
        FileHandle.standardOutput.write((pretty ?? result.data) + Data("\n".utf8))
    }
}
