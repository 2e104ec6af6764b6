import ArgumentParser
import Fleet
import Foundation
import RPC
import TestSupport

/// P2 next to Salt: one `true` on N real boot agents and on N Salt minions, same machine, same run.
struct SaltBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "salt",
        abstract: "P2 peer: a 'true' task on N real boot agents, next to salt '*' cmd.run /bin/true with N local minions.",
        discussion: """
            Salt 3007.8 from PyPI in a virtualenv (scripts/install-salt.sh puts one in \
            .build/peers/salt); point --salt or ASPIRE_BENCH_SALT at its bin directory. Without \
            it the Aspire half runs alone and the Salt figures say skipped. Each side is timed \
            from the command to the last answer, three times; medians are printed.
            """
    )

    @OptionGroup var options: BenchOptions

    @Option(help: "Agents and minions (default 50; 10 with --quick).")
    var hosts: Int?

    @Option(help: "Salt's bin directory (salt, salt-master, salt-minion); default $ASPIRE_BENCH_SALT or .build/peers/salt/bin.")
    var salt: String?

    func run() async throws {
        try await Self.measure(self.options, hosts: self.hosts, salt: self.salt).print(jsonOnly: self.options.jsonOnly)
    }

    static func saltDirectory(_ given: String?) -> String? {
        let candidates = [given, ProcessInfo.processInfo.environment["ASPIRE_BENCH_SALT"], ".build/peers/salt/bin"].compactMap { $0 }
        return candidates.first { FileManager.default.isExecutableFile(atPath: "\($0)/salt-master") }
    }

    static func measure(_ options: BenchOptions, hosts: Int? = nil, salt: String? = nil) async throws -> Report {
        let count = hosts ?? (options.quick ? 10 : 50)
        let rounds = 3
        return try await withHarness(options, name: "salt") { harness in
            var report = Report("P2s", "Aspire vs Salt (\(count) real agents / minions, 'true')", quick: options.quick)
            // Aspire: real boot agents, a task to all of them, until every result is stored.
            let node = try await harness.startNode(listen: "127.0.0.1:0")
            var agents: [(process: ChildProcess, agentSN: String)] = []
            for index in 0 ..< count {
                agents.append(try harness.startAgent("agent-\(index)", of: node))
            }
            let aspire = try await node.withAdmin { admin in
                for agent in agents { try await admin.waitForHost(agent.agentSN, status: "online") }
                _ = try await FanOutBench.fanOut(admin, to: agents.map(\.agentSN))
                var times: [Double] = []
                for _ in 0 ..< rounds {
                    let outcome = try await FanOutBench.fanOut(admin, to: agents.map(\.agentSN))
                    guard outcome.failed == 0 else { throw HarnessError("\(outcome.failed) agents did not run 'true'") }
                    times.append(outcome.total.millis)
                }
                return Stats.median(times)
            }
            for agent in agents { await agent.process.kill() }
            await node.process.stop()
            report.add("aspire_ms", "Aspire task, last result stored", aspire, unit: "ms")

            guard let bin = Self.saltDirectory(salt) else {
                report.note("salt", "salt", "skipped: no Salt (scripts/install-salt.sh, then --salt or ASPIRE_BENCH_SALT)")
                return report
            }
            let cluster = try await SaltCluster.start(bin: bin, minions: count, in: "\(harness.work)/salt")
            let times = try await cluster.whileRunning {
                var times: [Double] = []
                for _ in 0 ..< rounds {
                    let clock = ContinuousClock()
                    let started = clock.now
                    let answered = try cluster.run(["cmd.run", "/bin/true"])
                    guard answered == count else { throw HarnessError("salt cmd.run: \(answered) of \(count) minions answered") }
                    times.append((clock.now - started).millis)
                }
                return times
            }
            let saltTime = Stats.median(times)
            report.add("salt_ms", "salt '*' cmd.run /bin/true", saltTime, unit: "ms")
            report.add("aspire_over_salt", "Aspire / Salt", aspire / saltTime, unit: "×", digits: 3, target: "≤ 0.1×")
            return report
        }
    }
}

/// A Salt master and its minions on loopback, each with its own config and state directory.
struct SaltCluster {
    let bin: String
    /// The master's config directory, which the `salt` CLI reads too.
    let masterConfig: String
    let processes: [ChildProcess]
    let minions: Int

    static func start(bin: String, minions: Int, in directory: String) async throws -> SaltCluster {
        let publish = Int.random(in: 30000 ..< 40000)
        let returns = publish + 1
        func write(_ name: String, _ lines: [String]) throws -> String {
            let config = "\(directory)/\(name)"
            try FileManager.default.createDirectory(atPath: config, withIntermediateDirectories: true)
            try lines.joined(separator: "\n").write(toFile: "\(config)/\(name == "master" ? "master" : "minion")", atomically: true, encoding: .utf8)
            return config
        }
        func state(_ root: String) -> [String] {
            ["root_dir: \(root)", "pki_dir: \(root)/pki", "cachedir: \(root)/cache", "sock_dir: \(root)/sock", "log_file: \(root)/log", "user: root"]
        }
        let master = try write("master", [
            "interface: 127.0.0.1", "publish_port: \(publish)", "ret_port: \(returns)", "auto_accept: True", "worker_threads: 2",
        ] + state("\(directory)/master/root"))
        var processes = [try ChildProcess("\(bin)/salt-master", ["-c", master, "-l", "error"], log: "\(directory)/master.log")]
        for index in 0 ..< minions {
            let name = "minion-\(index)"
            let config = try write(name, [
                "id: \(name)", "master: 127.0.0.1", "master_port: \(returns)", "publish_port: \(publish)",
            ] + state("\(directory)/\(name)/root"))
            processes.append(try ChildProcess("\(bin)/salt-minion", ["-c", config, "-l", "error"], log: "\(directory)/\(name).log"))
        }
        let cluster = SaltCluster(bin: bin, masterConfig: master, processes: processes, minions: minions)
        // Minions start, send their keys (accepted by the master) and answer a ping.
        try await eventually(timeout: .seconds(Int64(120 + minions * 2)), interval: .seconds(2), "\(minions) Salt minions to answer test.ping") {
            guard processes.allSatisfy(\.isRunning) else { throw HarnessError("a Salt process exited; logs in \(directory)") }
            return try cluster.run(["test.ping"], timeout: 5) == minions
        }
        return cluster
    }

    /// `salt '*' FUNCTION ARGS`; answers how many minions returned.
    func run(_ function: [String], timeout: Int = 60) throws -> Int {
        // One JSON object of every minion's return once all are in (--static); stderr may
        // carry warnings around it.
        let output = try Peers.output(
            ["\(self.bin)/salt", "-c", self.masterConfig, "--out=json", "--static", "--timeout", "\(timeout)", "*"] + function, check: false
        )
        guard let start = output.firstIndex(of: "{"), let end = output.lastIndex(of: "}"),
            let returns = try? JSONSerialization.jsonObject(with: Data(output[start ... end].utf8)) as? [String: Any]
        else { return 0 }
        return returns.keys.filter { $0.hasPrefix("minion-") }.count
    }

    /// Runs `body`, then stops every Salt process, whatever happened.
    func whileRunning<Result>(_ body: () async throws -> Result) async throws -> Result {
        do {
            let result = try await body()
            await self.stop()
            return result
        } catch {
            await self.stop()
            throw error
        }
    }

    func stop() async {
        await withTaskGroup(of: Void.self) { group in
            for process in self.processes {
                group.addTask { await process.stop(grace: .seconds(5)) }
            }
        }
    }
}
