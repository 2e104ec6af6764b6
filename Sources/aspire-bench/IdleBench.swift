import ArgumentParser
import Fleet
import Foundation
import RPC
import Server
import TestSupport

/// P1: how many idle agents one node holds, and what they cost it.
struct IdleBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "idle",
        abstract: "P1 idle capacity: server RSS per agent, CPU at idle, heartbeat cost."
    )

    @OptionGroup var options: BenchOptions

    @Option(name: .shortAndLong, help: "Agents (default 20000; 2000 with --quick).")
    var agents: Int?

    @Option(help: "Seconds of idle CPU measurement (default 300, a whole stream-ping interval, so every periodic cost falls in it; 5 with --quick).")
    var idleSeconds: Int?

    @Option(help: "Agents one simulator process holds; the rest run in further 'aspire-bench fleet' processes.")
    var perSimulator = 10000

    @Flag(help: "Plaintext gRPC (the node runs --insecure): shows what TLS costs per agent. Single simulator process only.")
    var plaintext = false

    @Option(
        name: .customLong("node-options"), parsing: .unconditional,
        help: "More aspire-server options, space-separated (e.g. \"--ping-interval 15 --keepalive 30\"), to compare settings."
    )
    var nodeOptions = ""

    func run() async throws {
        try await Self.measure(
            self.options, agents: self.agents, idleSeconds: self.idleSeconds, perSimulator: self.perSimulator, plaintext: self.plaintext,
            nodeOptions: self.nodeOptions.split(separator: " ").map(String.init)
        ).print(jsonOnly: self.options.jsonOnly)
    }

    static func measure(
        _ options: BenchOptions,
        agents: Int? = nil,
        idleSeconds: Int? = nil,
        perSimulator: Int = 10000,
        plaintext: Bool = false,
        nodeOptions: [String] = []
    ) async throws -> Report {
        let wanted = agents ?? (options.quick ? 2000 : 20000)
        // A node holds no more agents than its open-file limit leaves room for (it refuses the
        // rest); the nodes started here inherit this process's limit.
        let capacity = OpenFiles.agentCapacity(limit: Int(clamping: raiseOpenFileLimit()))
        if wanted > capacity {
            FileHandle.standardError.write(
                Data("P1: the open-file limit here lets one node hold \(capacity) agents, not \(wanted); measuring \(capacity)\n".utf8)
            )
        }
        let count = min(wanted, capacity)
        let idle = idleSeconds ?? (options.quick ? 5 : 300)
        guard perSimulator >= 1 else { throw ValidationError("--per-simulator must be at least 1") }
        guard !plaintext || count <= perSimulator else { throw ValidationError("--plaintext runs one simulator process: at most --per-simulator agents") }
        return try await withHarness(options, name: "idle") { harness in
            var first = try await harness.startNode(arguments: (plaintext ? ["--insecure"] : []) + nodeOptions)
            // This process holds the first share (its agents measure ping and report costs);
            // other simulator processes hold the rest.
            let own = min(count, perSimulator)
            let fleet = try harness.fleet(of: first, count: own, plaintext: plaintext)
            let clock = ContinuousClock()
            var enrollment: Duration?
            if !plaintext {
                // Each agent enrolls once in its life: that is measured on its own, then the node
                // restarts so that the figures below are the fleet's connections (mutual TLS with
                // the certificates) and not what enrolling left in the node's heap.
                let enrolling = clock.now
                try await fleet.enroll()
                enrollment = clock.now - enrolling
                let port = first.address.port
                await first.process.stop()
                first = try await harness.startNode(listen: "0.0.0.0:\(port)", arguments: nodeOptions)
            }
            let node = first
            let enrolled = enrollment
            try await Task.sleep(for: .seconds(1))
            guard let empty = node.process.usage, let ownEmpty = ProcessUsage.current else { throw HarnessError("cannot read /proc") }
            let started = clock.now
            let simulators = try stride(from: own, to: count, by: perSimulator).enumerated().map { index, first in
                try harness.startSimulator("sim\(index + 2)", of: node, count: min(perSimulator, count - first))
            }
            let report = try await fleet.run { fleet in
                var report = Report("P1", "idle capacity (\(count) \(plaintext ? "plaintext" : "TLS") agents on one node)", quick: options.quick)
                try await fleet.waitOnline(timeout: .seconds(Int64(60 + count / 100)))
                // The node's own count, which also covers the other simulator processes' agents.
                var held = 0
                try await eventually(timeout: .seconds(Int64(60 + count / 100)), interval: .seconds(1), "\(count) agents on the node (\(held) are)") {
                    if let exited = simulators.first(where: { !$0.isRunning }) {
                        throw HarnessError("a simulator process exited; its log \(exited.logPath):\n\(exited.log.suffix(2000))")
                    }
                    held = try await node.withAdmin { try await $0.listAgents(.init()).agents.count }
                    return held >= count
                }
                let connected = clock.now - started
                // Let connection set-up garbage settle before reading memory.
                try await Task.sleep(for: .seconds(2))
                guard let loaded = node.process.usage, let ownLoaded = ProcessUsage.current else { throw HarnessError("cannot read /proc") }

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
                if let enrolled {
                    report.add("enroll_rate", "first enrollments per second (once per host)", Double(own) / enrolled.seconds, unit: "/s", digits: 0)
                }
                report.add("server_rss_mib", "server RSS with the fleet", Double(loaded.residentBytes) / 1_048_576, unit: "MiB")
                report.add("rss_per_agent_kib", "server RSS per agent", perAgent / 1024, unit: "KiB", target: "≤ 64 KiB")
                report.add("idle_cpu_pct", "server CPU at idle", idleCPU * 100, unit: "% of a core", digits: 2, target: "< 5 %")
                report.add("report_cpu_us", "CPU per status report", reportCost / Double(max(reported, 1)) * 1e6, unit: "µs")
                report.add("ping_cpu_us", "CPU per ping round trip", pingCost / Double(max(reported, 1)) * 1e6, unit: "µs")
                report.add(
                    "sim_rss_per_agent_kib", "simulator RSS per agent",
                    Double(ownLoaded.residentBytes - ownEmpty.residentBytes) / Double(own) / 1024, unit: "KiB"
                )
                report.add("simulators", "simulator processes", Double(1 + simulators.count), digits: 0)
                return report
            }
            for simulator in simulators { await simulator.stop(grace: .seconds(5)) }
            await node.process.stop()
            return report
        }
    }
}
