import Crypto
import Foundation
import Logging
import RPC
import Testing
import TestSupport

@testable import Agent

#if canImport(Glibc)
import Glibc
#endif

/// A scratch world for one test: a sub-agent root, a data directory, its own cgroup parent,
/// and packages built as real tarballs with `tar`.
final class SupervisorWorld {
    let base: String
    let root: String
    let data: String
    let cgroupParent: String
    var configuration = SupervisorConfiguration()

    /// A world in a directory of its own under `parent` (the temporary directory unless told).
    init(_ label: String, under parent: String = NSTemporaryDirectory()) throws {
        let id = UUID().uuidString.prefix(8).lowercased()
        self.base = "\(parent.hasSuffix("/") ? parent : parent + "/")aspire-sup-\(label)-\(id)"
        self.root = "\(self.base)/agents"
        self.data = "\(self.base)/data"
        self.cgroupParent = "aspire-test-\(id)"
        try FileManager.default.createDirectory(atPath: self.base, withIntermediateDirectories: true)
        self.configuration.root = self.root
        self.configuration.checkInterval = .milliseconds(200)
        self.configuration.holdoff = .zero
        self.configuration.anomalyWindow = .seconds(60)
        self.configuration.maxAnomalies = 2
        self.configuration.healthWindow = .milliseconds(800)
        self.configuration.controlTimeout = .seconds(10)
        self.configuration.stopGrace = .seconds(2)
        self.configuration.cgroupParent = self.cgroupParent
    }

    /// A supervisor of this world; one made later takes over the sub-agents an earlier one left,
    /// as a restarted agent does.
    func supervisor(downloads: PackageFetcher = PackageFetcher(), clock: any WallClock = SystemWallClock()) throws -> Supervisor {
        try Supervisor(
            configuration: self.configuration, dataDirectory: self.data, downloads: downloads, clock: clock, logger: Logger(label: "test.supervisor")
        )
    }

