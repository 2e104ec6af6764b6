import ArgumentParser
import Fleet
import Foundation
import Logging
import RPC
import Server
import TestSupport

/// P7: how fast a node stores results, on SQLite and on PostgreSQL.
struct IngestBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "P7 result ingestion: results/s stored on SQLite and on PostgreSQL.",
        discussion: """
            Results go through the task engine's path (the one every agent stream uses) from many \
            concurrent submitters, as many streams answering at once would; for comparison, a \
            smaller run stores each result in its own transaction. PostgreSQL runs when \
            --postgres or ASPIRE_BENCH_POSTGRES_URL / ASPIRE_TEST_POSTGRES_URL names a server \
            whose user may create databases.
            """
    )

    @OptionGroup var options: BenchOptions

    @Option(name: .shortAndLong, help: "Results to store (default 200000; 20000 with --quick).")
    var results: Int?

    @Option(help: "Concurrent submitters (streams).")
    var concurrency = 1000

    @Option(help: "postgres://user@host:port/postgres?sslmode=disable")
    var postgres: String?

    func run() async throws {
        for report in try await Self.measure(self.options, results: self.results, concurrency: self.concurrency, postgres: self.postgres) {
            report.print(jsonOnly: self.options.jsonOnly)
        }
    }

    static func postgresURL(_ given: String?) -> String? {
        let environment = ProcessInfo.processInfo.environment
        return [given, environment["ASPIRE_BENCH_POSTGRES_URL"], environment["ASPIRE_TEST_POSTGRES_URL"]]
            .compactMap { $0 }.first { !$0.isEmpty }
    }

    static func measure(_ options: BenchOptions, results: Int? = nil, concurrency: Int = 1000, postgres: String? = nil) async throws -> [Report] {
        let count = results ?? (options.quick ? 20000 : 200_000)
        let single = max(count / 20, 500)
        var logger = Logger(label: "aspire.bench")
        logger.logLevel = .error
        let url = self.postgresURL(postgres)
        var reports: [Report] = []
        for kind in SQLEngineKind.allCases {
            var report = Report("P7", "result ingestion on \(kind.rawValue)", quick: options.quick)
            report.note("engine", "engine", kind.rawValue)
            if kind == .postgres, url == nil {
                report.note("skipped", "skipped", "no PostgreSQL server named")
                reports.append(report)
                continue
            }
            try await ScratchStore.with(kind, postgresURL: url, logger: logger) { store in
                let engine = TaskEngine(store: store, registry: SessionRegistry(logger: logger), logger: logger)
                let batched = try await self.ingest(count, into: store, prefix: "batched") { work in
                    try await self.lanes(work, concurrency: concurrency) { _ = await engine.resultArrived($0.result, from: $0.agentSN) }
                }
                let separate = try await self.ingest(single, into: store, prefix: "single") { work in
                    try await self.lanes(work, concurrency: concurrency) { _ = try? await store.recordResults([$0]) }
                }
                let direct = try await self.ingest(count, into: store, prefix: "direct") { work in
                    for chunk in work.chunks(of: 1000) {
                        _ = try await store.recordResults(Array(chunk))
                    }
                }
                let target = kind == .sqlite ? "≥ 100000/s" : "≥ 25000/s"
                report.add("results", "results stored", Double(count), digits: 0)
                report.add("results_per_s", "results/s (group commit)", batched, unit: "/s", digits: 0, target: target)
                report.add("single_tx_per_s", "results/s (a transaction each)", separate, unit: "/s", digits: 0)
                report.add("direct_per_s", "results/s (store, batches of 1000)", direct, unit: "/s", digits: 0)
                report.add("speedup", "group commit speed-up", batched / separate, unit: "×")
            }
            reports.append(report)
        }
        return reports
    }

    /// Makes a task of `count` subtasks and times `store` storing one result for each; returns
    /// results/s (and fails unless every result was counted).
    static func ingest(
        _ count: Int,
        into store: SQLStore,
        prefix: String,
        _ body: @Sendable ([AgentResult]) async throws -> Void
    ) async throws -> Double {
        let agents = (0 ..< count).map { Fleet.agentSN(prefix, $0) }
        let (_, subtasks) = try await store.createTask(NewTask(user: "bench", command: CommandMethod.bash.taskName, body: #"{"cmd":"true"}"#), agents: agents)
        let now = Date().unixMilliseconds
        let work = subtasks.map { subtask in
            var result = Aspire_V1_CommandResult()
            result.id = subtask.id
            result.resp = .success
            result.message = "success"
            result.data = Data("ok\n".utf8)
            result.startedUnixMs = now
            result.finishedUnixMs = now
            return AgentResult(result: result, agentSN: subtask.agentSN)
        }
        let elapsed = try await ContinuousClock().measure { try await body(work) }
        guard let task = try await store.task(id: subtasks[0].taskID), task.complete == count else {
            throw HarnessError("not every result was stored")
        }
        return Double(count) / elapsed.seconds
    }

    /// Hands `work` to `submit` one item at a time from `concurrency` lanes, as that many agent
    /// streams would.
    static func lanes(_ work: [AgentResult], concurrency: Int, _ submit: @escaping @Sendable (AgentResult) async throws -> Void) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            for lane in 0 ..< min(concurrency, work.count) {
                group.addTask {
                    for index in stride(from: lane, to: work.count, by: concurrency) {
                        try await submit(work[index])
                    }
                }
            }
        }
    }
}
