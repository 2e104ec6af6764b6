#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
public import Logging
public import RPC
import Subprocess
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Runs `sync.bash`: `/bin/bash -c CMD` in a new session and a cgroup of its own as the given
/// user and group, with stdin from /dev/null, a clean environment, both pipes drained into
/// bounded head+tail buffers, and every process it started killed at timeout.
public struct BashExecutor: Sendable {
    public struct Configuration: Sendable {
        /// Bytes kept of each of stdout and stderr (head and tail halves).
        public var outputCap: Int = 1 << 20
        /// Seconds when the command gives none (the seed's 120).
        public var defaultTimeout: Int = 120
        /// Between SIGTERM and SIGKILL of the process group at timeout.
        public var killGrace: Duration = .seconds(2)
        /// The shell.
        public var shell: String = "/bin/bash"
        /// A cgroup per command where the host has one, so a timeout kills every descendant.
        public var groups: CommandGroups? = CommandGroups.detect()
        /// Starts the shell with ``CommandSpawn`` (straight into its group, one exec) where the
        /// kernel allows; false: always swift-subprocess, as on kernels before 5.4.
        public var directSpawn = true

        public init() {}
    }

    public var configuration: Configuration
    private let logger: Logger

    public init(configuration: Configuration = .init(), logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// A chunk of live output, for commands that stream it.
    public typealias OutputHandler = @Sendable (Aspire_V1_CommandOutput.Stream, [UInt8]) async -> Void

    public func run(
        id: String,
        params: Aspire_V1_BashParams,
        onOutput: OutputHandler? = nil
    ) async -> Aspire_V1_CommandResult {
        let started = Date()
        let cmd = params.cmd
        guard !cmd.trimmed().isEmpty else {
            return .failed(id: id, .invalidParams, "sync.bash needs a non-empty 'cmd'", started: started)
        }
        guard params.timeout >= 0 else {
            return .failed(id: id, .invalidParams, "'timeout' must not be negative (got \(params.timeout))", started: started)
        }
        let timeoutSeconds = params.timeout == 0 ? self.configuration.defaultTimeout : max(1, Int(params.timeout))

        let identity: Identity
        do {
            identity = try Identity.resolve(user: params.user, group: params.group)
        } catch {
            return .failed(id: id, error.code, error.cause, started: started)
        }

        self.configuration.groups?.pruneIfDue()
        let cgroup = self.configuration.groups?.make(for: id)
        defer { cgroup?.remove() }
        let home = identity.account.home
        let workingDirectory = FileManager.default.fileExists(atPath: home) ? home : "/"
        let cap = self.configuration.outputCap
        let grace = self.configuration.killGrace
        let logger = self.logger
        // One collection of output for both ways of starting the shell.
        @Sendable func collect(pgid: pid_t, stdout: some CommandOutput, stderr: some CommandOutput) async throws -> Captured {
            try await Self.collect(
                id: id, pgid: pgid, stdout: stdout, stderr: stderr, timeout: timeoutSeconds, cgroup: cgroup, grace: grace,
                capacity: cap, onOutput: onOutput, logger: logger
            )
        }

        do {
            let captured: Captured
            let status: TerminationStatus
            let request = CommandSpawn.Request(
                executable: self.configuration.shell, arguments: ["-c", cmd], environment: identity.environment,
                directory: workingDirectory, group: cgroup, identity: identity
            )
            if self.configuration.directSpawn, let process = try await CommandSpawn.start(request) {
                captured = try await collect(pgid: process.pid, stdout: process.standardOutput, stderr: process.standardError)
                status = await process.termination()
            } else {
                // swift-subprocess, where the kernel lacks clone3 or pidfds: a shell moves itself
                // into the group first, and setpriv switches the user.
                var spawn = Identity.spawn(as: identity, request.executable, request.arguments)
                if let cgroup { (spawn.executable, spawn.arguments) = cgroup.wrap(spawn.executable, spawn.arguments) }
                let outcome = try await Subprocess.run(
                    .path(FilePath(spawn.executable)),
                    arguments: Subprocess.Arguments(spawn.arguments),
                    environment: .custom(
                        Dictionary(uniqueKeysWithValues: request.environment.map { (Environment.Key(stringLiteral: $0.key), $0.value) })
                    ),
                    workingDirectory: FilePath(workingDirectory),
                    platformOptions: spawn.options,
                    input: .none,
                    output: .sequence,
                    error: .sequence
                ) { execution in
                    try await collect(pgid: execution.processIdentifier.value, stdout: execution.standardOutput, stderr: execution.standardError)
                }
                (captured, status) = (outcome.closureResult, outcome.terminationStatus)
            }
            if Task.isCancelled { return Self.interrupted(id, started: started) }
            var result = Aspire_V1_CommandResult()
            result.id = id
            result.data = Data(captured.stdout.bytes)
            result.stderr = Data(captured.stderr.bytes)
            result.stdoutBytes = captured.stdout.totalBytes
            result.stderrBytes = captured.stderr.totalBytes
            result.truncated = captured.stdout.isTruncated || captured.stderr.isTruncated
            result.startedUnixMs = started.unixMilliseconds
            result.finishedUnixMs = Date().unixMilliseconds
            if captured.timedOut {
                result.resp = .failed
                result.retcode = ErrorCode.timeout.rawValue
                result.message = "Timed out after \(timeoutSeconds) s; \(cgroup == nil ? "process group" : "every process it started") killed"
            } else {
                switch status {
                case .exited(let code):
                    result.resp = .success
                    result.retcode = code
                    result.message = "Normal termination"
                case .signaled(let signal):
                    result.resp = .failed
                    result.retcode = 128 + signal
                    result.message = "Killed by signal \(signal) (\(Self.signalName(signal)))"
                }
            }
            return result
        } catch where Task.isCancelled {
            return Self.interrupted(id, started: started)
        } catch {
            return .failed(id: id, .spawnFailed, "could not start \(self.configuration.shell): \(error)", started: started)
        }
    }

    private static func interrupted(_ id: String, started: Date) -> Aspire_V1_CommandResult {
        .failed(id: id, .interrupted, "the agent stopped while the command ran; its process group was killed", started: started)
    }

    /// Reads both pipes to their ends into head+tail buffers, killing the command's processes
    /// at its timeout; cancelled (the agent is stopping), the command's whole group goes with
    /// it, not only the shell, so nothing it started runs on unsupervised.
    private static func collect(
        id: String, pgid: pid_t, stdout: some CommandOutput, stderr: some CommandOutput, timeout: Int,
        cgroup: CommandGroup?, grace: Duration, capacity: Int, onOutput: OutputHandler?, logger: Logger
    ) async throws -> Captured {
        try await withTaskCancellationHandler {
            try await withThrowingTaskGroup(of: Drained.self) { group in
                group.addTask { .stdout(try await Self.drain(stdout, .stdout, capacity: capacity, onOutput: onOutput)) }
                group.addTask { .stderr(try await Self.drain(stderr, .stderr, capacity: capacity, onOutput: onOutput)) }
                group.addTask {
                    try await Task.sleep(for: .seconds(timeout))
                    return .timedOut
                }
                var out: HeadTailBuffer?
                var err: HeadTailBuffer?
                var timedOut = false
                while out == nil || err == nil, let next = try await group.next() {
                    switch next {
                    case .stdout(let buffer): out = buffer
                    case .stderr(let buffer): err = buffer
                    case .timedOut:
                        timedOut = true
                        logger.info(
                            "command timed out, killing its processes",
                            metadata: ["command.id": "\(id)", "command.pgid": "\(pgid)", "command.cgroup": "\(cgroup?.path ?? "none")"]
                        )
                        await Self.killGroup(pgid, cgroup: cgroup, grace: grace)
                    }
                }
                group.cancelAll()
                return Captured(
                    stdout: out ?? HeadTailBuffer(capacity: capacity),
                    stderr: err ?? HeadTailBuffer(capacity: capacity),
                    timedOut: timedOut
                )
            }
        } onCancel: {
            kill(-pgid, SIGKILL)
            cgroup?.sendKill()
        }
    }

    private enum Drained: Sendable {
        case stdout(HeadTailBuffer)
        case stderr(HeadTailBuffer)
        case timedOut
    }

    private struct Captured: Sendable {
        var stdout: HeadTailBuffer
        var stderr: HeadTailBuffer
        var timedOut: Bool
    }

    /// Reads a pipe to its end into a head+tail buffer, passing chunks on when asked to.
    private static func drain(
        _ output: some CommandOutput,
        _ stream: Aspire_V1_CommandOutput.Stream,
        capacity: Int,
        onOutput: OutputHandler?
    ) async throws -> HeadTailBuffer {
        var buffer = HeadTailBuffer(capacity: capacity)
        try await output.forEach { chunk in
            buffer.append(chunk)
            if let onOutput { await onOutput(stream, chunk) }
        }
        return buffer
    }

    /// SIGTERM to the whole process group and every process of the command's cgroup, up to
    /// `grace` for them to go, then SIGKILL to all that are left.
    static func killGroup(_ pgid: pid_t, cgroup: CommandGroup?, grace: Duration) async {
        kill(-pgid, SIGTERM)
        cgroup?.signal(SIGTERM)
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: grace)
        while clock.now < deadline, self.groupExists(pgid) || cgroup?.isEmpty == false {
            try? await Task.sleep(for: .milliseconds(20))
        }
        kill(-pgid, SIGKILL)
        await cgroup?.killAll()
    }

