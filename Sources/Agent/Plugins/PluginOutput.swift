#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
public import RPC

/// One metric of a plugin run, as the agent ships it: renamed `plugin.<plugin>.<metric>`, with
/// the host tag, in whole seconds.
public struct PluginMetric: Sendable, Hashable {
    public var name: String
    /// Unix seconds.
    public var timestamp: Int64
    public var tags: [String: String]
    public var value: Double
    /// A value that is not a number, as text (a string, or the JSON of an object or list).
    public var text: String?

    public init(name: String, timestamp: Int64, tags: [String: String], value: Double, text: String? = nil) {
        self.name = name
        self.timestamp = timestamp
        self.tags = tags
        self.value = value
        self.text = text
    }
}

/// Reads what a `plugin.sh` prints: a JSON list of `{"name", "timestamp", "tags", "value"}` (the
/// seed's Metric). Each metric is renamed `plugin.<plugin>.<name>` and gets the `host` tag; a
/// timestamp of 0, or one not in seconds (milliseconds and finer), becomes now. Values are
/// numbers (booleans count 1 and 0, numeric strings are read); any other value — a string, an
/// object, a list (the seed's value is any JSON type) — is kept as text, up to 1 KiB. A metric
/// that cannot be used is left out and named in `problems`, the others go. Output that is not a
/// JSON list is an error.
public enum PluginOutput {
    public struct Parsed: Sendable {
        public var metrics: [PluginMetric]
        public var problems: [String]
    }

    /// More metrics than this from one run is a plugin gone wrong.
    public static let maxMetrics = 10_000

    /// Timestamps at or above this are milliseconds or finer (1e11 s is the year 5138).
    static let secondsLimit: Double = 100_000_000_000

    /// `prefix` replaces `plugin.<plugin>` in the names (metrics posted to the local interface
    /// are `post.<ns>.<name>`).
    public static func parse(_ data: Data, plugin: String, host: String, now: Date, prefix: String? = nil) throws(AspireError) -> Parsed {
        let prefix = prefix ?? "plugin.\(plugin)"
        let nowSeconds = Int64(now.timeIntervalSince1970)
        let document: JSONValue
        do {
            document = try JSONValue(parsing: data)
        } catch {
            throw AspireError(.invalidParams, "plugin \(plugin) printed no JSON list of metrics: \(Self.excerpt(data))")
        }
        guard let list = document.array else {
            throw AspireError(.invalidParams, "plugin \(plugin) printed JSON that is not a list of metrics: \(Self.excerpt(data))")
        }
        guard list.count <= Self.maxMetrics else {
            throw AspireError(.invalidParams, "plugin \(plugin) printed \(list.count) metrics; at most \(Self.maxMetrics) are taken from one run")
        }
        var parsed = Parsed(metrics: [], problems: [])
        for (index, element) in list.enumerated() {
            guard let object = element.object else {
                parsed.problems.append("metric \(index + 1) is not an object")
                continue
            }
            guard let name = object["name"]?.string, Self.isMetricName(name) else {
                parsed.problems.append("metric \(index + 1) has no usable name (letters, digits and _ . : -)")
                continue
            }
            let value = Self.number(object["value"])
            let text = value == nil ? Self.text(object["value"]) : nil
            guard value != nil || text != nil else {
                parsed.problems.append("metric \(name) has no value, or one longer than \(Self.maxTextBytes) bytes")
                continue
            }
            var tags: [String: String] = [:]
            if let given = object["tags"]?.object {
                for (key, tag) in given {
                    switch tag {
                    case .string(let text): tags[key] = text
                    case .integer(let number): tags[key] = String(number)
                    case .number(let number): tags[key] = "\(number)"
                    case .bool(let flag): tags[key] = flag ? "1" : "0"
                    default: parsed.problems.append("metric \(name): tag \(key) is not a string; left out")
                    }
                }
            } else if let tags = object["tags"], tags != .null {
                parsed.problems.append("metric \(name): tags is not an object; left out")
            }
            tags["host"] = host
            var timestamp = nowSeconds
            if let given = Self.number(object["timestamp"]), given >= 1, given < Self.secondsLimit {
                timestamp = Int64(given.rounded(.down))
            }
            parsed.metrics.append(PluginMetric(name: "\(prefix).\(name)", timestamp: timestamp, tags: tags, value: value ?? 0, text: text))
        }
        return parsed
    }

    static func number(_ value: JSONValue?) -> Double? {
        if case .string(let text) = value {
            return Double(text.trimmingBlanks()).flatMap { $0.isFinite ? $0 : nil }
        }
        // Booleans count too: true is 1, false 0.
        return value?.double.flatMap { $0.isFinite ? $0 : nil }
    }

    /// The longest text value kept.
    public static let maxTextBytes = 1024

    /// A value that is not a number, as text: a string as it is, an object or list as JSON.
    static func text(_ value: JSONValue?) -> String? {
        let text: String?
        switch value {
        case .string(let string): text = string
        case .object, .array: text = value.map { String(decoding: $0.encoded(), as: UTF8.self) }
        default: text = nil
        }
        guard let text, text.utf8.count <= Self.maxTextBytes else { return nil }
        return text
    }

    static func isMetricName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 200
            && name.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":") || byte == UInt8(ascii: "-")
            }
    }

    static func excerpt(_ data: Data) -> String {
        let text = String(decoding: data.prefix(200), as: UTF8.self).trimmed()
        return text.isEmpty ? "(nothing)" : "'\(text)\(data.count > 200 ? "…" : "")'"
    }
}
