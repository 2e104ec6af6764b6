import ArgumentParser
import Fleet
import Foundation
import RPC
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// P4 and P4': how long a dead agent, or a silent host, stays "online" in the store.
struct OfflineBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "offline",
        abstract: "P4 offline detection: time from a boot agent's SIGKILL to its host 'offline' in the store; P4': from a partition (power lost: no FIN, no RST) to 'offline', on the default --silent-peer-timeout (root: blackhole routes)."
    )

    @OptionGroup var options: BenchOptions

    @Option(help: "Kills to time (default 10; 3 with --quick).")
    var rounds: Int?

    @Option(name: .customLong("partitions"), help: "Partitions to time (default 3; 1 with --quick; each takes the silent-peer timeout, 25 s).")
    var partitionRounds: Int?

    func run() async throws {
        for report in try await Self.measure(self.options, rounds: self.rounds, partitionRounds: self.partitionRounds) {
            report.print(jsonOnly: self.options.jsonOnly)
        }
    }

    static func measure(_ options: BenchOptions, rounds: Int? = nil, partitionRounds: Int? = nil) async throws -> [Report] {
        let rounds = rounds ?? (options.quick ? 3 : 10)
        let partitionRounds = Partition.isPossible ? partitionRounds ?? (options.quick ? 1 : 3) : 0
        // The address agents dial in a partition's rounds, and the one they leave from.
        let partitioned = Partition.addresses()
        return try await withHarness(options, name: "offline") { harness in
            let node = try await harness.startNode(arguments: ["--tls-name", partitioned.node])
            var killed: [Double] = []
            var silent: [Double] = []
            try await node.withAdmin { admin in
                for round in 1 ... rounds {
                    let agent = try harness.startAgent("agent-\(round)", of: node)
                    try await admin.waitForHost(agent.agentSN, status: "online")
                    let clock = ContinuousClock()
                    let start = clock.now
                    await agent.process.kill()
                    try await admin.waitForHost(agent.agentSN, status: "offline", timeout: .seconds(120))
                    killed.append((clock.now - start).millis)
                }
                for round in 0 ..< partitionRounds {
                    try await Partition.with(partitioned) { partition in
                        let agent = try harness.startAgent(
                            "silent-\(round)", servers: [HostPort(host: partition.node, port: node.address.port)], caFile: node.caFile,
                            tokenFile: node.enrollTokenFile
                        )
                        try await admin.waitForHost(agent.agentSN, status: "online")
                        let clock = ContinuousClock()
                        let start = clock.now
                        try await partition.cut()
                        try await admin.waitForHost(agent.agentSN, status: "offline", timeout: .seconds(300))
                        silent.append((clock.now - start).millis)
                        await agent.process.kill()
                    }
                }
            }
            await node.process.stop()
            var kill = Report("P4", "offline detection (boot agent SIGKILLed, \(rounds) times)", quick: options.quick)
            kill.add("rounds", "kills", Double(rounds), digits: 0)
            kill.add("offline_p50_ms", "SIGKILL → offline, median", Stats.median(killed), unit: "ms", target: "≤ 10000 ms")
            kill.add("offline_max_ms", "SIGKILL → offline, worst", killed.max() ?? .nan, unit: "ms")
            var power = Report(
                "P4'",
                partitionRounds > 0
                    ? "offline detection (host partitioned away, packets dropped both ways, \(partitionRounds) times; --silent-peer-timeout \(SilentPeer.standard))"
                    : "offline detection of a silent host: not measured (needs root and iproute2)",
                quick: options.quick
            )
            power.add("rounds", "partitions", Double(partitionRounds), digits: 0)
            power.add("offline_p50_ms", "partition → offline, median", Stats.median(silent), unit: "ms", target: "≤ 30000 ms")
            power.add("offline_max_ms", "partition → offline, worst", silent.max() ?? .nan, unit: "ms")
            return [kill, power]
        }
    }
}
