import ArgumentParser
import Foundation
import GRPCCore
import RPC
import SwiftProtobuf

struct Hosts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the hosts the cluster knows, with filters.",
        discussion: "Example: aspirectl hosts --status offline --tag svc=ecs"
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "unknown, register, online or offline.")
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
        var rows = [["AGENTSN", "HOSTNAME", "IPADDR", "STATUS", "VERSION", "OS", "ARCH", "TAGS", "NODE", "LAST SEEN"]]
        for host in listing.hosts {
            rows.append([
                host.agentSn, host.hostname, host.ipaddr, host.status, host.curvers, host.os, host.arch,
                host.tags.map { "\($0.name)=\($0.value)" }.joined(separator: ","), host.node, Agents.iso(host.lastSeenUnixMs),
            ])
        }
        printTable(rows)
        FileHandle.standardError.write("\(listing.hosts.count) of \(listing.count) hosts\n")
    }
}
