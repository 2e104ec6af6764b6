public import Foundation
import Synchronization

#if canImport(Glibc)
public import Glibc
#endif

/// A real child process (server node, agent, CLI, peer tool) with its output in a log file,
/// in its own process group so it and everything it started can be signalled together.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    public let logPath: String
    private let exitStatus = Mutex<Int32?>(nil)

    public init(_ path: String, _ arguments: [String], log: String, environment: [String: String] = [:]) throws {
        self.logPath = log
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else of this process: a pipe another thread is reading to its end must not
        // stay open in a server or agent that outlives the read (the "hangs on inherited
        // pipes" of Foundation.Process).
        closeInheritedDescriptors(&actions)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own group; and no signal blocked or ignored because this process blocks it (a test
        // runner may block SIGTERM, and a child would inherit that): SIGTERM stops it.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var env = ProcessInfo.processInfo.environment
        // A host's /etc/aspire files (an installed package) must not change what a test runs.
        env["ASPIRE_BOOT_CONFIG"] = env["ASPIRE_BOOT_CONFIG"] ?? "none"
        env["ASPIRE_SERVER_CONFIG"] = env["ASPIRE_SERVER_CONFIG"] ?? "none"
        for (key, value) in environment { env[key] = value }
        var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, path, &actions, &attributes, &argv, &envp)
        guard status == 0 else {
            throw HarnessError("cannot start \(path): \(String(cString: strerror(status)))")
        }
        self.pid = pid
        Lifeline.shared.watch(pid)
        ChildScope.current?.adopt(self)
    }

    public func signal(_ signal: Int32) {
        Glibc.kill(self.pid, signal)
    }

    /// Reaps the process if it has exited; returns its wait status.
    public func poll() -> Int32? {
        self.exitStatus.withLock { exitStatus in
            if exitStatus == nil {
                var status: Int32 = 0
                if waitpid(self.pid, &status, WNOHANG) == self.pid {
                    exitStatus = status
                    Lifeline.shared.forget(self.pid)
                }
            }
            return exitStatus
        }
    }

    public var isRunning: Bool { self.poll() == nil }

    /// Waits up to `timeout` for the process to exit; returns its wait status.
    @discardableResult
    public func wait(timeout: Duration = .seconds(20)) async throws -> Int32 {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if let status = self.poll() { return status }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw HarnessError("process \(self.pid) did not exit within \(timeout)\n\(self.log)")
    }

    /// SIGTERM, then SIGKILL to the whole group if it does not go.
    public func stop(grace: Duration = .seconds(10)) async {
        guard self.isRunning else { return }
        self.signal(SIGTERM)
        if (try? await self.wait(timeout: grace)) == nil {
            Glibc.kill(-self.pid, SIGKILL)
            _ = try? await self.wait(timeout: .seconds(5))
        }
    }

    /// SIGKILL to the whole group, and reap.
    public func kill() async {
        guard self.isRunning else { return }
        Glibc.kill(-self.pid, SIGKILL)
        _ = try? await self.wait(timeout: .seconds(5))
    }

    public var log: String {
        (try? String(contentsOfFile: self.logPath, encoding: .utf8)) ?? ""
    }

    /// Runs a tool to its end (found on PATH, stdin /dev/null, stdout and stderr together) and
    /// answers its exit status and output. Never blocks a thread: tests run in the cooperative
    /// pool, where two blocked threads stop everything. A tool still going after `timeout` is
    /// killed and the call throws.
    public static func run(
        _ tool: String,
        _ arguments: [String],
        directory: String? = nil,
        timeout: Duration = .seconds(60)
    ) async throws -> (status: Int32, output: String) {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("aspire-run-\(UUID().uuidString).log").path
        defer { unlink(log) }
        let child = try ChildProcess("/usr/bin/env", (directory.map { ["--chdir=\($0)"] } ?? []) + [tool] + arguments, log: log)
        do {
            return (Self.exitCode(try await child.wait(timeout: timeout)), child.log)
        } catch {
            await child.kill()
            throw error
        }
    }

    /// A wait status as a shell says it: the exit status, or 128 + the signal that killed it.
    public static func exitCode(_ status: Int32) -> Int32 {
        (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// Memory and CPU time now, from /proc.
    public var usage: ProcessUsage? { ProcessUsage(pid: self.pid) }

    deinit {
        if self.poll() == nil {
            Glibc.kill(-self.pid, SIGKILL)
            var status: Int32 = 0
            waitpid(self.pid, &status, 0)
            Lifeline.shared.forget(self.pid)
        }
    }
}

/// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34), which Swift's Glibc module does not
/// declare: found at run time, as swift-subprocess does.
private func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return }
    _ = unsafeBitCast(symbol, to: AddCloseFrom.self)(&actions, 3)
}

