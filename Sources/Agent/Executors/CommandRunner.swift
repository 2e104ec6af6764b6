import Foundation
public import Logging
public import RPC

/// Runs one command with the executor its method names. The agent's stream session and
/// `BasicAgentCtl` both go through here, so they answer alike.
public struct CommandRunner: Sendable {
    public var bash: BashExecutor
    public var getInfo: GetInfo

    public init(bash: BashExecutor, getInfo: GetInfo = GetInfo()) {
        self.bash = bash
        self.getInfo = getInfo
    }

    public init(logger: Logger) {
        self.init(bash: BashExecutor(logger: logger))
    }

    /// The methods this agent answers.
    public static var methods: [String] {
        ["sync.bash"] + GetInfo.methods.map { "getinfo.\($0)" }
    }

    public func run(_ command: Aspire_V1_Command, onOutput: BashExecutor.OutputHandler? = nil) async -> Aspire_V1_CommandResult {
        switch command.method {
        case "sync.bash":
            guard case .bash(let params)? = command.params else {
                return .failed(id: command.id, .invalidParams, "sync.bash needs bash parameters (cmd, timeout, user, group)")
            }
            return await self.bash.run(id: command.id, params: params, onOutput: command.streamOutput ? onOutput : nil)
        case let method where method.hasPrefix("getinfo."):
            let args: String
            switch command.params {
            case .getinfo(let params)?: args = params.args
            case nil: args = ""
            default:
                return .failed(id: command.id, .invalidParams, "\(method) takes getinfo parameters (args)")
            }
            return self.getInfo.run(id: command.id, method: method, args: args)
        case "":
            return .failed(id: command.id, .invalidParams, "the command names no method")
        default:
            return .failed(
                id: command.id,
                .unknownMethod,
                "unknown method '\(command.method)'; this agent has: \(Self.methods.joined(separator: ", "))"
            )
        }
    }
}
