import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RPC
import SwiftProtobuf

#if canImport(Glibc)
import Glibc
#endif

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a shell command on agents and wait for the results.",
        discussion: """
            aspirectl run --agent SN -- 'systemctl is-active sshd'

            With one agent, the command's stdout and stderr are printed as they are; with several, \
            each line is prefixed [AgentSN]. A summary line per host (ok, exit N, timeout, offline) \
            and a totals line go to stderr. -o json prints one result object per line instead.

            A command reaches its host through whichever node of the cluster you call. --follow \
            prints its output as it comes instead of when it ends. Each command is a task of one \
            host: --async prints its task id and returns at once (aspirectl task wait ID reads the \
            result), and a command whose wait runs out can be read the same way.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(
        name: [.customLong("agent"), .customLong("agents")],
        help: "AgentSN of a host (repeatable; a comma-separated list works too: --agents SN1,SN2)."
    )
    var agents: [String] = []

    @Option(name: .customLong("tag"), help: "Run on every online host carrying KEY=VALUE (repeatable: all must match); creates a task.")
    var tags: [String] = []

    @Option(help: "Seconds before the command's process group is killed (default 120).")
    var timeout: Int32 = 0

    @Option(help: "Run as this user (default root).")
    var user = ""

    @Option(help: "Run with this group (default: the user's primary group).")
    var group = ""

    @Option(name: .shortAndLong, help: "table or json.")
    var output: OutputFormat = .table

    @Flag(name: [.customShort("f"), .long], help: "Print each host's output as it comes (prefixed [AgentSN] with several hosts).")
    var follow = false

    @Flag(name: .customLong("async"), help: "Do not wait: print each host's task id (read it later with aspirectl task wait ID).")
    var detach = false

    @Argument(parsing: .captureForPassthrough, help: "The command line, after --.")
    var command: [String] = []

    mutating func validate() throws {
        if self.command.first == "--" { self.command.removeFirst() }
        guard !self.command.isEmpty else { throw ValidationError("give the command after --, e.g. aspirectl run --agent SN -- uptime") }
        self.agents = Self.hostList(self.agents)
        guard self.agents.isEmpty != self.tags.isEmpty else { throw ValidationError("name --agent SN or --tag KEY=VALUE (not both)") }
        _ = try Self.parseTags(self.tags)
        guard self.timeout >= 0 else { throw ValidationError("--timeout must not be negative") }
        guard !(self.follow && self.detach) else { throw ValidationError("--follow and --async exclude each other") }
        guard self.tags.isEmpty || !(self.follow || self.detach) else { throw ValidationError("--follow and --async are for --agent commands") }
    }

    func run() async throws {
        if !self.tags.isEmpty {
            try await self.runTagTask()
            return
        }
        var params = Aspire_V1_BashParams()
        params.cmd = self.command.joined(separator: " ")
        params.timeout = self.timeout
        params.user = self.user
        params.group = self.group
        var command = Aspire_V1_Command()
        command.method = CommandMethod.bash.name
        command.bash = params

        let agents = self.agents
        let request = command
        let outcomes: [(String, Result<Aspire_V1_CommandResult, any Error>)]
        do {
            outcomes = try await self.connection.withAdmin { admin in
                try await withThrowingTaskGroup(of: (String, Result<Aspire_V1_CommandResult, any Error>).self) { group in
                    for agent in agents {
                        group.addTask {
                            var call = Aspire_V1_RunCommandRequest()
                            call.agentSn = agent
                            call.command = request
                            call.detach = self.detach
                            do {
                                if self.follow {
                                    return (agent, .success(try await self.followed(call, admin: admin, many: agents.count > 1)))
                                }
                                let answer = try await admin.runCommand(call)
                                if self.detach {
                                    FileHandle.standardOutput.write("\(agent)\ttask \(answer.taskID)\tcommand \(answer.commandID)\n")
                                    return (agent, .success(Aspire_V1_CommandResult.with { $0.resp = .success }))
                                }
                                return (agent, .success(answer.result))
                            } catch {
                                return (agent, .failure(error))
                            }
                        }
                    }
                    var collected: [(String, Result<Aspire_V1_CommandResult, any Error>)] = []
                    for try await outcome in group {
                        if !self.follow && !self.detach { self.print(outcome, many: agents.count > 1) }
                        collected.append(outcome)
                    }
                    return collected
                }
            }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        if self.detach { return }
        throw summarize(
            outcomes.map { agent, result in
                switch result {
                case .success(let value): (agent, HostOutcome(result: value))
                case .failure(let error): (agent, HostOutcome(error: error))
                }
            },
            totals: agents.count > 1
        )
    }

    private func print(_ outcome: (String, Result<Aspire_V1_CommandResult, any Error>), many: Bool) {
        let (agent, result) = outcome
        switch (self.output, result) {
        case (.json, .success(let value)):
            var object = value.seedJSONObject()
            object["agentsn"] = JSONValue(agent)
            FileHandle.standardOutput.write(JSONValue.object(object).encoded() + Data("\n".utf8))
        case (.json, .failure(let error)):
            let code = (error as? RPCError).map { ErrorCode(rpcError: $0) } ?? .internalError
            let object: JSONValue = [
                "agentsn": JSONValue(agent), "resp": "failed", "retcode": JSONValue(code.rawValue), "message": JSONValue(Self.describe(error)),
            ]
            FileHandle.standardOutput.write(object.encoded() + Data("\n".utf8))
        case (.table, .success(let value)):
            if many {
                Self.prefixed(value.data, agent: agent, to: .standardOutput)
                Self.prefixed(value.stderr, agent: agent, to: .standardError)
            } else {
                FileHandle.standardOutput.write(value.data)
                FileHandle.standardError.write(value.stderr)
            }
        case (.table, .failure):
            break
        }
    }

    /// Runs `call` with its output printed as it comes: whole lines, prefixed by the host when
    /// there are several (a line still open when the command ends is printed then).
    private func followed(
        _ call: Aspire_V1_RunCommandRequest, admin: Aspire_V1_Admin.Client<HTTP2ClientTransport.Posix>, many: Bool
    ) async throws -> Aspire_V1_CommandResult {
        try await admin.runCommandStream(call) { response in
            var open: [Aspire_V1_CommandOutput.Stream: Data] = [:]
            func write(_ data: Data, _ stream: Aspire_V1_CommandOutput.Stream) {
                let handle: FileHandle = stream == .stderr ? .standardError : .standardOutput
                if many { Self.prefixed(data, agent: call.agentSn, to: handle) } else { handle.write(data) }
            }
            for try await event in response.messages {
                switch event.body {
                case .output(let output)?:
                    guard many else {
                        write(output.chunk, output.stream)
                        continue
                    }
                    var pending = open[output.stream, default: Data()] + output.chunk
                    if let last = pending.lastIndex(of: UInt8(ascii: "\n")) {
                        write(pending[..<pending.index(after: last)], output.stream)
                        pending = Data(pending[pending.index(after: last)...])
                    }
                    open[output.stream] = pending
                case .lostChunks(let count)?:
                    FileHandle.standardError.write("[\(call.agentSn)] ... \(count) chunks of output lost (reading too slowly) ...\n")
                case .result(let result)?:
                    for (stream, rest) in open where !rest.isEmpty { write(rest + Data("\n".utf8), stream) }
                    if self.output == .json { self.print((call.agentSn, .success(result)), many: many) }
                    return result
                case .accepted?, nil:
                    continue
                }
            }
            throw RPCError(code: .deadlineExceeded, message: "agent \(call.agentSn) did not answer in time")
        }
    }

    static func prefixed(_ data: Data, agent: String, to handle: FileHandle) {
        guard !data.isEmpty else { return }
        var text = String(decoding: data, as: UTF8.self)
        if text.hasSuffix("\n") { text.removeLast() }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            handle.write("[\(agent)] \(line)\n")
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? RPCError { return error.message }
        return "\(error)"
    }


    /// `--tag`: a tag task over the hosts online now, followed until every one answered.
    private func runTagTask() async throws {
        var request = Aspire_V1_CreateTaskRequest()
        request.command = CommandMethod.bash.taskName
        request.tags = try Self.parseTags(self.tags)
        var parameters = Google_Protobuf_Struct()
        parameters.fields["cmd"] = Google_Protobuf_Value(stringValue: self.command.joined(separator: " "))
        if self.timeout > 0 { parameters.fields["timeout"] = Google_Protobuf_Value(numberValue: Double(self.timeout)) }
        if !self.user.isEmpty { parameters.fields["user"] = Google_Protobuf_Value(stringValue: self.user) }
        if !self.group.isEmpty { parameters.fields["group"] = Google_Protobuf_Value(stringValue: self.group) }
        request.parameters = parameters
        let timeout = Int64(self.timeout > 0 ? self.timeout : 120)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        request.window.startUnixMs = now
        request.window.endUnixMs = now + (timeout + 30) * 1000
        request.user = ProcessInfo.processInfo.environment["USER"] ?? ""

        let interactive = isatty(STDERR_FILENO) == 1
        let detail: Aspire_V1_TaskDetail
        do {
            detail = try await self.connection.withAdmin { admin in
                let created = try await admin.createTask(request)
                if interactive { FileHandle.standardError.write("task \(created.task.id): \(created.task.count) hosts\n") }
                return try await followTask(created, admin: admin, until: Date().addingTimeInterval(Double(timeout + 30))) { detail in
                    detail.task.count == 0 || detail.task.complete >= detail.task.count
                }
            }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        if detail.subtasks.isEmpty {
            FileHandle.standardError.write("no online host carries \(self.tags.joined(separator: ", "))\n")
            throw Exit.noMatch
        }
        if self.output == .json {
            FileHandle.standardOutput.write(try detail.jsonUTF8Data() + Data("\n".utf8))
            throw taskExitCode(for: detail)
        }
        throw printTaskResults(detail)
    }
}

extension Run {
    /// `--agent` options, each one AgentSN or a comma-separated list, in order, each once.
    static func hostList(_ options: [String]) -> [String] {
        var seen: Set<String> = []
        return options.flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && seen.insert($0).inserted }
    }

    /// `--tag KEY=VALUE` options as a map.
    static func parseTags(_ options: [String]) throws -> [String: String] {
        try self.parsePairs(options, option: "--tag")
    }

    /// `KEY=VALUE` options (`--tag`, `--env`) as a map; an error names the option.
    static func parsePairs(_ options: [String], option name: String) throws -> [String: String] {
        var pairs: [String: String] = [:]
        for option in options {
            let parts = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("\(name) '\(option)': expected KEY=VALUE") }
            pairs[String(parts[0])] = String(parts[1])
        }
        return pairs
    }
}
