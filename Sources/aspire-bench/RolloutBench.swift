import ArgumentParser
import Fleet
import Foundation
import GRPCCore
import RPC
import TestSupport

/// P10: declared deployments over simulated agents: how long a new deployment takes to reach
/// every host, and how long a 10-wave rollout takes beyond the health windows it must wait out.
struct RolloutBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "P10 deployments: converge time over N simulated agents, and a 10-wave health-gated rollout."
    )

    @OptionGroup var options: BenchOptions

    @Option(name: .shortAndLong, help: "Simulated agents (default 1000; 300 with --quick).")
    var agents: Int?

    func run() async throws {
        try await Self.measure(self.options, count: self.agents).print(jsonOnly: self.options.jsonOnly)
    }

    /// Seconds each moved host must run a version before its wave counts it healthy.
    static let health: Int32 = 1

    static func measure(_ options: BenchOptions, count: Int? = nil) async throws -> Report {
        let count = count ?? (options.quick ? 300 : 1000)
        return try await withHarness(options, name: "rollout-\(count)") { harness in
            let node = try await harness.startNode()
            let fleet = try harness.fleet(of: node, count: count, tags: ["svc": "bench"])
            let outcome = try await fleet.run { fleet in
                try await fleet.waitOnline(timeout: .seconds(Int64(60 + count / 100)))
                return try await node.withAdmin { admin in try await Self.rollOut(admin, hosts: count) }
            }
            await node.process.stop()
            var report = Report("P10", "deployments (\(count) simulated agents)", quick: options.quick)
            report.add("agents", "agents", Double(count), digits: 0)
            report.add("converge_applied_ms", "new deployment: every host runs it after", outcome.applied.millis, unit: "ms", target: "≤ 10000 ms")
            report.add("converge_healthy_ms", "… and every host healthy (1 s window) after", outcome.healthy.millis, unit: "ms")
            report.add("rollout_waves", "rollout waves (canary 10%, batch 10%)", Double(outcome.waves), digits: 0, target: "10")
            report.add("rollout_total_s", "10-wave rollout done after", outcome.rollout.seconds, unit: "s")
            let overhead = (outcome.rollout.seconds - Double(outcome.waves) * Double(Self.health)) / Double(max(outcome.waves, 1))
            report.add("wave_overhead_s", "time per wave beyond its health window", overhead, unit: "s", digits: 2, target: "≤ 3 s")
            return report
        }
    }

    struct Outcome: Sendable {
        var applied: Duration
        var healthy: Duration
        var rollout: Duration
        var waves: Int
    }

    static func request(version: String, canary: String = "", batch: String = "") -> Aspire_V1_ApplyDeploymentRequest {
        var request = Aspire_V1_ApplyDeploymentRequest()
        request.spec.name = "bench-agent"
        request.spec.version = version
        // Simulated agents fetch nothing; the url only has to be one a real agent could check.
        request.spec.url = "https://packages.invalid/bench-agent-\(version).tar.gz"
        request.spec.checksum = "SHA256:" + String(repeating: "0", count: 64)
        request.spec.tags = ["svc": "bench"]
        request.rollout.healthSeconds = Self.health
        request.rollout.canary = canary
        request.rollout.batch = batch
        return request
    }

    static func rollOut(_ admin: Aspire_V1_Admin.Client<some ClientTransport>, hosts: Int) async throws -> Outcome {
        let clock = ContinuousClock()
        var get = Aspire_V1_GetDeploymentRequest()
        get.name = "bench-agent"
        func counts() async throws -> (status: Aspire_V1_DeploymentStatus, pending: Int, healthy: Int) {
            let status = try await admin.getDeployment(get)
            let pending = status.counts.filter { $0.state == "pending" || $0.state == "failed" }.reduce(0) { $0 + Int($1.hosts) }
            let healthy = status.counts.filter { $0.state == "healthy" }.reduce(0) { $0 + Int($1.hosts) }
            return (status, pending, healthy)
        }

        // Each look reads every host's state: a fleet this size is not asked every few ms.
        let poll = Duration.milliseconds(hosts > 2000 ? 250 : 20)
        let started = clock.now
        _ = try await admin.applyDeployment(Self.request(version: "1"))
        var applied: Duration?
        try await eventually(timeout: .seconds(300), interval: poll, "every host healthy on version 1") {
            let (_, pending, healthy) = try await counts()
            if pending == 0, applied == nil { applied = clock.now - started }
            return healthy == hosts
        }
        let healthy = clock.now - started

        let rolling = clock.now
        _ = try await admin.applyDeployment(Self.request(version: "2", canary: "10%", batch: "10%"))
        var waves = 0
        var state = ""
        try await eventually(timeout: .seconds(600), interval: poll, "the rollout done (\(state), wave \(waves))") {
            let status = try await counts().status.deployment
            state = status.state
            waves = max(waves, Int(status.wave) + 1)
            guard state != "rolled_back", state != "halted" else { throw HarnessError("rollout stopped: \(status.reason)") }
            return state == "done"
        }
        return Outcome(applied: applied ?? healthy, healthy: healthy, rollout: clock.now - rolling, waves: waves)
    }
}
