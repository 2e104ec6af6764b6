import ArgumentParser
import Foundation
import RPC

struct Agents: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the agents connected to the cluster, with the node holding each.")

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .shortAndLong, help: "table or json.")
    var output: OutputFormat = .table

    func run() async throws {
        let agents: [Aspire_V1_ConnectedAgent]
        do {
            agents = try await self.connection.withAdmin { try await $0.listAgents(Aspire_V1_ListAgentsRequest()).agents }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        switch self.output {
        case .json:
            let objects: [[String: Any]] = agents.map {
                [
                    "agentsn": $0.agentSn, "hostname": $0.hostname, "version": $0.version, "os": $0.os,
                    "arch": $0.arch, "tags": $0.tags, "peer": $0.peer, "node": $0.node,
                    "connected": Self.iso($0.connectedUnixMs), "last_seen": Self.iso($0.lastSeenUnixMs),
                ]
            }
            let data = try JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            FileHandle.standardOutput.write(data + Data("\n".utf8))
        case .table:
            var rows = [["AGENTSN", "HOSTNAME", "VERSION", "NODE", "PEER", "CONNECTED"]]
            for agent in agents {
                // The node answering knows when its own agents connected; for the others, when
                // their node last recorded them.
                let since = agent.connectedUnixMs > 0 ? agent.connectedUnixMs : agent.lastSeenUnixMs
                rows.append([agent.agentSn, agent.hostname, agent.version, agent.node, agent.peer, Self.since(since)])
            }
            printTable(rows)
            if agents.isEmpty {
                FileHandle.standardError.write("no agent is connected\n")
                throw Exit.noMatch
            }
        }
    }

    static func iso(_ millis: Int64) -> String {
        Date(timeIntervalSince1970: Double(millis) / 1000).ISO8601Format()
    }

    static func since(_ millis: Int64) -> String {
        let seconds = Int(Date().timeIntervalSince1970 - Double(millis) / 1000)
        let ago = seconds < 120 ? "\(seconds)s" : seconds < 7200 ? "\(seconds / 60)m" : "\(seconds / 3600)h"
        return "\(iso(millis)) (\(ago) ago)"
    }
}
