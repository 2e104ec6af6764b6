#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RPC
import Subprocess
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Starts the programs the supervisor runs — `control start|stop|status`, tar, install commands —
/// in a session of their own, as a given user, with stdin from /dev/null and both outputs
/// appended to a file (never a pipe: a daemon that keeps a pipe open would make its reader wait
/// forever).
///
/// The program does not run at once: `/bin/sh` waits on a gate (its stdin) until the launcher
/// has put its pid in the sub-agent's cgroup, then execs it. So everything it starts, even what
/// it forks first, is in the group — as the agent's own root, before any switch of user takes
/// the right to write the cgroup away.
struct Launcher {
    struct Request: Sendable {
        var executable: String
        var arguments: [String] = []
        var environment: [String: String] = [:]
        var directory: String = "/"
        /// Run as this identity (nil: as the agent).
        var identity: Identity?
        /// Shell lines run before the exec (rlimits).
        var prologue: [String] = []
        /// Both outputs are appended here.
        var outputPath: String
        /// Standard error apart, when set.
        var errorPath: String?
        /// Called with the pid before the program runs (cgroup entry); a throw kills it.
        var enter: (@Sendable (pid_t) throws(AspireError) -> Void)?
    }

    /// How a program ended.
    enum Termination: Sendable, Equatable {
        case exited(Int32)
        case signaled(Int32)

        var succeeded: Bool { self == .exited(0) }

        var description: String {
            switch self {
            case .exited(let code): "exited with status \(code)"
            case .signaled(let signal): "was killed by \(BashExecutor.signalName(signal))"
            }
        }
    }

    /// What `start` saw within its wait.
    enum Outcome: Sendable {
        case ended(Termination)
        /// Still running when the wait ran out; it goes on, `finished` tells when it ends.
        case running
    }

    /// A started program.
    struct Started: Sendable {
        let pid: pid_t
        let outcome: Outcome
        /// Yields the termination once, when the program ends.
        let finished: Task<Termination?, Never>
    }

    private enum Event: Sendable {
        case spawned(pid_t)
        case failed(AspireError)
        case ended(Termination)
    }

