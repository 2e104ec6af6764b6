import Agent
import ArgumentParser
import Fleet
import Foundation
import Logging
import RPC
import TestSupport

/// P3: one command on one real agent, end to end, next to its floor and to ssh.
struct RoundTripBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "roundtrip",
        abstract: "P3 round trip: Admin RunCommand of 'true' on one real boot agent, next to the spawn + stream floor and ssh.",
        discussion: """
            The floor is what any agent must pay: spawning '/bin/bash -c true' (posix_spawn to \
            exit) plus one message round trip on an agent stream (a simulated agent's ping). \
            ssh figures need root and Debian's openssh-server; an sshd of its own runs on \
            loopback with key auth.
            """
    )

    @OptionGroup var options: BenchOptions

    @Option(help: "Commands to time (default 1000; 200 with --quick).")
    var samples: Int?

    func run() async throws {
        try await Self.measure(self.options, samples: self.samples).print(jsonOnly: self.options.jsonOnly)
    }

    /// The agent's own parts of a command, in this process: BashExecutor running 'true', and
    /// the outbox's bookkeeping of one command (admit, finish, acknowledge).
    static func agentParts(count: Int, directory: String) async throws -> (executor: [Double], state: [Double]) {
        let executor = BashExecutor(logger: Logger(label: "bench"))
        let state = try AgentState(directory: directory)
        let clock = ContinuousClock()
        var parameters = Aspire_V1_BashParams()
        parameters.cmd = "true"
        var executorTimes: [Double] = []
        var stateTimes: [Double] = []
        for index in 0 ..< count {
            let started = clock.now
            let result = await executor.run(id: "\(index)", params: parameters)
            guard result.retcode == 0 else { throw HarnessError("BashExecutor 'true' failed: \(result.message)") }
            executorTimes.append((clock.now - started).millis)
            let bookkeeping = try clock.measure {
                _ = try state.admit(result.id)
                try state.finish(result)
                state.acknowledge([result.id])
            }
            stateTimes.append(bookkeeping.millis)
        }
        return (executorTimes, stateTimes)
    }

    static func measure(_ options: BenchOptions, samples: Int? = nil) async throws -> Report {
        let count = samples ?? (options.quick ? 200 : 1000)
        return try await withHarness(options, name: "roundtrip") { harness in
            var report = Report("P3", "round trip (\(count) × 'true' on one boot agent)", quick: options.quick)
            let node = try await harness.startNode(listen: "127.0.0.1:0")
            let agent = try harness.startAgent("agent", of: node)
            let clock = ContinuousClock()
            let latencies = try await node.withAdmin { admin in
                try await admin.waitForHost(agent.agentSN, status: "online")
                for _ in 0 ..< 20 { _ = try await admin.run("true", on: agent.agentSN) }
                var latencies: [Double] = []
                for _ in 0 ..< count {
                    let started = clock.now
                    let result = try await admin.run("true", on: agent.agentSN)
                    guard result.resp == .success, result.retcode == 0 else { throw HarnessError("'true' failed: \(result)") }
                    latencies.append((clock.now - started).millis)
                }
                return latencies
            }
            // The stream's own round trip: a simulated agent's ping on the same node.
            let fleet = try harness.fleet(of: node, count: 1)
            let pings = try await fleet.run { fleet in
                try await fleet.waitOnline(timeout: .seconds(30))
                var pings: [Double] = []
                for _ in 0 ..< count {
                    if let time = await fleet.ping() { pings.append(time.millis) }
                }
                return pings
            }
            await agent.process.kill()
            await node.process.stop()
            let bash = Peers.spawn(["/bin/bash", "-c", "true"], count: count)
            let sh = Peers.spawn(["/bin/sh", "-c", "true"], count: count)
            let local = try await Self.agentParts(count: count, directory: "\(harness.work)/parts")
            let floor = Stats.median(bash.latencies) + Stats.median(pings)
            let p50 = Stats.median(latencies)
            report.add("p50_ms", "RunCommand p50", p50, unit: "ms", digits: 2, target: "≤ 3 ms")
            report.add("p99_ms", "RunCommand p99", Stats.percentile(latencies, 99), unit: "ms", digits: 2, target: "≤ 10 ms")
            report.add("spawn_bash_ms", "posix_spawn bash -c true p50", Stats.median(bash.latencies), unit: "ms", digits: 2)
            report.add("spawn_sh_ms", "posix_spawn sh -c true p50", Stats.median(sh.latencies), unit: "ms", digits: 2)
            report.add("stream_rtt_ms", "stream round trip p50", Stats.median(pings), unit: "ms", digits: 3)
            report.add("floor_ms", "floor (spawn + stream)", floor, unit: "ms", digits: 2)
            report.add("over_floor", "p50 / floor", p50 / floor, unit: "×", digits: 2, target: "≤ 1.6×")
            report.add("executor_ms", "agent's BashExecutor alone p50", Stats.median(local.executor), unit: "ms", digits: 2)
            report.add("state_ms", "agent's outbox writes alone p50", Stats.median(local.state), unit: "ms", digits: 2)
            if let ssh = try await Peers.SSH.start(in: "\(harness.work)/ssh") {
                let fresh = Peers.spawn(ssh.command(["true"], multiplexed: false), count: options.quick ? 10 : 50)
                _ = Peers.runOnce(ssh.command(["true"], multiplexed: true))
                let master = Peers.spawn(ssh.command(["true"], multiplexed: true), count: count)
                await ssh.stop()
                report.add("ssh_p50_ms", "ssh localhost true p50", Stats.median(fresh.latencies), unit: "ms", digits: 1)
                report.add("ssh_cm_p50_ms", "ssh (ControlMaster) p50", Stats.median(master.latencies), unit: "ms", digits: 2)
                report.add("ssh_over_aspire", "ssh / Aspire", Stats.median(fresh.latencies) / p50, unit: "×", digits: 1)
                report.add("ssh_cm_over_aspire", "ssh ControlMaster / Aspire", Stats.median(master.latencies) / p50, unit: "×", digits: 1)
            } else {
                report.note("ssh", "ssh", "skipped: needs root and openssh-server")
            }
            return report
        }
    }
}
