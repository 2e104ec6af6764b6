import Foundation
import Logging
import RPC
import SwiftProtobuf
import Testing
import TestSupport

@testable import Agent

#if canImport(Glibc)
import Glibc
#endif

/// The seed's daemon.init: programs without a control script, run by their spec through the
/// same supervisor and restart policy, with real processes.
@Suite("Sub-agents run by daemon.init", .serialized)
struct DaemonTests {
    /// The seed's daemon.init body for a package of `world`, as a task's parameters.
    static func daemonInit(
        _ world: SupervisorWorld, _ name: String, package: (path: String, checksum: String), _ fields: [String: Any]
    ) throws -> Aspire_V1_Command {
        var body: [String: Any] = ["name": name, "version": "1.0", "url": "file://\(package.path)", "checksum": package.checksum]
        body.merge(fields) { $1 }
        let parameters = try Google_Protobuf_Struct(jsonUTF8Data: try JSONSerialization.data(withJSONObject: body))
        var command = try CommandParameters.command(method: "daemon.init", parameters: parameters)
        command.id = UUID().uuidString
        return command
    }

    static func read(_ path: String) -> String {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("check process, stop kill:SIGNAL: started by its start command, found by its processes, restarted when it dies, stopped by the signal")
    func processAndSignal() async throws {
        let world = try SupervisorWorld("daemon-process")
        let supervisor = try world.supervisor()
        let package = try await world.package(
            "mond", "1.0",
            files: [
                "bin/mond": "#!/bin/sh\ntrap 'echo TERM > stopped.by; exit 0' TERM\necho $$ > run.pid\nwhile true; do sleep 0.1; done\n",
                "README": "mond, a program without a control script\n",
            ],
            executables: ["bin/mond"]
        )
        let result = await supervisor.perform(
            try Self.daemonInit(world, "mond", package: package, ["start": "nohup bin/mond >/dev/null 2>&1 &", "stop": "kill:TERM", "env": ["A": "1"]])
        )
        #expect(result.resp == .success, "\(result.message)")
        #expect(result.message.contains("installed mond 1.0: running"), "\(result.message)")
        let directory = "\(world.root)/mond/1.0"
        let first = try #require(Int32(Self.read("\(directory)/run.pid")))
        #expect(SupervisorWorld.alive(first) && world.status(supervisor, "mond")?.status == "running")

        kill(first, SIGKILL)
        #expect(await world.supervise(supervisor, seconds: 10) { (Int32(Self.read("\(directory)/run.pid")) ?? first) != first && world.status(supervisor, "mond")?.status == "running" })
        let second = try #require(Int32(Self.read("\(directory)/run.pid")))
        #expect(world.status(supervisor, "mond")?.restarts == 1)

        let stopped = await supervisor.perform(SupervisorWorld.command("agent.stop", name: "mond"))
        #expect(stopped.resp == .success && stopped.message == "stopped mond 1.0", "\(stopped.message)")
        #expect(Self.read("\(directory)/stopped.by") == "TERM" && !SupervisorWorld.alive(second))
    }

    @Test("check pidfile, precheck with retries, start_delay, stop process:COMMAND: a program that daemonizes out of its session is still found and stopped")
    func pidfileAndCommand() async throws {
        let world = try SupervisorWorld("daemon-pidfile")
        let supervisor = try world.supervisor()
        let pidfile = "\(world.base)/mond.pid"
        let tries = "\(world.base)/prechecks"
        let package = try await world.package(
            "mond", "1.0",
            files: [
                // Leaves its session: only the pidfile says where it went.
                "daemonize": "#!/bin/sh\nsetsid sh -c 'echo $$ > \(pidfile); exec sleep 100000' </dev/null >/dev/null 2>&1 &\nexit 0\n",
                // Ready on its third try.
                "ready": "#!/bin/sh\necho x >> \(tries)\n[ $(wc -l < \(tries)) -ge 3 ]\n",
            ],
            executables: ["daemonize", "ready"]
        )
        let result = await supervisor.perform(
            try Self.daemonInit(world, "mond", package: package, [
                "precheck": "./ready", "precheck_retries": 3, "start": "./daemonize", "start_delay": 1, "check": "pidfile",
                "pidfile": pidfile, "stop": "process:kill $(cat \(pidfile))", "stop_timeout": 5, "check_interval": 1,
            ])
        )
        #expect(result.resp == .success, "\(result.message)")
        #expect(Self.read(tries).split(separator: "\n").count == 3, "the precheck ran until it succeeded")
        let pid = try #require(Int32(Self.read(pidfile)))
        let status = try #require(world.status(supervisor, "mond"))
        #expect(status.status == "running" && status.pid == pid, "the pidfile's process is the one reported")

        let stopped = await supervisor.perform(SupervisorWorld.command("agent.stop", name: "mond"))
        #expect(stopped.resp == .success && stopped.message == "stopped mond 1.0", "\(stopped.message)")
        #expect(!SupervisorWorld.alive(pid))

        // A precheck that never passes: the start fails, saying why, and nothing is left.
        try "".write(toFile: tries, atomically: true, encoding: .utf8)
        let never = await supervisor.perform(
            try Self.daemonInit(world, "never", package: package, ["precheck": "false", "precheck_retries": 1, "start": "./daemonize"])
        )
        #expect(never.resp == .failed && never.message.contains("precheck 'false' failed 2 times"), "\(never.message)")
    }

    @Test("check socket, Unix and TCP: up while it accepts; a stop it ignores ends in SIGKILL after stop_timeout")
    func socketAndTimeout() async throws {
        let world = try SupervisorWorld("daemon-socket")
        let supervisor = try world.supervisor()
        let path = "\(world.base)/mond.sock"
        // A loopback address of its own: any port is free on it.
        let tcp = "\(Loopback.address()):\(Int.random(in: 20000 ... 30000))"
        // Ignores SIGTERM, so only the timeout's SIGKILL ends it.
        let server = """
            #!/usr/bin/env python3
            import os, signal, socket, sys, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if sys.argv[1] == "unix":
                s = socket.socket(socket.AF_UNIX)
                try: os.unlink(sys.argv[2])
                except FileNotFoundError: pass
                s.bind(sys.argv[2])
            else:
                host, port = sys.argv[2].rsplit(":", 1)
                s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((host, int(port)))
            s.listen(16)
            while True:
                c, _ = s.accept(); c.close()
            """
        let package = try await world.package("mond", "1.0", files: ["serve": server], executables: ["serve"])
        for (name, kind, target, socket) in [("unixd", "unix", path, path), ("tcpd", "tcp", tcp, tcp)] {
            let result = await supervisor.perform(
                try Self.daemonInit(world, name, package: package, [
                    "start": "exec ./serve \(kind) \(target)", "start_delay": 1, "check": "socket", "socket": socket, "stop": "kill:TERM",
                    "stop_timeout": 1,
                ])
            )
            #expect(result.resp == .success, "\(name): \(result.message)")
            let pid = try #require(world.status(supervisor, name)).pid
            #expect(pid > 0 && world.status(supervisor, name)?.status == "running")
            let stopped = await supervisor.perform(SupervisorWorld.command("agent.stop", name: name))
            #expect(stopped.message.contains("killed with SIGKILL after its 1 s stop timeout"), "\(name): \(stopped.message)")
            #expect(!SupervisorWorld.alive(pid))
        }
    }

    @Test("hits: a daemon that dies at once is fatal after its own count of abnormal exits")
    func hits() async throws {
        let world = try SupervisorWorld("daemon-hits")
        world.configuration.maxAnomalies = 10
        world.configuration.healthWindow = .milliseconds(300)
        let supervisor = try world.supervisor()
        let package = try await world.package(
            "flaky", "1.0", files: ["run": "#!/bin/sh\necho started >> starts\nsleep 2\nexit 3\n"], executables: ["run"]
        )
        let result = await supervisor.perform(
            try Self.daemonInit(world, "flaky", package: package, ["start": "./run &", "limits": ["hits": "1"]])
        )
        #expect(result.resp == .success, "\(result.message)")
        // Each run outlives the 0.3 s health window by far (a loaded machine starts it late), then dies.
        #expect(await world.supervise(supervisor, seconds: 30) { world.status(supervisor, "flaky")?.status == "fatal" })
        let starts = Self.read("\(world.root)/flaky/1.0/starts").split(separator: "\n").count
        #expect(starts == 2, "the first start and one restart, then fatal: \(starts)")
    }

    @Test("Bad specs are refused before anything runs: no start, an unknown check, a pidfile check without a pidfile, an unknown signal, a missing user")
    func refusals() async throws {
        let world = try SupervisorWorld("daemon-refusals")
        let supervisor = try world.supervisor()
        let package = try await world.package("mond", "1.0", files: ["run": "#!/bin/sh\nexec sleep 1000\n"], executables: ["run"])
        for (fields, why) in [
            ([String: Any](), "start"), (["start": "./run", "check": "ping"], "check 'ping'"), (["start": "./run", "check": "pidfile"], "pidfile"),
            (["start": "./run", "stop": "kill:NOPE"], "names no signal"), (["start": "./run", "pidfile": "relative.pid"], "absolute"),
        ] as [([String: Any], String)] {
            #expect(throws: AspireError.self, "\(why)") { _ = try Self.daemonInit(world, "mond", package: package, fields) }
        }
        let nobody = await supervisor.perform(
            try Self.daemonInit(world, "mond", package: package, ["start": "exec ./run", "user": "no-such-user-here"])
        )
        #expect(nobody.resp == .failed && nobody.message.contains("no-such-user-here"), "\(nobody.message)")
        #expect(world.status(supervisor, "mond") == nil)
    }
}

/// Seed 004: the tools the agent needs are checked at start and said by name.
@Suite("Required tools")
struct RequiredToolsTests {
    @Test("Each tool missing from the path is named with what needs it; none is missing on this host's root path")
    func missing() throws {
        let empty = NSTemporaryDirectory() + "aspire-no-tools-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: empty) }
        #expect(Tools.missing(on: empty) == [
            "sh (control scripts, install commands)", "bash (sync.bash, schedules)", "tar (sub-agent packages, plugins)", "gzip (compressed packages)",
        ])
        // Only tar there: the others are still named.
        #expect(FileManager.default.createFile(atPath: "\(empty)/tar", contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755]))
        #expect(!Tools.missing(on: empty).contains { $0.hasPrefix("tar ") } && Tools.missing(on: empty).count == 3)
        #expect(Tools.missing().isEmpty, "this machine has them all")
    }
}

/// The seed's `stop` forms, read once for the server and the agent.
@Suite("daemon.init stop forms")
struct DaemonStopTests {
    @Test("process:COMMAND and a bare command run a command; kill:SIGNAL by name, SIG name or number; nothing is kill:TERM; the rest refused")
    func forms() throws {
        #expect(try DaemonStop(parsing: "process:/opt/mond/stop --now", owner: "t") == .command("/opt/mond/stop --now"))
        #expect(try DaemonStop(parsing: "/opt/mond/stop", owner: "t") == .command("/opt/mond/stop"))
        #expect(try DaemonStop(parsing: "kill:HUP", owner: "t") == .signal(SIGHUP))
        #expect(try DaemonStop(parsing: "kill:SIGUSR2", owner: "t") == .signal(SIGUSR2))
        #expect(try DaemonStop(parsing: "kill:9", owner: "t") == .signal(9))
        #expect(try DaemonStop(parsing: "", owner: "t") == .signal(SIGTERM))
        for bad in ["kill:", "kill:NOPE", "kill:0", "kill:65", "process:"] {
            #expect(throws: AspireError.self, "\(bad)") { try DaemonStop(parsing: bad, owner: "t") }
        }
    }
}
