import Foundation
import Logging
import RPC
import Synchronization
import Testing

@testable import Agent

@Suite("Scheduled commands", .serialized)
struct SchedulerTests {
    static func directory() throws -> String {
        let path = NSTemporaryDirectory() + "aspire-sched-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// What a scheduler delivered (the agent's outbox, in a test).
    final class Delivered: Sendable {
        let results = Mutex<[Aspire_V1_CommandResult]>([])
    }

    /// A scheduler on `directory` whose results go to `delivered`.
    static func scheduler(_ directory: String, bash: BashExecutor = BashExecutor(logger: Logger(label: "test")), delivered: Delivered = Delivered()) -> Scheduler {
        Scheduler(dataDirectory: directory, bash: bash, delivery: { result in delivered.results.withLock { $0.append(result) } }, logger: Logger(label: "test.scheduler"))
    }

    /// Runs the scheduler for `seconds`, collecting what it delivers.
    static func run(_ scheduler: Scheduler, _ delivered: Delivered, seconds: Double) async -> [Aspire_V1_CommandResult] {
        await self.run(scheduler, delivered, timeout: seconds) { _ in false }
    }

    /// Runs the scheduler until `enough` says so of what it delivered (or `timeout` seconds).
    static func run(
        _ scheduler: Scheduler,
        _ delivered: Delivered,
        timeout: Double,
        until enough: @escaping @Sendable ([Aspire_V1_CommandResult]) -> Bool
    ) async -> [Aspire_V1_CommandResult] {
        let task = Task { await scheduler.run() }
        let deadline = ContinuousClock.now.advanced(by: .seconds(timeout))
        while ContinuousClock.now < deadline, !enough(delivered.results.withLock { $0 }) {
            try? await Task.sleep(for: .milliseconds(50))
        }
        task.cancel()
        await task.value
        return delivered.results.withLock { $0 }
    }

    @Test("A schedule runs at its times as its user; results carry the schedule and the due time")
    func runsOnTime() async throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let delivered = Delivered()
        let scheduler = Self.scheduler(directory, delivered: delivered)
        try scheduler.replace([ScheduledCommand(name: "tick", expression: "* * * * * *", user: "nobody", command: "id -un")])
        // Until two runs completed: on a loaded machine a run as another user can take seconds.
        let results = await Self.run(scheduler, delivered, timeout: 60) { results in
            results.filter { $0.resp == .success }.count >= 2
        }
        #expect(results.count >= 2, "\(results.map(\.id))")
        // On a loaded machine a run can outlast its second: that due time is skipped, not doubled.
        // The run going when the scheduler stops is reported interrupted.
        let ran = results.filter { ![ErrorCode.skipped.rawValue, ErrorCode.interrupted.rawValue].contains($0.retcode) }
        #expect(!ran.isEmpty)
        for result in ran {
            #expect(result.resp == .success, "\(result.message)")
            #expect(String(decoding: result.data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "nobody")
        }
        // Each due second once, named in the id.
        #expect(results.allSatisfy { $0.id.hasPrefix("schedule:tick:") })
        let seconds = results.compactMap { Int64($0.id.split(separator: ":").last ?? "") }
        #expect(seconds.count == results.count && Set(seconds).count == seconds.count)
    }

    @Test("A run still going when the schedule is due again is not doubled: the due run is skipped and reported")
    func overlapIsSkipped() async throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let delivered = Delivered()
        let scheduler = Self.scheduler(directory, delivered: delivered)
        try scheduler.replace([ScheduledCommand(name: "slow", expression: "* * * * * *", user: "root", command: "sleep 2.5; echo done")])
        let results = await Self.run(scheduler, delivered, seconds: 4.2)
        let skipped = results.filter { $0.retcode == ErrorCode.skipped.rawValue }
        let finished = results.filter { $0.resp == .success }
        #expect(!skipped.isEmpty, "\(results.map { ($0.id, $0.message) })")
        #expect(skipped.allSatisfy { $0.message.contains("run of 'slow'") && $0.message.contains("is still going") })
        #expect(finished.count <= 2, "never two runs of one schedule at once")
    }

    @Test("Schedules are kept on disk; a bad schedule (expression, zone, user, name) is refused with its reason and the others stay")
    func persistenceAndValidation() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bash = BashExecutor(logger: Logger(label: "test"))
        let scheduler = Self.scheduler(directory, bash: bash)
        let good = ScheduledCommand(name: "backup", expression: "0 30 2 * * *", timeZone: "Europe/Berlin", user: "root", command: "true", timeout: 600)
        #expect(try scheduler.replace([good]).isEmpty)
        #expect(Self.scheduler(directory, bash: bash).schedules == [good], "read back by the next agent")

        /// Replaces the schedules with `good` and one bad one; answers why the bad one was refused.
        func refused(_ bad: ScheduledCommand) throws -> AspireError? {
            let refusals = try scheduler.replace([good, bad])
            #expect(refusals.map(\.name) == [bad.name])
            #expect(scheduler.schedules == [good], "the good one stays")
            return refusals.first?.error
        }
        var bad = good
        bad.name = "hourly"
        bad.expression = "0 61 * * * *"
        #expect(try refused(bad)?.cause == "schedule 'hourly': minute field: '61' is out of range: minute is 0-59")
        bad = good
        bad.name = "mars"
        bad.timeZone = "Mars/Olympus"
        #expect(try refused(bad)?.cause.contains("'Mars/Olympus' is not a time zone name") == true)
        bad = good
        bad.name = "nobody-here"
        bad.user = "no-such-user-here"
        #expect(try refused(bad)?.code == .unknownUser)
        bad = good
        bad.name = "../etc"
        #expect(try refused(bad)?.code == .invalidParams)
        #expect(try refused(good)?.cause == "two schedules are named 'backup'")
        #expect(Self.scheduler(directory, bash: bash).schedules == [good], "only the good one was saved")
    }
}
