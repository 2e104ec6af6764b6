#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// The time of day, for what is kept across restarts of the agent (a sub-agent's start time) and
/// what is due at a time of day (cron schedules); behind a protocol so that tests set the time
/// instead of waiting for it.
public protocol WallClock: Sendable {
    var now: Date { get }
    /// Returns at `deadline` (or at once when it has passed); throws when cancelled.
    func sleep(until deadline: Date) async throws
}

/// The system's time of day.
public struct SystemWallClock: WallClock {
    public init() {}

    public var now: Date { Date() }

    public func sleep(until deadline: Date) async throws {
        let seconds = deadline.timeIntervalSinceNow
        if seconds > 0 { try await Task.sleep(for: .seconds(seconds)) }
    }
}
