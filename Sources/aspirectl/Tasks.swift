import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RPC
import SwiftProtobuf

#if canImport(Glibc)
import Glibc
#endif

struct Tasks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List tasks, newest first.")

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "How many.")
    var limit: Int32 = 20

    @Option(name: .shortAndLong, help: "table or json.")
    var output: OutputFormat = .table

    func run() async throws {
        var request = Aspire_V1_ListTasksRequest()
        request.limit = self.limit
        let listing: Aspire_V1_ListTasksResponse
        do {
            listing = try await self.connection.withAdmin { try await $0.listTasks(request) }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        if self.output == .json {
            FileHandle.standardOutput.write(try listing.jsonUTF8Data() + Data("\n".utf8))
            return
        }
        var rows = [["ID", "STATUS", "COMMAND", "TARGET", "HOSTS", "DONE", "FAILED", "CREATED"]]
        for task in listing.tasks {
            let target = task.tags.isEmpty ? "agents" : task.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            rows.append([
                "\(task.id)", task.status, task.command, target, "\(task.count)", "\(task.complete)", "\(task.failed)",
                Agents.iso(task.createdUnixMs),
            ])
        }
        printTable(rows)
        FileHandle.standardError.write("\(listing.tasks.count) of \(listing.count) tasks\n")
    }
}

struct TaskCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "task",
        abstract: "Show, wait for or cancel one task.",
        subcommands: [Show.self, Wait.self, Cancel.self]
    )

    struct Wait: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Wait until every host of a task answered, then print each host's output (exit codes as run's).",
            discussion: "For a command started with aspirectl run --async, or whose wait ran out: aspirectl task wait 42"
        )

        @OptionGroup var connection: ConnectionOptions

        @Argument(help: "The task id.")
        var id: Int64

        @Option(help: "Seconds to wait at most (default 600).")
        var timeout = 600

        @Option(name: .shortAndLong, help: "table or json.")
        var output: OutputFormat = .table

        func run() async throws {
            var request = Aspire_V1_GetTaskRequest()
            request.id = self.id
            let detail: Aspire_V1_TaskDetail
            do {
                detail = try await self.connection.withAdmin { admin in
                    try await followTask(try await admin.getTask(request), admin: admin, until: Date().addingTimeInterval(Double(self.timeout))) {
                        $0.task.count > 0 && $0.task.complete >= $0.task.count
                    }
                }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            if self.output == .json {
                FileHandle.standardOutput.write(try detail.jsonUTF8Data() + Data("\n".utf8))
                throw taskExitCode(for: detail)
            }
            throw printTaskResults(detail)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A task with each host's status and output.")

        @OptionGroup var connection: ConnectionOptions

        @Argument(help: "The task id.")
        var id: Int64

        @Option(name: .shortAndLong, help: "table or json.")
        var output: OutputFormat = .table

        func run() async throws {
            var request = Aspire_V1_GetTaskRequest()
            request.id = self.id
            let detail: Aspire_V1_TaskDetail
            do {
                detail = try await self.connection.withAdmin { try await $0.getTask(request) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            if self.output == .json {
                FileHandle.standardOutput.write(try detail.jsonUTF8Data() + Data("\n".utf8))
                return
            }
            throw printTaskResults(detail)
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop sending a task's remaining subtasks.")

        @OptionGroup var connection: ConnectionOptions

        @Argument(help: "The task id.")
        var id: Int64

        func run() async throws {
            var request = Aspire_V1_CancelTaskRequest()
            request.id = self.id
            do {
                let detail = try await self.connection.withAdmin { try await $0.cancelTask(request) }
                FileHandle.standardError.write("task \(detail.task.id) \(detail.task.status)\n")
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
        }
    }
}

/// Each host's output prefixed with its AgentSN, a line per host and the totals; returns the
/// documented exit code.
func printTaskResults(_ detail: Aspire_V1_TaskDetail) -> ExitCode {
    for subtask in detail.subtasks.sorted(by: { $0.agentSn < $1.agentSn }) where subtask.hasResult {
        Run.prefixed(subtask.result.data, agent: subtask.agentSn, to: .standardOutput)
        Run.prefixed(subtask.result.stderr, agent: subtask.agentSn, to: .standardError)
    }
    if detail.subtasks.isEmpty { return Exit.noMatch }
    return summarize(detail.subtasks.map { ($0.agentSn, HostOutcome(subtask: $0)) }, totals: true)
}

/// The documented exit code of a task's outcome, without printing.
func taskExitCode(for detail: Aspire_V1_TaskDetail) -> ExitCode {
    if detail.subtasks.isEmpty { return Exit.noMatch }
    let kinds = detail.subtasks.map { HostOutcome(subtask: $0).kind }
    if kinds.contains(.silent) { return Exit.timeoutOrOffline }
    if kinds.contains(.failed) { return Exit.nonZero }
    return .success
}

/// Polls a task until `finished` says so or `deadline` passes; on a terminal, a live
/// done/failed/pending line on standard error.
func followTask(
    _ created: Aspire_V1_TaskDetail,
    admin: Aspire_V1_Admin.Client<HTTP2ClientTransport.Posix>,
    until deadline: Date,
    finished: (Aspire_V1_TaskDetail) -> Bool
) async throws -> Aspire_V1_TaskDetail {
    let interactive = isatty(STDERR_FILENO) == 1
    var detail = created
    var get = Aspire_V1_GetTaskRequest()
    get.id = created.task.id
    while !finished(detail), Date() < deadline {
        try await Task.sleep(for: .milliseconds(200))
        detail = try await admin.getTask(get)
        if interactive {
            let pending = detail.task.count - detail.task.complete
            FileHandle.standardError.write("\r\(detail.task.complete - detail.task.failed) done, \(detail.task.failed) failed, \(pending) pending ")
        }
    }
    if interactive { FileHandle.standardError.write("\r\u{1B}[K") }
    return detail
}

func printTable(_ rows: [[String]]) {
    let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
        let line = zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
        FileHandle.standardOutput.write(line.trimmingCharacters(in: .whitespaces) + "\n")
    }
}
