import Foundation
import Logging
import RPC
import Synchronization
import Testing
import TestSupport

@testable import Agent

#if canImport(Glibc)
import Glibc
#endif

/// Real plugin.sh scripts run by the plugin runner with the bash executor.
@Suite("Plugins", .serialized)
struct PluginRunnerTests {
    /// What the handlers received.
    final class Collected: Sendable {
        let metrics = Mutex<[PluginMetric]>([])
        let events = Mutex<[String]>([])
    }

    static var runUser: String { geteuid() == 0 ? "nobody" : (ProcessInfo.processInfo.environment["USER"] ?? "root") }

    static func runner(_ plugins: [String: String], reenableAfter: Duration = .seconds(86_400)) throws -> (PluginRunner, Collected, String) {
        let directory = NSTemporaryDirectory() + "aspire-plugins-\(UUID().uuidString.prefix(8))"
        for (name, script) in plugins {
            try FileManager.default.createDirectory(atPath: "\(directory)/\(name)", withIntermediateDirectories: true)
            try script.write(toFile: "\(directory)/\(name)/plugin.sh", atomically: true, encoding: .utf8)
            chmod("\(directory)/\(name)/plugin.sh", 0o755)
            chmod("\(directory)/\(name)", 0o755)
        }
        chmod(directory, 0o755)
        let collected = Collected()
        let runner = PluginRunner(
            directory: directory, host: "web-1", bash: BashExecutor(logger: Logger(label: "test")), reenableAfter: reenableAfter,
            metrics: { batch in collected.metrics.withLock { $0 += batch } },
            events: { _, message in collected.events.withLock { $0.append(message) } },
            logger: Logger(label: "test.plugins")
        )
        return (runner, collected, directory)
    }

    static let load = """
        #!/bin/bash
        echo "[{\\"name\\": \\"one\\", \\"timestamp\\": 0, \\"tags\\": {\\"user\\": \\"$(id -un)\\", \\"cwd\\": \\"$(basename "$PWD")\\"}, \\"value\\": 1}]"
        """

    @Test("A periodic plugin runs on its period as nobody in its directory; its metrics are renamed, tagged, and the run is a metric")
    func periodic() async throws {
        let (runner, collected, directory) = try Self.runner(["load": Self.load])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try runner.configure([PluginConfig(name: "load", period: 1, user: Self.runUser)])
        let task = Task { await runner.run() }
        // A generous wait: the suite shares two cores with every other; on failure, what the runs said.
        try await eventually(
            timeout: .seconds(60),
            "two periodic runs (metrics: \(collected.metrics.withLock { $0.map { "\($0.name)=\($0.value)" } }), events: \(collected.events.withLock { $0 }))"
        ) {
            collected.metrics.withLock { $0.filter { $0.name == "plugin.load.one" }.count } >= 2
        }
        task.cancel()
        await task.value
        let one = try #require(collected.metrics.withLock { $0.first { $0.name == "plugin.load.one" } })
        #expect(one.tags == ["user": Self.runUser, "cwd": "load", "host": "web-1"])
        #expect(abs(Double(one.timestamp) - Date().timeIntervalSince1970) < 60, "a 0 timestamp became now")
        let status = collected.metrics.withLock { $0.filter { $0.name == "plugin.load" } }
        #expect(!status.isEmpty && status.allSatisfy { $0.value == 0 })
        #expect(collected.events.withLock { $0 }.isEmpty)
        let state = try #require(runner.states.first)
        #expect(state.enabled && !state.running && state.lastStatus == 0 && state.lastRun != nil)
    }

