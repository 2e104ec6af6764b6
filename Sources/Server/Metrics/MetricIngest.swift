import Foundation
public import Logging
import Prometheus
public import RPC
public import ServiceLifecycle
import Synchronization

/// Plugin metrics arriving from agents: checked, queued, and written to the store once a
/// `flushInterval` as the latest value per host, metric and tag set (one statement per
/// thousand points, not one per batch); then forwarded to InfluxDB when one is configured. It
/// also keeps the node's own metrics and writes both in Prometheus text format for `/metrics`.
public final class MetricIngest: Service {
    public struct Configuration: Sendable {
        public var flushInterval: Duration = .seconds(1)
        /// Points waiting for the store beyond this are dropped (and counted).
        public var maxQueued = 500_000
        /// Distinct series (name and tags) one host may have; points of more are refused (and
        /// counted): a plugin that puts a timestamp in a tag does not grow the store for ever.
        public var maxSeriesPerHost = 1000
        /// `/metrics` leaves out values no agent has sent for this long (a host gone quiet
        /// does not export its last values forever).
        public var maxAge: Duration = .seconds(3600)
        public var influx: InfluxForwarder.Configuration?

        public init() {}
    }

    /// What one point may carry.
    static let maxNameBytes = 256
    static let maxTags = 64

    let configuration: Configuration
    /// The series each host has sent since this node started (hashes of name and tags).
    private let series = Mutex<[String: Set<Int>]>([:])
    let store: SQLStore
    let sessions: SessionRegistry
    let logger: Logger
    let prometheus: PrometheusCollectorRegistry
    private let queue = Mutex<[MetricRecord]>([])
    private let influx: InfluxForwarder?
    private let received: Counter
    private let refused: Counter
    private let dropped: Counter
    private let stored: Counter
    private let connected: Gauge
    private let queued: Gauge
    private let memory: Gauge

    public init(configuration: Configuration, store: SQLStore, sessions: SessionRegistry, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.sessions = sessions
        self.logger = logger
        let prometheus = PrometheusCollectorRegistry()
        self.prometheus = prometheus
        self.received = self.prometheus.makeCounter(name: "aspire_plugin_metrics_received_total", help: "Plugin metric points received from agents.")
        self.refused = self.prometheus.makeCounter(name: "aspire_plugin_metrics_refused_total", help: "Points refused: empty or long names, too many tags, values that are not finite.")
        self.dropped = self.prometheus.makeCounter(name: "aspire_plugin_metrics_dropped_total", help: "Points dropped because too many waited for the store.")
        self.stored = self.prometheus.makeCounter(name: "aspire_plugin_metrics_stored_total", help: "Latest values written to the store.")
        self.connected = self.prometheus.makeGauge(name: "aspire_agents_connected", help: "Agents whose stream this node holds.")
        self.queued = self.prometheus.makeGauge(name: "aspire_plugin_metrics_queued", help: "Points waiting for the store.")
        self.memory = self.prometheus.makeGauge(name: "process_resident_memory_bytes", help: "Resident memory of this node.")
        self.influx = configuration.influx.map { InfluxForwarder(configuration: $0, prometheus: prometheus, logger: logger) }
    }

