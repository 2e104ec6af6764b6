#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

extension Aspire_V1_CommandResult {
    /// The seed's JSON form: `{"id", "resp": "success"|"failed", "retcode", "message", "data"}`,
    /// plus Aspire's `stderr`, `truncated`, byte counts and times.
    ///
    /// `data` is embedded as JSON when it is a JSON document (getinfo.*), as a string when it is
    /// UTF-8 text, and as base64 with `"data_encoding": "base64"` otherwise.
    public func seedJSONObject() -> [String: JSONValue] {
        // Room for every member below at once, not grown (and rehashed) on the way.
        var object = [String: JSONValue](minimumCapacity: 12)
        object["id"] = .string(self.id)
        object["resp"] = self.resp == .success ? "success" : "failed"
        object["retcode"] = .integer(Int64(self.retcode))
        object["message"] = .string(self.message)
        if !self.data.isEmpty {
            if let first = self.data.first(where: { $0 != 0x20 && $0 != 0x0A }), first == UInt8(ascii: "{") || first == UInt8(ascii: "["),
                let document = try? JSONValue(parsing: self.data)
            {
                object["data"] = document
            } else if let text = String(data: self.data, encoding: .utf8) {
                object["data"] = .string(text)
            } else {
                object["data"] = .string(self.data.base64EncodedString())
                object["data_encoding"] = "base64"
            }
        } else {
            object["data"] = ""
        }
        if !self.stderr.isEmpty {
            object["stderr"] = .string(String(decoding: self.stderr, as: UTF8.self))
        }
        if self.truncated { object["truncated"] = true }
        if self.stdoutBytes > 0 { object["stdout_bytes"] = .integer(Int64(clamping: self.stdoutBytes)) }
        if self.stderrBytes > 0 { object["stderr_bytes"] = .integer(Int64(clamping: self.stderrBytes)) }
        if self.startedUnixMs > 0 { object["started"] = .integer(self.startedUnixMs) }
        if self.finishedUnixMs > 0 { object["finished"] = .integer(self.finishedUnixMs) }
        return object
    }

    /// `seedJSONObject()` serialised, with sorted keys.
    public func seedJSON(pretty: Bool = false) -> Data {
        JSONValue.object(self.seedJSONObject()).encoded(pretty: pretty)
    }
}