    /// Kills whatever a test left running (by cgroup and by session) and removes its files
    /// and cgroups, however the test ended.
    deinit {
        let (records, _) = (try? SubAgentRecords(directory: "\(self.data)/subagents"))?.loadAll() ?? ([], [])
        for record in records {
            for entry in ProcessTable.session(record.session) { kill(entry.pid, SIGKILL) }
        }
        for hierarchy in ["memory", "cpu", "pids"] {
            let parent = "/sys/fs/cgroup/\(hierarchy)/\(self.cgroupParent)"
            for group in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] {
                let path = "\(parent)/\(group)"
                guard FileManager.default.fileExists(atPath: "\(path)/cgroup.procs") else { continue }
                for _ in 0 ..< 100 {
                    for pid in ControlFile.pids("\(path)/cgroup.procs") { kill(pid, SIGKILL) }
                    if rmdir(path) == 0 { break }
                    usleep(20_000)
                }
            }
            rmdir(parent)
        }
        try? FileManager.default.removeItem(atPath: self.base)
    }

    /// The control script of the seed's convention around `agent.sh`: start backgrounds it and
    /// records its pid, status prints started or stoped.
    static let control = """
        #!/bin/sh
        cd "$(dirname "$0")"
        case "$1" in
        start)
            nohup ./agent.sh >> agent.out 2>&1 &
            echo $! > agent.pid
            echo started ;;
        stop)
            [ -f agent.pid ] && kill "$(cat agent.pid)" 2>/dev/null
            rm -f agent.pid
            echo stoped ;;
        status)
            if [ -f agent.pid ] && kill -0 "$(cat agent.pid)" 2>/dev/null; then echo started; else echo stoped; fi ;;
        esac
        """

    /// A daemon that writes its version and environment, then sleeps.
    static let sleeper = """
        #!/bin/sh
        echo "$ASPIRE_SUBAGENT_VERSION ${GREETING:-none}" > env.out
        exec sleep 100000
        """

    /// Builds `name-version.tar.gz` from `files` (relative path → content; executables are
    /// the ones named in `executables`). Returns its path and checksum.
    func package(
        _ name: String,
        _ version: String,
        files: [String: String],
        executables: Set<String> = ["control", "agent.sh"],
        extraTarArguments: [String] = []
    ) async throws -> (path: String, checksum: String) {
        let tree = "\(self.base)/src-\(name)-\(version)-\(UUID().uuidString.prefix(4))"
        for (path, content) in files {
            let full = "\(tree)/\(path)"
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try content.write(toFile: full, atomically: true, encoding: .utf8)
            chmod(full, executables.contains(path) ? 0o755 : 0o644)
        }
        let archive = "\(self.base)/\(name)-\(version)-\(UUID().uuidString.prefix(4)).tar.gz"
        try await Self.shell("tar", ["-czf", archive, "-C", tree] + extraTarArguments + files.keys.sorted())
        return (archive, try Self.checksum(of: archive))
    }

    /// The command's form of a file's SHA256: `SHA256:<hex>`.
    static func checksum(of path: String) throws -> String {
        "SHA256:" + SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: path))).hexString
    }

    func standardPackage(_ name: String, _ version: String) async throws -> (path: String, checksum: String) {
        try await self.package(name, version, files: ["control": Self.control, "agent.sh": Self.sleeper])
    }

    /// Runs a tool to its end (off the cooperative threads, with nothing inherited); throws
    /// on a non-zero exit, with its output.
    static func shell(_ tool: String, _ arguments: [String], in directory: String? = nil) async throws {
        let (status, output) = try await ChildProcess.run(tool, arguments, directory: directory)
        guard status == 0 else {
            throw AspireError(.agentInternal, "\(tool) \(arguments.joined(separator: " ")) exited with \(status): \(output)")
        }
    }

    static func command(
        _ method: String,
        name: String,
        version: String = "",
        url: String = "",
        checksum: String = "",
        envs: [String: String] = [:],
        memory: String = ""
    ) -> Aspire_V1_Command {
        var command = Aspire_V1_Command()
        command.id = UUID().uuidString
        command.method = method
        var params = Aspire_V1_SubAgentParams()
        params.name = name
        params.version = version
        params.url = url
        params.checksum = checksum
        params.envs = envs
        if !memory.isEmpty { params.limits.memory = memory }
        command.subagent = params
        return command
    }

    func install(
        _ supervisor: Supervisor,
        _ name: String,
        _ version: String,
        package: (path: String, checksum: String),
        method: String = "agent.install",
        envs: [String: String] = [:],
        memory: String = ""
    ) async -> Aspire_V1_CommandResult {
        await supervisor.perform(
            Self.command(method, name: name, version: version, url: "file://\(package.path)", checksum: package.checksum, envs: envs, memory: memory)
        )
    }

    func status(_ supervisor: Supervisor, _ name: String) -> Aspire_V1_SubAgentStatus? {
        supervisor.statuses.first { $0.name == name }
    }

    func currentVersion(_ name: String) -> String? {
        (try? String(contentsOfFile: "\(self.root)/\(name)/.version", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func alive(_ pid: Int32) -> Bool {
        guard pid > 0, let entry = ProcessTable.entry(pid) else { return false }
        return entry.isAlive
    }

    /// Runs checks until `condition` holds or `seconds` pass.
    func supervise(_ supervisor: Supervisor, seconds: Double, until condition: () -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            await supervisor.checkAll()
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(200))
        }
        return condition()
    }
}

