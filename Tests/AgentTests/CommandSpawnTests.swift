import Foundation
import Subprocess
import Testing

@testable import Agent

@Suite("Commands started straight into their group (clone3)")
struct CommandSpawnTests {
    /// Linux 5.7 and later have clone3 with CLONE_INTO_CGROUP and pidfds: this kernel must take
    /// the direct way, not fall back without saying.
    static var kernelHasIt: Bool {
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = release.split(separator: ".").prefix(2).compactMap { Int($0.prefix { $0.isNumber }) }
        return parts.count == 2 && (parts[0], parts[1]) >= (5, 7)
    }

    @Test("On Linux 5.7+ the process starts directly: its pid is the shell's, its output read to the end, its exit and signal seen, and it is reaped",
        .enabled(if: Self.kernelHasIt, "needs Linux 5.7"))
    func startsDirectly() async throws {
        let request = CommandSpawn.Request(
            executable: "/bin/sh", arguments: ["-c", "echo $$; echo to-stderr >&2; head -c 300000 /dev/zero"],
            environment: ["PATH": "/usr/bin:/bin"], directory: "/", group: nil, identity: nil
        )
        let process = try #require(try await CommandSpawn.start(request))
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        try await process.standardOutput.forEach { stdout += $0 }
        try await process.standardError.forEach { stderr += $0 }
        #expect(await process.termination() == .exited(0))
        let firstLine = stdout.prefix { $0 != UInt8(ascii: "\n") }
        #expect(String(decoding: firstLine, as: UTF8.self) == "\(process.pid)")
        #expect(stdout.count == firstLine.count + 1 + 300_000)
        #expect(String(decoding: stderr, as: UTF8.self) == "to-stderr\n")
        // Reaped: no zombie left under the pid.
        #expect(kill(process.pid, 0) == -1 && errno == ESRCH)

        let killed = try #require(
            try await CommandSpawn.start(
                CommandSpawn.Request(executable: "/bin/sh", arguments: ["-c", "kill -9 $$"], environment: [:], directory: nil, group: nil, identity: nil)
            )
        )
        try await killed.standardOutput.forEach { _ in }
        try await killed.standardError.forEach { _ in }
        #expect(await killed.termination() == .signaled(SIGKILL))
    }

    @Test("A failed exec or chdir says which step and why", .enabled(if: Self.kernelHasIt, "needs Linux 5.7"))
    func execFailure() async throws {
        let request = CommandSpawn.Request(
            executable: "/nonexistent/shell", arguments: [], environment: [:], directory: "/", group: nil, identity: nil
        )
        do {
            _ = try await CommandSpawn.start(request)
            Issue.record("started what does not exist")
        } catch let failure as CommandSpawn.SpawnFailure {
            #expect(failure.step == "execve" && failure.errno == ENOENT, "\(failure)")
        }
        var missingDirectory = request
        missingDirectory.executable = "/bin/true"
        missingDirectory.directory = "/nonexistent-\(UUID().uuidString)"
        do {
            _ = try await CommandSpawn.start(missingDirectory)
            Issue.record("started in a directory that does not exist")
        } catch let failure as CommandSpawn.SpawnFailure {
            #expect(failure.step == "chdir" && failure.errno == ENOENT, "\(failure)")
        }
    }
}
