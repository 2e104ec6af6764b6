import Cron
import Foundation
import Testing

/// Fire times written out by hand (2026-01-01 is a Thursday, 2026-11-22 a Sunday).
@Suite("Cron expressions and their fire times")
struct CronTests {
    static var iso: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter
    }

    /// The next `count` fire times after `from`, as UTC ISO 8601.
    static func times(_ expression: String, tz: String = "UTC", from: String, count: Int) throws -> [String] {
        let schedule = try CronSchedule(expression, timeZone: tz)
        let start = try #require(Self.iso.date(from: from), "bad test time \(from)")
        return schedule.next(after: start, count: count).map { Self.iso.string(from: $0) }
    }

    @Test("The seed's six-field examples")
    func seedExamples() throws {
        let from = "2026-11-22T10:17:33Z"
        #expect(try Self.times("0 0 * * * *", from: from, count: 3) == ["2026-11-22T11:00:00Z", "2026-11-22T12:00:00Z", "2026-11-22T13:00:00Z"])
        #expect(try Self.times("*/10 * * * * *", from: from, count: 3) == ["2026-11-22T10:17:40Z", "2026-11-22T10:17:50Z", "2026-11-22T10:18:00Z"])
        #expect(
            try Self.times("0 0 8-10 * * *", from: from, count: 4)
                == ["2026-11-23T08:00:00Z", "2026-11-23T09:00:00Z", "2026-11-23T10:00:00Z", "2026-11-24T08:00:00Z"]
        )
        // The seed's comment stops at 10:00, but 0/30 in the minute field includes 10:30.
        #expect(
            try Self.times("0 0/30 8-10 * * *", from: from, count: 7) == [
                "2026-11-22T10:30:00Z", "2026-11-23T08:00:00Z", "2026-11-23T08:30:00Z", "2026-11-23T09:00:00Z",
                "2026-11-23T09:30:00Z", "2026-11-23T10:00:00Z", "2026-11-23T10:30:00Z",
            ]
        )
        let weekdays = try Self.times("0 0 9-17 * * MON-FRI", from: from, count: 10)
        #expect(weekdays.first == "2026-11-23T09:00:00Z" && weekdays[8] == "2026-11-23T17:00:00Z" && weekdays[9] == "2026-11-24T09:00:00Z")
        #expect(try Self.times("0 0 9-17 * * MON-FRI", from: "2026-11-27T17:00:00Z", count: 1) == ["2026-11-30T09:00:00Z"], "Friday 17:00 → Monday")
        #expect(try Self.times("0 0 0 25 12 ?", from: from, count: 2) == ["2026-12-25T00:00:00Z", "2027-12-25T00:00:00Z"])
    }

    @Test("The seed's crontab lines (five fields)")
    func seedCrontab() throws {
        let from = "2026-11-22T10:17:33Z"
        #expect(
            try Self.times("0 23-7/2,8 * * *", from: from, count: 7) == [
                "2026-11-22T23:00:00Z", "2026-11-23T01:00:00Z", "2026-11-23T03:00:00Z", "2026-11-23T05:00:00Z",
                "2026-11-23T07:00:00Z", "2026-11-23T08:00:00Z", "2026-11-23T23:00:00Z",
            ]
        )
        // The 4th of the month OR Monday to Wednesday.
        #expect(
            try Self.times("0 11 4 * 1-3", from: from, count: 8) == [
                "2026-11-23T11:00:00Z", "2026-11-24T11:00:00Z", "2026-11-25T11:00:00Z", "2026-11-30T11:00:00Z",
                "2026-12-01T11:00:00Z", "2026-12-02T11:00:00Z", "2026-12-04T11:00:00Z", "2026-12-07T11:00:00Z",
            ]
        )
        #expect(
            try Self.times("45 4 1,10,22 * *", from: from, count: 4)
                == ["2026-12-01T04:45:00Z", "2026-12-10T04:45:00Z", "2026-12-22T04:45:00Z", "2027-01-01T04:45:00Z"]
        )
        #expect(
            try Self.times("2 8-16/3 * * *", from: from, count: 4)
                == ["2026-11-22T11:02:00Z", "2026-11-22T14:02:00Z", "2026-11-23T08:02:00Z", "2026-11-23T11:02:00Z"]
        )
        let halfHours = try Self.times("0-59/30 18-23 * * *", from: from, count: 13)
        #expect(halfHours.prefix(3) == ["2026-11-22T18:00:00Z", "2026-11-22T18:30:00Z", "2026-11-22T19:00:00Z"])
        #expect(halfHours[11] == "2026-11-22T23:30:00Z" && halfHours[12] == "2026-11-23T18:00:00Z")
        #expect(try Self.times("*/30 18-23 * * *", from: from, count: 13) == halfHours)
        #expect(try Self.times("0,30 18-23 * * *", from: from, count: 13) == halfHours)
    }

    @Test("L, L-N, LW, NW in day-of-month; NL and N#K in day-of-week")
    func lastWeekdayAndNth() throws {
        let from = "2026-01-01T00:00:00Z"
        #expect(
            try Self.times("0 0 0 L * ?", from: from, count: 3) == ["2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z"]
        )
        #expect(try Self.times("0 0 0 L 2 ?", from: "2027-03-01T00:00:00Z", count: 1) == ["2028-02-29T00:00:00Z"], "leap year")
        #expect(
            try Self.times("0 0 0 L-3 * ?", from: from, count: 3) == ["2026-01-28T00:00:00Z", "2026-02-25T00:00:00Z", "2026-03-28T00:00:00Z"]
        )
        // 31 January and 28 February 2026 are Saturdays; 31 March a Tuesday.
        #expect(
            try Self.times("0 0 0 LW * ?", from: from, count: 3) == ["2026-01-30T00:00:00Z", "2026-02-27T00:00:00Z", "2026-03-31T00:00:00Z"]
        )
        // 15 February and 15 March 2026 are Sundays → Monday; 15 August a Saturday → Friday.
        let fifteenth = try Self.times("0 0 0 15W * ?", from: from, count: 8)
        #expect(fifteenth.prefix(3) == ["2026-01-15T00:00:00Z", "2026-02-16T00:00:00Z", "2026-03-16T00:00:00Z"])
        #expect(fifteenth[7] == "2026-08-14T00:00:00Z")
        // 1 August 2026 is a Saturday: the nearest weekday within August is Monday the 3rd.
        #expect(try Self.times("0 0 0 1W 8 ?", from: from, count: 1) == ["2026-08-03T00:00:00Z"])
        #expect(
            try Self.times("0 0 0 ? * 5L", from: from, count: 3) == ["2026-01-30T00:00:00Z", "2026-02-27T00:00:00Z", "2026-03-27T00:00:00Z"]
        )
        #expect(try Self.times("0 0 0 ? * FRIL", from: from, count: 3) == (try Self.times("0 0 0 ? * 5L", from: from, count: 3)))
        #expect(
            try Self.times("0 0 0 ? * MON#2", from: from, count: 3) == ["2026-01-12T00:00:00Z", "2026-02-09T00:00:00Z", "2026-03-09T00:00:00Z"]
        )
        // Only January and May 2026 have a fifth Friday.
        #expect(try Self.times("0 0 0 ? * 5#5", from: from, count: 2) == ["2026-01-30T00:00:00Z", "2026-05-29T00:00:00Z"])
    }

    @Test("Both day fields restricted: either matches; one a star or '?': both must")
    func dayFieldsOrRule() throws {
        let from = "2026-01-31T13:00:00Z"
        #expect(
            try Self.times("0 0 12 1 * 5", from: from, count: 7) == [
                "2026-02-01T12:00:00Z", "2026-02-06T12:00:00Z", "2026-02-13T12:00:00Z", "2026-02-20T12:00:00Z",
                "2026-02-27T12:00:00Z", "2026-03-01T12:00:00Z", "2026-03-06T12:00:00Z",
            ]
        )
        #expect(try Self.times("0 0 12 ? * 5", from: from, count: 2) == ["2026-02-06T12:00:00Z", "2026-02-13T12:00:00Z"])
        #expect(try Self.times("0 0 12 1 * *", from: from, count: 2) == ["2026-02-01T12:00:00Z", "2026-03-01T12:00:00Z"])
        #expect(try Self.times("0 0 12 1 * ?", from: from, count: 2) == ["2026-02-01T12:00:00Z", "2026-03-01T12:00:00Z"])
    }

    @Test("Names in any case, Sunday as 0 or 7, wrapping weekday ranges, steps on seconds, macros")
    func namesAndForms() throws {
        let from = "2026-11-22T10:17:50Z"
        #expect(try Self.times("*/7 * * * * *", from: from, count: 3) == ["2026-11-22T10:17:56Z", "2026-11-22T10:18:00Z", "2026-11-22T10:18:07Z"])
        let sunday = try Self.times("0 0 12 * * 0", from: from, count: 2)
        #expect(sunday == ["2026-11-22T12:00:00Z", "2026-11-29T12:00:00Z"])
        #expect(try Self.times("0 0 12 * * 7", from: from, count: 2) == sunday)
        #expect(try Self.times("0 0 12 * * sun", from: from, count: 2) == sunday)
        // FRI-MON wraps: Friday, Saturday, Sunday, Monday.
        #expect(
            try Self.times("0 0 12 * * FRI-MON", from: from, count: 5)
                == ["2026-11-22T12:00:00Z", "2026-11-23T12:00:00Z", "2026-11-27T12:00:00Z", "2026-11-28T12:00:00Z", "2026-11-29T12:00:00Z"]
        )
        #expect(try Self.times("0 0 12 1 jan-Mar,DEC *", from: from, count: 2) == ["2026-12-01T12:00:00Z", "2027-01-01T12:00:00Z"])
        #expect(try Self.times("0 0 12 28-2 * ?", from: "2026-02-26T00:00:00Z", count: 4) == [
            "2026-02-28T12:00:00Z", "2026-03-01T12:00:00Z", "2026-03-02T12:00:00Z", "2026-03-28T12:00:00Z",
        ], "a wrapping day range")
        #expect(try Self.times("@daily", from: from, count: 1) == ["2026-11-23T00:00:00Z"])
        #expect(try Self.times("@hourly", from: from, count: 1) == ["2026-11-22T11:00:00Z"])
        #expect(try Self.times("@weekly", from: from, count: 1) == ["2026-11-29T00:00:00Z"])
        #expect(try Self.times("  0   0  12 * * *  ", from: from, count: 1) == ["2026-11-22T12:00:00Z"], "extra blanks")
        #expect(try Self.times("0\t0 12 * *", from: from, count: 1) == ["2026-12-12T00:00:00Z"], "five fields: minute hour day")
    }

    @Test("Time zones: a zone without DST and one half an hour off")
    func zones() throws {
        #expect(try Self.times("0 0 8 * * *", tz: "Asia/Shanghai", from: "2026-11-21T23:00:00Z", count: 2) == ["2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z"])
        #expect(try Self.times("0 0 * * * *", tz: "Asia/Kolkata", from: "2026-11-22T00:00:00Z", count: 2) == ["2026-11-22T00:30:00Z", "2026-11-22T01:30:00Z"])
    }

    @Test("Clocks forward: the skipped hour's fire times collapse into one run at the jump; nothing fires twice")
    func daylightSavingGap() throws {
        // New York, 8 March 2026: 02:00 EST becomes 03:00 EDT (07:00Z).
        let zone = "America/New_York"
        #expect(try Self.times("0 30 2 * * *", tz: zone, from: "2026-03-07T17:00:00Z", count: 2) == ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"])
        #expect(
            try Self.times("0 0 * * * *", tz: zone, from: "2026-03-08T05:30:00Z", count: 3) == ["2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"]
        )
        #expect(
            try Self.times("0 */30 * * * *", tz: zone, from: "2026-03-08T06:00:00Z", count: 3) == ["2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"]
        )
    }

    @Test("Clocks back: a fixed time runs once, a schedule with * in second, minute or hour runs through both passes")
    func daylightSavingOverlap() throws {
        // New York, 1 November 2026: 02:00 EDT (06:00Z) becomes 01:00 EST.
        let zone = "America/New_York"
        #expect(try Self.times("0 30 1 * * *", tz: zone, from: "2026-11-01T04:00:00Z", count: 2) == ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"])
        #expect(
            try Self.times("0 0 * * * *", tz: zone, from: "2026-11-01T04:30:00Z", count: 3) == ["2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"]
        )
        #expect(
            try Self.times("0 */20 1 * * *", tz: zone, from: "2026-11-01T04:00:00Z", count: 7) == [
                "2026-11-01T05:00:00Z", "2026-11-01T05:20:00Z", "2026-11-01T05:40:00Z",
                "2026-11-01T06:00:00Z", "2026-11-01T06:20:00Z", "2026-11-01T06:40:00Z", "2026-11-02T06:00:00Z",
            ]
        )
    }

    @Test("Bad expressions name the field and the token")
    func errors() throws {
        func error(_ expression: String, tz: String = "") -> String {
            do {
                _ = try CronSchedule(expression, timeZone: tz)
                return "no error"
            } catch {
                return error.description
            }
        }
        #expect(error("61 * * * *") == "minute field: '61' is out of range: minute is 0-59")
        #expect(error("0 0 25 * * *") == "hour field: '25' is out of range: hour is 0-23")
        #expect(error("* * * * * * *").contains("has 7 fields"))
        #expect(error("").contains("has 0 fields"))
        #expect(error("0 0 12 * * FOO").hasPrefix("day-of-week field: 'FOO' is not a number or a name"))
        #expect(error("0 0 12 * FOO *").hasPrefix("month field: 'FOO' is not a number or a name"))
        #expect(error("*/0 * * * *").hasPrefix("minute field: '*/0' has step '0'"))
        #expect(error("0 ? * * * *") == "minute field: '?' is only allowed in day-of-month and day-of-week")
        #expect(error("0 0 0 L-40 * ?").hasPrefix("day-of-month field: 'L-40'"))
        #expect(error("0 0 0 ? * MON#6").hasPrefix("day-of-week field: 'MON#6'"))
        #expect(error("0 0 0 1,,2 * ?").hasPrefix("day-of-month field: '1,,2' has an empty list item"))
        #expect(error("0 0 0 1,? * *") == "day-of-month field: '?' must stand alone: '?' is the whole field")
        #expect(error("5- * * * *").hasPrefix("minute field: '5-' is missing a value"))
        #expect(error("1/2/3 * * * *").hasPrefix("minute field: '1/2/3' has more than one '/'"))
        #expect(error("0 0 0 15C * ?").hasPrefix("day-of-month field: '15C'"))
        #expect(error("@every") .hasPrefix("'@every' is not one of"))
        #expect(error("0 0 * * *", tz: "Mars/Olympus") == "time zone field: 'Mars/Olympus' is not a time zone name (e.g. UTC, Europe/Berlin, Asia/Shanghai)")
        // Valid but never fires: no next time, not an endless search.
        let never = try CronSchedule("0 0 0 30 2 ?", timeZone: "UTC")
        #expect(never.next(after: Date()) == nil)
    }
}