    /// Starts `request` and waits up to `wait` for it to end.
    static func start(_ request: Request, wait: Duration) async throws(AspireError) -> Started {
        var gate: [Int32] = [0, 0]
        guard pipe(&gate) == 0, fcntl(gate[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(gate[1], F_SETFD, FD_CLOEXEC) == 0 else {
            throw AspireError(.spawnFailed, "cannot make a pipe: \(String(cString: strerror(errno)))")
        }
        let output = open(request.outputPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard output >= 0 else {
            close(gate[0])
            close(gate[1])
            throw AspireError(.spawnFailed, "cannot open \(request.outputPath): \(String(cString: strerror(errno)))")
        }
        let errorOutput = request.errorPath.map { open($0, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640) } ?? fcntl(output, F_DUPFD_CLOEXEC, 0)
        guard errorOutput >= 0 else {
            close(gate[0])
            close(gate[1])
            close(output)
            throw AspireError(.spawnFailed, "cannot open \(request.errorPath ?? request.outputPath): \(String(cString: strerror(errno)))")
        }

        var environment = request.environment
        if let identity = request.identity {
            environment = identity.environment.merging(environment) { $1 }
        }
        let script = (request.prologue + ["read _gate", "exec \"$0\" \"$@\" </dev/null"]).joined(separator: "\n")
        let gateWrite = gate[1]
        let gateClosed = Mutex(false)
        @Sendable func openGate() {
            gateClosed.withLock { closed in
                if !closed { close(gateWrite) }
                closed = true
            }
        }
        let spawn = Identity.spawn(as: request.identity, "/bin/sh", ["-c", script, request.executable] + request.arguments)
        let (events, sink) = AsyncStream.makeStream(of: Event.self)
        let finished = Task<Termination?, Never> {
            defer { openGate() }
            do {
                let result = try await Subprocess.run(
                    .path(FilePath(spawn.executable)),
                    arguments: Subprocess.Arguments(spawn.arguments),
                    environment: .custom(Dictionary(uniqueKeysWithValues: environment.map { (Environment.Key(stringLiteral: $0.key), $0.value) })),
                    workingDirectory: FilePath(request.directory),
                    platformOptions: spawn.options,
                    input: .fileDescriptor(FileDescriptor(rawValue: gate[0]), closeAfterSpawningProcess: true),
                    output: .fileDescriptor(FileDescriptor(rawValue: output), closeAfterSpawningProcess: true),
                    error: .fileDescriptor(FileDescriptor(rawValue: errorOutput), closeAfterSpawningProcess: true)
                ) { execution in
                    let pid = execution.processIdentifier.value
                    do {
                        try request.enter?(pid)
                        sink.yield(.spawned(pid))
                    } catch {
                        kill(-pid, SIGKILL)
                        sink.yield(.failed(error as? AspireError ?? AspireError(.spawnFailed, "\(error)")))
                    }
                    openGate()
                }
                let termination: Termination =
                    switch result.terminationStatus {
                    case .exited(let code): .exited(code)
                    case .signaled(let signal): .signaled(signal)
                    }
                sink.yield(.ended(termination))
                sink.finish()
                return termination
            } catch {
                sink.yield(.failed(AspireError(.spawnFailed, "cannot start \(request.executable): \(error)")))
                sink.finish()
                return nil
            }
        }

        var pid: pid_t = 0
        var iterator = events.makeAsyncIterator()
        // The first event says whether it started at all.
        switch await iterator.next() {
        case .spawned(let spawned)?:
            pid = spawned
        case .failed(let error)?:
            _ = await finished.result
            throw error
        case .ended, nil:
            throw AspireError(.spawnFailed, "cannot start \(request.executable)")
        }
        // Whichever comes first: its end, or the wait's. (A task group would wait for both: a
        // program that runs in the foreground would hold the start forever.)
        let ended: Termination? = await withCheckedContinuation { continuation in
            let first = FirstAnswer(continuation)
            Task { first.answer(await finished.value) }
            Task {
                try? await Task.sleep(for: wait)
                first.answer(nil)
            }
        }
        return Started(pid: pid, outcome: ended.map { Outcome.ended($0) } ?? .running, finished: finished)
    }

    /// Runs `request` to its end, killing its whole session after `timeout`.
    static func run(_ request: Request, timeout: Duration) async throws(AspireError) -> Termination {
        let started = try await self.start(request, wait: timeout)
        switch started.outcome {
        case .ended(let termination):
            return termination
        case .running:
            Self.killSession(started.pid)
            _ = await started.finished.value
            throw AspireError(.timeout, "\(request.executable) \(request.arguments.joined(separator: " ")) did not finish within \(timeout.words); killed")
        }
    }

    /// SIGKILL to every process of a session (the launcher's pid is its id).
    static func killSession(_ sid: pid_t) {
        for entry in ProcessTable.session(sid) { kill(entry.pid, SIGKILL) }
        kill(-sid, SIGKILL)
    }

    /// The last `limit` bytes of a file, from `offset` on, as text for a message.
    static func tail(_ path: String, from offset: UInt64 = 0, limit: Int = 600) -> String {
        let bytes = try? FileDescriptor.reading(path) { file in
            let end = UInt64(try file.seek(offset: 0, from: .end))
            let start = max(offset, end > UInt64(limit) ? end - UInt64(limit) : 0)
            _ = try file.seek(offset: Int64(start), from: .start)
            return try file.read(upTo: Int(end - min(start, end)))
        }
        return String(decoding: bytes ?? [], as: UTF8.self).trimmed()
    }

    /// A program that failed as `code` says (a package tool: the package's fault; a control
    /// script: the sub-agent's), with the end of what it wrote to `log` from `offset` — unless
    /// the disk under `directory` is full. Then it could write neither what it was to write nor
    /// its own messages (tar exits 2 and says nothing; so does a control script that cannot write
    /// its pid file), and the fault is the host's: said so, not blamed on a package that is fine.
    static func failed(
        _ code: ErrorCode, _ what: String, _ termination: Termination, log: String, from offset: UInt64 = 0, limit: Int = 600, directory: String
    ) -> AspireError {
        if let free = self.freeBytes(under: directory), free < self.nearlyFull {
            return AspireError(
                .agentInternal,
                "\(what) \(termination.description): the disk under \(directory) is full (\(free) bytes free); free space and send the command again"
            )
        }
        return AspireError(code, "\(what) \(termination.description): \(self.tail(log, from: offset, limit: limit))")
    }

    /// Below this, a disk counts as full: no package unpacks, and no control script starts a daemon, in a mebibyte's remains.
    static let nearlyFull: UInt64 = 1 << 20

    /// What this process may still write to the file system under `path` (root, as the agent
    /// runs, may use the blocks reserved for it too).
    static func freeBytes(under path: String) -> UInt64? {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else { return nil }
        return UInt64(geteuid() == 0 ? stats.f_bfree : stats.f_bavail) * UInt64(stats.f_frsize)
    }

    static func size(_ path: String) -> UInt64 {
        (try? Stat(FilePath(path), followTargetSymlink: false)).map { UInt64(clamping: $0.size) } ?? 0
    }
}

extension Duration {
    /// Whole seconds, for messages.
    var seconds: Int64 { self.components.seconds }

    var secondsDouble: Double {
        Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18
    }

    /// For messages: "0.8 s" under ten seconds, "42 s" above.
    var words: String {
        let value = self.secondsDouble
        return value < 10 ? "\((value * 10).rounded() / 10) s" : "\(Int64(value.rounded())) s"
    }
}

/// Resumes a continuation with the first answer only.
private final class FirstAnswer<Value: Sendable>: Sendable {
    private let continuation: CheckedContinuation<Value, Never>
    private let answered = Mutex(false)

    init(_ continuation: CheckedContinuation<Value, Never>) {
        self.continuation = continuation
    }

    func answer(_ value: Value) {
        let first = self.answered.withLock { answered in
            defer { answered = true }
            return !answered
        }
        if first { self.continuation.resume(returning: value) }
    }
}