    @Test("A run the stopping agent cuts short is not the plugin's failure: no event, no metric, not marked running")
    func stoppedMidRun() async throws {
        let marker = "31.\(Int.random(in: 100_000 ... 999_999))"
        let (runner, collected, directory) = try Self.runner(["slow": "#!/bin/sh\nsleep \(marker)\necho '[]'\n"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try runner.configure([PluginConfig(name: "slow", period: 1, user: Self.runUser, timeout: 60)])
        let task = Task { await runner.run() }
        try await eventually(timeout: .seconds(60), "the run to start") { runner.states.first?.running == true }
        task.cancel()
        await task.value
        #expect(collected.events.withLock { $0 }.isEmpty, "\(collected.events.withLock { $0 })")
        #expect(collected.metrics.withLock { $0 }.isEmpty)
        #expect(runner.states.first?.running == false)
    }

    @Test("An on-demand plugin runs only when asked, with the param and timeout given; a second run while one goes is refused")
    func onDemand() async throws {
        let (runner, collected, directory) = try Self.runner([
            "probe": "#!/bin/sh\nsleep \"${2:-0}\"\necho \"[{\\\"name\\\": \\\"got\\\", \\\"value\\\": ${1:-0}}]\"\n",
            "slow": "#!/bin/sh\nsleep 1.5\necho '[]'\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try runner.configure([PluginConfig(name: "probe", period: 0, user: Self.runUser), PluginConfig(name: "slow", period: 0, user: Self.runUser)])
        #expect(runner.takeDue(now: Date().addingTimeInterval(86_400)).isEmpty, "period 0: never by itself, not even a day later")
        let task = Task { await runner.run() }

        let run = try await runner.runNow("probe", timeout: 5, param: "7")
        #expect(run.metrics.first { $0.name == "plugin.probe.got" }?.value == 7)
        #expect(collected.metrics.withLock { $0.contains { $0.name == "plugin.probe.got" && $0.value == 7 } })

        let first = Task { try await runner.runNow("slow") }
        try await eventually(timeout: .seconds(5), "slow to be running") { runner.states.contains { $0.config.name == "slow" && $0.running } }
        let refused = await #expect(throws: AspireError.self) { try await runner.runNow("slow") }
        #expect(refused?.code == .busy && refused?.cause.contains("is running") == true)
        #expect(try await first.value.result.retcode == 0)
        await #expect(throws: AspireError.self) { try await runner.runNow("nothing") }
        task.cancel()
        await task.value
    }

    @Test("Bad output, a failing or hanging plugin become events and a status metric; the runner keeps going")
    func badPlugins() async throws {
        let (runner, collected, directory) = try Self.runner([
            "noisy": "#!/bin/sh\necho 'Traceback: something broke'\n",
            "failing": "#!/bin/sh\necho 'no database' >&2\nexit 3\n",
            "hanging": "#!/bin/sh\nsleep 30\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try runner.configure(["noisy", "failing", "hanging", "missing"].map { PluginConfig(name: $0, period: 0, user: Self.runUser, timeout: 1) })

        let noisy = try await runner.runNow("noisy")
        #expect(noisy.problems == ["plugin noisy printed no JSON list of metrics: 'Traceback: something broke'"])
        let failing = try await runner.runNow("failing")
        #expect(failing.problems == ["plugin.sh exited with status 3: no database"])
        let hanging = try await runner.runNow("hanging")
        #expect(hanging.result.retcode == ErrorCode.timeout.rawValue, "\(hanging.result.message)")
        let missing = try await runner.runNow("missing")
        #expect(missing.problems.first?.hasPrefix("no plugin.sh at ") == true)

        let events = collected.events.withLock { $0 }
        #expect(events.count == 4, "\(events)")
        #expect(events.contains { $0.hasPrefix("plugin noisy: plugin noisy printed no JSON list") })
        let statuses = Dictionary(collected.metrics.withLock { $0 }.filter { !$0.name.dropFirst(7).contains(".") }.map { ($0.name, $0.value) }) { a, _ in a }
        #expect(statuses["plugin.noisy"] == 0 && statuses["plugin.failing"] == 3)
        #expect(statuses["plugin.hanging"] == Double(ErrorCode.timeout.rawValue))
        #expect(runner.states.first { $0.config.name == "failing" }?.lastStatus == 3)
    }

    @Test("A disabled plugin does not run, says until when, and enables itself again after the set time")
    func disableAndReenable() async throws {
        let (runner, collected, directory) = try Self.runner(["load": Self.load], reenableAfter: .seconds(2))
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try runner.configure([PluginConfig(name: "load", period: 1, user: Self.runUser)])
        try runner.disable("load")
        let state = try #require(runner.states.first)
        #expect(!state.enabled && state.disabledUntil != nil)
        let refused = await #expect(throws: AspireError.self) { try await runner.runNow("load") }
        #expect(refused?.cause.contains("disabled until") == true)

        let until = try #require(state.disabledUntil)
        #expect(runner.takeDue(now: until.addingTimeInterval(-0.001)).isEmpty, "not while disabled, up to the last millisecond")
        #expect(runner.states.first?.enabled == false)
        let task = Task { await runner.run() }
        try await eventually(timeout: .seconds(60), "the plugin to run again by itself") {
            collected.metrics.withLock { $0.contains { $0.name == "plugin.load.one" } }
        }
        #expect(runner.states.first?.enabled == true)
        try runner.disable("load")
        try runner.enable("load")
        #expect(runner.states.first?.enabled == true)
        task.cancel()
        await task.value
        #expect(throws: AspireError.self) { try runner.disable("nothing") }
        #expect(throws: AspireError.self) { try runner.configure([PluginConfig(name: "../x", period: 1)]) }
    }

    @Test("A plugin run as root must belong to root and be writable by no one else", .enabled(if: geteuid() == 0, "needs root"))
    func rootPluginOwnership() async throws {
        let (runner, _, directory) = try Self.runner(["load": Self.load])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try runner.configure([PluginConfig(name: "load", period: 0, user: "root")])
        #expect(try await runner.runNow("load").problems.isEmpty)
        chmod("\(directory)/load/plugin.sh", 0o777)
        let run = try await runner.runNow("load")
        #expect(run.problems.first?.contains("writable by no one else") == true, "\(run.problems)")
        #expect(run.result.retcode == ErrorCode.badPackage.rawValue)
    }
}
