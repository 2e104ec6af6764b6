import Foundation
import Logging
import RPC
import Testing
import TestSupport

@testable import Agent

#if canImport(Glibc)
import Glibc
#endif

@Suite("Head and tail buffer")
struct HeadTailBufferTests {
    @Test("Keeps everything below the cap")
    func underCap() {
        var buffer = HeadTailBuffer(capacity: 10)
        buffer.append(Array("abcdef".utf8))
        #expect(buffer.bytes == Array("abcdef".utf8))
        #expect(!buffer.isTruncated)
        #expect(buffer.totalBytes == 6)
    }

    @Test("Keeps the first and last halves when over the cap, in any chunking")
    func overCap() {
        let text = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)
        for chunk in [1, 3, 7, 36] {
            var buffer = HeadTailBuffer(capacity: 10)
            var index = 0
            while index < text.count {
                buffer.append(Array(text[index ..< min(index + chunk, text.count)]))
                index += chunk
            }
            let kept = String(decoding: buffer.bytes, as: UTF8.self)
            #expect(kept.hasPrefix("01234"), "chunk \(chunk): \(kept)")
            #expect(kept.hasSuffix("vwxyz"), "chunk \(chunk): \(kept)")
            #expect(kept.contains("[26 bytes omitted]"))
            #expect(buffer.totalBytes == 36)
        }
    }
}

extension HeadTailBufferTests {
    @Test("Random chunkings of random output keep exactly the first and last halves")
    func randomChunkings() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0 ..< 200 {
            let capacity = Int.random(in: 2 ... 64, using: &generator)
            let text = (0 ..< Int.random(in: 0 ... 300, using: &generator)).map { _ in UInt8.random(in: 97 ... 122, using: &generator) }
            var buffer = HeadTailBuffer(capacity: capacity)
            var index = 0
            while index < text.count {
                let end = min(text.count, index + Int.random(in: 1 ... 2 * capacity, using: &generator))
                buffer.append(Array(text[index ..< end]))
                index = end
            }
            let head = capacity / 2
            let tail = capacity - head
            let expected: [UInt8] =
                text.count <= capacity
                ? text : Array(text.prefix(head)) + Array("\n... [\(text.count - capacity) bytes omitted] ...\n".utf8) + Array(text.suffix(tail))
            #expect(buffer.bytes == expected, "capacity \(capacity), \(text.count) bytes")
            #expect(buffer.totalBytes == UInt64(text.count))
        }
    }
}

@Suite("Agent state and outbox")
struct AgentStateTests {
    @Test("The data directory is made 0700, and one left open to others is tightened at start")
    func privateDirectory() throws {
        let directory = "/tmp/aspire-state-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func mode() throws -> Int { (try FileManager.default.attributesOfItem(atPath: directory)[.posixPermissions] as? NSNumber)?.intValue ?? -1 }
        _ = try AgentState(directory: directory)
        #expect(try mode() == 0o700)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory)
        _ = try AgentState(directory: directory)
        #expect(try mode() == 0o700)
    }

    @Test("A command runs once; its stored result is re-sent until acknowledged")
    func admission() throws {
        let directory = "/tmp/aspire-state-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = try AgentState(directory: directory)
        guard case .run = try state.admit("c1") else { Issue.record("first admission must run"); return }
        guard case .running = try state.admit("c1") else { Issue.record("second admission while running"); return }
        var result = Aspire_V1_CommandResult()
        result.id = "c1"
        result.resp = .success
        try state.finish(result)
        #expect(state.pendingResults().map(\.id) == ["c1"])
        guard case .resend(let stored) = try state.admit("c1") else { Issue.record("finished command must be re-sent"); return }
        #expect(stored.id == "c1")
        state.acknowledge(["c1"])
        #expect(state.pendingResults().isEmpty)
        guard case .acknowledged = try state.admit("c1") else { Issue.record("acknowledged command must not run"); return }
    }

    @Test("A command that was running when the agent died is reported interrupted, not run again")
    func interrupted() throws {
        let directory = "/tmp/aspire-state-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        guard case .run = try AgentState(directory: directory).admit("c2") else { Issue.record("must run"); return }
        let restarted = try AgentState(directory: directory)
        guard case .interrupted = try restarted.admit("c2") else { Issue.record("must be interrupted"); return }
    }

    @Test("A finished command keeps its marker until its result is flushed; before that a restart re-sends the result")
    func flushOrder() throws {
        let directory = "/tmp/aspire-state-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = try AgentState(directory: directory)
        let markers = { try FileManager.default.contentsOfDirectory(atPath: "\(directory)/running") }
        guard case .run = try state.admit("c3") else { Issue.record("must run"); return }
        var result = Aspire_V1_CommandResult()
        result.id = "c3"
        result.resp = .success
        try state.finish(result)
        #expect(try markers().count == 1)
        // The agent dies before the flush: the stored result wins over the marker.
        guard case .resend(let stored) = try AgentState(directory: directory).admit("c3") else {
            Issue.record("a result in the outbox must be re-sent, not reported interrupted")
            return
        }
        #expect(stored.resp == .success)
        state.flush()
        #expect(try markers().isEmpty)
        #expect(state.pendingResults().map(\.id) == ["c3"])
    }

