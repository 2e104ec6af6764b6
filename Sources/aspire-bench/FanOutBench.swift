import ArgumentParser
import Fleet
import Foundation
import GRPCCore
import RPC
import SwiftProtobuf
import TestSupport

/// P2: one task to every connected agent; how long until every result is stored.
struct FanOutBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout",
        abstract: "P2 fan-out: a task to N simulated agents; time until all results are stored, p50/p99 per subtask."
    )

    @OptionGroup var options: BenchOptions

    @Option(name: .shortAndLong, parsing: .upToNextOption, help: "Fleet sizes (default 1000 10000; 1000 with --quick).")
    var agents: [Int] = []

    func run() async throws {
        for report in try await Self.measure(self.options, sizes: self.agents) {
            report.print(jsonOnly: self.options.jsonOnly)
        }
    }

    static func measure(_ options: BenchOptions, sizes: [Int] = []) async throws -> [Report] {
        let sizes = sizes.isEmpty ? (options.quick ? [1000] : [1000, 10000]) : sizes
        var reports: [Report] = []
        for count in sizes {
            reports.append(try await withHarness(options, name: "fanout-\(count)") { harness in
                let node = try await harness.startNode()
                let fleet = try harness.fleet(of: node, count: count)
                let report = try await fleet.run { fleet in
                    try await fleet.waitOnline(timeout: .seconds(Int64(60 + count / 100)))
                    return try await node.withAdmin { admin in
                        // One warm-up task, so the first figures do not include connection set-up.
                        _ = try await Self.fanOut(admin, to: Array(fleet.agentSNs.prefix(10)))
                        return try await Self.fanOut(admin, to: fleet.agentSNs)
                    }
                }
                await node.process.stop()
                var out = Report("P2", "fan-out (\(count) simulated agents)", quick: options.quick)
                out.add("agents", "agents", Double(count), digits: 0)
                out.add("create_ms", "CreateTask answered after", report.created.millis, unit: "ms")
                out.add("last_result_ms", "last result stored after", report.total.millis, unit: "ms", target: count >= 10000 ? "≤ 2000 ms" : "")
                out.add("subtask_p50_ms", "subtask p50", report.p50, unit: "ms")
                out.add("subtask_p99_ms", "subtask p99", report.p99, unit: "ms")
                out.add("results_per_s", "results stored per second", Double(count) / report.total.seconds, unit: "/s", digits: 0)
                out.add("failed", "subtasks not succeeded", Double(report.failed), digits: 0, target: "0")
                return out
            })
        }
        return reports
    }

    struct Outcome: Sendable {
        var taskID: Int64
        var created: Duration
        var total: Duration
        var p50: Double
        var p99: Double
        var failed: Int
    }

    /// Creates a `true` task on `agents` and waits until every result is stored.
    static func fanOut(_ admin: Aspire_V1_Admin.Client<some ClientTransport>, to agents: [String]) async throws -> Outcome {
        var request = try Aspire_V1_CreateTaskRequest.trueTask(on: agents)
        request.user = "bench"
        let clock = ContinuousClock()
        let started = clock.now
        let detail = try await admin.createTask(request)
        let created = clock.now - started
        var listing = Aspire_V1_ListTasksRequest()
        listing.limit = 1
        var task = detail.task
        try await eventually(timeout: .seconds(120), interval: .milliseconds(5), "task \(task.id): \(task.complete)/\(task.count)") {
            task = try await admin.listTasks(listing).tasks.first ?? task
            return task.complete >= task.count
        }
        let total = clock.now - started
        var get = Aspire_V1_GetTaskRequest()
        get.id = detail.task.id
        let subtasks = try await admin.getTask(get).subtasks
        let latencies = subtasks.map { Double($0.modifiedUnixMs - detail.task.createdUnixMs) }
        return Outcome(
            taskID: detail.task.id, created: created, total: total, p50: Stats.percentile(latencies, 50), p99: Stats.percentile(latencies, 99),
            failed: subtasks.filter { $0.status != "succeeded" }.count
        )
    }
}
