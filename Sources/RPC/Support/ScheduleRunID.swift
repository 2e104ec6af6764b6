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
