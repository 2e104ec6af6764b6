import ArgumentParser
import Foundation
import GRPCCore
import RPC
import SwiftProtobuf

struct Hosts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The hosts the cluster knows: list them, delete one, ban one.",
        subcommands: [HostList.self, HostDelete.self, HostBan.self, HostUnban.self, HostSetRegion.self],
        defaultSubcommand: HostList.self
    )
}

struct HostList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the hosts the cluster knows, with filters (the default of 'aspirectl hosts').",
        discussion: "Example: aspirectl hosts --status offline --tag svc=ecs"
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "unknown, register, online, offline or deleted.")
    var status: String?

    @Option(help: "Only hosts carrying this tag, as name=value (repeatable: every one must match).")
    var tag: [String] = []

    @Option(help: "Only hosts whose name starts with this.")
    var hostname: String?

    @Option(help: "Only this region id.")
    var region: Int64?

    @Option(help: "Rows to skip.")
    var offset: Int32 = 0

    @Option(help: "How many (at most 1000).")
    var limit: Int32 = 100

    @Option(name: .shortAndLong, help: "table or json.")
    var output: OutputFormat = .table

    func run() async throws {
        var request = Aspire_V1_ListHostsRequest()
        request.status = self.status ?? ""
        request.tags = try Run.parseTags(self.tag)
        request.hostnamePrefix = self.hostname ?? ""
        if let region { request.region = region }
        request.offset = self.offset
        request.limit = self.limit
        let listing: Aspire_V1_ListHostsResponse
        do {
            listing = try await self.connection.withAdmin { try await $0.listHosts(request) }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        if self.output == .json {
            FileHandle.standardOutput.write(try listing.jsonUTF8Data() + Data("\n".utf8))
            return
        }
        var rows = [["AGENTSN", "HOSTNAME", "IPADDR", "STATUS", "CERTIFICATE", "VERSION", "OS", "ARCH", "TAGS", "NODE", "LAST SEEN"]]
        for host in listing.hosts {
            rows.append([
                host.agentSn, host.hostname, host.ipaddr, host.status, host.identity, host.curvers, host.os, host.arch,
                host.tags.map { "\($0.name)=\($0.value)" }.joined(separator: ","), host.node, Agents.iso(host.lastSeenUnixMs),
            ])
        }
        printTable(rows)
        FileHandle.standardError.write("\(listing.hosts.count) of \(listing.count) hosts\n")
    }
}

struct HostSetRegion: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-region",
        abstract: "Put hosts in a region (create it first with POST /api/v1/server/regions; 0 or global is no region).",
        discussion: "Example: aspirectl hosts set-region web-1 web-2 --region north; then aspirectl hosts --region ID lists them."
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "AgentSNs of the hosts.")
    var agentSNs: [String]

    @Option(help: "The region: its name, or its id (0 or 'global': no region).")
    var region: String

    func validate() throws {
        guard !self.agentSNs.isEmpty else { throw ValidationError("name at least one host") }
    }

    func run() async throws {
        var request = Aspire_V1_SetHostRegionRequest()
        request.agentSns = self.agentSNs
        if let id = Int64(self.region) {
            request.region = id
        } else if self.region != "global" {
            request.regionName = self.region
        }
        do {
            let answer = try await self.connection.withAdmin { try await $0.setHostRegion(request) }
            print("\(answer.changed) host(s) now in region \(answer.region)")
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
    }
}

struct HostDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete a host: its certificate is taken back and its stream closed on every node.",
        discussion: """
            The host is marked deleted. A host that still runs and holds a usable join token enrolls again; \
            to keep it out, ban it instead.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The host's AgentSN.")
    var agentSN: String

    func run() async throws {
        var request = Aspire_V1_DeleteHostRequest()
        request.agentSn = self.agentSN
        do {
            let host = try await self.connection.withAdmin { try await $0.deleteHost(request) }
            print("\(host.agentSn): \(host.status); certificate taken back")
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
    }
}

struct HostBan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ban",
        abstract: "Ban a host: its certificate is refused by every node, its stream closed, and it cannot enroll until unbanned."
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The host's AgentSN (it need not have been seen yet).")
    var agentSN: String

    @Option(help: "Why, kept with the ban.")
    var reason = ""

    func run() async throws {
        try await banOrLift(self.agentSN, reason: self.reason, lift: false, connection: self.connection)
    }
}

struct HostUnban: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unban",
        abstract: "Lift a host's ban: it may enroll again with a join token."
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The host's AgentSN.")
    var agentSN: String

    func run() async throws {
        try await banOrLift(self.agentSN, reason: "", lift: true, connection: self.connection)
    }
}

private func banOrLift(_ agentSN: String, reason: String, lift: Bool, connection: ConnectionOptions) async throws {
    var request = Aspire_V1_BanHostRequest()
    request.agentSn = agentSN
    request.reason = reason
    request.lift = lift
    do {
        let host = try await connection.withAdmin { try await $0.banHost(request) }
        print(lift ? "\(host.agentSn): ban lifted; it may enroll again" : "\(host.agentSn): banned")
    } catch {
        throw report(error, prefix: "aspirectl: ")
    }
}

struct Nodes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The cluster's nodes, and draining one.",
        subcommands: [NodeList.self, NodeDrain.self, NodeUndrain.self],
        defaultSubcommand: NodeList.self
    )
}

struct NodeList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "Each node: address, state (active, draining, stopped, dead: no heartbeat for 10 s), hosts online on it."
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .shortAndLong, help: "table or json.")
    var output: OutputFormat = .table

    func run() async throws {
        let listing: Aspire_V1_ListNodesResponse
        do {
            listing = try await self.connection.withAdmin { try await $0.listNodes(Aspire_V1_ListNodesRequest()) }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        if self.output == .json {
            FileHandle.standardOutput.write(try listing.jsonUTF8Data() + Data("\n".utf8))
            return
        }
        var rows = [["NAME", "ADDRESS", "STATE", "HOSTS", "STARTED", "HEARTBEAT"]]
        for node in listing.nodes {
            rows.append([node.name, node.address, node.state, "\(node.hosts)", Agents.iso(node.startedUnixMs), Agents.iso(node.heartbeatUnixMs)])
        }
        printTable(rows)
    }
}

struct NodeDrain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain",
        abstract: "Drain a node: it takes no new agents and sends its own to the other active nodes, a wave a second.",
        discussion: "It stays draining until aspirectl nodes undrain NAME, or until it is restarted."
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The node's name (aspirectl nodes lists them).")
    var name: String

    func run() async throws {
        try await setDraining(self.name, undrain: false, connection: self.connection)
    }
}

struct NodeUndrain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "undrain", abstract: "Make a drained node active again: it takes its share of connecting agents.")

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The node's name.")
    var name: String

    func run() async throws {
        try await setDraining(self.name, undrain: true, connection: self.connection)
    }
}

private func setDraining(_ name: String, undrain: Bool, connection: ConnectionOptions) async throws {
    var request = Aspire_V1_DrainNodeRequest()
    request.name = name
    request.undrain = undrain
    do {
        let node = try await connection.withAdmin { try await $0.drainNode(request) }
        FileHandle.standardError.write("node \(node.name): \(node.state), \(node.hosts) hosts\n")
    } catch {
        throw report(error, prefix: "aspirectl: ")
    }
}
