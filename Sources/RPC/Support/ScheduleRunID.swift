/// The id of a scheduled run, `schedule:<name>:<unix seconds it was due>`: made by the agent's
/// scheduler (the same in every life of the agent, so its outbox can tell a run it already
/// made), read by the server to store the run once per host, schedule and due second.
public struct ScheduleRunID: Sendable, Hashable {
    public static let prefix = "schedule:"

    public var name: String
    /// Unix seconds.
    public var due: Int64

    public init(name: String, due: Int64) {
        self.name = name
        self.due = due
    }

    /// Reads an id; nil for anything that is not a run's. Schedule names cannot hold ':'.
    public init?(_ id: String) {
        let parts = id.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "schedule", !parts[1].isEmpty, let due = Int64(parts[2]) else { return nil }
        self.init(name: String(parts[1]), due: due)
    }

    public var id: String { "\(Self.prefix)\(self.name):\(self.due)" }
}

/// A command id a caller chooses (a command runs once per id): 1 to 128 ASCII letters, digits
/// and `. - _ :`, and not a scheduled run's (`schedule:...`, the agents' own).
public enum CommandID {
    static let characters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:")
    static let allowed = Set(characters)
    static let maxLength = 128

    public static func check(_ id: String) throws(AspireError) {
        guard !id.isEmpty, id.count <= Self.maxLength, id.allSatisfy(Self.allowed.contains), !id.hasPrefix(ScheduleRunID.prefix) else {
            throw AspireError(.badRequest, "command.id '\(id.prefix(140))' must be 1-128 letters, digits and . - _ : (and not a scheduled run's)")
        }
    }

    /// The same rule as a JSON Schema pattern, written without a lookahead (not every
    /// generator of examples takes one): an id leaves the reserved prefix at some character —
    /// its first k characters are the prefix's, the next is not — or is a proper start of it.
    /// Empty too: no id, the server makes one.
    public static let pattern: String = {
        let reserved = Array(ScheduleRunID.prefix)
        func characterClass(excluding excluded: Character?) -> String {
            "[" + Self.characters.filter { $0 != excluded }.map { $0 == "-" ? "\\-" : String($0) }.joined() + "]"
        }
        let any = characterClass(excluding: nil)
        var branches: [String] = []
        for k in 0 ..< reserved.count {
            let head = String(reserved[..<k])
            branches.append("\(head)\(characterClass(excluding: reserved[k]))\(any){0,\(Self.maxLength - 1 - k)}")
            if k > 0 { branches.append(head) }
        }
        return "^(?:" + branches.joined(separator: "|") + ")?$"
    }()
}
