import Agent
import ArgumentParser
import Foundation
import Logging
import RPC

#if canImport(Glibc)
import Glibc
#endif

@main
struct BasicAgentCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "BasicAgentCtl",
        abstract: "Run one agent method on this host and print the JSON result the agent would send.",
        discussion: """
            Methods: \(CommandRunner.methods.joined(separator: ", ")).

              BasicAgentCtl -c getinfo.users -a "-U root"     one user (-A all, -u normal, -S system)
              BasicAgentCtl -c getinfo.kernel --pretty
              BasicAgentCtl -c sync.bash -a "ls /" --user nobody --timeout 10

            Exit status: 0 when the method succeeded (for sync.bash: the command's own exit status), \
            1 when it failed (bad arguments, unknown user, timeout, ...), 64 for usage errors.
            """
    )

    @Option(name: .customShort("c"), help: "The method, e.g. getinfo.users or sync.bash.")
    var method: String

    @Option(name: .customShort("a"), parsing: .unconditional, help: "The method's arguments; for sync.bash, the command line.")
    var arguments = ""

    @Option(help: "sync.bash: run as this user (default root).")
    var user = ""

    @Option(help: "sync.bash: run with this group (default: the user's primary group).")
    var group = ""

    @Option(help: "sync.bash: seconds before the command's process group is killed (default 120).")
    var timeout: Int32 = 0

    @Flag(help: "Indent the JSON.")
    var pretty = false

    func run() async throws {
        LogSetup.bootstrap(level: .warning)
        var command = Aspire_V1_Command()
        command.id = UUID().uuidString.lowercased()
        command.method = self.method
        if self.method == "sync.bash" {
            var bash = Aspire_V1_BashParams()
            bash.cmd = self.arguments
            bash.user = self.user
            bash.group = self.group
            bash.timeout = self.timeout
            command.bash = bash
        } else {
            var params = Aspire_V1_GetInfoParams()
            params.args = self.arguments
            command.getinfo = params
        }
        let runner = CommandRunner(logger: Logger(label: "aspire.basicagentctl"))
        let result = await runner.run(command)
        FileHandle.standardOutput.write(result.seedJSON(pretty: self.pretty))
        FileHandle.standardOutput.write(Data("\n".utf8))
        if result.resp != .success {
            FileHandle.standardError.write(Data("BasicAgentCtl: \(result.message)\n".utf8))
            throw ExitCode(1)
        }
        if result.retcode != 0 {
            throw ExitCode(result.retcode & 0xFF == 0 ? 1 : result.retcode & 0xFF)
        }
    }
}
