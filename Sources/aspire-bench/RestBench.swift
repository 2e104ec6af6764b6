import ArgumentParser
import Fleet
import Foundation
import GRPCCore
import RPC
import SwiftProtobuf
import TestSupport

/// P6: REST reads against the gRPC rate of the same Admin handler, both driven by h2load.
struct RestBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rest",
        abstract: "P6 REST reads: host list and task status, requests/s and p99, next to gRPC calls of the same handlers.",
        discussion: """
            Both sides are driven by Debian's h2load (nghttp2-client) with the same connections and \
            one request in flight per connection: REST as HTTP/1.1 to the gateway, gRPC as HTTP/2 \
            over TLS to the node (a gRPC-framed request body). The gateway calls the same Admin \
            handlers in-process, so the ratio is the cost of the REST layer (routing, JSON). The \
            store holds the hosts of a simulated fleet and one finished task on part of it.
            """
    )

    @OptionGroup var options: BenchOptions

    @Option(help: "Hosts in the store (default 1000; 200 with --quick).")
    var hosts: Int?

    @Option(help: "Connections of the load generator, one request in flight on each.")
    var connections = 16

    @Option(help: "Seconds each load runs (default 5; 2 with --quick), after a one-second warm-up.")
    var seconds: Int?

    func run() async throws {
        let report = try await Self.measure(self.options, hosts: self.hosts, connections: self.connections, seconds: self.seconds)
        report.print(jsonOnly: self.options.jsonOnly)
    }

    static let h2load = "/usr/bin/h2load"

    static func measure(_ options: BenchOptions, hosts: Int? = nil, connections: Int = 16, seconds: Int? = nil) async throws -> Report {
        let count = hosts ?? (options.quick ? 200 : 1000)
        let seconds = seconds ?? (options.quick ? 2 : 5)
        let page = 50
        let taskSize = min(100, count)
        var report = Report("P6", "REST reads (\(count) hosts, \(connections) connections)", quick: options.quick)
        guard FileManager.default.isExecutableFile(atPath: Self.h2load) else {
            report.note("h2load", "h2load", "skipped: install nghttp2-client")
            return report
        }
        return try await withHarness(options, name: "rest") { harness in
            let node = try await harness.startNode(http: true)
            guard let http = node.httpAddress else { throw HarnessError("the node has no REST listener") }
            let fleet = try harness.fleet(of: node, count: count)
            let taskID = try await fleet.run { fleet in
                try await fleet.waitOnline(timeout: .seconds(Int64(60 + count / 100)))
                return try await node.withAdmin { admin in
                    try await FanOutBench.fanOut(admin, to: Array(fleet.agentSNs.prefix(taskSize))).taskID
                }
            }
            var listHosts = Aspire_V1_ListHostsRequest()
            listHosts.limit = Int32(page)
            var getTask = Aspire_V1_GetTaskRequest()
            getTask.id = taskID
            // What a whole gRPC answer weighs, to tell answers from errors (h2load sees status 200 either way).
            let (hostsBytes, taskBytes) = try await node.withAdmin { admin in
                let hosts: [UInt8] = try await admin.listHosts(listHosts).serializedBytes()
                let task: [UInt8] = try await admin.getTask(getTask).serializedBytes()
                return (hosts.count, task.count)
            }
            let load = Load(directory: harness.work, connections: connections, seconds: seconds, token: try node.adminToken)
            let grpc = "https://\(node.dialAddress)/\(Aspire_V1_Admin.descriptor.fullyQualifiedService)"
            let rest = "http://\(http)/api/v1/server"
            let runs = [
                ("hosts", "host list (\(page) a page)", try load.rest("\(rest)/hosts?limit=\(page)"),
                 try load.grpc("\(grpc)/ListHosts", listHosts, answerBytes: hostsBytes)),
                ("task", "task status (\(taskSize) subtasks)", try load.rest("\(rest)/task?id=\(taskID)"),
                 try load.grpc("\(grpc)/GetTask", getTask, answerBytes: taskBytes)),
            ]
            await node.process.stop()
            for (key, title, rest, grpc) in runs {
                report.add("\(key)_rest_rps", "\(title) REST", rest.perSecond, unit: "req/s", digits: 0, target: "≥ 5000")
                report.add("\(key)_rest_p99_ms", "\(title) REST p99", rest.p99, unit: "ms", digits: 2)
                report.add("\(key)_grpc_rps", "\(title) gRPC", grpc.perSecond, unit: "req/s", digits: 0)
                report.add("\(key)_grpc_p99_ms", "\(title) gRPC p99", grpc.p99, unit: "ms", digits: 2)
                report.add("\(key)_rest_over_grpc", "\(title) REST / gRPC", rest.perSecond / grpc.perSecond, unit: "×", digits: 2, target: "≥ 0.7×")
            }
            return report
        }
    }

    /// One h2load run's figures.
    struct Figures {
        var perSecond: Double
        var p99: Double
    }

    /// Runs h2load with the same shape of load against either side.
    struct Load {
        let directory: String
        let connections: Int
        let seconds: Int
        let token: String

        /// GETs of `url` over HTTP/1.1; every answer must be a 2xx.
        func rest(_ url: String) throws -> Figures {
            let (output, figures, done) = try self.run(url, ["--h1"])
            guard output.contains("status codes: \(done) 2xx") else { throw HarnessError("REST answers were not all 2xx:\n\(output)") }
            return figures
        }

        /// Unary gRPC calls of `url` with `request`; each answer must weigh `answerBytes`
        /// (plus the 5-byte frame), which an error status does not.
        func grpc(_ url: String, _ request: some SwiftProtobuf.Message, answerBytes: Int) throws -> Figures {
            let message: [UInt8] = try request.serializedBytes()
            let length = UInt32(message.count)
            let frame = [0, UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] + message
            let body = "\(self.directory)/grpc-request.bin"
            try Data(frame).write(to: URL(fileURLWithPath: body))
            let (output, figures, done) = try self.run(url, ["-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers"])
            let data = Self.dataBytes(output) ?? 0
            guard done > 0, data / done >= answerBytes + 5 else {
                throw HarnessError("gRPC answers were \(done > 0 ? data / done : 0) bytes, not \(answerBytes + 5): an error status?\n\(output)")
            }
            return figures
        }

        private func run(_ url: String, _ arguments: [String]) throws -> (output: String, figures: Figures, done: Int) {
            let log = "\(self.directory)/h2load-\(UUID().uuidString.prefix(8)).log"
            let argv = [
                RestBench.h2load, "-c", "\(self.connections)", "-m", "1", "-t", "1", "-D", "\(self.seconds)", "--warm-up-time", "1",
                "-H", "authorization: Bearer \(self.token)", "--log-file", log,
            ] + arguments + [url]
            let output = try Peers.output(argv)
            guard let perSecond = Self.number(after: "s, ", in: output, line: "finished in"),
                let done = Self.number(after: "started, ", in: output, line: "requests:").map(Int.init), done > 0
            else { throw HarnessError("h2load did not finish:\n\(output)") }
            // Each line: start (µs since the epoch), status, microseconds to the end of the answer.
            let latencies = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").compactMap { line in
                line.split(separator: "\t").last.flatMap { Double($0) }.map { $0 / 1000 }
            }
            return (output, Figures(perSecond: perSecond, p99: Stats.percentile(latencies, 99)), done)
        }

        /// The number after `marker` on the first line starting with `line`.
        static func number(after marker: String, in output: String, line prefix: String) -> Double? {
            guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }),
                let range = line.range(of: marker)
            else { return nil }
            return Double(line[range.upperBound...].prefix { $0.isNumber || $0 == "." })
        }

        /// The data bytes of h2load's traffic line: "... headers (...), 2.18MB (2283825) data".
        static func dataBytes(_ output: String) -> Int? {
            guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("traffic:") }),
                let end = line.range(of: ") data", options: .backwards),
                let start = line[..<end.lowerBound].range(of: "(", options: .backwards)
            else { return nil }
            return Int(line[start.upperBound ..< end.lowerBound])
        }
    }
}
