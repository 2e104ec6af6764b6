import Agent
import ArgumentParser
import Fleet
import Foundation
import GRPCCore
import Logging
import RPC
import SwiftProtobuf
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The endurance figures together: commands whose children escape their process group killed at
/// their timeout, agents and a node SIGKILLed under a task (R2, P5), and the soak (P11).
struct ReliabilityBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reliability",
        abstract: "Endurance: timed-out commands' escaped descendants, agents and a node SIGKILLed under load (R2, P5), the soak (P11)."
    )

    @OptionGroup var options: BenchOptions

    enum Part: String, CaseIterable, ExpressibleByArgument {
        case descendants, agentKill = "agent-kill", storm, soak
    }

    @Option(help: "Only these parts (repeat it), in this order: \(Part.allCases.map(\.rawValue).joined(separator: ", ")) (default: all).")
    var only: [Part] = []

    func run() async throws {
        for part in self.only.isEmpty ? Part.allCases : self.only {
            let report: Report
            switch part {
            case .descendants: report = try await Self.descendants(self.options)
            case .agentKill: report = try await Self.agentKill(self.options)
            case .storm: report = try await StormBench.measure(self.options)
            case .soak: report = try await SoakBench.measure(self.options)
            }
            report.print(jsonOnly: self.options.jsonOnly)
        }
    }

    /// Commands that start children in new sessions and double-forked grandchildren, all past a
    /// 1 s timeout: how many of those children outlive the command's result (the agent's cgroup
    /// per command kills them; a process-group kill alone would leave them).
    static func descendants(_ options: BenchOptions) async throws -> Report {
        let commands = options.quick ? 10 : 50
        var configuration = BashExecutor.Configuration()
        configuration.killGrace = .milliseconds(500)
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let executor = BashExecutor(configuration: configuration, logger: logger)
        var report = Report("R1", "timed-out commands with escaping descendants (\(commands) at once)", quick: options.quick)
        report.add("grouping", "commands grouped by \(configuration.groups?.name ?? "process group only (no writable cgroup hierarchy)")", configuration.groups == nil ? 0 : 1, digits: 0, target: "1")
        let marker = "9911.\(Int.random(in: 100_000 ... 999_999))"
        let clock = ContinuousClock()
        let started = clock.now
        let results = await withTaskGroup(of: Aspire_V1_CommandResult.self) { group in
            for index in 0 ..< commands {
                group.addTask {
                    var params = Aspire_V1_BashParams()
                    params.cmd = """
                        setsid sleep \(marker) < /dev/null > /dev/null 2>&1 &
                        ( ( setsid sh -c 'sleep \(marker)' < /dev/null > /dev/null 2>&1 & ) & )
                        sleep \(marker)
                        """
                    params.timeout = 1
                    return await executor.run(id: "bench-escape-\(index)", params: params)
                }
            }
            var all: [Aspire_V1_CommandResult] = []
            for await result in group { all.append(result) }
            return all
        }
        let elapsed = clock.now - started
        let survivors = ProcessSearch.withArgument(marker)
        for pid in survivors { kill(pid, SIGKILL) }
        report.add("descendants", "descendants started", Double(commands * 3), digits: 0)
        report.add("timed_out", "commands timed out", Double(results.filter { $0.retcode == ErrorCode.timeout.rawValue }.count), digits: 0, target: "\(commands)")
        report.add("survivors", "descendants alive after the results", Double(survivors.count), digits: 0, target: "0")
        report.add("all_results_s", "all results after", elapsed.seconds, unit: "s", target: "≈ 1 s + 0.5 s grace")
        return report
    }

    /// R2: real boot agents SIGKILLed while they run a task's command (the rest of the
    /// 1,000-host task on simulated agents), each command with a child that left its session,
    /// then started again: each subtask stored once, no command run twice, and nothing the
    /// killed agents' commands started left running once the results are in.
    static func agentKill(_ options: BenchOptions) async throws -> Report {
        let hosts = options.quick ? 200 : 1000
        let real = options.quick ? 5 : 10
        return try await withHarness(options, name: "agent-kill") { harness in
            let node = try await harness.startNode(listen: "127.0.0.1:0")
            let agents = try (0 ..< real).map { try harness.startAgent("agent-\($0)", of: node) }
            let fleet = try harness.fleet(of: node, count: hosts - real)
            let report = try await fleet.run { fleet in
                try await fleet.waitOnline(timeout: .seconds(Int64(60 + hosts / 100)))
                return try await node.withAdmin { admin in
                    for agent in agents { try await admin.waitForHost(agent.agentSN, status: "online") }
                    // Each run appends a line (the real agents'; the simulated ones count their own).
                    let marker = "9922.\(Int.random(in: 100_000 ... 999_999))"
                    let runs = "\(harness.work)/runs"
                    var request = Aspire_V1_CreateTaskRequest()
                    request.command = CommandMethod.bash.taskName
                    request.agents = agents.map(\.agentSN) + fleet.agentSNs
                    request.parameters = try Google_Protobuf_Struct(
                        jsonString: #"{"cmd": "echo ran >> \#(runs); setsid sleep \#(marker) < /dev/null > /dev/null 2>&1 & sleep \#(marker)", "timeout": 3600}"#
                    )
                    let taskID = try await admin.createTask(request).task.id
                    try await eventually(timeout: .seconds(60), "every real agent's command and its child to run (\(ProcessSearch.withArgument(marker).count) of \(2 * real))") {
                        ProcessSearch.withArgument(marker).count == 2 * real
                    }
                    for agent in agents { await agent.process.kill() }
                    let runningOn = ProcessSearch.withArgument(marker).count
                    let clock = ContinuousClock()
                    let restarted = clock.now
                    let again = try agents.enumerated().map { try harness.startAgent("agent-\($0.offset)", of: node, agentSN: $0.element.agentSN) }
                    let task = try await admin.settledTask(taskID, timeout: .seconds(120))
                    let settled = clock.now - restarted
                    var get = Aspire_V1_GetTaskRequest()
                    get.id = taskID
                    let subtasks = try await admin.getTask(get).subtasks
                    let interrupted = subtasks.filter { $0.result.retcode == ErrorCode.interrupted.rawValue }.count
                    // What the restarted agents killed is gone within their kill's own wait.
                    try? await eventually(timeout: .seconds(5), "") { ProcessSearch.withArgument(marker).isEmpty }
                    let orphans = ProcessSearch.withArgument(marker)
                    for pid in orphans { kill(pid, SIGKILL) }
                    for agent in again { await agent.process.kill() }
                    await node.process.stop()

                    let lines = ((try? String(contentsOfFile: runs, encoding: .utf8)) ?? "").split(separator: "\n").count
                    let twice = fleet.counters.executions.values.filter { $0 > 1 }.count + max(0, lines - real)
                    var report = Report("R2", "boot agents SIGKILLed under a task (\(real) real of \(hosts) hosts) and started again", quick: options.quick)
                    report.add("hosts", "hosts in the task", Double(hosts), digits: 0)
                    report.add("killed", "real agents SIGKILLed while their command ran", Double(real), digits: 0)
                    report.add("running_after_kill", "their commands' processes running on after the kill", Double(runningOn), digits: 0, target: "\(2 * real)")
                    report.add("lost", "subtasks without a result", Double(task.count - task.complete), digits: 0, target: "0")
                    report.add("subtasks", "subtasks stored (one per host)", Double(task.count), digits: 0, target: "\(hosts)")
                    report.add("interrupted", "results 'interrupted' (the killed agents')", Double(interrupted), digits: 0, target: "\(real)")
                    report.add("run_twice", "commands run twice", Double(twice), digits: 0, target: "0")
                    report.add("orphans", "processes of the killed agents' commands alive after the results", Double(orphans.count), digits: 0, target: "0")
                    report.add("settled_s", "restart → every result stored", settled.seconds, unit: "s")
                    return report
                }
            }
            return report
        }
    }
}
