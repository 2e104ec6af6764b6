import ArgumentParser
import Foundation
import GRPCCore
import RPC
import SwiftProtobuf

/// `tags`: the tags hosts carry, and binding them.
struct TagsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tags",
        abstract: "Tags: list them with their host counts, create, delete, bind to hosts, unbind.",
        discussion: """
            aspirectl tags                               # every tag and how many hosts carry it
            aspirectl tags bind svc=web SN1 SN2          # deployments, schedules and plugins for svc=web follow
            aspirectl tags unbind svc=web SN1
            aspirectl tags delete svc=web
            """,
        subcommands: [List.self, Create.self, Delete.self, Bind.self, Unbind.self],
        defaultSubcommand: List.self
    )

    /// `KEY=VALUE` as a tag's name and value.
    static func pair(_ text: String) throws -> (name: String, value: String) {
        guard let pair = try Run.parsePairs([text], option: "tag").first else { throw ValidationError("expected KEY=VALUE, got '\(text)'") }
        return (pair.key, pair.value)
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every tag, with the number of hosts carrying it.")
        @OptionGroup var connection: ConnectionOptions
        @Option(name: .shortAndLong, help: "table or json.") var output: OutputFormat = .table

        func run() async throws {
            let tags: Aspire_V1_ListTagsResponse
            do {
                tags = try await self.connection.withAdmin { try await $0.listTags(Aspire_V1_ListTagsRequest()) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            if self.output == .json {
                FileHandle.standardOutput.write(try tags.jsonUTF8Data() + Data("\n".utf8))
                return
            }
            var rows = [["ID", "TAG", "HOSTS"]]
            for tag in tags.tags { rows.append(["\(tag.id)", "\(tag.name)=\(tag.value)", "\(tag.hosts)"]) }
            printTable(rows)
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a tag (binding one creates it too).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "KEY=VALUE.") var tag: String

        func run() async throws {
            let (name, value) = try TagsCommand.pair(self.tag)
            do {
                let created = try await self.connection.withAdmin { try await $0.createTag(.with { $0.name = name; $0.value = value }) }
                print("tag \(created.name)=\(created.value) (id \(created.id))")
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a tag (by id or KEY=VALUE) and unbind it from every host.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The tag's id, or KEY=VALUE.") var tag: String

        func run() async throws {
            do {
                try await self.connection.withAdmin { admin in
                    var id = Int64(self.tag)
                    if id == nil {
                        let (name, value) = try TagsCommand.pair(self.tag)
                        id = try await admin.listTags(Aspire_V1_ListTagsRequest()).tags.first { $0.name == name && $0.value == value }?.id
                    }
                    guard let id else { throw ValidationError("no tag \(self.tag)") }
                    _ = try await admin.deleteTag(.with { $0.id = id })
                }
                print("deleted tag \(self.tag)")
            } catch let error as ValidationError {
                throw error
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
        }
    }

    struct Bind: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Bind a tag to hosts.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "KEY=VALUE.") var tag: String
        @Argument(help: "AgentSNs.") var agents: [String]

        func run() async throws { try await TagsCommand.bind(self.tag, self.agents, unbind: false, self.connection) }
    }

    struct Unbind: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Unbind a tag from hosts.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "KEY=VALUE.") var tag: String
        @Argument(help: "AgentSNs.") var agents: [String]

        func run() async throws { try await TagsCommand.bind(self.tag, self.agents, unbind: true, self.connection) }
    }

    static func bind(_ tag: String, _ agents: [String], unbind: Bool, _ connection: ConnectionOptions) async throws {
        let (name, value) = try Self.pair(tag)
        var request = Aspire_V1_BindTagRequest()
        request.name = name
        request.value = value
        request.agentSns = Run.hostList(agents)
        request.unbind = unbind
        do {
            let answer = try await connection.withAdmin { try await $0.bindTag(request) }
            print("\(unbind ? "unbound" : "bound") \(name)=\(value) \(unbind ? "from" : "to") \(answer.changed) of \(request.agentSns.count) hosts")
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
    }
}

/// `regions`: where hosts are.
struct RegionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "regions",
        abstract: "Regions: list them, create one (put hosts in one with 'aspirectl hosts set-region').",
        subcommands: [List.self, Create.self],
        defaultSubcommand: List.self
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every region (0 is global).")
        @OptionGroup var connection: ConnectionOptions
        @Option(name: .shortAndLong, help: "table or json.") var output: OutputFormat = .table

        func run() async throws {
            let regions: Aspire_V1_ListRegionsResponse
            do {
                regions = try await self.connection.withAdmin { try await $0.listRegions(Aspire_V1_ListRegionsRequest()) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            if self.output == .json {
                FileHandle.standardOutput.write(try regions.jsonUTF8Data() + Data("\n".utf8))
                return
            }
            var rows = [["ID", "NAME"]]
            for region in regions.regions { rows.append(["\(region.id)", region.name]) }
            printTable(rows)
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a region.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Its name.") var name: String

        func run() async throws {
            do {
                let region = try await self.connection.withAdmin { try await $0.createRegion(.with { $0.name = self.name }) }
                print("region \(region.name) (id \(region.id))")
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
        }
    }
}

/// `events`: what hosts and the server reported, newest first.
struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Events, newest first: hosts' (sub-agents, plugins, config) and the server's own (hosts online and offline, tasks, deployments)."
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .customLong("agent"), help: "Only this host's events.")
    var agent: String?

    @Option(help: "How many (at most 1000).")
    var limit: Int32 = 50

    @Option(name: .shortAndLong, help: "table or json.")
    var output: OutputFormat = .table

    func run() async throws {
        var request = Aspire_V1_ListEventsRequest()
        request.agentSn = self.agent ?? ""
        request.limit = self.limit
        let events: Aspire_V1_ListEventsResponse
        do {
            events = try await self.connection.withAdmin { try await $0.listEvents(request) }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        if self.output == .json {
            FileHandle.standardOutput.write(try events.jsonUTF8Data() + Data("\n".utf8))
            return
        }
        let formatter = ISO8601DateFormatter()
        var rows = [["TIME", "HOST", "CATEGORY", "MESSAGE"]]
        for event in events.events {
            rows.append([
                formatter.string(from: Date(timeIntervalSince1970: Double(event.occurredUnixMs) / 1000)), event.agentSn.isEmpty ? "-" : event.agentSn,
                event.category, event.message,
            ])
        }
        printTable(rows)
        FileHandle.standardError.write("\(events.events.count) of \(events.count) events\n")
    }
}

/// `dashboard`: the fleet at a glance.
struct DashboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard",
        abstract: "Hosts online and offline, the cluster's nodes, sub-agent versions and their states."
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .shortAndLong, help: "table or json.")
    var output: OutputFormat = .table

    func run() async throws {
        let dashboard: Aspire_V1_DashboardResponse
        do {
            dashboard = try await self.connection.withAdmin { try await $0.dashboard(Aspire_V1_DashboardRequest()) }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        if self.output == .json {
            FileHandle.standardOutput.write(try dashboard.jsonUTF8Data() + Data("\n".utf8))
            return
        }
        print("hosts: \(dashboard.hostsTotal) (\(dashboard.hostsOnline) online, \(dashboard.hostsOffline) offline)")
        if !dashboard.nodes.isEmpty {
            print("")
            var nodes = [["NODE", "ADDRESS", "STATE", "HOSTS"]]
            for node in dashboard.nodes { nodes.append([node.name, node.address, node.state, "\(node.hosts)"]) }
            printTable(nodes)
        }
        if !dashboard.deployments.isEmpty {
            print("")
            var versions = [["SUB-AGENT", "VERSION", "HOSTS", "RUNNING", "STOPED", "FATAL", "KILLED"]]
            for entry in dashboard.deployments {
                versions.append([entry.name, entry.version, "\(entry.hosts)", "\(entry.running)", "\(entry.stopped)", "\(entry.fatal)", "\(entry.killed)"])
            }
            printTable(versions)
        }
    }
}
