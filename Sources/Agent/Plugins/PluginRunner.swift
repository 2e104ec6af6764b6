#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
import SystemPackage
public import Logging
public import RPC
import Synchronization

/// A plugin the agent runs: `<plugins>/<name>/plugin.sh`.
public struct PluginConfig: Codable, Sendable, Hashable {
    public var name: String
    /// Seconds between runs; 0 runs it only on demand.
    public var period: Int
    /// Who runs it: not root unless asked (the seed's advice).
    public var user: String = "nobody"
    /// Seconds a run may take (the seed's 10 by default).
    public var timeout: Int32 = 10
    /// Given to plugin.sh as its first argument on periodic runs.
    public var param: String = ""
    /// Where its files came from (kept to tell when the server changed it).
    public var source = PluginSource()

    public init(name: String, period: Int, user: String = "nobody", timeout: Int32 = 10, param: String = "") {
        self.name = name
        self.period = period
        self.user = user
        self.timeout = timeout
        self.param = param
    }
}

/// What `list` says of a plugin.
public struct PluginState: Sendable, Hashable {
    public var config: PluginConfig
    public var enabled: Bool
    /// When a disabled plugin enables itself again.
    public var disabledUntil: Date?
    public var running: Bool
    public var lastRun: Date?
    /// Exit status of the last run, or an Aspire error code.
    public var lastStatus: Int32?
    public var lastMessage: String
}

/// The outcome of one run.
public struct PluginRun: Sendable {
    public var plugin: String
    public var result: Aspire_V1_CommandResult
    public var metrics: [PluginMetric]
    public var problems: [String]
}

/// Runs plugins — each a directory with an executable `plugin.sh` — on their period or on
/// demand, with the directory as working directory, as their user (nobody by default), with
/// the bash executor's timeout and process-group kill. What a run prints is read by
/// ``PluginOutput``; its metrics, plus `plugin.<name>` carrying the run's exit status, go to the
/// metrics handler; output that cannot be read, and metrics left out, go to the event handler.
/// A run asked for while the plugin runs is refused, never queued (the seed's rule). A disabled
/// plugin enables itself again after `reenableAfter` (a day by default).
public final class PluginRunner: Sendable {
    public typealias MetricsHandler = @Sendable ([PluginMetric]) -> Void
    public typealias EventHandler = @Sendable (_ plugin: String, _ message: String) -> Void

    struct Entry: Sendable {
        var config: PluginConfig
        var disabledUntil: Date?
        var running = false
        var nextRun: Date?
        var lastRun: Date?
        var lastStatus: Int32?
        var lastMessage = ""
        /// The problem last reported as an event, and when: the same one again goes at most hourly.
        var reported: (problem: String, at: Date)?
    }

    public let directory: String
    let host: String
    let reenableAfter: Duration
    private let bash: BashExecutor
    private let logger: Logger
    private let entries = Mutex<[String: Entry]>([:])
    private let metrics: MetricsHandler
    private let events: EventHandler

    /// `metrics` gets each run's metrics, `events` a plugin's problems (once an hour while they
    /// stay the same).
    public init(
        directory: String,
        host: String,
        bash: BashExecutor,
        reenableAfter: Duration = .seconds(86_400),
        metrics: @escaping MetricsHandler = { _ in },
        events: @escaping EventHandler = { _, _ in },
        logger: Logger
    ) {
        self.metrics = metrics
        self.events = events
        self.directory = directory
        self.host = host
        self.bash = bash
        self.reenableAfter = reenableAfter
        self.logger = logger
    }

    /// Replaces the plugins; those already known keep their state (enabled or not, last run).
    public func configure(_ configs: [PluginConfig]) throws(AspireError) {
        var seen: Set<String> = []
        for config in configs {
            try PathName.check(config.name, field: "plugin name")
            guard seen.insert(config.name).inserted else { throw AspireError(.invalidParams, "two plugins are named '\(config.name)'") }
            guard config.period >= 0, config.timeout >= 0 else {
                throw AspireError(.invalidParams, "plugin \(config.name): period and timeout must not be negative")
            }
        }
        let now = Date()
        self.entries.withLock { entries in
            var next: [String: Entry] = [:]
            for config in configs {
                var entry = entries[config.name] ?? Entry(config: config)
                entry.config = config
                entry.nextRun = config.period > 0 ? (entry.nextRun ?? now) : nil
                next[config.name] = entry
            }
            entries = next
        }
    }

