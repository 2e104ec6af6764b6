/// Names from the network that become paths or parts of ids (sub-agent names and versions,
/// schedule names): letters, digits and `._+-`, not starting with a dot or dash, at most 128
/// characters — so never `..`, a separator, a colon or an option.
public enum PathName {
    public static func check(_ value: String, field: String, code: ErrorCode = .invalidParams) throws(AspireError) {
        let allowed = value.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-")
        }
        guard !value.isEmpty, value.utf8.count <= 128, allowed, !value.hasPrefix("."), !value.hasPrefix("-") else {
            throw AspireError(code, "\(field) '\(value.prefix(160))' must be 1 to 128 letters, digits and . _ + -, not starting with '.' or '-'")
        }
    }
}

/// User and group names that commands, sub-agents, schedules and plugins run as. Whether the
/// host has them is the agent's to say; the server checks that they are names at all.
public enum AccountName {
    /// Empty names are skipped (they mean the default).
    public static func check(_ names: [String], owner: String, code: ErrorCode = .badRequest) throws(AspireError) {
        for name in names where !name.isEmpty {
            guard name.utf8.count <= 64, !name.hasPrefix("-"), name.allSatisfy({ $0.isLetter || $0.isNumber || "._-$".contains($0) }) else {
                throw AspireError(code, "\(owner): '\(name.prefix(80))' is not a user or group name")
            }
        }
    }
}
