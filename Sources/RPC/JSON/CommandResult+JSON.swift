#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

extension Aspire_V1_CommandResult {
    /// The seed's JSON form: `{"id", "resp": "success"|"failed", "retcode", "message", "data"}`,
    /// plus Aspire's `stderr`, `truncated`, byte counts and times; as members in the order of
    /// their keys, the order every writer of it writes them in.
    ///
    /// `data` is embedded as JSON when it is a JSON document (getinfo.*), as a string when it is
    /// UTF-8 text, and as base64 with `"data_encoding": "base64"` otherwise.
    public func seedJSONMembers() -> [(key: String, value: JSONValue)] {
        // A page of a task writes a hundred of these: pairs, not a dictionary to hash them into
        // and sort again on the way out (bench/README.md, P6).
        var members: [(key: String, value: JSONValue)] = []
        members.reserveCapacity(12)
        members.append(("id", .string(self.id)))
        members.append(("resp", self.resp == .success ? "success" : "failed"))
        members.append(("retcode", .integer(Int64(self.retcode))))
        members.append(("message", .string(self.message)))
        if !self.data.isEmpty {
            if let first = self.data.first(where: { $0 != 0x20 && $0 != 0x0A }), first == UInt8(ascii: "{") || first == UInt8(ascii: "["),
                let document = try? JSONValue(parsing: self.data)
            {
                members.append(("data", document))
            } else if let text = String(data: self.data, encoding: .utf8) {
                members.append(("data", .string(text)))
            } else {
                members.append(("data", .string(self.data.base64EncodedString())))
                members.append(("data_encoding", "base64"))
            }
        } else {
            members.append(("data", ""))
        }
        if !self.stderr.isEmpty {
            members.append(("stderr", .string(String(decoding: self.stderr, as: UTF8.self))))
        }
        if self.truncated { members.append(("truncated", true)) }
        if self.stdoutBytes > 0 { members.append(("stdout_bytes", .integer(Int64(clamping: self.stdoutBytes)))) }
        if self.stderrBytes > 0 { members.append(("stderr_bytes", .integer(Int64(clamping: self.stderrBytes)))) }
        if self.startedUnixMs > 0 { members.append(("started", .integer(self.startedUnixMs))) }
        if self.finishedUnixMs > 0 { members.append(("finished", .integer(self.finishedUnixMs))) }
        members.sort { $0.key < $1.key }
        return members
    }

    /// ``seedJSONMembers()`` as an object, for a caller that adds to it.
    public func seedJSONObject() -> [String: JSONValue] {
        Dictionary(uniqueKeysWithValues: self.seedJSONMembers().lazy.map { ($0.key, $0.value) })
    }

    /// `seedJSONObject()` serialised, with sorted keys.
    public func seedJSON(pretty: Bool = false) -> Data {
        JSONValue.object(self.seedJSONObject()).encoded(pretty: pretty)
    }
}
