import Foundation
import Logging
import RPC
import SwiftProtobuf
import Testing

@testable import Agent

@Suite("Command methods and the agent's handler table")
struct CommandHandlersTests {
    @Test("Every method has one wire name and one task name, each read back to it; the seed's names stay")
    func names() {
        let all = CommandMethod.allCases
        #expect(Set(all.map(\.name)).count == all.count)
        for method in all {
            #expect(CommandMethod(name: method.name) == method)
        }
        for method in CommandMethod.taskMethods {
            #expect(CommandMethod(taskName: method.taskName) == method)
        }
        // The names agents, tasks and the seed's jobs use on the wire.
        #expect(CommandMethod.bash.name == "sync.bash" && CommandMethod.bash.taskName == "sync.bash")
        #expect(CommandMethod.subAgent(.install).name == "agent.install" && CommandMethod.subAgent(.install).taskName == "install")
        #expect(CommandMethod.getInfo(.users).name == "getinfo.users")
        #expect(CommandMethod(name: "plugin.set") == .plugin(.set) && CommandMethod(name: "schedule.set") == .scheduleSet)
        // The server's own sets are no task's business.
        #expect(CommandMethod(taskName: "plugin.set") == nil && CommandMethod(taskName: "schedule.set") == nil)
        #expect(CommandMethod(taskName: "agent.install") == nil, "tasks say install")
        #expect(CommandMethod(name: "sync.Bash") == nil && CommandMethod(name: "") == nil)
    }

    @Test("A task's parameters become the typed command of its method")
    func taskParameters() throws {
        var parameters = Google_Protobuf_Struct()
        parameters.fields["name"] = Google_Protobuf_Value(stringValue: "web")
        parameters.fields["version"] = Google_Protobuf_Value(stringValue: "1.2")
        let install = try CommandParameters.command(method: "install", parameters: parameters)
        #expect(install.method == "agent.install" && install.subagent.name == "web" && install.subagent.version == "1.2")
        #expect(try install.checkedMethod() == .subAgent(.install))
        #expect(throws: AspireError.self) { try CommandParameters.command(method: "plugin.set", parameters: Google_Protobuf_Struct()) }
    }

    static func command(_ method: String, _ params: Aspire_V1_Command.OneOf_Params?) -> Aspire_V1_Command {
        var command = Aspire_V1_Command()
        command.id = "c-\(UUID().uuidString.prefix(8))"
        command.method = method
        command.params = params
        return command
    }

    @Test("The table runs each method with its handler, and refuses unknown methods, mismatched parameters and methods it lacks, saying which")
    func table() async throws {
        let handlers = CommandHandlers.local(bash: BashExecutor(logger: Logger(label: "test")))
        #expect(handlers.methods == [.bash] + GetInfo.methods)

        var bash = Aspire_V1_BashParams()
        bash.cmd = "echo handled"
        let ran = await handlers.run(Self.command("sync.bash", .bash(bash)))
        #expect(ran.resp == .success && String(decoding: ran.data, as: UTF8.self) == "handled\n")
        let kernel = await handlers.run(Self.command("getinfo.kernel", nil))
        #expect(kernel.resp == .success, "getinfo takes no parameters at all too: \(kernel.message)")

        let unknown = await handlers.run(Self.command("rm.rf", nil))
        #expect(unknown.retcode == ErrorCode.unknownMethod.rawValue && unknown.message.contains("'rm.rf'"))
        let empty = await handlers.run(Self.command("", nil))
        #expect(empty.retcode == ErrorCode.invalidParams.rawValue && empty.message.contains("names no method"))
        // sync.bash with getinfo's parameters: refused before any executor sees it.
        let mismatched = await handlers.run(Self.command("sync.bash", .getinfo(Aspire_V1_GetInfoParams())))
        #expect(mismatched.retcode == ErrorCode.invalidParams.rawValue && mismatched.message.contains("sync.bash needs bash parameters"))
        // A real method this table has no handler for (BasicAgentCtl runs no sub-agents).
        let missing = await handlers.run(Self.command("agent.start", .subagent(Aspire_V1_SubAgentParams())))
        #expect(missing.retcode == ErrorCode.unknownMethod.rawValue && missing.message.contains("this agent has: sync.bash, getinfo.users"))
    }
}
