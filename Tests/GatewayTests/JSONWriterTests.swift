import Foundation
import NIOCore
import RPC
import SwiftProtobuf
import Testing

@testable import Gateway

@Suite("REST JSON writer")
struct JSONWriterTests {
    func text(_ value: Any) throws -> String {
        String(buffer: try JSONWriter.encode(untyped: value))
    }

    func text(_ value: some JSONWritable) -> String {
        String(buffer: JSONWriter.encode(value))
    }

    @Test("Answers: members in key order whatever order they were set in, replaced and removed as in a dictionary")
    func answers() {
        var object: JSONObject = ["status": 0, "b": "x", "a": [1, 2] as [Int], "none": String?.none, "when": RESTJSON.time(0), "list": [["z": 1, "y": true] as JSONObject]]
        #expect(self.text(object) == #"{"a":[1,2],"b":"x","list":[{"y":true,"z":1}],"none":null,"status":0,"when":null}"#)
        object["b"] = Int64(-7)
        object["none"] = nil
        object["c"] = ["k": JSONValue.array([.integer(1), .number(2.5), .null, .bool(false), .object(["q": .string("\"")])])] as [String: JSONValue]
        object["d"] = 2.5
        #expect(self.text(object) == #"{"a":[1,2],"b":-7,"c":{"k":[1,2.5,null,false,{"q":"\""}]},"d":2.5,"list":[{"y":true,"z":1}],"status":0,"when":null}"#)
        #expect(object["b"] as? Int64 == -7 && object["none"] == nil)
        // Already in order: written as it is.
        #expect(self.text(["a": 1, "b": Int32(2), "c": UInt32(3)] as JSONObject) == #"{"a":1,"b":2,"c":3}"#)
        #expect(self.text([:] as JSONObject) == "{}")
        #expect(self.text([String]()) == "[]")
    }

    @Test("The shapes a page repeats are built in key order, so they are written without a sort")
    func shapesInKeyOrder() {
        var object: JSONObject = ["a": 1, "c": 3]
        object["b"] = 2
        object["d"] = 4
        #expect(object.inKeyOrder)
        let host = Aspire_V1_Host.with {
            $0.agentSn = "SN1"
            $0.tags = [.with { $0.name = "env" }]
            $0.agents = [.with { $0.name = "web" }]
            $0.recent = [.with { $0.command = "sync.bash"; $0.subtask = .with { $0.id = "s1"; $0.result = .with { $0.id = "s1" } } }]
        }
        let hostObject = RESTJSON.host(host)
        #expect(hostObject.inKeyOrder)
        for nested in ["agents", "tags", "recent"] {
            #expect((hostObject[nested] as? [JSONObject])?.allSatisfy(\.inKeyOrder) == true, "\(nested)")
        }
        let detail = Aspire_V1_TaskDetail.with {
            $0.task = .with { $0.id = 1; $0.window = .with { $0.startUnixMs = 1 } }
            $0.subtasks = [.with { $0.id = "s1"; $0.result = .with { $0.id = "s1" } }]
        }
        let detailObject = RESTJSON.taskDetail(detail)
        #expect(detailObject.inKeyOrder && (detailObject["task"] as? JSONObject)?.inKeyOrder == true)
        #expect((detailObject["subtasks"] as? [JSONObject])?.allSatisfy(\.inKeyOrder) == true)
    }

    @Test("The typed and the untyped writer write the same text for the same tree")
    func typedAndUntyped() throws {
        let typed: JSONObject = ["name": "web \"1\"\n", "n": 42, "f": 0.1, "ok": true, "tags": ["b": "2", "a": "1"], "list": ["x", "y"]]
        let untyped: [String: Any] = ["name": "web \"1\"\n", "n": 42, "f": 0.1, "ok": true, "tags": ["b": "2", "a": "1"], "list": ["x", "y"]]
        #expect(self.text(typed) == (try self.text(untyped)))
    }

    @Test("Objects come out compact, with keys sorted, at every depth")
    func objects() throws {
        let value: [String: Any] = ["b": 1, "a": ["d": true, "c": NSNull()], "list": [3, "x", false, 1.5, Int64(-7), Int32(2)]]
        #expect(try self.text(value) == #"{"a":{"c":null,"d":true},"b":1,"list":[3,"x",false,1.5,-7,2]}"#)
        #expect(try self.text([String: Any]()) == "{}")
        #expect(try self.text([Any]()) == "[]")
    }

    @Test("Strings escape quotes, backslashes and control characters and keep the rest as UTF-8")
    func strings() throws {
        let tricky = "say \"hi\"\\ /path\n\t\r\u{01}\u{1F} é 中文 🚀 \u{2028}"
        let json = try self.text(["s": tricky])
        #expect(json == #"{"s":"say \"hi\"\\ /path\n\t\r\u0001\u001f é 中文 🚀 "# + "\u{2028}" + #""}"#)
        // Whatever it writes, a standard parser reads back the same string.
        let parsed = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        #expect(parsed?["s"] as? String == tricky)
    }

    @Test("Numbers: integral doubles without a fraction, non-finite as null, parsed documents as they came")
    func numbers() throws {
        #expect(try self.text([3.0, 0.1, 1e300, Double.nan, -Double.infinity]) == "[3,0.1,1e+300,null,null]")
        // What JSONSerialization parses (NSNumber booleans and numbers) is written back unchanged.
        let parsed = try JSONSerialization.jsonObject(with: Data(#"{"ok":true,"n":42,"f":2.5,"no":false,"s":"x"}"#.utf8))
        #expect(try self.text(parsed) == #"{"f":2.5,"n":42,"no":false,"ok":true,"s":"x"}"#)
    }

    @Test("A value it does not know goes through JSONSerialization; one nothing can write throws")
    func fallback() throws {
        #expect(try self.text(["u": UInt64(9)]) == #"{"u":9}"#)
        #expect(throws: (any Error).self) { try JSONWriter.encode(untyped: ["date": Date()]) }
    }
}
