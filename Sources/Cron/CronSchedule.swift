#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// A cron expression in a time zone: its fire times as instants.
///
/// The expression is matched against the zone's wall clock. Where the clock jumps (daylight
/// saving time), instants are found one stretch of constant UTC offset at a time, and:
/// - **Clocks go forward** (02:00 → 03:00): wall times in the skipped interval never happen. If the
///   expression matches any of them, the schedule fires once, at the instant of the jump (03:00
///   new time) — a daily 02:30 job runs at 03:00 that day, an every-10-minutes job runs once for
///   the missing hour. Nothing fires twice: the jump's instant is also 03:00's.
/// - **Clocks go back** (02:00 → 01:00): the repeated wall times fire again only for a schedule
///   whose second, minute or hour field starts with `*` (it follows the clock: `0 * * * *` runs
///   at both 01:00s); a fixed-time schedule (`30 1 * * *`) runs once, at the first 01:30. This is
///   Vixie cron's rule.
public struct CronSchedule: Sendable, Hashable {
    public let expression: CronExpression
    public let zone: ZoneRules

    /// How far ahead a search looks before it says the expression never fires (30 February).
    public static let horizon: Int64 = 30 * 366 * 86_400

    public init(_ expression: CronExpression, zone: ZoneRules = .host) {
        self.expression = expression
        self.zone = zone
    }

    /// The zones a schedule may name (the REST document's enumeration of `tz`): the zones and
    /// links of this host's time zone database (its `tzdata.zi`), UTC and GMT — each one whose
    /// file reads. Reading them all takes a moment: the server's document asks, not the agent.
    public static let zoneNames: [String] = Self.namesInDatabase.filter { ZoneRules(named: $0) != nil }.sorted()
    private static let namesInDatabase = Set(ZoneRules.databaseNames() + ["UTC", "GMT"])

    /// Parses the expression and the zone (an IANA name such as `Asia/Shanghai`, or `UTC`;
    /// empty is the host's zone). Only the names of ``zoneNames``: not "EST5" or "GMT+8", nor
    /// the database's other files.
    public init(_ text: String, timeZone zone: String = "") throws(CronError) {
        let expression = try CronExpression(text)
        if zone.isEmpty {
            self.init(expression)
            return
        }
        guard Self.namesInDatabase.contains(zone), let rules = ZoneRules(named: zone) else {
            throw CronError(field: "time zone", token: zone, reason: "is not a time zone name (e.g. UTC, Europe/Berlin, Asia/Shanghai)")
        }
        self.init(expression, zone: rules)
    }

    /// The first fire time strictly after `date`, in whole seconds; nil when the expression
    /// never fires within ``horizon``.
    public func next(after date: Date) -> Date? {
        var from = Int64(date.timeIntervalSince1970.rounded(.down)) + 1
        let horizon = from + Self.horizon
        var atTransition = false
        while from < horizon {
            let offset = self.zone.offset(at: from)
            let end = self.zone.nextTransition(after: from) ?? horizon
            var start = from + offset
            if atTransition {
                let before = self.zone.offset(at: from - 1)
                if offset > before {
                    // Skipped wall times: one run at the jump for any of them.
                    if self.expression.firstMatch(from: from + before, before: from + offset) != nil {
                        return Date(timeIntervalSince1970: TimeInterval(from))
                    }
                } else if offset < before, !self.expression.isFrequent {
                    // Repeated wall times: a fixed-time schedule already ran at their first pass.
                    start = from + before
                }
            }
            if let wall = self.expression.firstMatch(from: start, before: min(end, horizon) + offset) {
                return Date(timeIntervalSince1970: TimeInterval(wall - offset))
            }
            from = end
            atTransition = true
        }
        return nil
    }

    /// The next `count` fire times after `date`.
    public func next(after date: Date, count: Int) -> [Date] {
        var times: [Date] = []
        var cursor = date
        while times.count < count, let time = self.next(after: cursor) {
            times.append(time)
            cursor = time
        }
        return times
    }
}