@Suite("Sub-agent supervisor", .serialized)
struct SupervisorTests {
    @Test("Install runs the sub-agent with its environment; upgrade switches .version; a failing upgrade rolls back; a wrong SHA256 changes nothing")
    func installUpgradeRollback() async throws {
        let world = try SupervisorWorld("upgrade")
        let supervisor = try world.supervisor()

        let installed = await world.install(supervisor, "MiniAgent", "1.0", package: try await world.standardPackage("MiniAgent", "1.0"), envs: ["GREETING": "hello"])
        #expect(installed.resp == .success, "\(installed.message)")
        #expect(installed.message.contains("installed MiniAgent 1.0: running"))
        let first = try #require(world.status(supervisor, "MiniAgent"))
        #expect(first.status == "running")
        #expect(first.version == "1.0")
        #expect(SupervisorWorld.alive(first.pid))
        #expect(world.currentVersion("MiniAgent") == "1.0")
        let environment = try String(contentsOfFile: "\(world.root)/MiniAgent/1.0/env.out", encoding: .utf8)
        #expect(environment.trimmingCharacters(in: .whitespacesAndNewlines) == "1.0 hello")

        let upgraded = await world.install(supervisor, "MiniAgent", "2.0", package: try await world.standardPackage("MiniAgent", "2.0"), method: "agent.upgrade")
        #expect(upgraded.resp == .success, "\(upgraded.message)")
        #expect(upgraded.message.contains("upgraded MiniAgent from 1.0 to 2.0"))
        let second = try #require(world.status(supervisor, "MiniAgent"))
        #expect(second.version == "2.0")
        #expect(second.status == "running")
        #expect(second.previousVersion == "1.0")
        #expect(second.pid != first.pid)
        #expect(SupervisorWorld.alive(second.pid))
        #expect(!SupervisorWorld.alive(first.pid), "the old version's process is stopped")
        #expect(world.currentVersion("MiniAgent") == "2.0")
        #expect(FileManager.default.fileExists(atPath: "\(world.root)/MiniAgent/1.0/control"), "the previous version stays for rollback")

        // 3.0's control start fails: back to 2.0, running again.
        let broken = try await world.package(
            "MiniAgent", "3.0",
            files: ["control": "#!/bin/sh\ncase \"$1\" in start) echo 'cannot bind port 9999' >&2; exit 1;; *) echo stoped;; esac\n"],
            executables: ["control"]
        )
        let rolled = await world.install(supervisor, "MiniAgent", "3.0", package: broken, method: "agent.upgrade")
        #expect(rolled.resp == .failed)
        #expect(rolled.retcode == ErrorCode.rolledBack.rawValue)
        #expect(rolled.message.contains("rolled back to 2.0"), "\(rolled.message)")
        #expect(rolled.message.contains("cannot bind port 9999"), "the control script's own words reach the operator: \(rolled.message)")
        let third = try #require(world.status(supervisor, "MiniAgent"))
        #expect(third.version == "2.0")
        #expect(third.status == "running")
        #expect(SupervisorWorld.alive(third.pid))
        #expect(world.currentVersion("MiniAgent") == "2.0")
        #expect(!FileManager.default.fileExists(atPath: "\(world.root)/MiniAgent/3.0"))

        // A wrong checksum: refused before anything is unpacked; the same process runs on.
        let good = try await world.standardPackage("MiniAgent", "4.0")
        let wrong = (path: good.path, checksum: "SHA256:" + String(repeating: "0", count: 64))
        let refused = await world.install(supervisor, "MiniAgent", "4.0", package: wrong, method: "agent.upgrade")
        #expect(refused.resp == .failed)
        #expect(refused.retcode == ErrorCode.checksumMismatch.rawValue)
        #expect(refused.message.contains("nothing was unpacked"))
        #expect(!FileManager.default.fileExists(atPath: "\(world.root)/MiniAgent/4.0"))
        let fourth = try #require(world.status(supervisor, "MiniAgent"))
        #expect(fourth.pid == third.pid, "the running version was not touched")
        #expect(SupervisorWorld.alive(third.pid))
        #expect(world.currentVersion("MiniAgent") == "2.0")
        // 3.1 starts, then dies inside the health window: back to 2.0 as well.
        let crashing = try await world.package(
            "MiniAgent", "3.1",
            files: ["control": "#!/bin/sh\ncase \"$1\" in start) sh -c 'sleep 0.3; exit 3' >/dev/null 2>&1 & exit 0;; *) echo stoped;; esac\n"],
            executables: ["control"]
        )
        let crashed = await world.install(supervisor, "MiniAgent", "3.1", package: crashing, method: "agent.upgrade")
        #expect(crashed.retcode == ErrorCode.rolledBack.rawValue, "\(crashed.message)")
        #expect(crashed.message.contains("rolled back to 2.0"), "\(crashed.message)")
        // (On a loaded machine it may be gone before the first look: then no process of it runs.)
        #expect(crashed.message.contains("inside its 0.8 s health window") || crashed.message.contains("no process of MiniAgent"), "\(crashed.message)")
        let back = try #require(world.status(supervisor, "MiniAgent"))
        #expect(back.version == "2.0" && back.status == "running", "\(back)")
        #expect(SupervisorWorld.alive(back.pid))
        #expect(world.currentVersion("MiniAgent") == "2.0")

        let leftovers = try FileManager.default.contentsOfDirectory(atPath: "\(world.root)/MiniAgent").filter { $0.hasPrefix(".staging") }
        #expect(leftovers.isEmpty, "staging directories are removed: \(leftovers)")
    }