@Suite("Crontab files")
struct CrontabTests {
    static let seed = """
        # the seed's lines, and a few of ours
        SHELL=/bin/bash
        */10 * * * * echo "Ten minutes ago." >> /tmp/foo.txt
        0 23-7/2,8 * * * echo "Have a good dream." >> /tmp/foo.txt

        0 11 4 * 1-3 echo "Just kidding." >> /tmp/foo.txt
        0 0 9-17 * * MON-FRI root   /usr/bin/report   --daily
        GREETING="hello world"
        @daily nobody echo "$GREETING"
        */5 * * * * * nosuchuser echo x
        """

    @Test("Five and six fields, optional user, environment lines, comments and blank lines")
    func seedLines() throws {
        let entries = try Crontab.parse(Self.seed) { ["root", "nobody"].contains($0) }
        #expect(entries.count == 6)
        #expect(entries[0].line == 3 && entries[0].expression.text == "*/10 * * * *" && entries[0].user == nil)
        #expect(entries[0].command == "echo \"Ten minutes ago.\" >> /tmp/foo.txt")
        #expect(entries[0].environment == ["SHELL": "/bin/bash"])
        #expect(entries[1].expression.text == "0 23-7/2,8 * * *")
        #expect(entries[2].line == 6 && entries[2].command == "echo \"Just kidding.\" >> /tmp/foo.txt")
        #expect(entries[3].expression.text == "0 0 9-17 * * MON-FRI" && entries[3].user == "root" && entries[3].command == "/usr/bin/report   --daily")
        #expect(entries[4].expression.text == "@daily" && entries[4].user == "nobody" && entries[4].command == "echo \"$GREETING\"")
        #expect(entries[4].environment == ["SHELL": "/bin/bash", "GREETING": "hello world"])
        // Not a user of this host: the word is the command's.
        #expect(entries[5].user == nil && entries[5].command == "nosuchuser echo x")
    }

