import ArgumentParser
import Fleet
import Foundation
import RPC
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// P4: how long a dead agent stays "online" in the store.
struct OfflineBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "offline",
        abstract: "P4 offline detection: time from a boot agent's SIGKILL to its host 'offline' in the store."
    )

    @OptionGroup var options: BenchOptions

    @Option(help: "Kills to time (default 10; 3 with --quick).")
    var rounds: Int?

    func run() async throws {
        try await Self.measure(self.options, rounds: self.rounds).print(jsonOnly: self.options.jsonOnly)
    }

    static func measure(_ options: BenchOptions, rounds: Int? = nil) async throws -> Report {
        let rounds = rounds ?? (options.quick ? 3 : 10)
        return try await withHarness(options, name: "offline") { harness in
            let node = try await harness.startNode(listen: "127.0.0.1:0")
            var samples: [Double] = []
            try await node.withAdmin { admin in
                for round in 1 ... rounds {
                    let agent = try harness.startAgent("agent-\(round)", of: node)
                    try await admin.waitForHost(agent.agentSN, status: "online")
                    let clock = ContinuousClock()
                    let killed = clock.now
                    await agent.process.kill()
                    try await admin.waitForHost(agent.agentSN, status: "offline", timeout: .seconds(120))
                    samples.append((clock.now - killed).millis)
                }
            }
            await node.process.stop()
            var report = Report("P4", "offline detection (boot agent SIGKILLed, \(rounds) times)", quick: options.quick)
            report.add("rounds", "kills", Double(rounds), digits: 0)
            report.add("offline_p50_ms", "SIGKILL → offline, median", Stats.median(samples), unit: "ms", target: "≤ 10000 ms")
            report.add("offline_max_ms", "SIGKILL → offline, worst", samples.max() ?? .nan, unit: "ms")
            return report
        }
    }
}
