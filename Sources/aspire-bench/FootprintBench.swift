import ArgumentParser
import Fleet
import Foundation
import RPC
import TestSupport

/// P9: what a connected, idle boot agent holds in memory, before and after it hands back the
/// pages start-up mapped.
struct FootprintBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "footprint",
        abstract: "P9 agent footprint: a real boot's RSS (anonymous and file-backed) connected, before and after it releases the pages start-up mapped, and after idling."
    )

    @OptionGroup var options: BenchOptions

    @Option(help: "Seconds of idling (status reports every 5 s) after the release before the idle sample (default 60; 10 with --quick).")
    var idle: Int?

    func run() async throws {
        try await Self.measure(self.options, idle: self.idle).print(jsonOnly: self.options.jsonOnly)
    }

    static func measure(_ options: BenchOptions, idle: Int? = nil) async throws -> Report {
        let idle = idle ?? (options.quick ? 10 : 60)
        return try await withHarness(options, name: "footprint") { harness in
            // Status reports every 5 s: idling includes the agent's periodic work.
            let node = try await harness.startNode(listen: "127.0.0.1:0", arguments: ["--status-step", "5"])
            let agent = try harness.startAgent(
                "agent", servers: [node.dialAddress], caFile: node.caFile, tokenFile: node.enrollTokenFile, logLevel: "info"
            )
            try await node.withAdmin { admin in try await admin.waitForHost(agent.agentSN, status: "online") }
            // The largest footprint between connecting and the release, then what is left.
            var connected: ProcessUsage?
            let deadline = ContinuousClock.now.advanced(by: .seconds(120))
            while !agent.process.log.contains("released the pages start-up mapped") {
                guard ContinuousClock.now < deadline else { throw HarnessError("the agent did not release its start-up pages within 120 s") }
                if let now = agent.process.usage, now.residentBytes > connected?.residentBytes ?? 0 { connected = now }
                try await Task.sleep(for: .milliseconds(200))
            }
            let released = try Self.usage(of: agent.process)
            try await Task.sleep(for: .seconds(idle))
            let idled = try Self.usage(of: agent.process)
            // Work maps the code it runs again: a command and its result.
            try await node.withAdmin { admin in
                let result = try await admin.run("echo footprint", on: agent.agentSN)
                guard result.retcode == 0 else { throw HarnessError("the command failed: \(result)") }
            }
            try await Task.sleep(for: .seconds(1))
            let worked = try Self.usage(of: agent.process)
            let before = try connected ?? Self.usage(of: agent.process)
            await agent.process.kill()
            await node.process.stop()
            var report = Report("P9", "boot agent footprint, connected and idle (\(harness.bin)/boot)", quick: options.quick)
            report.add("rss_connected_mib", "RSS connected, before the release", before.residentMiB, unit: "MiB")
            report.add("anon_connected_mib", "  of it anonymous", before.anonymousMiB, unit: "MiB")
            report.add("file_connected_mib", "  file-backed", before.fileMiB, unit: "MiB")
            report.add("rss_released_mib", "RSS just after the release", released.residentMiB, unit: "MiB")
            report.add("rss_idle_mib", "RSS after \(idle) s more idling", idled.residentMiB, unit: "MiB", target: "≤ 20 MiB")
            report.add("anon_idle_mib", "  of it anonymous", idled.anonymousMiB, unit: "MiB")
            report.add("file_idle_mib", "  file-backed", idled.fileMiB, unit: "MiB")
            report.add("rss_command_mib", "RSS after a command (sync.bash)", worked.residentMiB, unit: "MiB")
            return report
        }
    }

    static func usage(of process: ChildProcess) throws -> ProcessUsage {
        guard let usage = process.usage else { throw HarnessError("the agent (pid \(process.pid)) is gone") }
        return usage
    }
}

extension ProcessUsage {
    var residentMiB: Double { Double(self.residentBytes) / 1_048_576 }
    var anonymousMiB: Double { Double(self.anonymousBytes) / 1_048_576 }
    var fileMiB: Double { Double(self.fileBytes) / 1_048_576 }
}
