import ArgumentParser
import Fleet
import Foundation
import RPC
import TestSupport

/// P8: commands per second one real agent carries out, next to the raw spawn rate.
struct CommandsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commands",
        abstract: "P8 commands/s: 'true' on one boot agent, many in flight, next to raw posix_spawn of bash -c true."
    )

    @OptionGroup var options: BenchOptions

    @Option(help: "Commands (default 2000; 300 with --quick).")
    var commands: Int?

    @Option(help: "Commands in flight at once.")
    var concurrency = 8

    func run() async throws {
        try await Self.measure(self.options, commands: self.commands, concurrency: self.concurrency).print(jsonOnly: self.options.jsonOnly)
    }

    static func measure(_ options: BenchOptions, commands: Int? = nil, concurrency: Int = 8) async throws -> Report {
        let count = commands ?? (options.quick ? 300 : 2000)
        return try await withHarness(options, name: "commands") { harness in
            let node = try await harness.startNode(listen: "127.0.0.1:0")
            let agent = try harness.startAgent("agent", of: node)
            let clock = ContinuousClock()
            let elapsed = try await node.withAdmin { admin in
                try await admin.waitForHost(agent.agentSN, status: "online")
                for _ in 0 ..< 10 { _ = try await admin.run("true", on: agent.agentSN) }
                let started = clock.now
                try await withThrowingDiscardingTaskGroup { group in
                    for lane in 0 ..< concurrency {
                        group.addTask {
                            for _ in stride(from: lane, to: count, by: concurrency) {
                                let result = try await admin.run("true", on: agent.agentSN)
                                guard result.retcode == 0 else { throw HarnessError("'true' failed: \(result)") }
                            }
                        }
                    }
                }
                return clock.now - started
            }
            await agent.process.kill()
            await node.process.stop()
            let raw = Peers.spawn(["/bin/bash", "-c", "true"], count: count, concurrency: concurrency)
            let rate = Double(count) / elapsed.seconds
            var report = Report("P8", "commands/s (\(count) × 'true' on one boot agent, \(concurrency) in flight)", quick: options.quick)
            report.add("commands_per_s", "agent commands/s", rate, unit: "/s", digits: 0)
            report.add("spawn_per_s", "raw posix_spawn/s (same concurrency)", raw.perSecond, unit: "/s", digits: 0)
            report.add("ratio", "agent / raw", rate / raw.perSecond, unit: "×", digits: 2, target: "≥ 0.6×")
            return report
        }
    }
}
