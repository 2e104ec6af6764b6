public import Foundation

extension Aspire_V1_CommandResult {
    /// The seed's JSON form: `{"id", "resp": "success"|"failed", "retcode", "message", "data"}`,
    /// plus Aspire's `stderr`, `truncated`, byte counts and times.
    ///
    /// `data` is embedded as JSON when it is a JSON document (getinfo.*), as a string when it is
    /// UTF-8 text, and as base64 with `"data_encoding": "base64"` otherwise.
    public func seedJSONObject() -> [String: Any] {
        var object: [String: Any] = [
            "id": self.id,
            "resp": self.resp == .success ? "success" : "failed",
            "retcode": Int(self.retcode),
            "message": self.message,
        ]
        if !self.data.isEmpty {
            if let first = self.data.first(where: { $0 != 0x20 && $0 != 0x0A }), first == UInt8(ascii: "{") || first == UInt8(ascii: "["),
                let document = try? JSONSerialization.jsonObject(with: self.data, options: [.fragmentsAllowed])
            {
                object["data"] = document
            } else if let text = String(data: self.data, encoding: .utf8) {
                object["data"] = text
            } else {
                object["data"] = self.data.base64EncodedString()
                object["data_encoding"] = "base64"
            }
        } else {
            object["data"] = ""
        }
        if !self.stderr.isEmpty {
            object["stderr"] = String(decoding: self.stderr, as: UTF8.self)
        }
        if self.truncated { object["truncated"] = true }
        if self.stdoutBytes > 0 { object["stdout_bytes"] = self.stdoutBytes }
        if self.stderrBytes > 0 { object["stderr_bytes"] = self.stderrBytes }
        if self.startedUnixMs > 0 { object["started"] = self.startedUnixMs }
        if self.finishedUnixMs > 0 { object["finished"] = self.finishedUnixMs }
        return object
    }

    /// `seedJSONObject()` serialised, with sorted keys.
    public func seedJSON(pretty: Bool = false) -> Data {
        var options: JSONSerialization.WritingOptions = [.sortedKeys, .withoutEscapingSlashes]
        if pretty { options.insert(.prettyPrinted) }
        return (try? JSONSerialization.data(withJSONObject: self.seedJSONObject(), options: options)) ?? Data("{}".utf8)
    }
}