    @Test("A CRLF file's lines are its lines (split by characters, \\r\\n is one, and the file was one line)")
    func crlf() throws {
        let entries = try Crontab.parse("A=1\r\n0 0 * * * echo a\r\n\r\n# c\r\n0 1 * * * echo b\r\n") { _ in false }
        #expect(entries.map(\.command) == ["echo a", "echo b"])
        #expect(entries.map(\.line) == [2, 5])
        #expect(entries[1].environment == ["A": "1"])
    }

    @Test("Bad lines name their number and the field at fault")
    func badLines() {
        func error(_ text: String, fields: Int? = nil) -> String {
            do {
                _ = try Crontab.parse(text, fields: fields) { _ in false }
                return "no error"
            } catch {
                return error.description
            }
        }
        #expect(error("# ok\n61 * * * * echo") == "line 2 ('61 * * * * echo'): minute field: '61' is out of range: minute is 0-59")
        #expect(error("0 6 * * *") == "line 1 ('0 6 * * *'): has no command after the time fields")
        #expect(error("0 0 12 * * FOO echo", fields: 6).hasPrefix("line 1 ('0 0 12 * * FOO echo'): day-of-week field: 'FOO'"))
        #expect(error("BAD-NAME=1") == "line 1 ('BAD-NAME=1'): is neither a schedule nor NAME=value")
        #expect(error("NAMÉ=1") == "line 1 ('NAMÉ=1'): is neither a schedule nor NAME=value")
    }
}
