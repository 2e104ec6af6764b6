import Foundation
import Logging
import RPC
import Testing
import TestSupport

@testable import Agent

/// The tests that start commands run both ways of starting the shell: straight into its group
/// (clone3, this kernel) and swift-subprocess with the shell that moves itself (older kernels).
@Suite("sync.bash executor")
struct BashExecutorTests {
    /// `direct`: ``CommandSpawn``; false: swift-subprocess.
    static let ways = [true, false]

    /// An executor starting commands the `direct` way, with the rest of its configuration as
    /// `configure` leaves it.
    static func executor(direct: Bool, _ configure: (inout BashExecutor.Configuration) -> Void = { _ in }) -> BashExecutor {
        var configuration = BashExecutor.Configuration()
        configuration.directSpawn = direct
        configure(&configuration)
        return BashExecutor(configuration: configuration, logger: Logger(label: "test"))
    }

    func run(_ cmd: String, timeout: Int32 = 0, user: String = "", group: String = "", direct: Bool = true, executor: BashExecutor? = nil)
        async -> Aspire_V1_CommandResult
    {
        var params = Aspire_V1_BashParams()
        params.cmd = cmd
        params.timeout = timeout
        params.user = user
        params.group = group
        return await (executor ?? Self.executor(direct: direct)).run(id: "t-\(UUID().uuidString)", params: params)
    }

    @Test("A command that succeeds reports success, exit 0 and its output", arguments: BashExecutorTests.ways)
    func success(direct: Bool) async {
        let result = await self.run("echo hello; echo oops >&2", direct: direct)
        #expect(result.resp == .success)
        #expect(result.retcode == 0)
        #expect(result.message == "Normal termination")
        #expect(String(decoding: result.data, as: UTF8.self) == "hello\n")
        #expect(String(decoding: result.stderr, as: UTF8.self) == "oops\n")
        #expect(result.stdoutBytes == 6)
        #expect(!result.truncated)
        #expect(result.finishedUnixMs >= result.startedUnixMs)
    }

    @Test("A non-zero exit is reported as the retcode of a normal termination", arguments: BashExecutorTests.ways)
    func nonZeroExit(direct: Bool) async {
        let result = await self.run("echo partial; exit 7", direct: direct)
        #expect(result.resp == .success)
        #expect(result.retcode == 7)
        #expect(String(decoding: result.data, as: UTF8.self) == "partial\n")
    }

    @Test("A command killed by a signal is failed with 128+signal", arguments: BashExecutorTests.ways)
    func killedBySignal(direct: Bool) async {
        let result = await self.run("kill -SEGV $$", direct: direct)
        #expect(result.resp == .failed)
        #expect(result.retcode == 128 + SIGSEGV)
        #expect(result.message.contains("SIGSEGV"))
    }

    @Test("Timeout kills the whole process group, including a grandchild holding stdout", arguments: BashExecutorTests.ways)
    func timeoutKillsGrandchild(direct: Bool) async throws {
        let marker = "1234.\(Int.random(in: 100_000 ... 999_999))"
        let result = await self.run("sleep \(marker) & echo started; sleep \(marker)", timeout: 1, direct: direct)
        #expect(result.resp == .failed)
        #expect(result.retcode == ErrorCode.timeout.rawValue)
        #expect(result.message.contains("Timed out after 1 s"))
        #expect(String(decoding: result.data, as: UTF8.self) == "started\n")
        #expect(ProcessSearch.withArgument(marker).isEmpty, "a sleep \(marker) survived the timeout")
    }

    @Test("A command whose caller is cancelled (the agent stopping) is reported interrupted, and its whole process group is killed", arguments: BashExecutorTests.ways)
    func cancelled(direct: Bool) async throws {
        let marker = "7788.\(Int.random(in: 100_000 ... 999_999))"
        let task = Task { await self.run("sleep \(marker) & sleep \(marker); true", timeout: 120, direct: direct) }
        try await eventually(timeout: .seconds(20), "both sleeps to start") { ProcessSearch.withArgument(marker).count == 2 }
        task.cancel()
        let result = await task.value
        #expect(result.resp == .failed && result.retcode == ErrorCode.interrupted.rawValue, "\(result.message)")
        try await eventually(timeout: .seconds(10), "the command's group to be gone") { ProcessSearch.withArgument(marker).isEmpty }
    }

