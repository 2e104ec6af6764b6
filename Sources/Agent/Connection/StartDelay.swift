#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
public import RPC

/// The wait before the first connection after the agent starts, so that a rack or a data
/// centre coming back from a power cut does not arrive at its nodes at once (seed 004: "sleep a
/// random while after start, then send the heartbeat"). A restart on a host that has been up a
/// while (an upgrade, an operator) connects at once: commands should reach it without delay.
public enum StartDelay: Sendable, Hashable {
    /// Up to the status step (at most a minute) when the host booted less than five minutes
    /// ago; no wait otherwise.
    case auto
    /// Up to this long, after every start (zero: never wait).
    case upTo(Duration)

    /// A host up for less than this has just booted.
    public static let bootWindow: Duration = .seconds(300)
    /// The longest wait `auto` picks: 10,000 hosts booting together arrive at ~170 a second.
    public static let autoCeiling: Duration = .seconds(60)

    /// `auto`, or a number of seconds.
    public init(parsing text: String) throws(AspireError) {
        if text == "auto" {
            self = .auto
            return
        }
        guard let seconds = Int(text), (0 ... 3600).contains(seconds) else {
            throw AspireError(.badRequest, "--start-delay is 'auto' or 0 to 3600 seconds, not '\(text)'")
        }
        self = .upTo(.seconds(seconds))
    }

    /// The longest wait for a host up for `uptime` (nil: unknown) whose status step is `step`.
    public func ceiling(uptime: Duration?, step: Duration) -> Duration {
        switch self {
        case .upTo(let most):
            return most
        case .auto:
            guard let uptime, uptime < Self.bootWindow else { return .zero }
            return min(step, Self.autoCeiling)
        }
    }

    /// How long this host has been up, from /proc/uptime; nil where it cannot be read.
    public static func uptime(file: String = "/proc/uptime") -> Duration? {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8),
            let seconds = text.split(separator: " ").first.flatMap({ Double($0) })
        else { return nil }
        return .milliseconds(Int64(seconds * 1000))
    }
}