    @Test("Command ids never become paths: traversal stays inside the data directory")
    func traversal() throws {
        let directory = "/tmp/aspire-state-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = try AgentState(directory: directory)
        let id = "../../../../tmp/aspire-escape-\(UUID().uuidString.prefix(8))"
        _ = try state.admit(id)
        var result = Aspire_V1_CommandResult()
        result.id = id
        try state.finish(result)
        #expect(!FileManager.default.fileExists(atPath: "/tmp/\(id.split(separator: "/").last!)"))
        #expect(state.pendingResults().map(\.id) == [id])
    }

    @Test("The AgentSN is made once and kept")
    func agentSN() throws {
        let directory = "/tmp/aspire-state-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try AgentState(directory: directory).agentSN()
        let second = try AgentState(directory: directory).agentSN()
        #expect(first == second)
        #expect(UUID(uuidString: first) != nil)
    }
}

@Suite("Resolver and backoff")
struct ResolverTests {
    @Test("The first connection waits up to the step (at most a minute) only on a host that just booted, or as told")
    func startDelay() throws {
        let step: Duration = .seconds(600)
        #expect(StartDelay.auto.ceiling(uptime: .seconds(40), step: step) == .seconds(60))
        #expect(StartDelay.auto.ceiling(uptime: .seconds(40), step: .seconds(20)) == .seconds(20))
        #expect(StartDelay.auto.ceiling(uptime: .seconds(299), step: step) == .seconds(60))
        #expect(StartDelay.auto.ceiling(uptime: .seconds(300), step: step) == .zero)
        #expect(StartDelay.auto.ceiling(uptime: nil, step: step) == .zero)
        #expect(try StartDelay(parsing: "15").ceiling(uptime: .seconds(86_400), step: step) == .seconds(15))
        #expect(try StartDelay(parsing: "0").ceiling(uptime: .seconds(10), step: step) == .zero)
        #expect(try StartDelay(parsing: "auto") == .auto)
        for bad in ["-1", "3601", "soon", ""] {
            #expect(throws: AspireError.self) { try StartDelay(parsing: bad) }
        }
        // /proc/uptime's first field, in seconds with a fraction.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("uptime-\(UUID().uuidString)").path
        try "123.45 678.90\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(StartDelay.uptime(file: file) == .milliseconds(123_450))
        #expect(StartDelay.uptime(file: "/nonexistent/uptime") == nil)
    }

    @Test("--resolve entries parse as curl's and replace DNS for that name and port only")
    func overrides() async throws {
        let entry = try ResolveOverride(parsing: "aspire.test:8443:127.0.0.2,[::1],127.0.0.3")
        #expect(entry.addresses == ["127.0.0.2", "::1", "127.0.0.3"])
        let resolver = SystemResolver(overrides: [entry])
        let resolved = try await resolver.resolve(HostPort(host: "aspire.test", port: 8443))
        #expect(resolved.map(\.host) == ["127.0.0.2", "::1", "127.0.0.3"])
        #expect(throws: AspireError.self) { try ResolveOverride(parsing: "aspire.test:8443") }
        #expect(throws: AspireError.self) { try ResolveOverride(parsing: "aspire.test:x:127.0.0.1") }
        #expect(throws: AspireError.self) { try ResolveOverride(parsing: "aspire.test:8443:not-an-ip") }
    }

    @Test(
        "A name listed on several /etc/hosts lines resolves to all its addresses, in order",
        .enabled(if: access("/etc/hosts", W_OK) == 0, "needs a writable /etc/hosts")
    )
    func etcHosts() async throws {
        let name = "multi-\(UUID().uuidString.prefix(8).lowercased()).aspire.test"
        let original = try String(contentsOfFile: "/etc/hosts", encoding: .utf8)
        defer { try? original.write(toFile: "/etc/hosts", atomically: false, encoding: .utf8) }
        let lines = ["127.0.0.21", "127.0.0.22", "127.0.0.23"].map { "\($0) \(name)" }.joined(separator: "\n")
        try (original + (original.hasSuffix("\n") ? "" : "\n") + lines + "\n").write(toFile: "/etc/hosts", atomically: false, encoding: .utf8)
        let resolved = try await SystemResolver().resolve(HostPort(host: name, port: 1))
        #expect(resolved.map(\.host) == ["127.0.0.21", "127.0.0.22", "127.0.0.23"])
    }

