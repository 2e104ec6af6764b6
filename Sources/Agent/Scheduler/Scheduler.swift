import Cron
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
public import Logging
public import RPC
import Synchronization

/// A command the agent runs on a cron schedule.
public struct ScheduledCommand: Codable, Sendable, Hashable {
    public var name: String
    /// A cron expression (see ``CronExpression``).
    public var expression: String
    /// IANA zone name; empty is the host's.
    public var timeZone: String = ""
    public var user: String
    public var group: String = ""
    public var command: String
    /// Seconds; 0 is the bash executor's default.
    public var timeout: Int32 = 0
    public var enabled: Bool = true

    public init(name: String, expression: String, timeZone: String = "", user: String, group: String = "", command: String, timeout: Int32 = 0, enabled: Bool = true) {
        self.name = name
        self.expression = expression
        self.timeZone = timeZone
        self.user = user
        self.group = group
        self.command = command
        self.timeout = timeout
        self.enabled = enabled
    }

    /// The id of the run due at `time` (see ``ScheduleRunID``).
    func runID(at time: Date) -> String { ScheduleRunID(name: self.name, due: Int64(time.timeIntervalSince1970)).id }
}

/// Runs scheduled commands at their times — connected or not — with the bash executor, as the
/// schedule's user. A run still going when the schedule is due again is not doubled: the due
/// run is skipped and reported (3039). Runs missed while the agent was not running are not made
/// up, as with cron. Results go to the delivery handler (the runtime's outbox). The schedules
/// are kept in `<data>/schedules.json`, written atomically.
public final class Scheduler: Sendable {
    struct Entry: Sendable {
        var command: ScheduledCommand
        var schedule: CronSchedule
        var next: Date?
    }

    struct State: Sendable {
        var entries: [String: Entry] = [:]
        /// Name → when its running run was due.
        var running: [String: Date] = [:]
    }

    public typealias Delivery = @Sendable (Aspire_V1_CommandResult) -> Void
    public typealias Events = @Sendable (Aspire_V1_Event) -> Void

    let path: String
    /// The digest of the set the server last sent (``Aspire_V1_ScheduleParams/digest``),
    /// reported in Hello so that a node sends a set only when it differs.
    var digestPath: String { self.path + ".digest" }
    private let bash: BashExecutor
    private let logger: Logger
    private let state = Mutex(State())
    private let delivery: Delivery
    private let events: Events
    /// When schedules are due.
    private let clock: any WallClock

    /// `delivery` gets each run's result (the agent's outbox), `events` what the server should
    /// hear of (schedules refused).
    public init(
        dataDirectory: String,
        bash: BashExecutor,
        delivery: @escaping Delivery,
        events: @escaping Events = { _ in },
        clock: any WallClock = SystemWallClock(),
        logger: Logger
    ) {
        self.path = "\(dataDirectory)/schedules.json"
        self.bash = bash
        self.delivery = delivery
        self.events = events
        self.clock = clock
        self.logger = logger
        if let data = FileManager.default.contents(atPath: self.path) {
            do {
                let saved = try JSONDecoder().decode([ScheduledCommand].self, from: data)
                _ = try self.install(saved, save: false)
                logger.info("schedules loaded", metadata: ["schedules": "\(saved.count)"])
            } catch {
                logger.error("cannot read the saved schedules; none will run until the server sends them", metadata: ["path": "\(self.path)", "error": "\(error)"])
            }
        }
    }

    /// The digest of the set last received from the server; empty when none was.
    public var digest: String {
        ((try? String(contentsOfFile: self.digestPath, encoding: .utf8)) ?? "").trimmed()
    }

    /// The schedules, by name.
    public var schedules: [ScheduledCommand] {
        self.state.withLock { $0.entries.values.map(\.command) }.sorted { $0.name < $1.name }
    }

    /// Replaces every schedule with those of `commands` that pass the checks (name, expression,
    /// zone, command, user and group on this host); answers the refused ones with the reason.
    /// One schedule this host cannot run does not stop the others.
    /// `digest` identifies the set as the server sent it (refusals included), for Hello.
    @discardableResult
    public func replace(_ commands: [ScheduledCommand], digest: String = "") throws(AspireError) -> [(name: String, error: AspireError)] {
        let refused = try self.install(commands, save: true)
        do {
            try AtomicFile.write(digest + "\n", to: self.digestPath)
        } catch {
            throw AspireError(.agentInternal, "cannot save \(self.digestPath): \(error)")
        }
        return refused
    }

    private func install(_ commands: [ScheduledCommand], save: Bool) throws(AspireError) -> [(name: String, error: AspireError)] {
        var entries: [String: Entry] = [:]
        var accepted: [ScheduledCommand] = []
        var refused: [(name: String, error: AspireError)] = []
        let now = self.clock.now
        for command in commands {
            do throws(AspireError) {
                let schedule = try Self.check(command, taken: entries[command.name] != nil)
                entries[command.name] = Entry(command: command, schedule: schedule, next: schedule.next(after: now))
                accepted.append(command)
            } catch {
                refused.append((command.name, error))
            }
        }
        if save {
            do {
                try AtomicFile.writeJSON(accepted, to: self.path)
            } catch {
                throw AspireError(.agentInternal, "cannot save the schedules in \(self.path): \(error)")
            }
        }
        self.state.withLock { $0.entries = entries }
        for (name, error) in refused {
            self.logger.error("schedule refused", metadata: ["schedule": "\(name)", "reason": "\(error.cause)"])
        }
        return refused
    }

