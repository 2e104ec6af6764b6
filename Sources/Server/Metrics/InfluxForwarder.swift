import AsyncHTTPClient
public import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Prometheus
import RPC

/// Forwards metric points to InfluxDB in its line protocol, one POST per flush (at most
/// `maxPointsPerRequest` points each), with the host's AgentSN as a tag, at second precision.
/// A write that fails is logged and counted, not retried: the store keeps the latest values.
public struct InfluxForwarder: Sendable {
    public struct Configuration: Sendable {
        /// The write endpoint: InfluxDB 1.x `http://host:8086/write?db=aspire` or 2.x
        /// `http://host:8086/api/v2/write?org=ORG&bucket=BUCKET`; `precision=s` is added when absent.
        public var url: URL
        /// Sent as `Authorization: Token <token>` (InfluxDB 2.x), when set.
        public var token: String?
        public var timeout: Duration = .seconds(10)
        public var maxPointsPerRequest = 5000

        public init(url: URL, token: String? = nil) {
            self.url = url
            self.token = token
        }

        /// The URL with `precision=s`.
        var writeURL: String {
            guard var components = URLComponents(url: self.url, resolvingAgainstBaseURL: false) else { return self.url.absoluteString }
            if !(components.queryItems ?? []).contains(where: { $0.name == "precision" }) {
                components.queryItems = (components.queryItems ?? []) + [URLQueryItem(name: "precision", value: "s")]
            }
            return components.string ?? self.url.absoluteString
        }
    }

    let configuration: Configuration
    let client: HTTPClient
    let logger: Logger
    let sent: Counter
    let failures: Counter

    init(configuration: Configuration, prometheus: PrometheusCollectorRegistry, logger: Logger) {
        self.configuration = configuration
        self.client = HTTPClient(eventLoopGroupProvider: .singleton)
        self.logger = logger
        self.sent = prometheus.makeCounter(name: "aspire_influx_points_sent_total", help: "Points InfluxDB accepted.")
        self.failures = prometheus.makeCounter(name: "aspire_influx_write_failures_total", help: "Writes to InfluxDB that failed.")
    }

    func send(_ metrics: [MetricRecord]) async {
        for chunk in metrics.chunks(of: self.configuration.maxPointsPerRequest) {
            var body = ""
            for metric in chunk {
                Self.line(metric, into: &body)
            }
            var request = HTTPClientRequest(url: self.configuration.writeURL)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            if let token = self.configuration.token { request.headers.add(name: "Authorization", value: "Token \(token)") }
            request.body = .bytes(ByteBuffer(string: body))
            do {
                let response = try await self.client.execute(request, timeout: .seconds(Int64(self.configuration.timeout.components.seconds)))
                let answer = try await response.body.collect(upTo: 64 << 10)
                guard (200..<300).contains(response.status.code) else {
                    throw InfluxError(message: "HTTP \(response.status.code): \(String(buffer: answer).prefix(300))")
                }
                self.sent.increment(by: Int64(chunk.count))
            } catch {
                self.failures.increment()
                self.logger.warning(
                    "cannot forward metrics to InfluxDB",
                    metadata: ["influx.url": "\(self.configuration.url.host ?? "")", "count": "\(chunk.count)", "error": "\(error)"]
                )
            }
        }
    }

    func shutdown() async throws {
        try await self.client.shutdown()
    }

    struct InfluxError: Error, CustomStringConvertible {
        var message: String
        var description: String { self.message }
    }

    /// `measurement,agentsn=…,tag=value value=1.5 1700000000`, escaped as the line protocol
    /// wants (backslashes, commas and spaces in measurements; and '=' in tag keys and values): a
    /// backslash left alone would escape the separator after it (`a\` then `,`).
    static func line(_ metric: MetricRecord, into body: inout String) {
        body += Self.escaped(metric.name, extra: [])
        var tags = metric.tags
        tags["agentsn"] = metric.agentSN
        for (key, value) in tags.sorted(by: { $0.key < $1.key }) where !value.isEmpty {
            body += "," + Self.escaped(key, extra: ["="]) + "=" + Self.escaped(value, extra: ["="])
        }
        // A value that is not a number is a string field (quotes and backslashes escaped).
        let value = metric.text.isEmpty
            ? "\(metric.value)" : "\"" + metric.text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        body += " value=\(value) \(metric.timestamp)\n"
    }

    static func escaped(_ text: String, extra: Set<Character>) -> String {
        var escaped = ""
        for character in text {
            // The protocol has no newline in a name or tag: it becomes an (escaped) space.
            let character = character.isNewline ? " " : character
            if character == "\\" || character == "," || character == " " || extra.contains(character) { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }
}