    @Test("An unknown name is an error naming it")
    func unknownName() async {
        await #expect(throws: AspireError.self) {
            try await SystemResolver().resolve(HostPort(host: "no-such-host.invalid", port: 1))
        }
    }

    @Test("Full-jitter backoff stays within [0, min(cap, base·2^n)]")
    func backoff() {
        for attempt in 1 ... 12 {
            let ceiling = min(10_000, 500 * (1 << (attempt - 1)))
            for _ in 0 ..< 50 {
                let delay = Backoff.fullJitter(attempt: attempt, base: .milliseconds(500), cap: .seconds(10))
                #expect(delay >= .zero && delay <= .milliseconds(ceiling))
            }
        }
    }
}

@Suite("Agent settings from config commands")
struct AgentSettingsTests {
    @Test("A config applies step, servers and tags, is saved, and loads back")
    func applyAndSave() throws {
        let directory = NSTemporaryDirectory() + "aspire-settings-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = Aspire_V1_ConfigParams()
        config.step = 1200
        config.svrlist = "192.168.9.1:1234,"
        config.tags = ["svc": "ecs"]
        let settings = try AgentSettings().applying(config)
        #expect(settings.step == 1200 && settings.servers == ["192.168.9.1:1234"] && settings.tags == ["svc": "ecs"])
        try settings.save(in: directory)
        #expect(AgentSettings.load(from: directory) == settings)

        // Only what a config names changes.
        var tagsOnly = Aspire_V1_ConfigParams()
        tagsOnly.tags = ["env": "prod"]
        let next = try settings.applying(tagsOnly)
        #expect(next.step == 1200 && next.servers == ["192.168.9.1:1234"] && next.tags == ["svc": "ecs", "env": "prod"])
        #expect(AgentSettings.load(from: "\(directory)/missing") == AgentSettings())
    }

    @Test("Bad values are refused with 3021 and change nothing")
    func refusals() {
        var config = Aspire_V1_ConfigParams()
        config.step = 5
        #expect(throws: AspireError.self) { try AgentSettings().applying(config) }
        config = Aspire_V1_ConfigParams()
        config.svrlist = "no port here"
        let error = #expect(throws: AspireError.self) { try AgentSettings().applying(config) }
        #expect(error?.code == .invalidParams)
        config = Aspire_V1_ConfigParams()
        config.tags = ["": "x"]
        #expect(throws: AspireError.self) { try AgentSettings().applying(config) }
    }
}

@Suite("Agent state: admission under duplicates")
struct AdmissionRaceTests {
    @Test("The same command id delivered many times at once runs once and is never taken for an interrupted one")
    func concurrentDuplicates() async throws {
        let directory = NSTemporaryDirectory() + "aspire-admit-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = try AgentState(directory: directory)
        for round in 0 ..< 20 {
            let id = "dup-\(round)"
            let outcomes = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0 ..< 16 {
                    group.addTask {
                        switch try state.admit(id) {
                        case .run: return "run"
                        case .running: return "running"
                        case .resend: return "resend"
                        case .acknowledged: return "acknowledged"
                        case .interrupted: return "interrupted"
                        }
                    }
                }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 == "run" }.count == 1, "\(outcomes)")
            #expect(!outcomes.contains("interrupted"), "\(outcomes)")
            var result = Aspire_V1_CommandResult()
            result.id = id
            result.resp = .success
            try state.finish(result)
            if case .resend(let stored) = try state.admit(id) {
                #expect(stored.id == id)
            } else {
                Issue.record("a finished id must be answered from the outbox")
            }
        }
    }
}

@Suite("Detached processes")
struct DetachedProcessTests {
    @Test("A detached child gets /dev/null for its streams and none of the parent's other descriptors, even one not marked close-on-exec")
    func inheritsNothing() async throws {
        let directory = try makeTemporaryDirectory("detached")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Held open for writing, as a file being written while a child starts.
        let held = open("\(directory)/held", O_WRONLY | O_CREAT, 0o600)
        try #require(held > 2)
        defer { close(held) }
        let listing = "\(directory)/fds"
        let pid = try DetachedProcess.spawn("/bin/sh", ["sh", "-c", "ls -l /proc/self/fd > \(listing).tmp; mv \(listing).tmp \(listing)"])
        #expect(pid > 0)
        try await eventually("the child listed its descriptors") { FileManager.default.fileExists(atPath: listing) }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let lines = try String(contentsOfFile: listing, encoding: .utf8).split(separator: "\n")
        #expect(!lines.contains { $0.contains("\(directory)/held") }, "the held file reached the child: \(lines)")
        #expect(lines.contains { $0.hasSuffix(" 0 -> /dev/null") }, "\(lines)")
        #expect(lines.contains { $0.hasSuffix(" 2 -> /dev/null") }, "\(lines)")
    }
}