    @Test("A grandchild that ignores SIGTERM is killed after the grace period", arguments: BashExecutorTests.ways)
    func timeoutKillsTermIgnoringChild(direct: Bool) async throws {
        let marker = "4321.\(Int.random(in: 100_000 ... 999_999))"
        let executor = Self.executor(direct: direct) { $0.killGrace = .milliseconds(300) }
        let result = await self.run("trap '' TERM; (trap '' TERM; sleep \(marker)) & sleep \(marker)", timeout: 1, direct: direct, executor: executor)
        #expect(result.retcode == ErrorCode.timeout.rawValue)
        try await eventually(timeout: .seconds(5), "the grandchild that ignores SIGTERM to be killed") {
            ProcessSearch.withArgument(marker).isEmpty
        }
    }

    @Test(
        "Timeout kills every descendant, also those that left the process group and session (setsid, double fork), as root and as another user",
        .enabled(if: CommandGroups.detect() != nil, "needs a writable cgroup hierarchy (root)"),
        arguments: ["", "nobody"], BashExecutorTests.ways
    )
    func timeoutKillsEscapedDescendants(user: String, direct: Bool) async throws {
        let marker = "5511.\(Int.random(in: 100_000 ... 999_999))"
        // Groups of this test's own, apart from those of the commands other tests run meanwhile.
        let groups = try #require(CommandGroups.detect(parent: "aspire-test-\(UUID().uuidString)"))
        defer { rmdir(groups.base) }
        let executor = Self.executor(direct: direct) {
            $0.killGrace = .milliseconds(500)
            $0.groups = groups
        }
        // Three escapes: a new session, a double fork whose middle process exits (the grandchild
        // is an orphan of another group), and one that also ignores SIGTERM and closes its pipes.
        let command = """
            setsid sleep \(marker) < /dev/null > /dev/null 2>&1 &
            ( ( setsid sh -c 'sleep \(marker)' < /dev/null > /dev/null 2>&1 & ) & )
            ( setsid sh -c "trap '' TERM; sleep \(marker); sleep \(marker)" < /dev/null > /dev/null 2>&1 & )
            echo started; sleep \(marker)
            """
        let result = await self.run(command, timeout: 1, user: user, direct: direct, executor: executor)
        #expect(result.retcode == ErrorCode.timeout.rawValue, "\(result.message)")
        #expect(result.message.contains("every process it started killed"), "\(result.message)")
        #expect(String(decoding: result.data, as: UTF8.self) == "started\n")
        // Gone by the time the result is made: TERM, the grace, then KILL to the whole cgroup.
        #expect(ProcessSearch.withArgument(marker).isEmpty, "an escaped sleep \(marker) survived: \(ProcessSearch.withArgument(marker))")
        // The command's group is removed with it.
        let left = Self.groups(in: groups.base)
        #expect(left.isEmpty, "command cgroups left: \(left)")
    }

    @Test(
        "Without a timeout, a daemon a command starts on purpose keeps running; its group goes once it ends",
        .enabled(if: CommandGroups.detect() != nil, "needs a writable cgroup hierarchy (root)")
    )
    func daemonOutlivesCommand() async throws {
        let marker = "6622.\(Int.random(in: 100_000 ... 999_999))"
        let groups = try #require(CommandGroups.detect(parent: "aspire-test-\(UUID().uuidString)"))
        defer { rmdir(groups.base) }
        let executor = Self.executor(direct: true) { $0.groups = groups }
        let result = await self.run("setsid sleep \(marker) < /dev/null > /dev/null 2>&1 & echo $!", executor: executor)
        #expect(result.resp == .success)
        let pid = try #require(Int32(String(decoding: result.data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(pid, 0) == 0, "the daemon was killed with the command")
        #expect(Self.groups(in: groups.base).count == 1, "the daemon's group is kept while it runs")
        kill(pid, SIGKILL)
        try await eventually(timeout: .seconds(10), "the daemon to go") { ProcessSearch.withArgument(marker).isEmpty }
        // Pruning (before each command, of groups older than a minute) removes the empty group the daemon held.
        groups.prune(olderThan: 0)
        let left = Self.groups(in: groups.base)
        #expect(left.isEmpty, "command cgroups left: \(left)")
    }

