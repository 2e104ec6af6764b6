import ArgumentParser
import Cron
import Foundation

struct CronCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cron",
        abstract: "Check cron expressions before they are deployed.",
        subcommands: [Next.self]
    )

    struct Next: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the next fire times of a cron expression, one ISO 8601 time a line.",
            discussion: """
                6 fields (second minute hour day-of-month month day-of-week) or 5 (no seconds); \
                * , - / and names (JAN, MON-FRI); ? L W # in the day fields (L last day, L-3, 15W \
                nearest weekday, LW, 5L last Friday, MON#2 second Monday); @daily and friends.

                aspirectl cron next '0 0/30 8-10 * * *' --count 6
                aspirectl cron next '0 0 9-17 * * MON-FRI' --tz Asia/Shanghai --from 2026-03-01T00:00:00+08:00

                Needs no server: nothing is sent anywhere.
                """
        )

        @Argument(help: "The expression (quote it).")
        var expression: String

        @Option(help: "Start after this time (ISO 8601: 2026-03-08T01:00:00Z, or without a zone in --tz's; default now).")
        var from: String?

        @Option(help: "How many fire times to print (1 to 10000).")
        var count = 5

        @Option(help: "Time zone of the schedule (IANA name such as Europe/Berlin; default this host's).")
        var tz = ""

        func validate() throws {
            guard (1 ... 10_000).contains(self.count) else { throw ValidationError("--count must be from 1 to 10000") }
        }

        func run() throws {
            let schedule: CronSchedule
            do {
                schedule = try CronSchedule(self.expression, timeZone: self.tz)
            } catch {
                FileHandle.standardError.write(Data("aspirectl: \(error)\n".utf8))
                throw ExitCode(1)
            }
            var start = Date()
            if let from = self.from {
                guard let parsed = Self.parse(from, in: schedule.zone) else {
                    throw ValidationError("--from '\(from)' is not an ISO 8601 time (e.g. 2026-03-08T01:00:00Z or 2026-03-08T09:00:00+08:00)")
                }
                start = parsed
            }
            let times = schedule.next(after: start, count: self.count)
            for time in times { print(Self.format(time, in: schedule.zone)) }
            if times.count < self.count {
                let after = Self.format(times.last ?? start, in: schedule.zone)
                let what = times.isEmpty ? "never fires" : "fires no more"
                FileHandle.standardError.write(Data("aspirectl: '\(schedule.expression)' \(what) within 30 years after \(after)\n".utf8))
                throw ExitCode(times.isEmpty ? 4 : 0)
            }
        }

        /// ISO 8601 with the zone's offset at `date` (Z for UTC).
        static func format(_ date: Date, in zone: ZoneRules) -> String {
            let offset = zone.offset(at: Int64(date.timeIntervalSince1970.rounded(.down)))
            return date.formatted(Date.ISO8601FormatStyle(timeZoneSeparator: .colon, timeZone: TimeZone(secondsFromGMT: Int(offset)) ?? .gmt))
        }

        /// ISO 8601 with a zone (Z or ±hh:mm), with or without fractional seconds; without a
        /// zone, a wall time of the schedule's zone.
        static func parse(_ text: String, in zone: ZoneRules) -> Date? {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime]
            if let date = formatter.date(from: text) { return date }
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            if let date = formatter.date(from: text) { return date }
            // A wall time: read as if in UTC, then placed in the zone.
            let local = DateFormatter()
            local.locale = Locale(identifier: "en_US_POSIX")
            local.timeZone = .gmt
            for format in ["yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd"] {
                local.dateFormat = format
                if let wall = local.date(from: text) {
                    return Date(timeIntervalSince1970: TimeInterval(zone.instant(wall: Int64(wall.timeIntervalSince1970))))
                }
            }
            return nil
        }
    }
}
