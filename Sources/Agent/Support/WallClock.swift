public import Foundation

/// The time of day, for what is kept across restarts of the agent (a sub-agent's start time),
/// behind a protocol so that tests set it instead of waiting for it.
public protocol WallClock: Sendable {
    var now: Date { get }
}

/// The system's time of day.
public struct SystemWallClock: WallClock {
    public init() {}
    public var now: Date { Date() }
}
