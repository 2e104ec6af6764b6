import RPC

@testable import Agent

extension CommandHandler {
    /// Runs `command` on this handler alone, its method and parameters checked as the agent's
    /// handler table checks them.
    func perform(_ command: Aspire_V1_Command) async -> Aspire_V1_CommandResult {
        await CommandHandlers([(CommandMethod.allCases, self)]).run(command)
    }
}
