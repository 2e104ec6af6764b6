import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RPC
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where commands (`sync.bash`, schedules, plugins) get a cgroup each, so that a timeout reaches
/// every process a command started — also those that left its process group and session with
/// `setsid` or a double fork, which a process-group kill misses. Only grouping is used, no
/// controller: cgroup v2 (the host's unified hierarchy, or the hybrid one's
/// `/sys/fs/cgroup/unified`), else cgroup v1's freezer hierarchy. Without a writable one
/// (not root, no cgroupfs) commands keep only their process group.
///
/// The groups live in `<root>/<parent>.commands/<name>`, beside the sub-agents' parent group (a
/// sibling, so no sub-agent name can meet them); a command's group is made before it starts —
/// the command's first process moves itself in before it execs anything, so every descendant is
/// born inside — and removed once it is empty. A group's name is a digest of the agent's data
/// directory and the command's id: an agent SIGKILLed while a command ran finds, when it starts
/// again, the group of the command it reports interrupted, and kills what is still in it.
public struct CommandGroups: Sendable {
    enum Kind: Sendable, Equatable {
        /// cgroup v2: `cgroup.kill` kills the whole group at once (Linux 5.14+), else
        /// `cgroup.freeze` holds it still while each process is killed.
        case v2
        /// cgroup v1's freezer: `freezer.state` FROZEN holds it still while each is killed.
        case v1Freezer
    }

    /// The hierarchy's root directory.
    let hierarchy: String
    let kind: Kind
    /// The sub-agents' parent group (`--cgroup-parent`); the commands' groups are its sibling.
    public var parent: String
    /// Whose commands these are (the agent's data directory): two agents on one host keep apart
    /// the groups of a command id both were sent.
    public var owner = ""
    /// When groups were last pruned (seconds since 1970), shared by the copies of this value.
    private let lastPrune = PruneClock()

    var base: String { "\(self.hierarchy)/\(self.parent).commands" }

    init(hierarchy: String, kind: Kind, parent: String) {
        self.hierarchy = hierarchy
        self.kind = kind
        self.parent = parent
    }

    /// The hierarchy this host offers for grouping, or nil. Only looks: nothing is made until a
    /// command runs.
    public static func detect(root: String = "/sys/fs/cgroup", parent: String = "aspire") -> CommandGroups? {
        let candidates: [(String, Kind)] = [
            (root, .v2), ("\(root)/unified", .v2), ("\(root)/freezer", .v1Freezer),
        ]
        for (hierarchy, kind) in candidates {
            let marker = kind == .v2 ? "\(hierarchy)/cgroup.controllers" : "\(hierarchy)/freezer.state"
            let procs = "\(hierarchy)/cgroup.procs"
            guard FileManager.default.fileExists(atPath: procs), kind == .v1Freezer || FileManager.default.fileExists(atPath: marker),
                ControlFile.isWritableDirectory(hierarchy)
            else { continue }
            return CommandGroups(hierarchy: hierarchy, kind: kind, parent: parent)
        }
        return nil
    }

    /// "cgroup v2" or "cgroup v1 freezer", for logs.
    public var name: String { self.kind == .v2 ? "cgroup v2" : "cgroup v1 freezer" }

    /// A new, empty group for the command `id`; nil (the command keeps only its process group)
    /// when it cannot be made.
    func make(for id: String) -> CommandGroup? {
        let group = CommandGroup(path: self.path(for: id), kind: self.kind)
        do {
            try ControlFile.makeDirectory(self.base)
            // An empty one left by an earlier run of the same id (a benchmark's) is taken over.
            if !group.remove(), FileManager.default.fileExists(atPath: group.path) { return nil }
            try ControlFile.makeDirectory(group.path)
            return group
        } catch {
            return nil
        }
    }

    /// The group of the command `id` if it is still there: one an earlier life of the agent
    /// made for a command that was running when it died.
    func leftover(of id: String) -> CommandGroup? {
        let path = self.path(for: id)
        return FileManager.default.fileExists(atPath: path) ? CommandGroup(path: path, kind: self.kind) : nil
    }

    /// Command ids come from the network: they never become paths as they are.
    private func path(for id: String) -> String {
        "\(self.base)/\(SHA256.hash(data: Data("\(self.owner)\u{0}\(id)".utf8)).hexString)"
    }

    /// Prunes at most once a minute (before a command: the listing is off the path of the
    /// commands in between).
    func pruneIfDue(every interval: TimeInterval = 60) {
        let now = Int64(Date().timeIntervalSince1970)
        let last = self.lastPrune.seconds.load(ordering: .relaxed)
        guard now - last >= Int64(interval),
            self.lastPrune.seconds.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
        else { return }
        self.prune()
    }

    /// Removes the empty groups of commands that ended leaving processes behind (a daemon a
    /// command started on purpose) once those are gone too. A group made in the last minute is
    /// left alone: its command may not have entered it yet (another agent's, or this one's).
    func prune(olderThan age: TimeInterval = 60) {
        let now = Date()
        for name in (try? FileManager.default.contentsOfDirectory(atPath: self.base)) ?? [] where !name.hasPrefix("cgroup.") {
            let path = "\(self.base)/\(name)"
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                attributes[.type] as? FileAttributeType == .typeDirectory,
                let made = attributes[.modificationDate] as? Date, now.timeIntervalSince(made) > age
            else { continue }
            rmdir(path)
        }
    }
}

/// When ``CommandGroups`` last pruned.
private final class PruneClock: Sendable {
    let seconds = Atomic<Int64>(0)
}

/// One command's cgroup.
struct CommandGroup: Sendable {
    let path: String
    let kind: CommandGroups.Kind

    /// `executable arguments` behind a shell that first moves itself into the group: the
    /// command's first process, so nothing it starts is ever outside. The shell runs as root,
    /// before any switch of user (setpriv comes after it). If the move fails, the command runs
    /// anyway, with its process group alone.
    func wrap(_ executable: String, _ arguments: [String]) -> (executable: String, arguments: [String]) {
        ("/bin/sh", ["-c", #"{ echo $$ > "$0"; } 2>/dev/null; exec "$@""#, "\(self.path)/cgroup.procs", executable] + arguments)
    }

    var processes: [pid_t] { ControlFile.pids("\(self.path)/cgroup.procs") }

    var isEmpty: Bool { self.processes.isEmpty }

    func signal(_ signal: Int32) {
        for pid in self.processes { kill(pid, signal) }
    }

    /// SIGKILL to every process of the group, also those forking meanwhile; returns once the
    /// group is empty (or after `wait`).
    func killAll(wait: Duration = .seconds(2)) async {
        self.sendKill()
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: wait)
        while !self.isEmpty, clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// SIGKILL to every process of the group, at once.
    func sendKill() {
        if self.kind == .v2, (try? ControlFile.write("1", to: "\(self.path)/cgroup.kill")) != nil { return }
        let freeze = self.kind == .v2 ? ("\(self.path)/cgroup.freeze", "1", "0") : ("\(self.path)/freezer.state", "FROZEN", "THAWED")
        let frozen = (try? ControlFile.write(freeze.1, to: freeze.0)) != nil
        for _ in 0 ..< 10 {
            let pids = self.processes
            if pids.isEmpty { break }
            for pid in pids { kill(pid, SIGKILL) }
        }
        // Killed processes of a frozen group die once it thaws.
        if frozen { try? ControlFile.write(freeze.2, to: freeze.0) }
    }

    /// Removes the group when nothing is left in it; answers whether it did.
    @discardableResult
    func remove() -> Bool {
        rmdir(self.path) == 0
    }
}
