import ArgumentParser
import Fleet
import Foundation
import RPC
import Synchronization
import TestSupport

/// The simulator on its own, against a node someone else runs.
struct FleetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet",
        abstract: "Hold N simulated agents on a running node until interrupted.",
        discussion: """
            Each agent has its own TLS connection and speaks the real protocol: Init (following \
            redirects), the Connect stream, Hello, status reports, pongs, results until acked. \
            Commands are answered at once with success, or run for real with --execute. With \
            --spread the agents dial 127.1.0.1, 127.1.0.2, ... (the node must listen on 0.0.0.0).
            """
    )

    @Option(help: "The node's gRPC address (HOST:PORT).")
    var server: String

    @Option(help: "CA file the node's certificate must chain to.")
    var ca: String

    @Option(name: .customLong("enroll-token-file"), help: "File holding the enrollment token.")
    var enrollTokenFile: String

    @Option(name: .shortAndLong, help: "How many agents.")
    var count = 1000

    @Option(help: "AgentSN prefix: agents are PREFIX-000001, ...")
    var prefix = "sim"

    @Flag(help: "Dial addresses spread over 127.0.0.0/8 with the server's port.")
    var spread = false

    @Flag(help: "Run commands for real instead of answering at once.")
    var execute = false

    func run() async throws {
        raiseOpenFileLimit()
        var configuration = Fleet.Configuration(
            server: try HostPort(parsing: self.server),
            security: .tls(caFile: self.ca),
            token: try Secret.read(self.enrollTokenFile)
        )
        configuration.spread = self.spread
        configuration.prefix = self.prefix
        configuration.execute = self.execute
        let fleet = Fleet(configuration: configuration, count: self.count)
        let started = ContinuousClock.now
        try await fleet.run { fleet in
            var last = -1
            while true {
                let online = fleet.online
                if online != last {
                    let counters = fleet.counters
                    print(
                        "\(String(format: "%7.1f", (ContinuousClock.now - started).seconds)) s  online \(online)/\(fleet.count)  "
                            + "commands \(counters.commands.load(ordering: .relaxed))  acked \(counters.acks.load(ordering: .relaxed))  "
                            + "failed connects \(counters.failures.load(ordering: .relaxed))"
                    )
                    last = online
                }
                try await Task.sleep(for: .seconds(1))
            }
        }
    }
}