    @Test(
        "The shell is born in its command's group with every signal at its default, no descriptor of the agent's and, as another user, no capabilities",
        .enabled(if: CommandGroups.detect() != nil, "needs a writable cgroup hierarchy (root)"),
        arguments: ["", "nobody"], BashExecutorTests.ways
    )
    func bornInItsGroup(user: String, direct: Bool) async throws {
        let parent = "aspire-test-\(UUID().uuidString)"
        var hierarchies = [try #require(CommandGroups.detect(parent: parent))]
        // A hybrid host's v1 freezer too, where the process moves itself in (no CLONE_INTO_CGROUP).
        if hierarchies[0].kind == .v2, FileManager.default.fileExists(atPath: "/sys/fs/cgroup/freezer/freezer.state") {
            hierarchies.append(CommandGroups(hierarchy: "/sys/fs/cgroup/freezer", kind: .v1Freezer, parent: parent))
        }
        for groups in hierarchies {
            try await self.bornInItsGroup(user: user, direct: direct, groups: groups)
        }
    }

    func bornInItsGroup(user: String, direct: Bool, groups: CommandGroups) async throws {
        defer { rmdir(groups.base) }
        let executor = Self.executor(direct: direct) { $0.groups = groups }
        // The agent's own descriptors, not close-on-exec, that the command must not inherit.
        let leak = open("/dev/null", O_RDONLY)
        defer { close(leak) }
        let result = await self.run(
            "grep -E '^(SigIgn|SigBlk|CapEff):' /proc/self/status; cat /proc/$$/cgroup; echo fds; ls /proc/$$/fd; true",
            user: user, direct: direct, executor: executor
        )
        #expect(result.resp == .success, "\(result.message) \(String(decoding: result.stderr, as: UTF8.self))")
        let lines = String(decoding: result.data, as: UTF8.self).split(separator: "\n").map(String.init)
        func status(_ key: String) -> String? {
            lines.first { $0.hasPrefix("\(key):") }.map { $0.dropFirst(key.count + 1).trimmingCharacters(in: .whitespaces) }
        }
        // glibc's own two signals (32, 33), which its sigaction refuses to touch: swift-subprocess
        // hands down what the agent's parent left them (`swift test` leaves them ignored); the
        // direct spawn resets them by the raw system call. The standard ones both reset.
        let ignored = UInt64(status("SigIgn") ?? "", radix: 16) ?? .max
        #expect(ignored & (direct ? .max : 0x7fff_ffff) == 0, "ignored signals inherited: \(lines)")
        #expect(status("SigBlk") == "0000000000000000", "blocked signals inherited: \(lines)")
        if user == "nobody" { #expect(status("CapEff") == "0000000000000000", "capabilities kept: \(lines)") }
        // Its own group: the hierarchy's line of /proc/PID/cgroup names the command's directory.
        let base = "/\(groups.parent).commands/"
        let hierarchy = groups.kind == .v2 ? "0::" : ":freezer:"
        #expect(lines.contains { $0.contains(base) && $0.contains(hierarchy) }, "not in its \(groups.name) group: \(lines)")
        // (No pipeline, whose pipe bash holds while it starts the second command; not the last
        // command, which bash would exec in its own place.)
        let descriptors = lines.drop { $0 != "fds" }.dropFirst()
        #expect(Array(descriptors) == ["0", "1", "2"], "descriptors inherited: \(Array(descriptors))")
    }

    // (Started by swift-subprocess, the shell that moves itself into the group is what fails: exit 127.)
    @Test("A shell that cannot start is a clear spawn failure", .enabled(if: CommandSpawnTests.kernelHasIt, "needs Linux 5.7"))
    func spawnFailure() async {
        let executor = Self.executor(direct: true) { $0.shell = "/nonexistent/bash" }
        let result = await self.run("true", executor: executor)
        #expect(result.resp == .failed)
        #expect(result.retcode == ErrorCode.spawnFailed.rawValue, "\(result.retcode) \(result.message)")
        #expect(result.message.contains("could not start /nonexistent/bash"), "\(result.message)")
    }

    /// The command groups (directories) under `base`.
    static func groups(in base: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).filter { !$0.hasPrefix("cgroup.") && !$0.contains(".") }
    }

    @Test("50 MiB of output stays bounded: head and tail kept, truncated, total counted", arguments: BashExecutorTests.ways)
    func boundedOutput(direct: Bool) async {
        let executor = Self.executor(direct: direct) { $0.outputCap = 1 << 20 }
        let result = await self.run(
            "printf 'BEGIN'; head -c 52428800 /dev/zero | tr '\\0' 'x'; printf 'END'; head -c 3000000 /dev/zero >&2",
            executor: executor
        )
        #expect(result.resp == .success)
        #expect(result.truncated)
        #expect(result.stdoutBytes == 52_428_800 + 8)
        #expect(result.stderrBytes == 3_000_000)
        #expect(result.data.count < (1 << 20) + 200)
        #expect(result.stderr.count < (1 << 20) + 200)
        let text = String(decoding: result.data, as: UTF8.self)
        #expect(text.hasPrefix("BEGINxxx"))
        #expect(text.hasSuffix("xxxEND"))
        #expect(text.contains("bytes omitted"))
    }

    @Test("Runs as the given user with that user's clean environment", .enabled(if: getuid() == 0, "needs root to switch users"), arguments: BashExecutorTests.ways)
    func runsAsNobody(direct: Bool) async throws {
        let nobody = try #require(Account.user(named: "nobody"))
        let result = await self.run("id -u; id -g; echo \"$HOME|$USER|$LOGNAME|$PATH\"; env | wc -l", user: "nobody", direct: direct)
        #expect(result.resp == .success)
        let lines = String(decoding: result.data, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines[0] == "\(nobody.uid)")
        #expect(lines[1] == "\(nobody.gid)")
        #expect(lines[2] == "\(nobody.home)|nobody|nobody|/usr/local/bin:/usr/bin:/bin")
        // HOME USER LOGNAME SHELL PATH, plus what bash itself sets (PWD, SHLVL, _).
        #expect(Int(lines[3]) ?? 99 <= 8, "environment leaked: \(lines[3]) variables")
    }

    @Test("An explicit group and the user's supplementary groups are applied", .enabled(if: getuid() == 0, "needs root to switch users"), arguments: BashExecutorTests.ways)
    func groups(direct: Bool) async throws {
        let result = await self.run("id -g; id -G", user: "nobody", group: "daemon", direct: direct)
        let lines = String(decoding: result.data, as: UTF8.self).split(separator: "\n")
        let daemon = try #require(Account.group(named: "daemon"))
        #expect(lines.first.map(String.init) == "\(daemon)")
        #expect(lines.last?.split(separator: " ").contains(Substring("\(daemon)")) == true)
    }

    @Test("Unknown users and groups are clear errors, never a fallback")
    func unknownUser() async {
        let user = await self.run("id", user: "no-such-user-\(Int.random(in: 1000 ... 9999))")
        #expect(user.resp == .failed)
        #expect(user.retcode == ErrorCode.unknownUser.rawValue)
        #expect(user.message.contains("does not exist"))
        let group = await self.run("id", group: "no-such-group-\(Int.random(in: 1000 ... 9999))")
        #expect(group.resp == .failed)
        #expect(group.retcode == ErrorCode.unknownUser.rawValue)
    }

    @Test("Bad parameters are refused with 3021")
    func invalidParams() async {
        let empty = await self.run("   ")
        #expect(empty.retcode == ErrorCode.invalidParams.rawValue)
        let negative = await self.run("true", timeout: -5)
        #expect(negative.retcode == ErrorCode.invalidParams.rawValue)
    }

    @Test("stdin is /dev/null and the command leads its own session", arguments: BashExecutorTests.ways)
    func isolation(direct: Bool) async {
        let result = await self.run("cat; echo \"$(ps -o sid= -p $$ | tr -d ' ') $$\"", direct: direct)
        let line = String(decoding: result.data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let parts = line.split(separator: " ")
        #expect(parts.count == 2 && parts[0] == parts[1], "not a session leader: \(line)")
    }
}
