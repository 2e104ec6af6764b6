import Foundation
import RPC
import Testing

@testable import Agent

@Suite("Plugin output")
struct PluginOutputTests {
    let now = Date(timeIntervalSince1970: 1_795_000_000)

    func parse(_ text: String) throws -> PluginOutput.Parsed {
        try PluginOutput.parse(Data(text.utf8), plugin: "nginx", host: "web-1", now: self.now)
    }

    @Test("The seed's metrics are renamed plugin.<plugin>.<name>, get the host tag, and keep their second timestamps")
    func seedMetrics() throws {
        let parsed = try self.parse(
            """
            [{"name": "requests", "timestamp": 1794999990, "tags": {"vhost": "a.example"}, "value": 42},
             {"name": "up", "timestamp": 1794999990, "tags": {}, "value": true},
             {"name": "ratio", "timestamp": 1794999990.7, "value": "0.25"}]
            """
        )
        #expect(parsed.problems.isEmpty)
        #expect(
            parsed.metrics == [
                PluginMetric(name: "plugin.nginx.requests", timestamp: 1_794_999_990, tags: ["vhost": "a.example", "host": "web-1"], value: 42),
                PluginMetric(name: "plugin.nginx.up", timestamp: 1_794_999_990, tags: ["host": "web-1"], value: 1),
                PluginMetric(name: "plugin.nginx.ratio", timestamp: 1_794_999_990, tags: ["host": "web-1"], value: 0.25),
            ]
        )
    }

    @Test("A timestamp of 0, missing, negative, or in milliseconds or nanoseconds becomes now")
    func timestamps() throws {
        let parsed = try self.parse(
            """
            [{"name": "a", "timestamp": 0, "value": 1}, {"name": "b", "value": 1}, {"name": "c", "timestamp": -5, "value": 1},
             {"name": "d", "timestamp": 1794999990123, "value": 1}, {"name": "e", "timestamp": 1794999990123456789, "value": 1}]
            """
        )
        #expect(parsed.metrics.map(\.timestamp) == Array(repeating: 1_795_000_000, count: 5))
    }

    @Test("Unusable metrics are left out and named; the others go")
    func problems() throws {
        let parsed = try self.parse(
            """
            [{"name": "ok", "value": 1}, {"name": "text", "value": "high"}, {"value": 3}, {"name": "bad name!", "value": 1},
             "not an object", {"name": "tagged", "value": 2, "tags": {"n": 5, "nested": {"x": 1}}}, {"name": "nothing"}]
            """
        )
        #expect(parsed.metrics.map(\.name) == ["plugin.nginx.ok", "plugin.nginx.text", "plugin.nginx.tagged"])
        #expect(parsed.metrics.last?.tags == ["n": "5", "host": "web-1"])
        #expect(parsed.problems.count == 5, "\(parsed.problems)")
        #expect(parsed.problems.contains("metric nothing has no value, or one longer than 1024 bytes"))
        #expect(parsed.problems.contains("metric 5 is not an object"))
    }

    @Test("Values that are not numbers are kept as text: strings as they are, objects and lists as JSON, up to 1 KiB")
    func textValues() throws {
        let long = String(repeating: "x", count: 1025)
        let parsed = try self.parse(
            """
            [{"name": "state", "value": "degraded"}, {"name": "ports", "value": [80, 443]}, {"name": "build", "value": {"sha": "ab12", "n": 7}},
             {"name": "ratio", "value": "0.5"}, {"name": "huge", "value": "\(long)"}, {"name": "none", "value": null}]
            """
        )
        let byName = Dictionary(uniqueKeysWithValues: parsed.metrics.map { ($0.name, $0) })
        #expect(byName["plugin.nginx.state"]?.text == "degraded" && byName["plugin.nginx.state"]?.value == 0)
        #expect(byName["plugin.nginx.ports"]?.text == "[80,443]")
        #expect(byName["plugin.nginx.build"]?.text == #"{"n":7,"sha":"ab12"}"#)
        #expect(byName["plugin.nginx.ratio"]?.value == 0.5 && byName["plugin.nginx.ratio"]?.text == nil, "numeric strings are still numbers")
        #expect(byName["plugin.nginx.huge"] == nil && byName["plugin.nginx.none"] == nil && parsed.problems.count == 2)
    }

    @Test("Output that is not a JSON list is an error that quotes it")
    func notAList() {
        for (text, words) in [
            ("", "(nothing)"), ("Traceback (most recent call last):", "'Traceback"), ("{\"name\": \"x\"}", "not a list"),
            ("[{\"name\": \"x\", \"value\": 1}", "no JSON list"),
        ] {
            let error = #expect(throws: AspireError.self) { try self.parse(text) }
            #expect(error?.cause.contains(words) == true, "\(error?.cause ?? "")")
            #expect(error?.cause.hasPrefix("plugin nginx ") == true)
        }
        let many = "[" + Array(repeating: "{\"name\":\"m\",\"value\":1}", count: PluginOutput.maxMetrics + 1).joined(separator: ",") + "]"
        #expect(throws: AspireError.self) { try self.parse(many) }
    }
}
