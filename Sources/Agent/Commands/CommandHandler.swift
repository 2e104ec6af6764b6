#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
public import RPC

/// Carries out the commands of the methods it is registered for in ``CommandHandlers``. It gets
/// a command whose parameters are already checked to be its method's (so `command.bash`,
/// `command.subagent`, ... hold them), and answers every outcome with a result.
public protocol CommandHandler: Sendable {
    func handle(_ command: Aspire_V1_Command, as method: CommandMethod, output: BashExecutor.OutputHandler?) async -> Aspire_V1_CommandResult
}

/// Which handler answers each method, built once when the agent starts: a new method is one
/// handler and one line here. The stream, the scheduler's neighbours and `BasicAgentCtl` all run
/// commands through it, so they answer alike.
public struct CommandHandlers: Sendable {
    private let table: [CommandMethod: any CommandHandler]

    /// Each handler with the methods it answers; a method may have one handler only.
    public init(_ entries: [(methods: [CommandMethod], handler: any CommandHandler)]) {
        var table: [CommandMethod: any CommandHandler] = [:]
        for (methods, handler) in entries {
            for method in methods {
                precondition(table[method] == nil, "two handlers for \(method)")
                table[method] = handler
            }
        }
        self.table = table
    }

    /// What runs on any host without an agent running: `sync.bash` and `getinfo.*`
    /// (`BasicAgentCtl`, simulated agents).
    public static func local(bash: BashExecutor, getInfo: GetInfo = GetInfo()) -> CommandHandlers {
        CommandHandlers([([.bash], bash), (GetInfo.methods, getInfo)])
    }

    /// The methods answered here, in ``CommandMethod/allCases`` order.
    public var methods: [CommandMethod] {
        CommandMethod.allCases.filter { self.table[$0] != nil }
    }

    /// Runs `command` with its method's handler; `output` gets live output when the command asks
    /// for it. A method that is unknown, not handled here, or whose parameters are of another
    /// method is answered with a failure naming what is wrong.
    public func run(_ command: Aspire_V1_Command, output: BashExecutor.OutputHandler? = nil) async -> Aspire_V1_CommandResult {
        let method: CommandMethod
        do {
            method = try command.checkedMethod()
        } catch {
            return .failed(id: command.id, error.code, error.cause)
        }
        guard let handler = self.table[method] else {
            return .failed(
                id: command.id, .unknownMethod,
                "unknown method '\(method)' here; this agent has: \(self.methods.map(\.name).joined(separator: ", "))"
            )
        }
        return await handler.handle(command, as: method, output: command.streamOutput ? output : nil)
    }

    /// The answer of a handler given a method it was not registered for (a wiring mistake).
    static func misrouted(_ command: Aspire_V1_Command, to handler: String) -> Aspire_V1_CommandResult {
        .failed(id: command.id, .agentInternal, "\(command.method) reached the \(handler), which does not run it")
    }
}
