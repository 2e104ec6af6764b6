import ArgumentParser
import Fleet
import Foundation
import GRPCCore
import RPC
import TestSupport

/// Endurance: simulated agents each run one command a second for minutes on one node; the node's
/// memory and open descriptors must stay flat, and so must the latency of each second's task.
struct SoakBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soak",
        abstract: "Soak: N simulated agents × 1 command/s for M minutes; node RSS and descriptor slopes, p99 per minute (first vs last)."
    )

    @OptionGroup var options: BenchOptions

    @Option(name: .shortAndLong, help: "Simulated agents (default 1000; 100 with --quick).")
    var agents: Int?

    @Option(help: "Minutes (default 30; 5 with --quick).")
    var minutes: Int?

    func run() async throws {
        try await Self.measure(self.options, agents: self.agents, minutes: self.minutes).print(jsonOnly: self.options.jsonOnly)
    }

    /// One reading of the node.
    struct Sample {
        var second: Double
        var residentMiB: Double
        var descriptors: Double
    }

    static func measure(_ options: BenchOptions, agents: Int? = nil, minutes: Int? = nil) async throws -> Report {
        let count = agents ?? (options.quick ? 100 : 1000)
        let minutes = minutes ?? (options.quick ? 5 : 30)
        var options = options
        options.timeLimit = options.timeLimit ?? (minutes * 60 + 600)
        return try await withHarness(options, name: "soak-\(count)") { harness in
            let node = try await harness.startNode()
            let fleet = try harness.fleet(of: node, count: count)
            let (samples, latencies, failed, tasks) = try await fleet.run { fleet in
                try await fleet.waitOnline(timeout: .seconds(Int64(60 + count / 100)))
                return try await node.withAdmin { admin in
                    let clock = ContinuousClock()
                    let started = clock.now
                    let end = started.advanced(by: .seconds(minutes * 60))
                    var samples: [Sample] = []
                    var latencies: [[Double]] = Array(repeating: [], count: minutes)
                    var failed = 0
                    var tasks = 0
                    var next = started
                    while clock.now < end {
                        // One task a second to every agent: each runs one command a second.
                        let outcome = try await FanOutBench.fanOut(admin, to: fleet.agentSNs)
                        tasks += 1
                        failed += outcome.failed
                        let minute = min(minutes - 1, Int((clock.now - started).seconds / 60))
                        latencies[minute].append(outcome.total.millis)
                        if samples.last.map({ (clock.now - started).seconds - $0.second >= 10 }) ?? true, let usage = node.process.usage {
                            samples.append(Sample(
                                second: (clock.now - started).seconds, residentMiB: Double(usage.residentBytes) / 1_048_576,
                                descriptors: Double(Self.descriptors(of: node.process.pid))
                            ))
                        }
                        next = next.advanced(by: .seconds(1))
                        if next > clock.now { try await Task.sleep(until: next) } else { next = clock.now }
                    }
                    return (samples, latencies, failed, tasks)
                }
            }
            await node.process.stop()
            // The first minute warms caches and pools: slopes are read over the rest.
            let settled = samples.filter { $0.second >= 60 }
            var report = Report("P11", "soak (\(count) simulated agents × 1 command/s, \(minutes) min)", quick: options.quick)
            report.add("agents", "agents", Double(count), digits: 0)
            report.add("commands", "commands run", Double(tasks * count), digits: 0)
            report.add("failed", "commands not succeeded", Double(failed), digits: 0, target: "0")
            report.add("rss_start_mib", "node RSS after the first minute", settled.first?.residentMiB ?? 0, unit: "MiB")
            report.add("rss_end_mib", "node RSS at the end", settled.last?.residentMiB ?? 0, unit: "MiB")
            report.add(
                "rss_slope_mib_per_h", "node RSS slope (least squares, after the first minute)",
                Self.slope(settled.map { ($0.second, $0.residentMiB) }) * 3600, unit: "MiB/h", target: "≈ 0"
            )
            // The last third alone: caches that fill (SQLite's page cache, capped at 64 MiB) level off
            // there while a leak would not.
            let lastThird = settled.filter { $0.second >= (settled.last?.second ?? 0) - (settled.last.map { $0.second - 60 } ?? 0) / 3 }
            report.add(
                "rss_slope_last_third_mib_per_h", "node RSS slope over the last third of the run",
                Self.slope(lastThird.map { ($0.second, $0.residentMiB) }) * 3600, unit: "MiB/h", target: "≈ 0"
            )
            report.add(
                "fd_slope_per_h", "node open descriptors slope", Self.slope(settled.map { ($0.second, $0.descriptors) }) * 3600,
                unit: "/h", target: "≈ 0"
            )
            report.add("fd_end", "node open descriptors at the end", settled.last?.descriptors ?? 0, digits: 0)
            let first = latencies.first ?? []
            let last = latencies.last(where: { !$0.isEmpty }) ?? []
            report.add("p99_first_min_ms", "task p99, first minute", Stats.percentile(first, 99), unit: "ms")
            report.add("p99_last_min_ms", "task p99, last minute", Stats.percentile(last, 99), unit: "ms", target: "≈ first minute")
            return report
        }
    }

    /// The slope of the least-squares line through `points`, per unit of x.
    static func slope(_ points: [(Double, Double)]) -> Double {
        guard points.count >= 2 else { return 0 }
        let n = Double(points.count)
        let meanX = points.map(\.0).reduce(0, +) / n
        let meanY = points.map(\.1).reduce(0, +) / n
        let covariance = points.map { ($0.0 - meanX) * ($0.1 - meanY) }.reduce(0, +)
        let variance = points.map { ($0.0 - meanX) * ($0.0 - meanX) }.reduce(0, +)
        return variance == 0 ? 0 : covariance / variance
    }

    static func descriptors(of pid: pid_t) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).count
    }
}
