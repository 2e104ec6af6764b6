import Fleet
import Foundation
import Synchronization
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The floors and the tools users would pick instead, measured in the same run.
enum Peers {
    /// posix_spawn + waitpid of `argv`, `count` times, `concurrency` at once; returns each
    /// spawn-to-exit time in milliseconds and the runs per second.
    static func spawn(_ argv: [String], count: Int, concurrency: Int = 1) -> (latencies: [Double], perSecond: Double) {
        let latencies = Mutex<[Double]>([])
        let started = DispatchTime.now()
        DispatchQueue.concurrentPerform(iterations: concurrency) { lane in
            var own: [Double] = []
            for _ in stride(from: lane, to: count, by: concurrency) {
                let begin = DispatchTime.now()
                guard Self.runOnce(argv) == 0 else { continue }
                own.append(Double(DispatchTime.now().uptimeNanoseconds - begin.uptimeNanoseconds) / 1e6)
            }
            latencies.withLock { $0 += own }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        let all = latencies.withLock { $0 }
        return (all, Double(all.count) / seconds)
    }

    /// Runs `argv` with output to /dev/null; returns its exit status (-1 when it cannot start).
    static func runOnce(_ argv: [String]) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, argv[0], &actions, nil, &cArgs, environ) == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        return (status >> 8) & 0xFF
    }

    /// Runs `argv` and answers what it printed (stdout and stderr); throws when it fails,
    /// unless `check` is false.
    static func output(_ argv: [String], check: Bool = true) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard !check || process.terminationStatus == 0 else {
            throw HarnessError("\(argv[0]) exited with \(process.terminationStatus):\n\(output)")
        }
        return output
    }

    /// An sshd of its own on loopback with key auth, for `ssh localhost true` figures; nil
    /// (with the reason) when openssh is not installed or this is not root.
    final class SSH: Sendable {
        let port: Int
        let directory: String
        let daemon: ChildProcess

        static func start(in directory: String) async throws -> SSH? {
            let sshd = "/usr/sbin/sshd"
            guard getuid() == 0, FileManager.default.isExecutableFile(atPath: sshd),
                FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh"),
                FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh-keygen")
            else { return nil }
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
            for key in ["host_key", "user_key"] where Peers.runOnce(["/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "\(directory)/\(key)"]) != 0 {
                throw HarnessError("ssh-keygen failed")
            }
            try FileManager.default.copyItem(atPath: "\(directory)/user_key.pub", toPath: "\(directory)/authorized_keys")
            let port = Int.random(in: 20000 ..< 30000)
            let config = """
                Port \(port)
                ListenAddress 127.0.0.1
                HostKey \(directory)/host_key
                AuthorizedKeysFile \(directory)/authorized_keys
                PermitRootLogin prohibit-password
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                StrictModes no
                UsePAM no
                PidFile \(directory)/sshd.pid
                """
            try config.write(toFile: "\(directory)/sshd_config", atomically: true, encoding: .utf8)
            let daemon = try ChildProcess(sshd, ["-D", "-e", "-f", "\(directory)/sshd_config"], log: "\(directory)/sshd.log")
            let ssh = SSH(port: port, directory: directory, daemon: daemon)
            try await eventually(timeout: .seconds(10), "sshd to answer (\(directory)/sshd.log)") {
                guard daemon.isRunning else { throw HarnessError("sshd exited: \(daemon.log)") }
                return Peers.runOnce(ssh.command(["true"], multiplexed: false)) == 0
            }
            return ssh
        }

        private init(port: Int, directory: String, daemon: ChildProcess) {
            self.port = port
            self.directory = directory
            self.daemon = daemon
        }

        /// `ssh root@127.0.0.1 <remote>`; `multiplexed` reuses one master connection.
        func command(_ remote: [String], multiplexed: Bool) -> [String] {
            var argv = [
                "/usr/bin/ssh", "-i", "\(self.directory)/user_key", "-p", "\(self.port)", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            ]
            if multiplexed {
                argv += ["-o", "ControlMaster=auto", "-o", "ControlPath=\(self.directory)/cm-%p", "-o", "ControlPersist=120"]
            }
            return argv + ["root@127.0.0.1"] + remote
        }

        func stop() async {
            var argv = self.command([], multiplexed: true)
            argv.insert(contentsOf: ["-O", "exit"], at: argv.count - 1)
            _ = Peers.runOnce(argv)
            await self.daemon.stop()
        }
    }
}
