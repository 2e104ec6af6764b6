import ArgumentParser
import Fleet
import Foundation
import GRPCCore
import RPC
import Synchronization
import SwiftProtobuf
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// P5: a node dies with its fleet connected and a task in flight, and comes back.
struct StormBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storm",
        abstract: "P5 reconnect storm: kill and restart a node holding N agents; time until all are back, connect rate, lost commands."
    )

    @OptionGroup var options: BenchOptions

    @Option(name: .shortAndLong, help: "Agents (default 10000; 1000 with --quick).")
    var agents: Int?

    @Option(
        name: .customLong("node-options"), parsing: .unconditional,
        help: "More aspire-server options for the restarted node, space-separated (e.g. \"--max-connect-rate 0\"), to compare settings."
    )
    var nodeOptions = ""

    func run() async throws {
        try await Self.measure(self.options, agents: self.agents, nodeOptions: self.nodeOptions.split(separator: " ").map(String.init))
            .print(jsonOnly: self.options.jsonOnly)
    }

    static func measure(_ options: BenchOptions, agents: Int? = nil, nodeOptions: [String] = []) async throws -> Report {
        let count = agents ?? (options.quick ? 1000 : 10000)
        return try await withHarness(options, name: "storm") { harness in
            let first = try await harness.startNode()
            let port = first.address.port
            let fleet = try harness.fleet(of: first, count: count)
            let report = try await fleet.run { fleet in
                try await fleet.waitOnline(timeout: .seconds(Int64(60 + count / 100)))
                // A task goes out to everyone, and the node dies under it (SIGKILL: no
                // goodbye to the agents, results in flight lost on the wire).
                let request = try Aspire_V1_CreateTaskRequest.trueTask(on: fleet.agentSNs)
                let taskID = try await first.withAdmin { try await $0.createTask(request).task.id }
                let clock = ContinuousClock()
                let killedAt = Date().unixMilliseconds
                let killed = clock.now
                // Counted by welcomes after the kill: right after it most agents have not yet
                // seen their connection close and still count as online.
                let welcomedBefore = fleet.counters.welcomes.load(ordering: .relaxed)
                let slotsBefore = fleet.counters.slotsGiven.load(ordering: .relaxed)
                func welcomedSince() -> Int { fleet.counters.welcomes.load(ordering: .relaxed) - welcomedBefore }
                await first.process.kill()
                let node = try await harness.startNode(listen: "0.0.0.0:\(port)", arguments: nodeOptions)
                let restarted = clock.now
                let timeout = Duration.seconds(Int64(120 + count / 50))
                try await eventually(timeout: timeout, interval: .milliseconds(10), "99 % of \(count) agents back (\(welcomedSince()) are)") {
                    welcomedSince() >= count * 99 / 100
                }
                let back99 = clock.now - restarted
                try await eventually(timeout: timeout, interval: .milliseconds(10), "all \(count) agents back (\(welcomedSince()) are)") {
                    welcomedSince() >= count && fleet.online >= count
                }
                let back100 = clock.now - restarted
                // Nothing lost: every subtask of the task ends with a result (what is still
                // missing after a minute counts as lost).
                let task = try await node.withAdmin { try await $0.settledTask(taskID, timeout: .seconds(60)) }
                await node.process.stop()
                let settings = nodeOptions.isEmpty ? "" : ", node \(nodeOptions.joined(separator: " "))"
                var report = Report("P5", "reconnect storm (\(count) agents, node SIGKILLed and restarted\(settings))", quick: options.quick)
                report.add("agents", "agents", Double(count), digits: 0)
                report.add("node_restart_s", "node down (kill → listening again)", (restarted - killed).seconds, unit: "s")
                report.add("back_99_s", "99 % back after restart", back99.seconds, unit: "s", target: "≤ 30 s")
                report.add("back_100_s", "all back after restart", back100.seconds, unit: "s")
                Self.addConnectRates(fleet.welcomes(since: killedAt), to: &report)
                Self.addConnectRates(fleet.admissions(since: killedAt), of: "Inits accepted", key: "admitted_", to: &report)
                let slots = fleet.counters.slotsGiven.load(ordering: .relaxed) - slotsBefore
                report.add("slots_per_agent", "later slots given, per agent", Double(slots) / Double(count))
                report.add("lost", "subtasks without a result", Double(task.count - task.complete), digits: 0, target: "0")
                // Stored once, run once: one subtask per host, and no agent ran the command twice
                // (a result lost with the node is re-sent from the agent's outbox, not run again).
                report.add("subtasks", "subtasks stored (one per host)", Double(task.count), digits: 0, target: "\(count)")
                let twice = fleet.counters.executions.values.filter { $0 > 1 }.count
                report.add("run_twice", "commands run twice", Double(twice), digits: 0, target: "0")
                return report
            }
            return report
        }
    }

    /// How the connects after a storm's start were spread: their peak and mean per 100 ms. The
    /// connects are the agents' welcomes (stream open, host recorded) unless told otherwise; the
    /// Inits a node accepted are what its admission paces.
    static func addConnectRates(_ times: [Int64], of what: String = "connects", key: String = "", to report: inout Report) {
        let rates = Self.bucketCounts(times.sorted(), width: 100)
        let mean = Double(rates.reduce(0, +)) / Double(max(rates.count, 1))
        report.add("\(key)peak_per_100ms", "\(what) per 100 ms, peak", Double(rates.max() ?? 0), digits: 0)
        report.add("\(key)mean_per_100ms", "\(what) per 100 ms, mean", mean)
        report.add("\(key)peak_over_mean", "peak / mean", Double(rates.max() ?? 0) / mean, unit: "×", digits: 2, target: "< 3×")
    }

    /// Events per `width` ms, from the first event to the last.
    static func bucketCounts(_ times: [Int64], width: Int64) -> [Int] {
        guard let first = times.first, let last = times.last else { return [] }
        var buckets = [Int](repeating: 0, count: Int((last - first) / width) + 1)
        for time in times { buckets[Int((time - first) / width)] += 1 }
        return buckets
    }
}
