import ArgumentParser
import Fleet
import Foundation
import RPC

/// P1: how many idle agents one node holds, and what they cost it.
struct IdleBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "idle",
        abstract: "P1 idle capacity: server RSS per agent, CPU at idle, heartbeat cost."
    )

    @OptionGroup var options: BenchOptions

    @Option(name: .shortAndLong, help: "Agents (default 20000; 2000 with --quick).")
    var agents: Int?

    @Option(help: "Seconds of idle CPU measurement (default 20; 5 with --quick).")
    var idleSeconds: Int?

    func run() async throws {
        try await Self.measure(self.options, agents: self.agents, idleSeconds: self.idleSeconds).print(jsonOnly: self.options.jsonOnly)
    }

    static func measure(_ options: BenchOptions, agents: Int? = nil, idleSeconds: Int? = nil) async throws -> Report {
        let count = agents ?? (options.quick ? 2000 : 20000)
        let idle = idleSeconds ?? (options.quick ? 5 : 20)
        return try await withHarness(options, name: "idle") { harness in
            let node = try await harness.startNode()
            try await Task.sleep(for: .seconds(1))
            guard let empty = node.process.usage, let ownEmpty = ProcessUsage.current else { throw FleetError("cannot read /proc") }
            let fleet = try harness.fleet(of: node, count: count)
            let clock = ContinuousClock()
            let started = clock.now
            let report = try await fleet.run { fleet in
                var report = Report("P1", "idle capacity (\(count) TLS agents on one node)", quick: options.quick)
                try await fleet.waitOnline(timeout: .seconds(Int64(60 + count / 100)))
                let connected = clock.now - started
                let held = try await node.withAdmin { try await $0.listAgents(.init()).agents.count }
                // Let connection set-up garbage settle before reading memory.
                try await Task.sleep(for: .seconds(2))
                guard let loaded = node.process.usage, let ownLoaded = ProcessUsage.current else { throw FleetError("cannot read /proc") }

                let before = node.process.usage?.cpuSeconds ?? 0
                try await Task.sleep(for: .seconds(idle))
                let idleCPU = ((node.process.usage?.cpuSeconds ?? 0) - before) / Double(idle)

                // Heartbeat cost: every agent reports, then pings; pings alone are the baseline.
                var cpu = node.process.usage?.cpuSeconds ?? 0
                await fleet.pingAll()
                let pingCost = (node.process.usage?.cpuSeconds ?? 0) - cpu
                cpu = node.process.usage?.cpuSeconds ?? 0
                let reported = fleet.reportAll()
                await fleet.pingAll()
                let reportCost = (node.process.usage?.cpuSeconds ?? 0) - cpu - pingCost

                let perAgent = Double(loaded.residentBytes - empty.residentBytes) / Double(count)
                report.add("agents", "agents held (node's count)", Double(held), digits: 0, target: "≥ 20000")
                report.add("connect_s", "time to connect all", connected.seconds, unit: "s")
                report.add("connect_rate", "connects per second", Double(count) / connected.seconds, unit: "/s", digits: 0)
                report.add("server_rss_mib", "server RSS with the fleet", Double(loaded.residentBytes) / 1_048_576, unit: "MiB")
                report.add("rss_per_agent_kib", "server RSS per agent", perAgent / 1024, unit: "KiB", target: "≤ 64 KiB")
                report.add("idle_cpu_pct", "server CPU at idle", idleCPU * 100, unit: "% of a core", digits: 2, target: "< 5 %")
                report.add("report_cpu_us", "CPU per status report", reportCost / Double(max(reported, 1)) * 1e6, unit: "µs")
                report.add("ping_cpu_us", "CPU per ping round trip", pingCost / Double(max(reported, 1)) * 1e6, unit: "µs")
                report.add(
                    "sim_rss_per_agent_kib", "simulator RSS per agent",
                    Double(ownLoaded.residentBytes - ownEmpty.residentBytes) / Double(count) / 1024, unit: "KiB"
                )
                return report
            }
            await node.process.stop()
            return report
        }
    }
}
