import Foundation
import NIOCore
import RPC
import Testing

@testable import Gateway

/// `JSONValue`: the agent's JSON documents without Foundation's JSONSerialization, and the
/// result bodies built from them.
@Suite("JSON values read and written with FoundationEssentials' coders")
struct JSONValueTests {
    static func text(_ value: JSONValue, pretty: Bool = false) -> String {
        String(decoding: value.encoded(pretty: pretty), as: UTF8.self)
    }

    @Test("Every shape reads back as it was: whole numbers exact to 64 bits, booleans apart from numbers, null, nesting")
    func shapes() throws {
        let text = #"{"big":9223372036854775807,"neg":-9223372036854775808,"f":2.5,"e":1e300,"t":true,"n":null,"s":"a/b \"q\" é","list":[1,"x",false,[],{}],"o":{"z":{"y":[null]}}}"#
        let value = try JSONValue(parsing: Data(text.utf8))
        let object = try #require(value.object)
        #expect(object["big"] == .integer(.max) && object["neg"] == .integer(.min))
        #expect(object["f"] == .number(2.5) && object["e"] == .number(1e300))
        #expect(object["t"] == .bool(true) && object["n"] == .null && object["s"] == .string(#"a/b "q" é"#))
        #expect(object["list"] == [1, "x", false, [], [:]])
        #expect(object["o"] == ["z": ["y": [.null]]])
        // Written back compact, keys sorted, slashes as they are; read again, the same value.
        #expect(Self.text(value) == #"{"big":9223372036854775807,"e":1e+300,"f":2.5,"list":[1,"x",false,[],{}],"n":null,"neg":-9223372036854775808,"o":{"z":{"y":[null]}},"s":"a/b \"q\" é","t":true}"#)
        #expect(try JSONValue(parsing: value.encoded()) == value)
        #expect(try JSONValue(parsing: value.encoded(pretty: true)) == value)
        // Any value at the top, not only objects.
        #expect(try JSONValue(parsing: Data("  42 ".utf8)) == .integer(42))
        #expect(try JSONValue(parsing: Data(#""x""#.utf8)) == .string("x"))
        #expect(JSONValue(.nan) == .null && JSONValue(1.5) == .number(1.5))
    }

    @Test("What is not JSON throws (FoundationEssentials' parser forgives a trailing comma, as JSONSerialization's does)")
    func malformed() {
        for text in ["", "{", "[1", "{'a':1}", "tru", "1 2", #"{"a" 1}"#, "NaN", "[01]", #""\x""#] {
            #expect(throws: (any Error).self, "\(text)") { try JSONValue(parsing: Data(text.utf8)) }
        }
    }

    @Test("The gateway's writer writes a value as the value writes itself")
    func gatewayWriter() throws {
        let value = try JSONValue(parsing: Data(#"{"b":[1,2.5,true,null,"s\n"],"a":{"c":-3}}"#.utf8))
        #expect(String(buffer: JSONWriter.encode(value)) == Self.text(value))
        // Inside the gateway's own dictionaries too (a result inside a task's page).
        #expect(String(buffer: JSONWriter.encode(["result": value, "n": 1] as JSONObject)) == #"{"n":1,"result":"# + Self.text(value) + "}")
    }

    @Test("A result's seed body: data embedded when it is JSON, as text when UTF-8, as base64 otherwise")
    func seedBody() throws {
        var result = Aspire_V1_CommandResult()
        result.id = "c1"
        result.resp = .success
        result.message = "success"
        result.data = Data(#" {"users":[{"name":"root","uid":0}]}"#.utf8)
        result.stdoutBytes = .max
        #expect(
            String(decoding: result.seedJSON(), as: UTF8.self)
                == #"{"data":{"users":[{"name":"root","uid":0}]},"id":"c1","message":"success","resp":"success","retcode":0,"stdout_bytes":9223372036854775807}"#
        )
        result.stdoutBytes = 0
        result.data = Data("[not json".utf8)
        #expect(try JSONValue(parsing: result.seedJSON()).object?["data"] == .string("[not json"))
        result.data = Data([0xFF, 0xFE, 0x00])
        let binary = try #require(try JSONValue(parsing: result.seedJSON()).object)
        #expect(binary["data"] == .string("//4A") && binary["data_encoding"] == .string("base64"))
    }

    @Test("Text helpers: trimming as Foundation did, and a system error's reason in words")
    func text() throws {
        #expect(" \t a b \r\n".trimmed() == "a b" && "\n\n".trimmed().isEmpty && "x".trimmed() == "x")
        #expect(" \t a b \n".trimmingBlanks() == "a b \n" && "  ".trimmingBlanks().isEmpty)
        do {
            _ = try String(contentsOfFile: "/nonexistent/aspire", encoding: .utf8)
            Issue.record("read a file that is not there")
        } catch {
            #expect(AspireError.reason(error) == "No such file or directory")
        }
        #expect(AspireError.reason(AspireError(.notFound, "no such host")) == "no such host")
    }
}
