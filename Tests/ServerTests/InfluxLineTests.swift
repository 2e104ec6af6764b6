import Testing

@testable import Server

@Suite("InfluxDB line protocol")
struct InfluxLineTests {
    @Test("Names and tags escape backslashes, commas, spaces and (in tags) '=', so no value escapes the separator after it")
    func escaping() {
        var body = ""
        InfluxForwarder.line(
            MetricRecord(agentSN: "web-1", name: #"plugin.disk c:\"#, tags: ["path": #"C:\temp\"#, "k=v": "a,b c"], value: 1.5, timestamp: 1_700_000_000),
            into: &body
        )
        #expect(body == #"plugin.disk\ c:\\,agentsn=web-1,k\=v=a\,b\ c,path=C:\\temp\\ value=1.5 1700000000"# + "\n")
    }
}
