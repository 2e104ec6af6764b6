import Agent
import ArgumentParser
import Foundation
import Logging
import RPC
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The endurance figures together: commands whose children escape their process group killed at
/// their timeout, a node SIGKILLed under a task (P5), and the soak (P11).
struct ReliabilityBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reliability",
        abstract: "Endurance: timed-out commands' escaped descendants, a node SIGKILLed under load (P5), the soak (P11)."
    )

    @OptionGroup var options: BenchOptions

    func run() async throws {
        try await Self.descendants(self.options).print(jsonOnly: self.options.jsonOnly)
        try await StormBench.measure(self.options).print(jsonOnly: self.options.jsonOnly)
        try await SoakBench.measure(self.options).print(jsonOnly: self.options.jsonOnly)
    }

    /// Commands that start children in new sessions and double-forked grandchildren, all past a
    /// 1 s timeout: how many of those children outlive the command's result (the agent's cgroup
    /// per command kills them; a process-group kill alone would leave them).
    static func descendants(_ options: BenchOptions) async throws -> Report {
        let commands = options.quick ? 10 : 50
        var configuration = BashExecutor.Configuration()
        configuration.killGrace = .milliseconds(500)
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let executor = BashExecutor(configuration: configuration, logger: logger)
        var report = Report("R1", "timed-out commands with escaping descendants (\(commands) at once)", quick: options.quick)
        report.add("grouping", "commands grouped by \(configuration.groups?.name ?? "process group only (no writable cgroup hierarchy)")", configuration.groups == nil ? 0 : 1, digits: 0, target: "1")
        let marker = "9911.\(Int.random(in: 100_000 ... 999_999))"
        let clock = ContinuousClock()
        let started = clock.now
        let results = await withTaskGroup(of: Aspire_V1_CommandResult.self) { group in
            for index in 0 ..< commands {
                group.addTask {
                    var params = Aspire_V1_BashParams()
                    params.cmd = """
                        setsid sleep \(marker) < /dev/null > /dev/null 2>&1 &
                        ( ( setsid sh -c 'sleep \(marker)' < /dev/null > /dev/null 2>&1 & ) & )
                        sleep \(marker)
                        """
                    params.timeout = 1
                    return await executor.run(id: "bench-escape-\(index)", params: params)
                }
            }
            var all: [Aspire_V1_CommandResult] = []
            for await result in group { all.append(result) }
            return all
        }
        let elapsed = clock.now - started
        let survivors = ProcessSearch.withArgument(marker)
        for pid in survivors { kill(pid, SIGKILL) }
        report.add("descendants", "descendants started", Double(commands * 3), digits: 0)
        report.add("timed_out", "commands timed out", Double(results.filter { $0.retcode == ErrorCode.timeout.rawValue }.count), digits: 0, target: "\(commands)")
        report.add("survivors", "descendants alive after the results", Double(survivors.count), digits: 0, target: "0")
        report.add("all_results_s", "all results after", elapsed.seconds, unit: "s", target: "≈ 1 s + 0.5 s grace")
        return report
    }
}
