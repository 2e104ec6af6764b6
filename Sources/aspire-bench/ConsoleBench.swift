import ArgumentParser
import Fleet
import Foundation
import Logging
import RPC
import Server
import SwiftProtobuf
import TestSupport

/// The web console's pages with a large fleet in the store: the time each takes the node to
/// answer, one request at a time on a kept-alive connection.
struct ConsoleBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Web console pages: the node's time to answer each, with 10,000 hosts in the store (1000 with --quick).",
        discussion: """
            The store is filled before the node starts (hosts with tags and regions, events, a task over \
            1000 of the hosts); then curl signs in like a browser and fetches each page in turn on one \
            kept-alive connection. The figure is curl's time to the first byte of the answer: on loopback, \
            the node's time. Target: under 100 ms for every page.
            """
    )

    @OptionGroup var options: BenchOptions

    @Option(help: "Hosts in the store (default 10000; 1000 with --quick).")
    var hosts: Int?

    @Option(help: "Requests of each page (default 20; 5 with --quick).")
    var requests: Int?

    func run() async throws {
        let report = try await Self.measure(self.options, hosts: self.hosts, requests: self.requests)
        report.print(jsonOnly: self.options.jsonOnly)
    }

    static func measure(_ options: BenchOptions, hosts: Int? = nil, requests: Int? = nil) async throws -> Report {
        let count = hosts ?? (options.quick ? 1000 : 10_000)
        let requests = requests ?? (options.quick ? 5 : 20)
        var report = Report("P9", "Web console pages (\(count) hosts)", quick: options.quick)
        return try await withHarness(options, name: "console") { harness in
            try await Self.fill("\(harness.work)/node", hosts: count)
            let node = try await harness.startNode(http: true)
            guard let http = node.httpAddress else { throw HarnessError("the node has no HTTP listener") }
            let taskID = try await node.withAdmin { admin in
                var task = Aspire_V1_CreateTaskRequest()
                task.command = CommandMethod.bash.taskName
                task.parameters.fields["cmd"] = .init(stringValue: "true")
                task.parameters.fields["user"] = .init(stringValue: "root")
                task.agents = (0 ..< min(count, 1000)).map(Self.sn)
                return try await admin.createTask(task).task.id
            }
            let base = "http://\(http)"
            let jar = "\(harness.work)/cookies"
            try await ConsoleSignIn.curl(base: base, token: try node.adminToken, jar: jar)
            let pages: [(String, String)] = [
                ("dashboard", "/"),
                ("hosts", "/hosts"),
                ("hosts_page_100", "/hosts?page=100"),
                ("hosts_tag", "/hosts?tag=zone%3Dz3&status=offline"),
                ("hosts_prefix", "/hosts?hostname=host-00042"),
                ("host", "/hosts/\(Self.sn(42))"),
                ("tasks", "/tasks"),
                ("task_1000", "/tasks/\(taskID)"),
                ("versions", "/versions"),
                ("tags", "/tags"),
                ("schedules", "/schedules"),
                ("plugins", "/plugins"),
                ("audit", "/audit"),
                ("run_form", "/run"),
            ]
            var worst = 0.0
            for (key, path) in pages {
                let samples = try await Self.time(base + path, times: requests, jar: jar)
                let p50 = Stats.median(samples)
                let most = samples.max() ?? 0
                worst = max(worst, p50)
                report.add("\(key)_p50_ms", "GET \(path) median", p50, unit: "ms", target: "< 100 ms")
                report.add("\(key)_max_ms", "GET \(path) slowest", most, unit: "ms")
            }
            report.add("worst_p50_ms", "slowest page, median", worst, unit: "ms", target: "< 100 ms")
            await node.process.stop()
            return report
        }
    }

    static func sn(_ index: Int) -> String { String(format: "host-%05d", index) }

    /// Hosts with tags (zone z0…z9, role web/db), four regions, and an event for every tenth host,
    /// written straight into the node's SQLite file before it starts.
    static func fill(_ data: String, hosts: Int) async throws {
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let engine = try await SQLiteEngine.open(path: "\(data)/aspire.db", logger: logger)
        let store = SQLStore(engine: engine, logger: logger)
        do {
            try await store.migrate()
            for region in ["north", "south", "east", "west"] { _ = try await store.createRegion(name: region) }
            for index in 0 ..< hosts {
                let sn = Self.sn(index)
                try await store.registerHost(
                    HostRegistration(agentSN: sn, hostname: sn, ipaddr: "10.\(index / 65536 % 256).\(index / 256 % 256).\(index % 256)", os: "linux", arch: "x86_64", version: "1.0", node: "node")
                )
                try await store.bindTag(name: "zone", value: "z\(index % 10)", to: sn)
                try await store.bindTag(name: "role", value: index % 3 == 0 ? "db" : "web", to: sn)
            }
            try await store.releaseHosts(of: "node")
        } catch {
            await engine.shutdown()
            throw error
        }
        await engine.shutdown()
    }

    /// The time to the first byte of `times` requests of `url`, in milliseconds, on one connection.
    static func time(_ url: String, times: Int, jar: String) async throws -> [Double] {
        var arguments = ["-s", "-b", jar]
        for index in 0 ..< times {
            if index > 0 { arguments.append("--next") }
            arguments += ["-b", jar, "-o", "/dev/null", "-w", "%{http_code} %{time_starttransfer}\\n", url]
        }
        let (status, output) = try await ChildProcess.run("curl", arguments, timeout: .seconds(300))
        guard status == 0 else { throw HarnessError("curl \(url): \(output)") }
        return try output.split(separator: "\n").map { line in
            let parts = line.split(separator: " ")
            guard parts.count == 2, parts[0] == "200", let seconds = Double(parts[1]) else {
                throw HarnessError("GET \(url) answered \(line)")
            }
            return seconds * 1000
        }
    }
}
