import ArgumentParser

@main
struct AspireBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aspire-bench",
        abstract: "Fleet simulator and benchmarks: real aspire-server and boot processes on loopback.",
        discussion: """
            Each benchmark starts what it measures for real (server nodes, boot agents, simulated \
            agents with their own TLS connections), prints a table and one JSON line, and asserts \
            nothing about speed. --quick sizes finish in under a minute each. Large fleets need \
            root (or a high 'ulimit -n'): every simulated agent holds a connection.

            Build in release mode for figures worth comparing: swift build -c release, then \
            .build/release/aspire-bench all.
            """,
        subcommands: [
            All.self, FleetCommand.self, IdleBench.self, FanOutBench.self, SaltBench.self, RoundTripBench.self, OfflineBench.self,
            StormBench.self, RestBench.self, IngestBench.self, CommandsBench.self, ClusterBench.self, ConsoleBench.self, RolloutBench.self,
            SoakBench.self, ReliabilityBench.self, FootprintBench.self,
        ]
    )
}

/// Every benchmark, in order.
struct All: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run every benchmark.")

    @OptionGroup var options: BenchOptions

    func run() async throws {
        let options = self.options
        let benchmarks: [@Sendable () async throws -> [Report]] = [
            { [try await IdleBench.measure(options)] },
            { try await FanOutBench.measure(options) },
            { [try await SaltBench.measure(options)] },
            { [try await RoundTripBench.measure(options)] },
            { try await OfflineBench.measure(options) },
            { [try await StormBench.measure(options)] },
            { [try await RestBench.measure(options)] },
            { try await IngestBench.measure(options) },
            { [try await CommandsBench.measure(options)] },
            { [try await FootprintBench.measure(options)] },
            { try await ClusterBench.measure(options) },
            { [try await ConsoleBench.measure(options)] },
            { [try await RolloutBench.measure(options)] },
            { [try await ReliabilityBench.descendants(options)] },
            { [try await ReliabilityBench.agentKill(options)] },
            { [try await SoakBench.measure(options)] },
        ]
        for benchmark in benchmarks {
            for report in try await benchmark() {
                report.print(jsonOnly: options.jsonOnly)
            }
        }
    }
}
