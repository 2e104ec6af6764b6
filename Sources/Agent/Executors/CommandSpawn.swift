import CSpawn
import Dispatch
import NIOCore
import NIOPosix
import Subprocess
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Starts a command's first process straight into its cgroup: `clone3` with
/// `CLONE_INTO_CGROUP` (Linux 5.7) on cgroup v2, so the kernel places it before it runs a single
/// instruction and nothing it starts is ever outside. On cgroup v1 the child writes itself into
/// the freezer group before its exec. Either way there is one exec per command — the shell
/// that used to move itself first (`/bin/sh`, then `exec bash`) cost a second one, as much as
/// bash's own start (P8 in bench/README.md) — and the user switch is made in the child by raw
/// system calls, so a command as another user needs no `setpriv` exec either.
///
/// The child's setup is C (`CSpawn`): between clone and exec it shares the agent's memory and
/// may make only async-signal-safe calls. Its output is read by NIO pipe channels
/// (with back-pressure), its exit seen on its pidfd. Where the kernel has no `clone3` or pidfds
/// (before 5.4; RHEL 8's 4.18), ``start(_:)`` answers nil and the caller uses swift-subprocess
/// with the shell that moves itself, as before.
enum CommandSpawn {
    /// What to start.
    struct Request {
        var executable: String
        var arguments: [String]
        var environment: [String: String]
        var directory: String?
        /// The command's group, or nil (its session alone).
        var group: CommandGroup?
        /// The ids to switch to, or nil to stay the agent's.
        var identity: Identity?
    }

    /// Whether this kernel has what the direct spawn needs; false after the first clone3 that
    /// said it has not.
    private static let available = Atomic<Bool>(true)

    /// A started process: its pid (also its process group and session), its output, its end.
    struct Started: Sendable {
        let pid: pid_t
        let standardOutput: Output
        let standardError: Output
        fileprivate let exit: ExitWatch

        /// Waits for the process to end; reaps it.
        func termination() async -> TerminationStatus {
            await self.exit.wait()
        }
    }

    /// One of the process's output pipes, read with back-pressure; chunks as they come.
    struct Output: Sendable {
        fileprivate let channel: NIOAsyncChannel<ByteBuffer, Never>

        /// Hands each chunk to `body` until the pipe's end (every writer closed it).
        func forEach(_ body: ([UInt8]) async throws -> Void) async throws {
            try await self.channel.executeThenClose { inbound, _ in
                for try await buffer in inbound {
                    try await body(Array(buffer.readableBytesView))
                }
            }
        }
    }

    /// Starts the process, or answers nil when this kernel cannot (use swift-subprocess).
    static func start(_ request: Request) async throws -> Started? {
        guard self.available.load(ordering: .relaxed) else { return nil }
        let output = try Self.pipe()
        let errors: (read: Int32, write: Int32)
        do { errors = try Self.pipe() } catch {
            close(output.read)
            close(output.write)
            throw error
        }
        let input = open("/dev/null", O_RDONLY | O_CLOEXEC)
        // cgroup v2: born in the group. v1 (no CLONE_INTO_CGROUP there): the child moves itself.
        let cgroup = request.group.flatMap { $0.kind == .v2 ? open($0.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : nil } ?? -1
        defer {
            for fd in [input, cgroup, output.write, errors.write] where fd >= 0 { close(fd) }
        }
        func clone(into cgroup: Int32) async throws(SpawnFailure) -> (pid: pid_t, pidfd: Int32) {
            // The parent waits for the child's exec: not on a thread of the cooperative pool.
            try await withCheckedContinuation { continuation in
                DispatchQueue.global().async {
                    continuation.resume(returning: Result { () throws(SpawnFailure) -> (pid: pid_t, pidfd: Int32) in
                        try Self.clone(request, cgroup: cgroup, input: input, output: output.write, error: errors.write)
                    })
                }
            }.get()
        }
        let spawned: (pid: pid_t, pidfd: Int32)
        do {
            do {
                spawned = try await clone(into: cgroup)
            } catch let failure where failure.step == "clone3" && cgroup >= 0 {
                // The kernel cannot start it in the group (before Linux 5.7, or the group's own
                // state): as on v1, the child moves itself, and runs anyway if that fails.
                spawned = try await clone(into: -1)
            }
        } catch {
            close(output.read)
            close(errors.read)
            guard error.step == "clone3", error.errno == ENOSYS || error.errno == EINVAL else { throw error }
            Self.available.store(false, ordering: .relaxed)
            return nil
        }
        // The write ends close (defer) once the child has its copies.
        let exit = ExitWatch(pidfd: spawned.pidfd)
        do {
            let standardOutput = try await Self.reader(output.read)
            let standardError: Output
            do { standardError = try await Self.reader(errors.read) } catch {
                try? await standardOutput.channel.channel.close()
                throw error
            }
            return Started(pid: spawned.pid, standardOutput: standardOutput, standardError: standardError, exit: exit)
        } catch {
            kill(-spawned.pid, SIGKILL)
            _ = await exit.wait()
            throw error
        }
    }

    /// Why the process could not start: the step (`execve`, `chdir`, `setresuid`...) and errno.
    struct SpawnFailure: Error, CustomStringConvertible {
        var step: String
        var errno: Int32
        var description: String { "\(self.step): \(String(cString: strerror(self.errno)))" }
    }

    /// clone3 and the child's setup; the calling thread waits for the child's exec.
    private static func clone(
        _ request: Request, cgroup: Int32, input: Int32, output: Int32, error: Int32
    ) throws(SpawnFailure) -> (pid: pid_t, pidfd: Int32) {
        let strings = CStrings()
        var spec = aspire_spawn_request()
        spec.path = strings.string(request.executable)
        spec.argv = strings.array([request.executable] + request.arguments)
        spec.envp = strings.array(request.environment.map { "\($0.key)=\($0.value)" })
        spec.directory = request.directory.map(strings.string)
        spec.cgroup_fd = cgroup
        // No cgroup fd (v1, or refused): the child moves itself in.
        spec.join_path = cgroup < 0 ? request.group.map { strings.string("\($0.path)/cgroup.procs") } : nil
        spec.stdin_fd = input
        spec.stdout_fd = output
        spec.stderr_fd = error
        if let identity = request.identity, identity.needsSwitch {
            spec.switch_ids = 1
            spec.uid = identity.account.uid
            spec.gid = identity.gid
            spec.groups = strings.copy(identity.groups)
            spec.group_count = identity.groups.count
        }
        var pidfd: Int32 = -1
        var step: UnsafePointer<CChar>?
        // The strings live until the child has exec'd (or failed).
        let pid = withExtendedLifetime(strings) { aspire_spawn(&spec, &pidfd, &step) }
        guard pid > 0 else { throw SpawnFailure(step: step.map { String(cString: $0) } ?? "clone3", errno: Glibc.errno) }
        return (pid, pidfd)
    }

    /// A pipe, both ends close-on-exec (the child's copies become its 1 and 2 by dup2).
    private static func pipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard aspire_pipe(&fds) == 0 else { throw SpawnFailure(step: "pipe2", errno: errno) }
        return (fds[0], fds[1])
    }

