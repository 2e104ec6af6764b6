import Foundation
import RPC

/// What one benchmark prints: a table for people and one JSON line for machines.
struct Report: Sendable {
    enum Value: Encodable, Sendable {
        case number(Double)
        case text(String)

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .number(let value): try container.encode((value * 1000).rounded() / 1000)
            case .text(let value): try container.encode(value)
            }
        }
    }

    struct Row: Sendable {
        var metric: String
        var value: String
        var target: String
    }

    let id: String
    let title: String
    var rows: [Row] = []
    var figures: [String: Value] = [:]

    init(_ id: String, _ title: String, quick: Bool) {
        self.id = id
        self.title = title
        self.figures["bench"] = .text(id)
        self.figures["quick"] = .text(quick ? "yes" : "no")
    }

    /// Adds a figure: a table row (`value` formatted with `unit`) and a JSON key.
    mutating func add(_ key: String, _ metric: String, _ value: Double, unit: String = "", digits: Int = 1, target: String = "") {
        self.figures[key] = .number(value)
        let text = value.isFinite ? String(format: "%.\(digits)f", value) : "n/a"
        self.rows.append(Row(metric: metric, value: unit.isEmpty ? text : "\(text) \(unit)", target: target))
    }

    mutating func note(_ key: String, _ metric: String, _ text: String) {
        self.figures[key] = .text(text)
        self.rows.append(Row(metric: metric, value: text, target: ""))
    }

    var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: encoder.encode(self.figures), as: UTF8.self)) ?? "{}"
    }

    func print(jsonOnly: Bool) {
        if !jsonOnly {
            let width = max(28, self.rows.map(\.metric.count).max() ?? 0)
            let valueWidth = max(14, self.rows.map(\.value.count).max() ?? 0)
            Swift.print("\n== \(self.id) \(self.title)")
            for row in self.rows {
                let metric = row.metric.padding(toLength: width, withPad: " ", startingAt: 0)
                let value = String(repeating: " ", count: max(0, valueWidth - row.value.count)) + row.value
                Swift.print("  \(metric)  \(value)\(row.target.isEmpty ? "" : "   target \(row.target)")")
            }
        }
        Swift.print(self.json)
        fflush(nil)
    }
}

/// Percentiles and medians of samples.
enum Stats {
    /// The nearest-rank percentile `p` (0...100) of `samples`; NaN when there are none.
    static func percentile(_ samples: [Double], _ p: Double) -> Double {
        guard !samples.isEmpty else { return .nan }
        let sorted = samples.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }

    static func median(_ samples: [Double]) -> Double { self.percentile(samples, 50) }
}

extension Duration {
    /// Milliseconds with their fraction, as the tables print latencies.
    var millis: Double { self.seconds * 1000 }
}
