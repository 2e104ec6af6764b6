import ArgumentParser
import Foundation
import GRPCCore
import RPC
import SwiftProtobuf

struct ScheduleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule",
        abstract: "Scheduled commands: the agents they target keep them and run them on time, connected or not.",
        discussion: """
            Check an expression first with `aspirectl cron next`. Each run comes back as a result \
            (`aspirectl schedule runs`); a run still going when the next is due makes that one skipped (3039).
            """,
        subcommands: [Create.self, List.self, Delete.self, Enable.self, Disable.self, Import.self, Runs.self]
    )

    /// Targets shared by create and import.
    struct Targets: ParsableArguments {
        @Option(
            name: [.customLong("agent"), .customLong("agents")],
            help: "AgentSN of a host (repeatable; a comma-separated list works too: --agents SN1,SN2)."
        )
        var agents: [String] = []

        @Option(name: .customLong("tag"), help: "Every host carrying KEY=VALUE (repeatable: all must match), now and later.")
        var tags: [String] = []

        @Option(help: "IANA time zone of the expression, e.g. Asia/Shanghai (default: each host's own).")
        var tz = ""

        @Option(help: "Seconds before a run's process group is killed (default 120).")
        var timeout: Int32 = 0

        @Flag(help: "Replace schedules of the same name instead of refusing.")
        var replace = false

        func validate() throws {
            guard !self.agents.isEmpty || !self.tags.isEmpty else { throw ValidationError("say which hosts: --agents SN1,SN2 or --tag KEY=VALUE") }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a schedule.",
            discussion: "Example: aspirectl schedule create backup '0 30 2 * * *' --tag role=db --tz Asia/Shanghai -- /usr/local/bin/backup.sh"
        )

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var targets: Targets

        @Argument(help: "Schedule name: letters, digits and . _ + -.")
        var name: String

        @Argument(help: "Cron expression: 6 fields (seconds first) or 5, in quotes.")
        var expression: String

        @Option(help: "Run as this user (default root).")
        var user = ""

        @Option(help: "Run with this group (default: the user's primary group).")
        var group = ""

        @Flag(help: "Store it disabled: the agents keep it and do not run it.")
        var disabled = false

        @Argument(parsing: .postTerminator, help: "The command line, after --.")
        var command: [String] = []

        func run() async throws {
            let words = self.command
            guard !words.isEmpty else { throw ValidationError("give the command after --") }
            var request = Aspire_V1_CreateScheduleRequest()
            request.schedule.name = self.name
            request.schedule.expr = self.expression
            request.schedule.tz = self.targets.tz
            request.schedule.user = self.user
            request.schedule.group = self.group
            request.schedule.command = words.joined(separator: " ")
            request.schedule.timeout = self.targets.timeout
            request.schedule.disabled = self.disabled
            request.agents = Run.hostList(self.targets.agents)
            request.tags = try Run.parseTags(self.targets.tags)
            request.replace = self.targets.replace
            let info: Aspire_V1_ScheduleInfo
            do {
                info = try await self.connection.withAdmin { try await $0.createSchedule(request) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            print("stored schedule \(info.schedule.name)\(info.nextUnixMs.first.map { ", next run \(Agents.iso($0))" } ?? "")")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List schedules with their next run.")

        @OptionGroup var connection: ConnectionOptions

        @Argument(help: "Only this schedule.")
        var name: String?

        @Option(name: .customLong("agent"), help: "Only the schedules that target this host.")
        var agent: String?

        @Option(help: "Next fire times to show per schedule (JSON output; the table shows one).")
        var next: Int32 = 1

        @Option(name: .shortAndLong, help: "table or json.")
        var output: OutputFormat = .table

        func run() async throws {
            var request = Aspire_V1_ListSchedulesRequest()
            request.name = self.name ?? ""
            request.agentSn = self.agent ?? ""
            request.next = self.next
            let listing: Aspire_V1_ListSchedulesResponse
            do {
                listing = try await self.connection.withAdmin { try await $0.listSchedules(request) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            if self.output == .json {
                FileHandle.standardOutput.write(try listing.jsonUTF8Data() + Data("\n".utf8))
                return
            }
            var rows = [["NAME", "EXPR", "TZ", "USER", "TARGET", "ENABLED", "NEXT", "COMMAND"]]
            for info in listing.schedules {
                let schedule = info.schedule
                let tags = info.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                rows.append([
                    schedule.name, schedule.expr, schedule.tz.isEmpty ? "host" : schedule.tz, schedule.user,
                    (info.agents + tags).joined(separator: ","), schedule.disabled ? "no" : "yes",
                    info.nextUnixMs.first.map(Agents.iso) ?? "-", String(schedule.command.prefix(60)),
                ])
            }
            printTable(rows)
            FileHandle.standardError.write("\(listing.schedules.count) schedules\n")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a schedule; the agents drop it.")

        @OptionGroup var connection: ConnectionOptions

        @Argument(help: "The schedule.")
        var name: String

        func run() async throws {
            var request = Aspire_V1_DeleteScheduleRequest()
            request.name = self.name
            do {
                _ = try await self.connection.withAdmin { try await $0.deleteSchedule(request) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            print("deleted schedule \(self.name)")
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a schedule.")

        @OptionGroup var connection: ConnectionOptions

        @Argument(help: "The schedule.")
        var name: String

        func run() async throws {
            try await ScheduleCommand.setEnabled(self.name, true, connection: self.connection)
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable a schedule: the agents keep it and do not run it.")

        @OptionGroup var connection: ConnectionOptions

        @Argument(help: "The schedule.")
        var name: String

        func run() async throws {
            try await ScheduleCommand.setEnabled(self.name, false, connection: self.connection)
        }
    }

    static func setEnabled(_ name: String, _ enabled: Bool, connection: ConnectionOptions) async throws {
        var request = Aspire_V1_SetScheduleEnabledRequest()
        request.name = name
        request.enabled = enabled
        do {
            _ = try await connection.withAdmin { try await $0.setScheduleEnabled(request) }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        print("\(enabled ? "enabled" : "disabled") schedule \(name)")
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create one schedule per line of a crontab file, named PREFIX-LINE.",
            discussion: """
                Lines have 6 time fields (seconds first) or 5, then the command; with --with-user a user name comes \
                before the command (as in /etc/crontab). NAME=value lines are exported to the lines below them. \
                Nothing is stored when a line is wrong: the error names the line and the field.
                """
        )

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var targets: Targets

        @Argument(help: "The crontab file ('-' for standard input).")
        var file: String

        @Option(help: "Names are PREFIX-LINE (default crontab).")
        var prefix = "crontab"

        @Option(help: "User for lines that name none (default root).")
        var user = ""

        @Flag(help: "Each line names a user after its time fields.")
        var withUser = false

        @Option(help: "5 or 6 time fields on every line (default: each line's own, 6 when six words make an expression).")
        var fields: Int32 = 0

        func run() async throws {
            let data = self.file == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: self.file)
            guard let data, let text = String(data: data, encoding: .utf8) else { throw ValidationError("cannot read \(self.file) as UTF-8 text") }
            var request = Aspire_V1_ImportCrontabRequest()
            request.crontab = text
            request.prefix = self.prefix
            request.agents = Run.hostList(self.targets.agents)
            request.tags = try Run.parseTags(self.targets.tags)
            request.tz = self.targets.tz
            request.user = self.user
            request.timeout = self.targets.timeout
            request.fields = self.fields
            request.withUser = self.withUser
            request.replace = self.targets.replace
            let listing: Aspire_V1_ListSchedulesResponse
            do {
                listing = try await self.connection.withAdmin { try await $0.importCrontab(request) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            for info in listing.schedules {
                print("stored schedule \(info.schedule.name): \(info.schedule.expr)  \(info.schedule.command)")
            }
        }
    }

    struct Runs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Runs the agents reported, newest first.")

        @OptionGroup var connection: ConnectionOptions

        @Argument(help: "Only this schedule's runs.")
        var name: String?

        @Option(name: .customLong("agent"), help: "Only this host's runs.")
        var agent: String?

        @Option(help: "How many (at most 1000).")
        var limit: Int32 = 20

        @Option(name: .shortAndLong, help: "table or json.")
        var output: OutputFormat = .table

        func run() async throws {
            var request = Aspire_V1_ListScheduleRunsRequest()
            request.name = self.name ?? ""
            request.agentSn = self.agent ?? ""
            request.limit = self.limit
            let listing: Aspire_V1_ListScheduleRunsResponse
            do {
                listing = try await self.connection.withAdmin { try await $0.listScheduleRuns(request) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            if self.output == .json {
                FileHandle.standardOutput.write(try listing.jsonUTF8Data() + Data("\n".utf8))
                return
            }
            var rows = [["DUE", "SCHEDULE", "AGENT", "OUTCOME", "OUTPUT"]]
            for run in listing.runs {
                let outcome = HostOutcome(result: run.result)
                let output = String(decoding: run.result.data.prefix(200), as: UTF8.self)
                    .split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
                rows.append([Agents.iso(run.dueUnixMs), run.name, run.agentSn, outcome.line, output])
            }
            printTable(rows)
            FileHandle.standardError.write("\(listing.runs.count) of \(listing.count) runs\n")
        }
    }
}