    /// A NIO channel over a pipe's read end (it owns and closes it).
    private static func reader(_ fd: Int32) async throws -> Output {
        do {
            let channel = try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .takingOwnershipOfDescriptor(input: fd) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, Never>(wrappingChannelSynchronously: channel)
                    }
                }
            return Output(channel: channel)
        } catch {
            close(fd)
            throw error
        }
    }
}

/// The end of a process started by ``CommandSpawn``: its pidfd turns readable when it exits.
/// (Unchecked: a dispatch source is safe to use from any thread; the rest is in the mutex.)
private final class ExitWatch: @unchecked Sendable {
    private let pidfd: Int32
    private let source: any DispatchSourceRead
    private let state = Mutex<State>(State())

    private struct State {
        var status: TerminationStatus?
        var waiters: [CheckedContinuation<TerminationStatus, Never>] = []
    }

    private static let queue = DispatchQueue(label: "aspire.command-exits")

    init(pidfd: Int32) {
        self.pidfd = pidfd
        self.source = DispatchSource.makeReadSource(fileDescriptor: pidfd, queue: Self.queue)
        // Holds the watch until the process has ended, waited for or not: it is always reaped.
        self.source.setEventHandler { [self] in self.check() }
        self.source.setCancelHandler { close(pidfd) }
        self.source.resume()
    }

    /// Reaps the process if it has ended, and answers whoever waits.
    private func check() {
        var code: Int32 = 0
        var signaled: Int32 = 0
        let reaped = aspire_spawn_reap(self.pidfd, &code, &signaled)
        guard reaped != 0 else { return }
        // -1: not ours to reap any more (ECHILD); nothing better to say than a failure.
        let status: TerminationStatus = reaped < 0 ? .exited(127) : signaled != 0 ? .signaled(code) : .exited(code)
        let waiters = self.state.withLock { state in
            state.status = status
            defer { state.waiters = [] }
            return state.waiters
        }
        // Cancelling drops the handler, and with it the watch's hold on itself.
        self.source.cancel()
        for waiter in waiters { waiter.resume(returning: status) }
    }

    func wait() async -> TerminationStatus {
        await withCheckedContinuation { continuation in
            let status = self.state.withLock { state in
                if state.status == nil { state.waiters.append(continuation) }
                return state.status
            }
            if let status { continuation.resume(returning: status) }
        }
    }
}

/// The C strings and arrays of one spawn, freed with it.
private final class CStrings {
    private var allocations: [UnsafeMutableRawPointer] = []

    func string(_ string: String) -> UnsafePointer<CChar> {
        let copy = strdup(string)!
        self.allocations.append(UnsafeMutableRawPointer(copy))
        return UnsafePointer(copy)
    }

    /// NULL-terminated, as exec takes its arguments and environment.
    func array(_ strings: [String]) -> UnsafePointer<UnsafeMutablePointer<CChar>?> {
        let array = self.allocate(UnsafeMutablePointer<CChar>?.self, strings.count + 1)
        for (index, string) in strings.enumerated() { array[index] = UnsafeMutablePointer(mutating: self.string(string)) }
        array[strings.count] = nil
        return UnsafePointer(array)
    }

    func copy(_ groups: [gid_t]) -> UnsafePointer<gid_t> {
        let copy = self.allocate(gid_t.self, max(groups.count, 1))
        copy.initialize(from: groups, count: groups.count)
        return UnsafePointer(copy)
    }

    private func allocate<T>(_ type: T.Type, _ count: Int) -> UnsafeMutablePointer<T> {
        let memory = malloc(MemoryLayout<T>.stride * count)!
        self.allocations.append(memory)
        return memory.bindMemory(to: T.self, capacity: count)
    }

    deinit {
        for allocation in self.allocations { free(allocation) }
    }
}
