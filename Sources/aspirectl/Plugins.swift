import ArgumentParser
import Foundation
import GRPCCore
import RPC
import SwiftProtobuf

#if canImport(Glibc)
import Glibc
#endif

struct PluginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugin",
        abstract: "Plugins: plugin.sh collectors the agents fetch, run on a period or on demand, and whose metrics they ship.",
        discussion: """
            A plugin is a directory with an executable plugin.sh printing a JSON list of \
            {"name","timestamp","tags","value"}; agents rename each metric plugin.<plugin>.<name>. See the latest \
            values with `aspirectl metrics`, or scrape GET /metrics.
            """,
        subcommands: [Create.self, List.self, Delete.self, RunNow.self, Enable.self, Disable.self, Update.self, States.self]
    )

    struct Hosts: ParsableArguments {
        @Option(
            name: [.customLong("agent"), .customLong("agents")],
            help: "AgentSN of a host (repeatable; a comma-separated list works too: --agents SN1,SN2)."
        )
        var agents: [String] = []

        @Option(name: .customLong("tag"), help: "Every host carrying KEY=VALUE (repeatable: all must match).")
        var tags: [String] = []

        func validate() throws {
            guard !self.agents.isEmpty || !self.tags.isEmpty else { throw ValidationError("say which hosts: --agents SN1,SN2 or --tag KEY=VALUE") }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a plugin for hosts (they fetch it at once when connected, or when they connect).",
            discussion: """
                aspirectl plugin create load --package load-plugin --version 1.0 --period 60 --tag role=web
                aspirectl plugin create probe --git https://git.example.com/ops/probe.git --ref 3f2a…(40 hex) --period 0 --agents SN1
                aspirectl plugin create disk --url https://files.example.com/disk.tar.gz --checksum SHA256:<hex> --period 300 --tag dc=sh
                """
        )

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var hosts: Hosts

        @Argument(help: "Plugin name: letters, digits and . _ + -.")
        var name: String

        @Option(help: "A tar archive with plugin.sh: http(s)://, file:// or aspire://package/OS/ARCH/FILE.")
        var url = ""

        @Option(help: "SHA256:<hex> of the archive at --url (not needed for the server's own packages).")
        var checksum = ""

        @Option(help: "A package of the server's store holding plugin.sh (with --version).")
        var package = ""

        @Option(help: "The package's version.")
        var version = ""

        @Option(help: "A git repository with plugin.sh at its top (the hosts need git).")
        var git = ""

        @Option(help: "The commit to run (40 hex digits), or a branch or tag with --allow-moving-ref.")
        var ref = ""

        @Flag(help: "Allow a git ref that can move (a branch, a tag, or none): what hosts run then changes with the repository.")
        var allowMovingRef = false

        @Option(help: "Seconds between runs; 0 runs it only on demand (aspirectl plugin run).")
        var period: Int32

        @Option(help: "Run as this user (default nobody).")
        var user = ""

        @Option(help: "Seconds a run may take (default 10).")
        var timeout: Int32 = 0

        @Option(help: "Argument given to plugin.sh on each run.")
        var param = ""

        @Flag(help: "Replace a plugin of the same name instead of refusing.")
        var replace = false

        func run() async throws {
            var request = Aspire_V1_CreatePluginRequest()
            request.plugin.name = self.name
            request.plugin.url = self.url
            request.plugin.checksum = self.checksum
            request.plugin.git = self.git
            request.plugin.ref = self.ref
            request.plugin.allowMovingRef = self.allowMovingRef
            request.plugin.period = self.period
            request.plugin.user = self.user
            request.plugin.timeout = self.timeout
            request.plugin.param = self.param
            request.package = self.package
            request.version = self.version
            request.agents = Run.hostList(self.hosts.agents)
            request.tags = try Run.parseTags(self.hosts.tags)
            request.replace = self.replace
            let info: Aspire_V1_PluginInfo
            do {
                info = try await self.connection.withAdmin { try await $0.createPlugin(request) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            let plugin = info.plugin
            print("stored plugin \(plugin.name) from \(plugin.git.isEmpty ? plugin.url : plugin.git), \(plugin.period == 0 ? "on demand" : "every \(plugin.period) s")")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List plugins (their state on hosts: aspirectl plugin states).")

        @OptionGroup var connection: ConnectionOptions

        @Argument(help: "Only this plugin.")
        var name: String?

        @Option(name: .customLong("agent"), help: "Only the plugins that target this host.")
        var agent: String?

        @Option(name: .shortAndLong, help: "table or json.")
        var output: OutputFormat = .table

        func run() async throws {
            var request = Aspire_V1_ListPluginsRequest()
            request.name = self.name ?? ""
            request.agentSn = self.agent ?? ""
            let listing: Aspire_V1_ListPluginsResponse
            do {
                listing = try await self.connection.withAdmin { try await $0.listPlugins(request) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            if self.output == .json {
                FileHandle.standardOutput.write(try listing.jsonUTF8Data() + Data("\n".utf8))
                return
            }
            var rows = [["NAME", "PERIOD", "USER", "TIMEOUT", "TARGET", "SOURCE"]]
            for info in listing.plugins {
                let plugin = info.plugin
                let tags = info.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                rows.append([
                    plugin.name, plugin.period == 0 ? "on demand" : "\(plugin.period) s", plugin.user, "\(plugin.timeout) s",
                    (info.agents + tags).joined(separator: ","), plugin.git.isEmpty ? plugin.url : "\(plugin.git)\(plugin.ref.isEmpty ? "" : "@\(plugin.ref)")",
                ])
            }
            printTable(rows)
            FileHandle.standardError.write("\(listing.plugins.count) plugins\n")
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a plugin; the agents stop it and remove its files.")

        @OptionGroup var connection: ConnectionOptions

        @Argument(help: "The plugin.")
        var name: String

        func run() async throws {
            var request = Aspire_V1_DeletePluginRequest()
            request.name = self.name
            do {
                _ = try await self.connection.withAdmin { try await $0.deletePlugin(request) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            print("deleted plugin \(self.name)")
        }
    }

    struct RunNow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run", abstract: "Run a plugin now on hosts and print what it measured (refused where it is running or disabled)."
        )

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var hosts: Hosts

        @Argument(help: "The plugin.")
        var name: String

        @Option(help: "Seconds this run may take (default: the plugin's own).")
        var timeout: Int32 = 0

        @Option(help: "Argument given to plugin.sh this time (default: the plugin's own).")
        var param: String?

        @Option(name: .shortAndLong, help: "table or json.")
        var output: OutputFormat = .table

        func run() async throws {
            var parameters: [String: Google_Protobuf_Value] = ["name": .init(stringValue: self.name)]
            if self.timeout > 0 { parameters["timeout"] = .init(numberValue: Double(self.timeout)) }
            if let param { parameters["param"] = .init(stringValue: param) }
            try await PluginCommand.task(.run, parameters, hosts: self.hosts, connection: self.connection, output: self.output, wait: Int(max(self.timeout, 10)))
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a plugin on hosts.")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var hosts: Hosts

        @Argument(help: "The plugin.")
        var name: String

        func run() async throws {
            try await PluginCommand.task(.enable, ["name": .init(stringValue: self.name)], hosts: self.hosts, connection: self.connection)
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable a plugin on hosts; it enables itself again after --seconds (a day by default).")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var hosts: Hosts

        @Argument(help: "The plugin.")
        var name: String

        @Option(help: "Seconds before it enables itself again (default 86400).")
        var seconds: Int32 = 0

        func run() async throws {
            var parameters: [String: Google_Protobuf_Value] = ["name": .init(stringValue: self.name)]
            if self.seconds > 0 { parameters["seconds"] = .init(numberValue: Double(self.seconds)) }
            try await PluginCommand.task(.disable, parameters, hosts: self.hosts, connection: self.connection)
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Fetch a plugin again on hosts (a git plugin's newest commit of its ref).")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var hosts: Hosts

        @Argument(help: "The plugin.")
        var name: String

        func run() async throws {
            try await PluginCommand.task(.update, ["name": .init(stringValue: self.name)], hosts: self.hosts, connection: self.connection, wait: 600)
        }
    }

    struct States: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Each host's plugins with their state: enabled, running, last run and status.")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var hosts: Hosts

        @Option(name: .shortAndLong, help: "table or json.")
        var output: OutputFormat = .table

        func run() async throws {
            try await PluginCommand.task(.list, [:], hosts: self.hosts, connection: self.connection, output: self.output)
        }
    }

    /// Sends a plugin method to hosts as a task, waits, and prints each host's result.
    static func task(
        _ action: CommandMethod.PluginAction, _ parameters: [String: Google_Protobuf_Value], hosts: Hosts, connection: ConnectionOptions,
        output: OutputFormat = .table, wait: Int = 10
    ) async throws {
        let method = CommandMethod.plugin(action).taskName
        var request = Aspire_V1_CreateTaskRequest()
        request.command = method
        request.agents = Run.hostList(hosts.agents)
        request.tags = try Run.parseTags(hosts.tags)
        request.parameters.fields = parameters
        request.user = ProcessInfo.processInfo.environment["USER"] ?? ""
        if !request.tags.isEmpty {
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            request.window.startUnixMs = now
            request.window.endUnixMs = now + Int64(wait + 30) * 1000
        }
        let detail: Aspire_V1_TaskDetail
        do {
            detail = try await connection.withAdmin { admin in
                let created = try await admin.createTask(request)
                return try await followTask(created, admin: admin, until: Date().addingTimeInterval(Double(wait + 30))) { detail in
                    detail.task.count == 0 || detail.task.complete >= detail.task.count
                }
            }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        if detail.subtasks.isEmpty {
            FileHandle.standardError.write("no host matched\n")
            throw Exit.noMatch
        }
        if output == .json {
            FileHandle.standardOutput.write(try detail.jsonUTF8Data() + Data("\n".utf8))
            throw taskExitCode(for: detail)
        }
        throw printTaskResults(detail)
    }
}

struct MetricsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics", abstract: "The latest value of each host's metrics (plugin.<plugin>.<metric>), by name."
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .customLong("agent"), help: "Only this host's metrics.")
    var agent: String?

    @Option(help: "Only metrics whose name starts with this, e.g. plugin.load.")
    var prefix = ""

    @Option(help: "Rows to show, 1 to 10000.")
    var limit: Int32 = 1000

    @Option(name: .shortAndLong, help: "table or json.")
    var output: OutputFormat = .table

    func run() async throws {
        var request = Aspire_V1_QueryMetricsRequest()
        request.agentSn = self.agent ?? ""
        request.prefix = self.prefix
        request.limit = self.limit
        let answer: Aspire_V1_QueryMetricsResponse
        do {
            answer = try await self.connection.withAdmin { try await $0.queryMetrics(request) }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        if self.output == .json {
            FileHandle.standardOutput.write(try answer.jsonUTF8Data() + Data("\n".utf8))
            return
        }
        var rows = [["AGENTSN", "NAME", "TAGS", "VALUE", "TIME"]]
        for metric in answer.metrics {
            let tags = metric.tags.filter { $0.key != "host" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            rows.append([metric.agentSn, metric.name, tags, metric.text.isEmpty ? "\(metric.value)" : metric.text, Agents.iso(metric.timestamp * 1000)])
        }
        printTable(rows)
        FileHandle.standardError.write("\(answer.metrics.count) of \(answer.count) metrics\n")
    }
}