    @Test("A package with '../evil', an absolute path or a link out of the package is refused and nothing is unpacked")
    func unsafePackages() async throws {
        let world = try SupervisorWorld("unsafe")
        let supervisor = try world.supervisor()

        // '../evil' kept as it is by --absolute-names.
        let source = "\(world.base)/evil-src/inner"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        try SupervisorWorld.control.write(toFile: "\(source)/control", atomically: true, encoding: .utf8)
        chmod("\(source)/control", 0o755)
        try "pwned".write(toFile: "\(world.base)/evil-src/evil", atomically: true, encoding: .utf8)
        let traversal = "\(world.base)/traversal.tar.gz"
        try await SupervisorWorld.shell("tar", ["--absolute-names", "-czf", traversal, "control", "../evil"], in: source)
        // A symbolic link to /etc and a file written through it.
        let linkSource = "\(world.base)/link-src"
        try FileManager.default.createDirectory(atPath: linkSource, withIntermediateDirectories: true)
        try SupervisorWorld.control.write(toFile: "\(linkSource)/control", atomically: true, encoding: .utf8)
        chmod("\(linkSource)/control", 0o755)
        try FileManager.default.createSymbolicLink(atPath: "\(linkSource)/etc", withDestinationPath: "/etc")
        let linked = "\(world.base)/link.tar.gz"
        try await SupervisorWorld.shell("tar", ["-czf", linked, "control", "etc"], in: linkSource)

        for (archive, expected) in [(traversal, "'..'"), (linked, "absolute path '/etc'")] {
            let result = await world.install(supervisor, "Evil", "1.0", package: (archive, try SupervisorWorld.checksum(of: archive)))
            #expect(result.resp == .failed)
            #expect(result.retcode == ErrorCode.badPackage.rawValue, "\(result.message)")
            #expect(result.message.contains(expected), "\(result.message)")
            #expect(!FileManager.default.fileExists(atPath: "\(world.root)/evil"))
            #expect(!FileManager.default.fileExists(atPath: "\(world.root)/Evil/evil"))
            #expect(!FileManager.default.fileExists(atPath: "\(world.root)/Evil/1.0"))
            #expect(world.status(supervisor, "Evil") == nil)
        }
    }

    @Test("The tar listing parser reads C-quoted names and link targets; validation refuses escapes")
    func tarListing() throws {
        let file = try #require(Tarball.parse(#"-rwxr-xr-x 0/0 120 2026-11-22 10:00 "dir/a \"b\"\n c""#[...]))
        #expect(file.name == "dir/a \"b\"\n c")
        #expect(file.type == "-")
        let link = try #require(Tarball.parse(#"lrwxrwxrwx 0/0 0 2026-11-22 10:00 "x/l" -> "../y""#[...]))
        #expect(link.target == "../y")
        let hard = try #require(Tarball.parse(#"hrw-r--r-- 0/0 0 2026-11-22 10:00 "b" link to "a""#[...]))
        #expect(hard.target == "a")
        #expect(Tarball.parse(#"-rw-r--r-- 0/0 0 2026-11-22 10:00 "unterminated"#[...]) == nil)

        func entry(_ type: Character, _ name: String, _ target: String? = nil, mode: String = "-rw-r--r--") -> Tarball.Entry {
            Tarball.Entry(type: type, mode: mode, name: name, target: target)
        }
        #expect(throws: Never.self) { try Tarball.validate([entry("d", "./"), entry("-", "./control"), entry("l", "x/l", "../y")]) }
        #expect(throws: AspireError.self) { try Tarball.validate([entry("l", "l", "../y")]) }
        #expect(throws: AspireError.self) { try Tarball.validate([entry("l", "d", "."), entry("l", "d/e", "../..")]) }
        #expect(throws: AspireError.self) { try Tarball.validate([entry("l", "d", "sub"), entry("-", "d/file")]) }
        // Files and directories others could change are refused; links always read rwx.
        #expect(throws: AspireError.self) { try Tarball.validate([entry("-", "control", mode: "-rwxrwxr-x")]) }
        #expect(throws: AspireError.self) { try Tarball.validate([entry("d", "bin/", mode: "drwxr-xrwx")]) }
        #expect(throws: Never.self) { try Tarball.validate([entry("l", "link", "control", mode: "lrwxrwxrwx"), entry("-", "control", mode: "-rwxr-xr-x")]) }
        // Targets resolve through the archive's own links, as the kernel would: `a` is the root, so
        // `a/a/../..` is above it, though it reads as inside; the same when the link comes later.
        #expect(throws: AspireError.self) { try Tarball.validate([entry("l", "a", "."), entry("l", "x", "a/a/../../..")]) }
        #expect(throws: AspireError.self) { try Tarball.validate([entry("l", "a", "."), entry("l", "x", "a/a/../..")]) }
        #expect(throws: AspireError.self) { try Tarball.validate([entry("l", "x", "d/.."), entry("l", "d", ".")]) }
        #expect(throws: AspireError.self) { try Tarball.validate([entry("l", "p", "q"), entry("l", "q", "p")]) }
        #expect(throws: Never.self) { try Tarball.validate([entry("l", "a", "bin"), entry("l", "x", "a/../lib")]) }
        #expect(throws: AspireError.self) { try Tarball.validate([entry("h", "h", "/etc/shadow")]) }
        #expect(throws: AspireError.self) { try Tarball.validate([entry("c", "dev/null")]) }
        #expect(throws: AspireError.self) { try Tarball.validate([entry("-", "bin/su", mode: "-rwsr-xr-x")]) }
        #expect(throws: AspireError.self) { try Tarball.validate([entry("-", "/etc/cron.d/x")]) }
    }