/// Makes every child die with this process, however it ends (a crash, SIGKILL, a watchdog's
/// `_exit`): a `sh` guardian reads the children's process groups from a pipe whose only writer is
/// this process; when this process is gone the pipe reaches end of file and the guardian kills
/// every group it was told about. (PR_SET_PDEATHSIG cannot be set through posix_spawn, and it
/// follows the spawning thread, which a thread pool may retire.)
final class Lifeline: Sendable {
    static let shared = Lifeline()

    private let writer: Int32?

    private init() {
        // A guardian that is gone must not take this process with it on the next write.
        Glibc.signal(SIGPIPE, SIG_IGN)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            self.writer = nil
            return
        }
        // Close-on-exec both ends: no other child may hold the pipe open.
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 onto 0 clears close-on-exec there; the write end stays closed in the guardian.
        posix_spawn_file_actions_adddup2(&actions, fds[0], 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own group, so killing a child's group never reaches it; SIGINT from a terminal neither.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        // "+PID" adds a group, "-PID" drops a reaped one (so a reused pid is never hit).
        let script = """
            groups=' '
            while read -r line; do
                case $line in
                    +*) groups="$groups${line#+} " ;;
                    -*) groups=$(printf '%s' "$groups" | sed "s/ ${line#-} / /") ;;
                esac
            done
            for g in $groups; do kill -KILL "-$g" 2>/dev/null; done
            """
        var argv: [UnsafeMutablePointer<CChar>?] = (["/bin/sh", "-c", script, "aspire-lifeline"] as [String]).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, "/bin/sh", &actions, &attributes, &argv, environ)
        close(fds[0])
        if status == 0 {
            self.writer = fds[1]
        } else {
            close(fds[1])
            self.writer = nil
        }
    }

    /// Tells the guardian about a child (its own process group leader).
    func watch(_ pid: pid_t) { self.tell("+\(pid)\n") }

    /// Tells the guardian a child has been reaped.
    func forget(_ pid: pid_t) { self.tell("-\(pid)\n") }

    private func tell(_ message: String) {
        guard let writer = self.writer else { return }
        let line = Array(message.utf8)
        _ = line.withUnsafeBytes { Glibc.write(writer, $0.baseAddress, $0.count) }
    }
}

/// A process's resident memory and CPU time, read from /proc/PID/status and /proc/PID/stat.
public struct ProcessUsage: Sendable {
    public var residentBytes: Int
    /// The parts of the resident bytes: allocated memory, and pages of files (code included).
    public var anonymousBytes: Int
    public var fileBytes: Int
    /// User plus system CPU time.
    public var cpuSeconds: Double

    public init?(pid: pid_t) {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        func bytes(_ field: String) -> Int? {
            status.split(separator: "\n").first { $0.hasPrefix(field) }
                .flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) }.map { $0 * 1024 }
        }
        guard let resident = bytes("VmRSS:") else { return nil }
        // Fields after "(comm)": state is field 3, utime 14, stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        self.residentBytes = resident
        self.anonymousBytes = bytes("RssAnon:") ?? 0
        self.fileBytes = bytes("RssFile:") ?? 0
        self.cpuSeconds = (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// This process.
    public static var current: ProcessUsage? { ProcessUsage(pid: getpid()) }
}

/// Raises this process's open-file limit as far as it may go (root may raise the hard limit);
/// children started afterwards inherit it. Returns the soft limit now in force.
@discardableResult
public func raiseOpenFileLimit(to wanted: rlim_t = 1 << 20) -> UInt64 {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    var raised = rlimit(rlim_cur: max(limit.rlim_cur, wanted), rlim_max: max(limit.rlim_max, wanted))
    if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) != 0 {
        raised = rlimit(rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max)
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised)
    }
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    return UInt64(limit.rlim_cur)
}
