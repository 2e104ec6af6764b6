import ArgumentParser
import Foundation
import GRPCCore
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
        abstract: "Show or cancel one task.",
        subcommands: [Show.self, Cancel.self]
    )

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
            printTaskResults(detail)
            throw taskExitCode(for: detail)
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

/// Each host's output prefixed with its AgentSN, a line per host, and the totals.
func printTaskResults(_ detail: Aspire_V1_TaskDetail) {
    for subtask in detail.subtasks.sorted(by: { $0.agentSn < $1.agentSn }) where subtask.hasResult {
        Run.prefixed(subtask.result.data, agent: subtask.agentSn, to: .standardOutput)
        Run.prefixed(subtask.result.stderr, agent: subtask.agentSn, to: .standardError)
    }
    var succeeded = 0
    var failed = 0
    var silent = 0
    for subtask in detail.subtasks.sorted(by: { $0.agentSn < $1.agentSn }) {
        let line: String
        switch subtask.status {
        case "succeeded":
            succeeded += 1
            line = "ok"
        case "failed" where subtask.result.resp == .success:
            failed += 1
            line = "exit \(subtask.result.retcode)"
        case "failed" where subtask.result.retcode == ErrorCode.timeout.rawValue:
            silent += 1
            line = "timeout"
        case "failed":
            failed += 1
            line = "failed (\(subtask.result.retcode)): \(subtask.result.message)"
        case "undeliverable", "pending", "dispatched":
            silent += 1
            line = subtask.status == "undeliverable" ? "offline" : subtask.status
        default:
            line = subtask.status
        }
        FileHandle.standardError.write("[\(subtask.agentSn)] \(line)\n")
    }
    FileHandle.standardError.write("\(succeeded) succeeded, \(failed) failed, \(silent) did not answer\n")
}

/// The documented exit code of a task's outcome.
func taskExitCode(for detail: Aspire_V1_TaskDetail) -> ExitCode {
    if detail.subtasks.isEmpty { return Exit.noMatch }
    if detail.subtasks.contains(where: {
        ["pending", "dispatched", "undeliverable"].contains($0.status) || $0.result.retcode == ErrorCode.timeout.rawValue
    }) {
        return Exit.timeoutOrOffline
    }
    if detail.subtasks.contains(where: { $0.status != "succeeded" && $0.status != "cancelled" }) { return Exit.nonZero }
    return .success
}

func printTable(_ rows: [[String]]) {
    let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
        let line = zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
        FileHandle.standardOutput.write(line.trimmingCharacters(in: .whitespaces) + "\n")
    }
}