    @Test("A sub-agent that keeps crashing ends fatal after the configured count and is not restarted again")
    func crashLoopIsFatal() async throws {
        let world = try SupervisorWorld("crash")
        let supervisor = try world.supervisor()
        let crasher = try await world.package(
            "Crasher", "1.0",
            // Alive well past the 0.8 s health window, even on a loaded machine; dead soon after.
            files: ["control": SupervisorWorld.control, "agent.sh": "#!/bin/sh\nsleep 2.5\nexit 3\n"]
        )
        let installed = await world.install(supervisor, "Crasher", "1.0", package: crasher)
        #expect(installed.resp == .success, "\(installed.message)")

        let fatal = await world.supervise(supervisor, seconds: 30) { world.status(supervisor, "Crasher")?.status == "fatal" }
        #expect(fatal, "status: \(String(describing: world.status(supervisor, "Crasher")))")
        let status = try #require(world.status(supervisor, "Crasher"))
        #expect(status.restarts == Int32(world.configuration.maxAnomalies), "restarted once per anomaly until the limit")
        #expect(status.message.contains("not restarted"))
        // More checks do not bring it back.
        _ = await world.supervise(supervisor, seconds: 2) { false }
        let after = try #require(world.status(supervisor, "Crasher"))
        #expect(after.status == "fatal")
        #expect(after.restarts == status.restarts)
        #expect(supervisor.processes(of: try #require(supervisor.record("Crasher"))).isEmpty)

        // An operator's start clears it.
        let started = await supervisor.perform(SupervisorWorld.command("agent.start", name: "Crasher"))
        #expect(started.resp == .success, "\(started.message)")
        #expect(world.status(supervisor, "Crasher")?.status == "running")
    }

    @Test("On a test clock: a killed sub-agent is reported down and not restarted before the hold-off since its start, then restarted by the next check")
    func holdoff() async throws {
        let world = try SupervisorWorld("holdoff")
        world.configuration.holdoff = .seconds(180)
        world.configuration.healthWindow = .milliseconds(300)
        let clock = ManualWallClock()
        let supervisor = try world.supervisor(clock: clock)
        let package = try await world.package("Steady", "1.0", files: ["control": SupervisorWorld.control, "agent.sh": "#!/bin/sh\nexec sleep 600\n"])
        let installed = await world.install(supervisor, "Steady", "1.0", package: package)
        #expect(installed.resp == .success, "\(installed.message)")
        let record = try #require(supervisor.record("Steady"))
        #expect(record.phase == .running(since: clock.now))

        let processes = supervisor.processes(of: record)
        #expect(!processes.isEmpty)
        for entry in processes { kill(entry.pid, SIGKILL) }
        // Gone and reaped: `control status` must not see a zombie as running.
        try await eventually("its processes to be gone") { processes.allSatisfy { kill($0.pid, 0) != 0 } }
        clock.advance(by: .seconds(30))
        await supervisor.checkAll()
        let down = try #require(world.status(supervisor, "Steady"))
        #expect(down.status == "stoped" && down.restarts == 0, "\(down)")
        #expect(down.message.contains("exited 30 s after start (1 abnormal exit in a row)"), "\(down.message)")

        clock.advance(by: .seconds(150) - .milliseconds(1))
        await supervisor.checkAll()
        #expect(world.status(supervisor, "Steady")?.restarts == 0, "1 ms before the hold-off ends")
        #expect(supervisor.processes(of: record).isEmpty)

        clock.advance(by: .milliseconds(1))
        await supervisor.checkAll()
        let back = try #require(world.status(supervisor, "Steady"))
        #expect(back.status == "running" && back.restarts == 1, "\(back)")
        #expect(supervisor.record("Steady")?.phase == .running(since: clock.now))
        #expect(!supervisor.processes(of: try #require(supervisor.record("Steady"))).isEmpty)
    }