    /// Takes a batch an agent sent; points that cannot be kept are counted and left out.
    public func receive(_ batch: Aspire_V1_MetricBatch, from agentSN: String) {
        var accepted: [MetricRecord] = []
        accepted.reserveCapacity(batch.metrics.count)
        self.series.withLock { series in
            var known = series[agentSN, default: []]
            for metric in batch.metrics {
                guard !metric.name.isEmpty, metric.name.utf8.count <= Self.maxNameBytes, metric.tags.count <= Self.maxTags,
                    metric.value.isFinite, metric.text.utf8.count <= 1024,
                    metric.tags.allSatisfy({ !$0.key.isEmpty && $0.key.utf8.count <= Self.maxNameBytes && $0.value.utf8.count <= 1024 })
                else { continue }
                var key = Hasher()
                key.combine(metric.name)
                for (name, value) in metric.tags.sorted(by: { $0.key < $1.key }) {
                    key.combine(name)
                    key.combine(value)
                }
                let id = key.finalize()
                guard known.contains(id) || known.count < self.configuration.maxSeriesPerHost else { continue }
                known.insert(id)
                accepted.append(
                    MetricRecord(agentSN: agentSN, name: metric.name, tags: metric.tags, value: metric.value, text: metric.text, timestamp: metric.timestamp)
                )
            }
            series[agentSN] = known
        }
        self.received.increment(by: Int64(batch.metrics.count))
        if accepted.count < batch.metrics.count {
            self.refused.increment(by: Int64(batch.metrics.count - accepted.count))
            self.logger.warning(
                "plugin metrics refused", metadata: ["agent.sn": "\(agentSN)", "count": "\(batch.metrics.count - accepted.count)"]
            )
        }
        let overflow = self.queue.withLock { queue in
            let room = max(0, self.configuration.maxQueued - queue.count)
            queue += accepted.prefix(room)
            return accepted.count - min(room, accepted.count)
        }
        if overflow > 0 { self.dropped.increment(by: Int64(overflow)) }
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try await Task.sleep(for: self.configuration.flushInterval)
                    await self.flush()
                }
            }
        } catch is CancellationError {
            // Stopping: what is queued is still written below.
        }
        await self.flush()
        try? await self.influx?.shutdown()
    }

    /// Writes what is queued to the store, then to InfluxDB.
    public func flush() async {
        let batch = self.queue.withLock { queue in
            defer { queue = [] }
            return queue
        }
        guard !batch.isEmpty else { return }
        do {
            self.stored.increment(by: Int64(try await self.store.storeMetrics(batch)))
        } catch {
            self.logger.error("cannot store plugin metrics", metadata: ["count": "\(batch.count)", "error": "\(String(reflecting: error))"])
        }
        await self.influx?.send(batch)
    }

    /// The hosts' latest metrics, then the node's own, in Prometheus text format 0.0.4.
    public func export() async throws -> String {
        let since = Date().unixMilliseconds - Int64(self.configuration.maxAge.components.seconds) * 1000
        var text = ""
        var offset = 0
        var metrics: [MetricRecord] = []
        while true {
            let page = try await self.store.metrics(receivedSince: since, page: Page(offset: offset, limit: 10_000)).items
            metrics += page
            guard page.count == 10_000 else { break }
            offset += page.count
        }
        PrometheusText.write(metrics, into: &text)
        self.connected.set(Int64(self.sessions.count))
        self.queued.set(Int64(self.queue.withLock { $0.count }))
        if let resident = Self.residentBytes() { self.memory.set(resident) }
        text += self.prometheus.emitToString()
        return text
    }

    /// VmRSS of /proc/self/status, in bytes.
    static func residentBytes() -> Int64? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = Int64(line.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        return kilobytes * 1024
    }
}

/// Host metrics in the Prometheus text exposition format: one gauge family per metric name
/// (`plugin.load.load1` → `plugin_load_load1`), labelled with the host's AgentSN and the
/// point's tags, without timestamps (the latest value is the current one). Values that are
/// not numbers have no place in a gauge: they are left out (REST and InfluxDB carry them).
enum PrometheusText {
    static func write(_ metrics: [MetricRecord], into text: inout String) {
        var families: [String: [MetricRecord]] = [:]
        for metric in metrics where metric.text.isEmpty {
            families[self.name(metric.name), default: []].append(metric)
        }
        for name in families.keys.sorted() {
            text += "# TYPE \(name) gauge\n"
            for metric in families[name]! {
                var labels = [("agentsn", metric.agentSN)]
                var seen: Set<String> = ["agentsn"]
                for (key, value) in metric.tags.sorted(by: { $0.key < $1.key }) {
                    var label = self.name(key, colons: false)
                    if label.hasPrefix("__") || seen.contains(label) { label = "tag_" + label }
                    guard seen.insert(label).inserted else { continue }
                    labels.append((label, value))
                }
                text += name + "{" + labels.map { "\($0.0)=\"\(self.escaped($0.1))\"" }.joined(separator: ",") + "} " + self.value(metric.value) + "\n"
            }
        }
    }

    /// A metric or label name: what is not a letter, digit, '_' (or ':' in metric names) becomes '_'.
    static func name(_ raw: String, colons: Bool = true) -> String {
        var name = String(
            String.UnicodeScalarView(
                raw.unicodeScalars.map { scalar in
                    let allowed = scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "_" || (colons && scalar == ":"))
                    return allowed ? scalar : "_"
                }
            )
        )
        if name.first.map({ $0.isNumber }) ?? true { name = "_" + name }
        return name
    }

    static func escaped(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func value(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}
