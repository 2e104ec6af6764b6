import Foundation
import Logging
import RPC
import Synchronization
import Testing
import TestSupport

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

    /// A scheduler on `directory` whose results go to `delivered`, on `clock`.
    static func scheduler(
        _ directory: String,
        bash: BashExecutor = BashExecutor(logger: Logger(label: "test")),
        delivered: Delivered = Delivered(),
        clock: any WallClock = SystemWallClock()
    ) -> Scheduler {
        Scheduler(
            dataDirectory: directory, bash: bash, delivery: { result in delivered.results.withLock { $0.append(result) } }, clock: clock,
            logger: Logger(label: "test.scheduler")
        )
    }

    /// Moves the scheduler's clock on by `step`, then waits until it has looked at the new time
    /// and gone to sleep again.
    static func tick(_ clock: ManualWallClock, by step: Duration = .seconds(1)) async throws {
        clock.advance(by: step)
        try await eventually(timeout: .seconds(20), "the scheduler to sleep again") { clock.sleepers == 1 }
    }

    @Test("On a test clock: a schedule runs at each of its times, once, as its user; each result names its due time")
    func runsOnTime() async throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let delivered = Delivered()
        let clock = ManualWallClock(Date(timeIntervalSince1970: 1_800_000_000.5))
        let scheduler = Self.scheduler(directory, delivered: delivered, clock: clock)
        try scheduler.replace([ScheduledCommand(name: "tick", expression: "* * * * * *", user: "nobody", command: "id -un")])
        let task = Task { await scheduler.run() }
        defer { task.cancel() }
        try await eventually("the scheduler to sleep") { clock.sleepers == 1 }
        #expect(delivered.results.withLock { $0 }.isEmpty, "nothing is due before its second")

        for second in [1_800_000_001, 1_800_000_002] as [Int64] {
            try await Self.tick(clock)
            try await eventually(timeout: .seconds(30), "the run due at \(second)") {
                delivered.results.withLock { $0.contains { $0.id == "schedule:tick:\(second)" } }
            }
        }
        let results = delivered.results.withLock { $0 }
        #expect(results.map(\.id) == ["schedule:tick:1800000001", "schedule:tick:1800000002"], "each due second once")
        for result in results {
            #expect(result.resp == .success, "\(result.message)")
            #expect(String(decoding: result.data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "nobody")
        }
    }

    @Test("On a test clock: a run still going when the schedule is due again is not doubled; the due run is skipped and reported")
    func overlapIsSkipped() async throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let delivered = Delivered()
        let clock = ManualWallClock(Date(timeIntervalSince1970: 1_800_000_000.5))
        let scheduler = Self.scheduler(directory, delivered: delivered, clock: clock)
        let marker = "\(Int.random(in: 100_000 ... 999_999))"
        try scheduler.replace([ScheduledCommand(name: "slow", expression: "* * * * * *", user: "root", command: "sleep 60.\(marker); echo done")])
        let task = Task { await scheduler.run() }
        try await eventually("the scheduler to sleep") { clock.sleepers == 1 }
        try await Self.tick(clock)
        try await eventually("the first run to start") { Self.running(marker) }
        try await Self.tick(clock)
        try await Self.tick(clock)
        try await eventually("two skipped runs") { delivered.results.withLock { $0.count } == 2 }
        let skipped = delivered.results.withLock { $0 }
        #expect(Set(skipped.map(\.id)) == ["schedule:slow:1800000002", "schedule:slow:1800000003"], "\(skipped.map { ($0.id, $0.message) })")
        #expect(skipped.allSatisfy { $0.retcode == ErrorCode.skipped.rawValue && $0.message.contains("run of 'slow'") && $0.message.contains("is still going") })
        // The agent stops: the run that was going is reported interrupted, and it is gone.
        task.cancel()
        await task.value
        let last = delivered.results.withLock { $0 }.last
        #expect(last?.id == "schedule:slow:1800000001" && last?.retcode == ErrorCode.interrupted.rawValue, "\(String(describing: last))")
        try await eventually("the run's process to be killed") { !Self.running(marker) }
    }

    /// Whether a process with `marker` in its command line runs.
    static func running(_ marker: String) -> Bool {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.contains { pid in
            guard pid.allSatisfy(\.isNumber), let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return String(decoding: data, as: UTF8.self).contains(marker)
        }
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
