#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RPC

#if canImport(Glibc)
import Glibc
#endif

/// What `/proc` says about processes: enough to find a sub-agent's processes by session, tell a
/// live process from a zombie, and know a pid was not reused (its start time).
enum ProcessTable {
    struct Entry: Sendable, Hashable {
        var pid: pid_t
        var parent: pid_t
        /// R, S, D, Z, T, ... as in `ps`.
        var state: Character
        var session: pid_t
        /// Clock ticks after boot at which the process started: a pid with another start time
        /// is another process.
        var startTicks: UInt64

        var isAlive: Bool { self.state != "Z" && self.state != "X" }
    }

    /// Whether `pid` runs (and is not a zombie).
    static func isAlive(_ pid: pid_t) -> Bool {
        self.entry(pid)?.isAlive ?? false
    }

    /// The process a pidfile names, while it runs; nil for no file, no pid in it, or no such
    /// live process.
    static func named(byPidfile path: String) -> Entry? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8), let pid = pid_t(text.trimmed()),
            let entry = self.entry(pid), entry.isAlive
        else { return nil }
        return entry
    }

    /// Reads `/proc/PID/stat`; nil when the process is gone.
    static func entry(_ pid: pid_t) -> Entry? {
        guard pid > 0, let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
        return self.parse(stat: text)
    }

    /// Parses a stat line. The command name is in parentheses and may hold spaces and
    /// parentheses itself, so fields are counted from the last ')'.
    static func parse(stat text: String) -> Entry? {
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")"), open < close,
            let pid = pid_t(text[..<open].trimmingBlanks())
        else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // After the name: state(3) ppid(4) pgrp(5) session(6) ... starttime(22), numbered from 1.
        guard fields.count > 19, let state = fields[0].first, let parent = pid_t(fields[1]), let session = pid_t(fields[3]),
            let start = UInt64(fields[19])
        else { return nil }
        return Entry(pid: pid, parent: parent, state: state, session: session, startTicks: start)
    }

    /// Clock ticks since boot now, as process start times count them.
    static var ticksNow: UInt64 {
        guard let uptime = StartDelay.uptime() else { return 0 }
        return UInt64(uptime.milliseconds) * UInt64(sysconf(Int32(_SC_CLK_TCK))) / 1000
    }

    /// Every process of the host.
    static func all() -> [Entry] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return names.compactMap { pid_t($0) }.compactMap { self.entry($0) }
    }

    /// Live processes of a session.
    static func session(_ sid: pid_t) -> [Entry] {
        guard sid > 0 else { return [] }
        return self.all().filter { $0.session == sid && $0.isAlive }
    }

    /// Live processes among `pids`, oldest first.
    static func alive(_ pids: [pid_t]) -> [Entry] {
        pids.compactMap { self.entry($0) }.filter(\.isAlive).sorted { ($0.startTicks, $0.pid) < ($1.startTicks, $1.pid) }
    }
}
