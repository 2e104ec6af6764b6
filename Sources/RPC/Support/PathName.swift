/// Names from the network that become paths or parts of ids (sub-agent names and versions,
/// schedule names): letters, digits and `._+-`, not starting with a dot or dash, at most 128
/// characters — so never `..`, a separator, a colon or an option.
public enum PathName {
    /// The same rule as a JSON Schema pattern.
    public static let pattern = "^[A-Za-z0-9_+][A-Za-z0-9._+-]{0,127}$"
    /// A prefix that names things with a number after it (`<prefix>-<n>`, a crontab's
    /// schedules): a path name of at most 100 characters, or empty for the default.
    public static let prefixPattern = "^(?:[A-Za-z0-9_+][A-Za-z0-9._+-]{0,99})?$"
    /// The same, or empty (a version not given).
    public static let optionalPattern = "^(?:[A-Za-z0-9_+][A-Za-z0-9._+-]{0,127})?$"

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
/// host has them is the agent's to say; the server checks that they are names at all: ASCII
/// letters, digits and `._-$`, not starting with `-`, at most 64 (as useradd takes them; a name
/// of other letters would only be one that looks like another).
public enum AccountName {
    /// One name, without anchors.
    public static let namePattern = "[A-Za-z0-9._$][A-Za-z0-9._$-]{0,63}"
    /// The same rule as a JSON Schema pattern; empty is the default user.
    public static let pattern = "^(\(namePattern))?$"

    /// Whether `name` is a user or group name (not empty).
    public static func isValid(_ name: String) -> Bool {
        !name.isEmpty && (try? Self.check([name], owner: "")) != nil
    }

    /// Empty names are skipped (they mean the default).
    public static func check(_ names: [String], owner: String, code: ErrorCode = .badRequest) throws(AspireError) {
        for name in names where !name.isEmpty {
            guard name.utf8.count <= 64, !name.hasPrefix("-"), name.utf8.allSatisfy({ Self.allowed.contains($0) }) else {
                throw AspireError(code, "\(owner): '\(name.prefix(80))' is not a user or group name")
            }
        }
    }

    private static let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-$".utf8)
}

/// A command line that says something: at least one character that is not ASCII white space
/// (a schedule's command; Unicode's other spaces are the command's own business).
public enum CommandText {
    /// The same rule as a JSON Schema pattern (which matches anywhere in the text).
    public static let pattern = "[^ \\t\\n\\v\\f\\r]"

    public static func isBlank(_ text: String) -> Bool {
        text.utf8.allSatisfy { Self.blanks.contains($0) }
    }

    private static let blanks: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D]
}
