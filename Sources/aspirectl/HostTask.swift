import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RPC
import SwiftProtobuf

#if canImport(Glibc)
import Glibc
#endif

/// The hosts a task goes to and how it is followed: what `deploy`, `subagent` and `config`
/// share.
struct HostTaskOptions: ParsableArguments {
    @Option(
        name: [.customLong("agent"), .customLong("agents")],
        help: "AgentSN of a host (repeatable; a comma-separated list works too: --agents SN1,SN2)."
    )
    var agents: [String] = []

    @Option(name: .customLong("tag"), help: "Every host carrying KEY=VALUE (repeatable: all must match), online now or within --window.")
    var tags: [String] = []

    @Option(help: "Seconds hosts may join a --tag task, and the longest wait for answers.")
    var window: Int = 600

    @Option(name: .customLong("max-concurrency"), help: "Hosts at once: a number or a percent (e.g. 10%).")
    var maxConcurrency: String?

    @Option(name: .customLong("max-errors"), help: "Stop after this many failed hosts: a number or a percent.")
    var maxErrors: String?

    @Flag(name: .customLong("async"), help: "Print the task id and return; 'aspirectl task show ID' shows the outcome.")
    var async = false

    @Option(name: .shortAndLong, help: "table or json.")
    var output: OutputFormat = .table

    mutating func validate() throws {
        self.agents = Run.hostList(self.agents)
        guard self.agents.isEmpty != self.tags.isEmpty else {
            throw ValidationError("target hosts with --agent SN ... or with --tag KEY=VALUE, not both")
        }
        guard self.window >= 10 else { throw ValidationError("--window must be at least 10 seconds") }
    }

    /// A task of `command` with `parameters` for these hosts.
    func request(_ command: String, _ parameters: Google_Protobuf_Struct) throws -> Aspire_V1_CreateTaskRequest {
        var request = Aspire_V1_CreateTaskRequest()
        request.command = command
        request.parameters = parameters
        request.agents = self.agents
        request.tags = try Run.parseTags(self.tags)
        if !request.tags.isEmpty {
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            request.window.startUnixMs = now
            request.window.endUnixMs = now + Int64(self.window) * 1000
        }
        if let maxConcurrency { request.maxConcurrency = maxConcurrency }
        if let maxErrors { request.maxErrors = maxErrors }
        request.user = ProcessInfo.processInfo.environment["USER"] ?? ""
        return request
    }

    /// Creates the task (after `first`), follows it until every host answered (a tag task: and
    /// its window is over) and prints each host's outcome in the agent's words; throws the exit
    /// code the outcomes call for.
    func run(
        _ request: Aspire_V1_CreateTaskRequest, connection: ConnectionOptions,
        first: @Sendable (Aspire_V1_Admin.Client<HTTP2ClientTransport.Posix>) async throws -> Void = { _ in }
    ) async throws {
        let interactive = isatty(STDERR_FILENO) == 1
        let detail: Aspire_V1_TaskDetail
        do {
            detail = try await connection.withAdmin { admin in
                try await first(admin)
                let created = try await admin.createTask(request)
                if self.async { return created }
                if interactive { FileHandle.standardError.write("task \(created.task.id): \(created.task.count) hosts\n") }
                let windowEnd = Double(request.window.endUnixMs) / 1000
                return try await followTask(created, admin: admin, until: Date().addingTimeInterval(Double(self.window))) { detail in
                    let answered = detail.task.count > 0 && detail.task.complete >= detail.task.count
                    return answered && (request.tags.isEmpty || detail.task.status != "running" || Date().timeIntervalSince1970 >= windowEnd)
                }
            }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        if self.async {
            print(detail.task.id)
            return
        }
        if self.output == .json {
            FileHandle.standardOutput.write(try detail.jsonUTF8Data() + Data("\n".utf8))
            throw taskExitCode(for: detail)
        }
        if detail.subtasks.isEmpty {
            FileHandle.standardError.write("no host matched \((self.agents + self.tags).joined(separator: ", "))\n")
            throw Exit.noMatch
        }
        throw summarize(
            detail.subtasks.map { subtask in
                var outcome = HostOutcome(subtask: subtask)
                // The agent's own words say what happened: installed, stopped, rolled back.
                if subtask.hasResult, !subtask.result.message.isEmpty, outcome.kind == .succeeded {
                    outcome.line = "ok: \(subtask.result.message)"
                }
                return (subtask.agentSn, outcome)
            },
            totals: true
        )
    }
}

/// `subagent uninstall|start|stop|restart NAME`: a sub-agent's lifecycle on hosts.
struct SubAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subagent",
        abstract: "Uninstall, start, stop or restart a sub-agent on hosts, and follow the task.",
        discussion: """
            aspirectl subagent restart MiniAgent --tag role=web
            aspirectl subagent stop MiniAgent --agent 9b62aabb-...
            aspirectl subagent uninstall MiniAgent --agents SN1,SN2

            A stopped sub-agent stays stopped through checks; start and restart also clear fatal. \
            Install and upgrade: aspirectl deploy (once) or aspirectl deployment apply (declared). \
            Exit codes as for deploy.
            """
    )

    enum Action: String, ExpressibleByArgument, CaseIterable {
        case uninstall, start, stop, restart
    }

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var hosts: HostTaskOptions

    @Argument(help: "uninstall, start, stop or restart.")
    var action: Action

    @Argument(help: "The sub-agent.")
    var name: String

    func run() async throws {
        let parameters = Google_Protobuf_Struct(fields: ["name": Google_Protobuf_Value(stringValue: self.name)])
        try await self.hosts.run(try self.hosts.request(self.action.rawValue, parameters), connection: self.connection)
    }
}

/// `config`: the agents' own settings on hosts.
struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Change agents' own settings on hosts: status step, extra servers, tags (kept across their restarts).",
        discussion: """
            aspirectl config --tag dc=sh --step 300
            aspirectl config --agent SN --svrlist node3.example.com:8443 --set-tag rack=r12
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var hosts: HostTaskOptions

    @Option(help: "Seconds between status reports (10 to 86400).")
    var step: Int?

    @Option(help: "Extra servers HOST:PORT,HOST:PORT tried after the configured ones.")
    var svrlist: String?

    @Option(name: .customLong("set-tag"), help: "KEY=VALUE the agent carries from now on (repeatable).")
    var setTags: [String] = []

    func validate() throws {
        guard self.step != nil || self.svrlist != nil || !self.setTags.isEmpty else {
            throw ValidationError("say what to change: --step, --svrlist or --set-tag")
        }
    }

    func run() async throws {
        var fields: [String: Google_Protobuf_Value] = [:]
        if let step { fields["step"] = Google_Protobuf_Value(numberValue: Double(step)) }
        if let svrlist { fields["svrlist"] = Google_Protobuf_Value(stringValue: svrlist) }
        if !self.setTags.isEmpty {
            let tags = try Run.parsePairs(self.setTags, option: "--set-tag")
            fields["tags"] = Google_Protobuf_Value(structValue: Google_Protobuf_Struct(fields: tags.mapValues(Google_Protobuf_Value.init(stringValue:))))
        }
        try await self.hosts.run(try self.hosts.request("config", Google_Protobuf_Struct(fields: fields)), connection: self.connection)
    }
}