    @Test("A memory hog under memory: 20M is killed by its cgroup and reported killed")
    func memoryHogKilled() async throws {
        let world = try SupervisorWorld("hog")
        world.configuration.holdoff = .seconds(600)
        let supervisor = try world.supervisor()
        guard supervisor.control.tracksProcesses else {
            print("SKIPPED memory hog test: no writable cgroup hierarchy here (limits use \(supervisor.resourceControlName)), so no limit can kill a process")
            return
        }
        // Grows without bound a second after start: `tail` keeps a line of /dev/zero that never ends.
        let hog = try await world.package("Hog", "1.0", files: ["control": SupervisorWorld.control, "agent.sh": "#!/bin/sh\nsleep 2.5\nexec tail /dev/zero\n"])
        let installed = await world.install(supervisor, "Hog", "1.0", package: hog, memory: "20M")
        #expect(installed.resp == .success, "\(installed.message)")
        #expect(installed.message.contains("memory 20 MiB via \(supervisor.resourceControlName)"), "\(installed.message)")
        let killed = await world.supervise(supervisor, seconds: 20) { world.status(supervisor, "Hog")?.status == "killed" }
        #expect(killed, "status: \(String(describing: world.status(supervisor, "Hog")))")
        #expect(world.status(supervisor, "Hog")?.message.contains("memory limit") == true)
    }

    @Test("A new supervisor on the same data directory adopts the running sub-agent (same pid, no restart)")
    func adoption() async throws {
        let world = try SupervisorWorld("adopt")
        let first = try world.supervisor()
        let installed = await world.install(first, "Keeper", "1.0", package: try await world.standardPackage("Keeper", "1.0"))
        #expect(installed.resp == .success, "\(installed.message)")
        let pid = try #require(world.status(first, "Keeper")).pid

        let second = try world.supervisor()
        await second.checkAll()
        let adopted = try #require(world.status(second, "Keeper"))
        #expect(adopted.status == "running")
        #expect(adopted.pid == pid)
        #expect(adopted.restarts == 0)
        #expect(SupervisorWorld.alive(pid))
    }

    @Test("Stop keeps it stopped through checks; start and restart bring it back; uninstall removes it")
    func stopStartUninstall() async throws {
        let world = try SupervisorWorld("stop")
        let supervisor = try world.supervisor()
        let installed = await world.install(supervisor, "Svc", "1.0", package: try await world.standardPackage("Svc", "1.0"))
        #expect(installed.resp == .success, "\(installed.message)")
        let pid = try #require(world.status(supervisor, "Svc")).pid

        let stopped = await supervisor.perform(SupervisorWorld.command("agent.stop", name: "Svc"))
        #expect(stopped.resp == .success, "\(stopped.message)")
        #expect(!SupervisorWorld.alive(pid))
        _ = await world.supervise(supervisor, seconds: 1) { false }
        #expect(world.status(supervisor, "Svc")?.status == "stoped", "a stopped sub-agent is not restarted")

        let started = await supervisor.perform(SupervisorWorld.command("agent.start", name: "Svc"))
        #expect(started.resp == .success, "\(started.message)")
        let running = try #require(world.status(supervisor, "Svc"))
        #expect(running.status == "running")
        let restarted = await supervisor.perform(SupervisorWorld.command("agent.restart", name: "Svc"))
        #expect(restarted.resp == .success, "\(restarted.message)")
        let again = try #require(world.status(supervisor, "Svc"))
        #expect(again.pid != running.pid)
        #expect(!SupervisorWorld.alive(running.pid))

        // Killed by hand: the next check restarts it (hold-off 0 in tests).
        kill(again.pid, SIGKILL)
        let back = await world.supervise(supervisor, seconds: 10) { (world.status(supervisor, "Svc")?.restarts ?? 0) == 1 }
        #expect(back)
        #expect(world.status(supervisor, "Svc")?.status == "running")

        let removed = await supervisor.perform(SupervisorWorld.command("agent.uninstall", name: "Svc"))
        #expect(removed.resp == .success, "\(removed.message)")
        #expect(!FileManager.default.fileExists(atPath: "\(world.root)/Svc"))
        #expect(world.status(supervisor, "Svc") == nil)
    }

