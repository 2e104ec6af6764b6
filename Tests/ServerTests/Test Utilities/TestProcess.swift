import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real child process of a test (server node, agent, CLI), with its output in a log file.
final class TestProcess: @unchecked Sendable {
    let pid: pid_t
    let logPath: String
    private var exitStatus: Int32?

    /// Where the package's executables were built (next to the test bundle), or ASPIRE_BIN_DIR.
    static var binDirectory: String {
        if let dir = ProcessInfo.processInfo.environment["ASPIRE_BIN_DIR"] { return dir }
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" {
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("aspire-server").path) {
                return url.path
            }
            url.deleteLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath + "/.build/debug"
    }

    init(_ executable: String, _ arguments: [String], log: String, environment: [String: String] = [:]) throws {
        let path = executable.hasPrefix("/") ? executable : "\(Self.binDirectory)/\(executable)"
        self.logPath = log
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Own process group, so a test can signal the child and everything it started.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        var env = ProcessInfo.processInfo.environment
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
            throw TestFailure("cannot start \(path): \(String(cString: strerror(status)))")
        }
        self.pid = pid
    }

    func signal(_ signal: Int32) {
        kill(self.pid, signal)
    }

    /// Reaps the process if it has exited; returns its wait status.
    func poll() -> Int32? {
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        if waitpid(self.pid, &status, WNOHANG) == self.pid {
            self.exitStatus = status
        }
        return self.exitStatus
    }

    var isRunning: Bool { self.poll() == nil }

    /// Waits up to `timeout` for the process to exit.
    @discardableResult
    func wait(timeout: Duration = .seconds(20)) async throws -> Int32 {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if let status = self.poll() { return status }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestFailure("process \(self.pid) did not exit within \(timeout)\n\(self.log)")
    }

    /// SIGTERM, then SIGKILL if it does not go.
    func stop() async {
        guard self.isRunning else { return }
        self.signal(SIGTERM)
        if (try? await self.wait(timeout: .seconds(10))) == nil {
            kill(-self.pid, SIGKILL)
            _ = try? await self.wait(timeout: .seconds(5))
        }
    }

    var log: String {
        (try? String(contentsOfFile: self.logPath, encoding: .utf8)) ?? ""
    }

    deinit {
        if self.poll() == nil {
            kill(-self.pid, SIGKILL)
            var status: Int32 = 0
            waitpid(self.pid, &status, 0)
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(
    timeout: Duration = .seconds(20),
    _ what: @autoclosure () -> String,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw TestFailure("timed out waiting for: \(what())")
}

/// A fresh directory under /tmp, removed by the caller's defer.
func makeTemporaryDirectory(_ name: String = "aspire-test") throws -> String {
    let path = "/tmp/\(name)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