    static func groupExists(_ pgid: pid_t) -> Bool {
        kill(-pgid, 0) == 0 || errno == EPERM
    }

    static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGHUP: "SIGHUP"
        case SIGINT: "SIGINT"
        case SIGQUIT: "SIGQUIT"
        case SIGILL: "SIGILL"
        case SIGABRT: "SIGABRT"
        case SIGBUS: "SIGBUS"
        case SIGFPE: "SIGFPE"
        case SIGKILL: "SIGKILL"
        case SIGSEGV: "SIGSEGV"
        case SIGPIPE: "SIGPIPE"
        case SIGALRM: "SIGALRM"
        case SIGTERM: "SIGTERM"
        case SIGUSR1: "SIGUSR1"
        case SIGUSR2: "SIGUSR2"
        default: "signal \(signal)"
        }
    }
}

/// A command's stdout or stderr as it is read, chunk by chunk, whichever way it was started.
protocol CommandOutput: Sendable {
    func forEach(_ body: ([UInt8]) async throws -> Void) async throws
}

extension CommandSpawn.Output: CommandOutput {}

extension SubprocessOutputSequence: CommandOutput {
    func forEach(_ body: ([UInt8]) async throws -> Void) async throws {
        for try await chunk in self { try await body(chunk.withUnsafeBytes { Array($0) }) }
    }
}