    public var states: [PluginState] {
        let now = Date()
        return self.entries.withLock { entries in
            entries.values.map { entry in
                let disabled = entry.disabledUntil.map { $0 > now } ?? false
                return PluginState(
                    config: entry.config, enabled: !disabled, disabledUntil: disabled ? entry.disabledUntil : nil, running: entry.running,
                    lastRun: entry.lastRun, lastStatus: entry.lastStatus, lastMessage: entry.lastMessage
                )
            }
        }.sorted { $0.config.name < $1.config.name }
    }

    /// Disables a plugin until `enable`, or until `duration` (by default `reenableAfter`) has
    /// passed; answers when it enables itself again.
    @discardableResult
    public func disable(_ name: String, for duration: Duration? = nil) throws(AspireError) -> Date {
        let duration = duration ?? self.reenableAfter
        let until = Date().addingTimeInterval(Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
        try self.update(name) { $0.disabledUntil = until }
        self.logger.notice("plugin disabled", metadata: ["plugin": "\(name)", "plugin.reenable": "\(until)"])
        return until
    }

    /// Disabled plugins and when each enables itself again: what the agent keeps across restarts.
    public var disabled: [String: Date] {
        let now = Date()
        return self.entries.withLock { entries in
            entries.compactMapValues { entry in entry.disabledUntil.flatMap { $0 > now ? $0 : nil } }
        }
    }

    /// Disables plugins again as they were before a restart (unknown names are ignored).
    public func restore(disabled: [String: Date]) {
        self.entries.withLock { entries in
            for (name, until) in disabled where entries[name] != nil {
                entries[name]?.disabledUntil = until
            }
        }
    }

    public func enable(_ name: String) throws(AspireError) {
        try self.update(name) { $0.disabledUntil = nil }
        self.logger.notice("plugin enabled", metadata: ["plugin": "\(name)"])
    }

    private func update(_ name: String, _ change: (inout Entry) -> Void) throws(AspireError) {
        let found = self.entries.withLock { entries in
            guard entries[name] != nil else { return false }
            change(&entries[name]!)
            return true
        }
        guard found else { throw AspireError(.notFound, "no plugin named '\(name)'") }
    }

    /// Runs the periodic plugins on their periods until cancelled.
    public func run() async {
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                let now = Date()
                for name in self.takeDue(now: now) {
                    group.addTask { _ = try? await self.runNow(name, periodic: true) }
                }
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    /// The plugins due at `now`, each taken (its next run moved a period on); a disabled one is
    /// skipped until its time is up, then enabled again.
    func takeDue(now: Date) -> [String] {
        self.entries.withLock { entries in
            var due: [String] = []
            for (name, entry) in entries {
                guard let next = entry.nextRun, next <= now else { continue }
                entries[name]?.nextRun = now.addingTimeInterval(Double(entry.config.period))
                if entry.disabledUntil.map({ $0 <= now }) == false { continue }
                if entry.disabledUntil != nil { entries[name]?.disabledUntil = nil }
                due.append(name)
            }
            return due
        }
    }

    /// Runs a plugin now (`timeout` and `param` override its own); refused while it runs or is
    /// disabled. Its metrics and problems go to the handlers, and come back in the answer.
    @discardableResult
    public func runNow(_ name: String, timeout: Int32? = nil, param: String? = nil, periodic: Bool = false) async throws(AspireError) -> PluginRun {
        let now = Date()
        let config: PluginConfig = try self.entries.withLock { entries throws(AspireError) in
            guard let entry = entries[name] else { throw AspireError(.notFound, "no plugin named '\(name)'") }
            if let until = entry.disabledUntil, until > now {
                throw AspireError(.busy, "plugin \(name) is disabled until \(until.formatted(.iso8601)); enable it first")
            }
            guard !entry.running else { throw AspireError(.busy, "plugin \(name) is running; this run is not made") }
            entries[name]?.running = true
            return entry.config
        }
        let run = await self.execute(config, timeout: timeout ?? config.timeout, param: param ?? config.param)
        if Task.isCancelled {
            // The agent is stopping and ended the run: not the plugin's doing, nothing to report.
            self.entries.withLock { $0[name]?.running = false }
            return run
        }
        self.entries.withLock { entries in
            entries[name]?.running = false
            entries[name]?.lastRun = now
            entries[name]?.lastStatus = run.result.retcode
            entries[name]?.lastMessage = run.problems.first ?? run.result.message
        }
        self.metrics(run.metrics)
        let problem = run.problems.isEmpty ? nil : "plugin \(name): " + run.problems.prefix(10).joined(separator: "; ") + (run.problems.count > 10 ? "; …" : "")
        // A plugin failing the same way every few seconds says so once an hour, not each run.
        let report = self.entries.withLock { entries -> Bool in
            guard let problem else {
                entries[name]?.reported = nil
                return false
            }
            if let last = entries[name]?.reported, last.problem == problem, now.timeIntervalSince(last.at) < 3600 { return false }
            entries[name]?.reported = (problem, now)
            return true
        }
        if report, let problem { self.events(name, problem) }
        self.logger.debug(
            "plugin ran",
            metadata: ["plugin": "\(name)", "plugin.periodic": "\(periodic)", "plugin.metrics": "\(run.metrics.count)", "plugin.status": "\(run.result.retcode)"]
        )
        return run
    }

    private func execute(_ config: PluginConfig, timeout: Int32, param: String) async -> PluginRun {
        let directory = "\(self.directory)/\(config.name)"
        let script = "\(directory)/plugin.sh"
        let id = "plugin:\(config.name):\(Int64(Date().timeIntervalSince1970))"
        var problems: [String] = []
        var metrics: [PluginMetric] = []
        var result: Aspire_V1_CommandResult
        if let collector = try? BuiltinCollector(url: config.source.url) {
            // A built-in collector: the agent measures itself, no plugin.sh.
            metrics = collector.collect(prefix: "plugin.\(config.name)", host: self.host, now: Date())
            result = .success(id: id, message: "\(metrics.count) metrics", started: Date())
        } else if let problem = Self.checkScript(script, user: config.user) {
            result = .failed(id: id, .badPackage, problem)
            problems.append(problem)
        } else {
            var params = Aspire_V1_BashParams()
            params.cmd = "cd \(Self.quoted(directory)) && exec ./plugin.sh\(param.isEmpty ? "" : " " + Self.quoted(param))"
            params.user = config.user
            params.timeout = max(1, timeout)
            result = await self.bash.run(id: id, params: params)
            if result.resp != .success {
                problems.append(result.message)
            } else if result.retcode != 0 {
                let stderr = String(decoding: result.stderr.suffix(300), as: UTF8.self).trimmed()
                problems.append("plugin.sh exited with status \(result.retcode)\(stderr.isEmpty ? "" : ": \(stderr)")")
            } else if result.truncated {
                problems.append("printed more than the output cap; nothing was read")
            } else {
                do {
                    let parsed = try PluginOutput.parse(result.data, plugin: config.name, host: self.host, now: Date())
                    metrics = parsed.metrics
                    problems += parsed.problems
                } catch {
                    problems.append(error.cause)
                }
            }
        }
        // The run itself is a metric too (the seed's `plugin.<name>`): its exit status or error code.
        metrics.append(
            PluginMetric(name: "plugin.\(config.name)", timestamp: Int64(Date().timeIntervalSince1970), tags: ["host": self.host], value: Double(result.retcode))
        )
        return PluginRun(plugin: config.name, result: result, metrics: metrics, problems: problems)
    }

    /// A plugin.sh that is there, a regular executable file — and, for one run as root, not
    /// writable by anyone else (nor its directory): root must not run what others can change.
    static func checkScript(_ path: String, user: String) -> String? {
        // A symbolic link is not followed: a link is not a regular file.
        guard let script = try? Stat(FilePath(path), followTargetSymlink: false) else { return "no plugin.sh at \(path)" }
        guard script.type == .regular else { return "\(path) is not a regular file" }
        guard script.permissions.rawValue & 0o111 != 0 else { return "\(path) is not executable" }
        if user == "root" || user.isEmpty {
            let directory = FilePath(path).removingLastComponent()
            guard let parent = try? Stat(directory, followTargetSymlink: false) else { return "cannot read \(directory)" }
            let safe = [script, parent].allSatisfy { status in status.userID.rawValue == 0 && status.permissions.rawValue & 0o022 == 0 }
            if !safe {
                return "\(path) runs as root, so it and its directory must belong to root and be writable by no one else"
            }
        }
        return nil
    }

    /// Single-quoted for bash.
    static func quoted(_ text: String) -> String {
        "'" + text.replacing("'", with: "'\\''") + "'"
    }
}