    @Test("Bad commands are refused with a clear error and change nothing")
    func badCommands() async throws {
        let world = try SupervisorWorld("bad")
        let supervisor = try world.supervisor()
        let package = try await world.standardPackage("Good", "1.0")
        let cases: [(Aspire_V1_Command, ErrorCode, String)] = [
            (SupervisorWorld.command("agent.install", name: "../etc", version: "1.0", url: "file://\(package.path)", checksum: package.checksum), .invalidParams, "name"),
            (SupervisorWorld.command("agent.install", name: "Good", version: "../1", url: "file://\(package.path)", checksum: package.checksum), .invalidParams, "version"),
            (SupervisorWorld.command("agent.install", name: "Good", version: "1.0", url: "file://\(package.path)"), .invalidParams, "checksum"),
            (SupervisorWorld.command("agent.install", name: "Good", version: "1.0", url: "ftp://x/y", checksum: package.checksum), .invalidParams, "scheme"),
            (SupervisorWorld.command("agent.install", name: "Good", version: "1.0", url: "file:///nonexistent/p.tgz", checksum: package.checksum), .downloadFailed, "cannot read"),
            (SupervisorWorld.command("agent.install", name: "Good", version: "1.0", url: "file://\(package.path)", checksum: package.checksum, memory: "20Q"), .invalidParams, "limits.memory"),
            (SupervisorWorld.command("agent.start", name: "Good"), .notInstalled, "not installed"),
            (SupervisorWorld.command("agent.install", name: "Good", version: "1.0", url: "aspire://package/linux/x86_64/p.tgz", checksum: package.checksum), .downloadFailed, "not connected"),
        ]
        for (command, code, words) in cases {
            let result = await supervisor.perform(command)
            #expect(result.resp == .failed)
            #expect(result.retcode == code.rawValue, "\(command.method) \(command.subagent.name): \(result.message)")
            #expect(result.message.contains(words), "\(result.message)")
        }
        #expect(supervisor.statuses.isEmpty)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: "\(world.root)/Good"))?.filter { !$0.hasPrefix(".") }.isEmpty ?? true)

        // A package without a control script.
        let bare = try await world.package("Bare", "1.0", files: ["agent.sh": SupervisorWorld.sleeper])
        let result = await world.install(supervisor, "Bare", "1.0", package: bare)
        #expect(result.retcode == ErrorCode.badPackage.rawValue)
        #expect(result.message.contains("no control script"), "\(result.message)")

        // A user that may not enter the agents root: said in words, nothing left installed.
        chmod(world.base, 0o700)
        defer { chmod(world.base, 0o755) }
        var asNobody = SupervisorWorld.command("agent.install", name: "Good", version: "1.0", url: "file://\(package.path)", checksum: package.checksum)
        asNobody.subagent.user = "nobody"
        let refused = await supervisor.perform(asNobody)
        #expect(refused.retcode == ErrorCode.startFailed.rawValue, "\(refused.message)")
        #expect(refused.message.contains("cannot run as nobody: it may not enter \(world.base);"), "\(refused.message)")
        #expect(supervisor.statuses.isEmpty)
    }