/// Who a command runs as: the account, its group, supplementary groups and a clean environment.
struct Identity {
    var account: Account
    var gid: gid_t
    var groups: [gid_t]
    /// False when the agent already is this user and group (nothing to switch).
    var needsSwitch: Bool

    /// util-linux's setpriv, which every Debian, Ubuntu and RHEL host has.
    static let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// `executable arguments` as a command line that runs as `identity` (nil: as the agent
    /// itself), and the spawn options that go with it (always a new session): for what
    /// swift-subprocess starts (control scripts, and commands where ``CommandSpawn`` cannot,
    /// which switches users itself).
    ///
    /// swift-subprocess switches users in a child made by a raw clone(), where glibc's
    /// setgroups, setgid and setuid wait forever for threads that existed only in the parent
    /// (seen here: a command as nobody stuck in setgroups while other threads were busy). So the
    /// switch is made by setpriv, exec'd in that child: a fresh single-threaded process, which
    /// sets the real, effective and saved ids and the groups, and so drops root's capabilities.
    /// Without setpriv the library switches, as before.
    static func spawn(
        as identity: Identity?,
        _ executable: String,
        _ arguments: [String]
    ) -> (executable: String, arguments: [String], options: PlatformOptions) {
        var options = PlatformOptions()
        options.createSession = true
        guard let identity, identity.needsSwitch else { return (executable, arguments, options) }
        guard let setpriv = Self.setpriv else {
            options.userID = identity.account.uid
            options.groupID = identity.gid
            options.supplementaryGroups = identity.groups
            return (executable, arguments, options)
        }
        let ids = [
            "--reuid=\(identity.account.uid)", "--regid=\(identity.gid)", "--groups=\(identity.groups.map(String.init).joined(separator: ","))",
            "--",
        ]
        return (setpriv, ids + [executable] + arguments, options)
    }

    /// The first directory on the way to `path` (itself included) that this identity may not
    /// enter, or nil when it reaches it: a sub-agent as `nobody` under a 0700 directory fails
    /// with a bare "Permission denied" otherwise.
    func firstUnsearchable(on path: String) -> String? {
        guard self.account.uid != 0 else { return nil }
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/\(component)"
            guard let status = try? Stat(FilePath(prefix), followTargetSymlink: false), status.type == .directory else { continue }
            let owner = status.userID.rawValue
            let group = status.groupID.rawValue
            let bit: CInterop.Mode = owner == self.account.uid ? 0o100 : (group == self.gid || self.groups.contains(group)) ? 0o010 : 0o001
            if status.permissions.rawValue & bit == 0 { return prefix }
        }
        return nil
    }

    var environment: [String: String] {
        [
            "HOME": self.account.home,
            "USER": self.account.name,
            "LOGNAME": self.account.name,
            "SHELL": self.account.shell.isEmpty ? "/bin/sh" : self.account.shell,
            "PATH": self.account.uid == 0 ? Tools.rootPath : "/usr/local/bin:/usr/bin:/bin",
        ]
    }

    /// Resolves the seed's `user` (default root) and `group` (default: the user's primary
    /// group, which for root is root as the seed says). Unknown names are errors, never a
    /// silent fallback.
    static func resolve(user: String, group: String) throws(AspireError) -> Identity {
        let userName = user.isEmpty ? "root" : user
        guard let account = Account.user(named: userName) else {
            throw AspireError(.unknownUser, "user '\(userName)' does not exist on this host")
        }
        var gid = account.gid
        if !group.isEmpty {
            guard let found = Account.group(named: group) else {
                throw AspireError(.unknownUser, "group '\(group)' does not exist on this host")
            }
            gid = found
        }
        let needsSwitch = getuid() != account.uid || getgid() != gid || geteuid() != account.uid
        if needsSwitch, geteuid() != 0 {
            throw AspireError(
                .unknownUser,
                "the agent runs as uid \(geteuid()) and cannot switch to user '\(account.name)'; run it as root"
            )
        }
        var groups = account.supplementaryGroups(primary: gid)
        if !groups.contains(gid) { groups.insert(gid, at: 0) }
        return Identity(account: account, gid: gid, groups: groups, needsSwitch: needsSwitch)
    }
}

extension BashExecutor: CommandHandler {
    public func handle(_ command: Aspire_V1_Command, as method: CommandMethod, output: OutputHandler?) async -> Aspire_V1_CommandResult {
        await self.run(id: command.id, params: command.bash, onOutput: output)
    }
}