    private static func check(_ command: ScheduledCommand, taken: Bool) throws(AspireError) -> CronSchedule {
        try SubAgentRecord.checkPathComponent(command.name, field: "schedule name")
        guard !taken else { throw AspireError(.invalidParams, "two schedules are named '\(command.name)'") }
        let schedule: CronSchedule
        do {
            schedule = try CronSchedule(command.expression, timeZone: command.timeZone)
        } catch {
            throw AspireError(.invalidParams, "schedule '\(command.name)': \(error)")
        }
        guard !command.command.trimmed().isEmpty else {
            throw AspireError(.invalidParams, "schedule '\(command.name)' has no command")
        }
        guard !command.user.isEmpty else { throw AspireError(.invalidParams, "schedule '\(command.name)' names no user to run as") }
        do {
            _ = try Identity.resolve(user: command.user, group: command.group)
        } catch {
            throw AspireError(error.code, "schedule '\(command.name)': \(error.cause)")
        }
        return schedule
    }

    /// Runs due schedules until cancelled.
    public func run() async {
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                let now = self.clock.now
                let due = self.takeDue(now: now)
                for (command, time) in due {
                    group.addTask { await self.fire(command, dueAt: time) }
                }
                // Sleep to the next fire time (each due one was moved past now), but look again
                // within a second: schedules may change, and the wall clock may be set.
                let earliest = self.state.withLock { $0.entries.values.compactMap(\.next).min() }
                let deadline = min(earliest ?? now.addingTimeInterval(1), now.addingTimeInterval(1))
                try? await self.clock.sleep(until: max(deadline, now.addingTimeInterval(0.005)))
            }
        }
    }

    /// The enabled schedules due at `now`, each moved on to its next time after `now`.
    private func takeDue(now: Date) -> [(ScheduledCommand, Date)] {
        self.state.withLock { state in
            var due: [(ScheduledCommand, Date)] = []
            for (name, entry) in state.entries {
                guard let next = entry.next, next <= now else { continue }
                state.entries[name]?.next = entry.schedule.next(after: now)
                if entry.command.enabled { due.append((entry.command, next)) }
            }
            return due
        }
    }

    private func fire(_ command: ScheduledCommand, dueAt time: Date) async {
        let id = command.runID(at: time)
        let busySince: Date? = self.state.withLock { state in
            if let since = state.running[command.name] { return since }
            state.running[command.name] = time
            return nil
        }
        if let busySince {
            let stamp = Date.ISO8601FormatStyle()
            self.logger.warning("scheduled run skipped: the previous one is still going", metadata: ["schedule": "\(command.name)"])
            self.deliver(
                .failed(
                    id: id, .skipped,
                    "skipped the \(stamp.format(time)) run of '\(command.name)': the run due at \(stamp.format(busySince)) is still going"
                )
            )
            return
        }
        var params = Aspire_V1_BashParams()
        params.cmd = command.command
        params.user = command.user
        params.group = command.group
        params.timeout = command.timeout
        self.logger.info("scheduled run", metadata: ["schedule": "\(command.name)", "run.id": "\(id)"])
        // Cut short by the agent stopping, the executor says interrupted (and killed the run's group).
        let result = await self.bash.run(id: id, params: params)
        _ = self.state.withLock { $0.running.removeValue(forKey: command.name) }
        self.deliver(result)
    }

    private func deliver(_ result: Aspire_V1_CommandResult) {
        self.delivery(result)
    }

}

extension Scheduler: CommandHandler {
    /// `schedule.set`: the server's schedules for this host replace the agent's. Those this host
    /// cannot run (an unknown user, say) are refused one by one, reported in the result and as an
    /// event; the others run.
    public func handle(_ command: Aspire_V1_Command, as method: CommandMethod, output: BashExecutor.OutputHandler?) async -> Aspire_V1_CommandResult {
        let params = command.schedules
        let commands = params.schedules.map { schedule in
            ScheduledCommand(
                name: schedule.name, expression: schedule.expr, timeZone: schedule.tz, user: schedule.user, group: schedule.group,
                command: schedule.command, timeout: schedule.timeout, enabled: !schedule.disabled
            )
        }
        let refused: [(name: String, error: AspireError)]
        do {
            refused = try self.replace(commands, digest: params.digest)
        } catch {
            return .failed(id: command.id, error.code, error.cause)
        }
        self.logger.notice("schedules set", metadata: ["schedules": "\(commands.count - refused.count)", "refused": "\(refused.count)"])
        var result = Aspire_V1_CommandResult()
        result.id = command.id
        let names = commands.map(\.name).filter { name in !refused.contains { $0.name == name } }
        result.data = JSONValue.object(["schedules": JSONValue(names)]).encoded()
        guard let first = refused.first else {
            result.resp = .success
            result.message = "success"
            return result
        }
        let reasons = refused.map(\.error.cause).joined(separator: "; ")
        let event = Aspire_V1_Event(category: "schedule", message: "\(refused.count) schedule\(refused.count == 1 ? "" : "s") refused: \(reasons)")
        self.events(event)
        result.resp = .failed
        result.retcode = first.error.code.rawValue
        result.message = event.message
        return result
    }
}