    @Test(
        "A full disk is said to be the host's, not blamed on a package that is fine; with room again the same install succeeds",
        .enabled(if: geteuid() == 0, "mounts a small tmpfs (root)")
    )
    func fullDisk() async throws {
        let packages = try SupervisorWorld("full-src")
        let package = try await packages.standardPackage("Good", "1.0")
        let mount = NSTemporaryDirectory() + "aspire-full-disk-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        let (status, output) = try await ChildProcess.run("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mount])
        guard status == 0 else {
            rmdir(mount)
            print("skipped: this machine lets no tmpfs be mounted (\(output))")
            return
        }
        defer {
            umount2(mount, 2)  // MNT_DETACH
            rmdir(mount)
        }
        let world = try SupervisorWorld("full", under: mount)
        let supervisor = try world.supervisor()
        // The disk filled to its last few blocks (the package unpacks, its control script cannot
        // write and says nothing), then to its last byte (the package is not even copied).
        let fill = "\(mount)/fill"
        for (left, says) in [(16 * 1024, "is full"), (0, "No space left on device")] {
            try? FileManager.default.removeItem(atPath: fill)
            let free = try #require(Launcher.freeBytes(under: mount))
            try Data(count: Int(free) - left).write(to: URL(fileURLWithPath: fill))
            let refused = await world.install(supervisor, "Good", "1.0", package: package)
            #expect(refused.resp == .failed)
            #expect(![ErrorCode.badPackage, .startFailed].map(\.rawValue).contains(refused.retcode), "\(left) bytes left: \(refused.message)")
            #expect(refused.message.contains(world.root) && refused.message.contains(says), "\(left) bytes left: \(refused.message)")
            #expect(world.status(supervisor, "Good") == nil, "nothing is left half installed")
        }

        try FileManager.default.removeItem(atPath: fill)
        let installed = await world.install(supervisor, "Good", "1.0", package: package)
        #expect(installed.resp == .success, "\(installed.message)")
    }

    @Test("Run as nobody, a version's files are never then run as root; a group alone does not switch the user to root")
    func userSwitches() async throws {
        let world = try SupervisorWorld("users")
        let supervisor = try world.supervisor()
        let package = try await world.package("Svc", "1.0", files: ["control": SupervisorWorld.control, "agent.sh": SupervisorWorld.sleeper])
        var install = SupervisorWorld.command("agent.install", name: "Svc", version: "1.0", url: "file://\(package.path)", checksum: package.checksum)
        install.subagent.user = "nobody"
        let installed = await supervisor.perform(install)
        #expect(installed.resp == .success, "\(installed.message)")

        // A group alone keeps the user.
        var group = SupervisorWorld.command("agent.restart", name: "Svc")
        group.subagent.group = "nogroup"
        let regrouped = await supervisor.perform(group)
        #expect(regrouped.resp == .success, "\(regrouped.message)")
        #expect(supervisor.record("Svc")?.user == "nobody" && supervisor.record("Svc")?.group == "nogroup")

        // Back to root on the same files: refused, said why, nothing runs as root.
        var root = SupervisorWorld.command("agent.restart", name: "Svc")
        root.subagent.user = "root"
        let refused = await supervisor.perform(root)
        #expect(refused.retcode == ErrorCode.startFailed.rawValue, "\(refused.message)")
        #expect(refused.message.contains("is not run as root: its files belong to uid"), "\(refused.message)")
        let running = supervisor.processes(of: try #require(supervisor.record("Svc")))
        #expect(running.isEmpty, "nothing of Svc runs after the refusal")
        _ = await supervisor.perform(SupervisorWorld.command("agent.uninstall", name: "Svc"))
    }

    @Test("command:// runs the install command, which lays the version out itself")
    func commandInstall() async throws {
        let world = try SupervisorWorld("command")
        let supervisor = try world.supervisor()
        let package = try await world.standardPackage("Cmd", "1.0")
        let target = "\(world.root)/Cmd/1.0"
        var command = SupervisorWorld.command("agent.install", name: "Cmd", version: "1.0", url: "command://mkdir -p \(target) && tar -xzf \(package.path) -C \(target)")
        command.subagent.checksum = ""
        let result = await supervisor.perform(command)
        #expect(result.resp == .success, "\(result.message)")
        #expect(world.status(supervisor, "Cmd")?.status == "running")

        var failing = SupervisorWorld.command("agent.install", name: "Cmd2", version: "1.0", url: "command://echo no such package >&2; exit 4")
        failing.subagent.checksum = ""
        let failed = await supervisor.perform(failing)
        #expect(failed.retcode == ErrorCode.downloadFailed.rawValue)
        #expect(failed.message.contains("exited with status 4"), "\(failed.message)")
        #expect(failed.message.contains("no such package"), "\(failed.message)")
    }
}
