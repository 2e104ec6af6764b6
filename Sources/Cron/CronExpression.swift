/// A cron expression: six fields (second minute hour day-of-month month day-of-week) or the
/// classic five (no seconds; second 0), as the seed writes them.
///
/// Each field is a list of `*`, values, ranges and steps (`*/10`, `0/30`, `8-10`, `23-7/2` — a
/// range whose end is below its start wraps around); months and weekdays also by name (`JAN`,
/// `MON-FRI`, any case), Sunday as 0 or 7. The day fields add `?` (any), and:
/// - day-of-month: `L` (last day), `L-3` (third day before the last), `15W` (the weekday nearest the
///   15th, within the month), `LW` (the last weekday);
/// - day-of-week: `5L` or `FRIL` (the last Friday of the month), `MON#2` (the second Monday), and `L`
///   alone (Saturday, the last day of the week, as in Quartz).
///
/// When both day fields are restricted a day matches either (Vixie cron's rule); a field that
/// starts with `*` or is `?` counts as unrestricted, and then both must match. `@yearly`,
/// `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and `@hourly` stand for their
/// five-field forms.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    public let text: String
    let seconds: ValueSet
    let minutes: ValueSet
    let hours: ValueSet
    let months: ValueSet
    let days: DaysOfMonth
    let weekdays: DaysOfWeek
    let daysStar: Bool
    let weekdaysStar: Bool
    /// The second, minute or hour field starts with `*`: the schedule follows the clock through
    /// an hour that repeats when clocks go back (see ``CronSchedule``).
    public let isFrequent: Bool

    public var description: String { self.text }

    static let macros = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    ]

    public init(_ text: String) throws(CronError) {
        // Blanks by Unicode scalars, as the document's pattern reads them (by characters, a
        // combining mark after a space would join the two words around it).
        let trimmed = text.unicodeScalars.split(whereSeparator: { $0 == " " || $0 == "\t" })
            .map { String(String.UnicodeScalarView($0)) }.joined(separator: " ")
        self.text = trimmed
        var fields = trimmed.split(separator: " ").map(String.init)
        if let macro = fields.first, macro.hasPrefix("@") {
            guard fields.count == 1, macro.allSatisfy(\.isASCII), let expansion = Self.macros[macro.lowercased()] else {
                throw CronError(field: nil, token: macro, reason: "is not one of \(Self.macros.keys.sorted().joined(separator: ", "))")
            }
            fields = expansion.split(separator: " ").map(String.init)
        }
        guard fields.count == 5 || fields.count == 6 else {
            throw CronError(
                field: nil, token: trimmed,
                reason: "has \(fields.count) field\(fields.count == 1 ? "" : "s"); a cron expression has 6 (second minute hour day-of-month month day-of-week) or 5 (no seconds)"
            )
        }
        if fields.count == 5 { fields.insert("0", at: 0) }
        self.seconds = try Field.second.values(fields[0])
        self.minutes = try Field.minute.values(fields[1])
        self.hours = try Field.hour.values(fields[2])
        self.days = try DaysOfMonth(fields[3])
        self.months = try Field.month.values(fields[4])
        self.weekdays = try DaysOfWeek(fields[5])
        self.daysStar = fields[3].hasPrefix("*") || fields[3] == "?"
        self.weekdaysStar = fields[5].hasPrefix("*") || fields[5] == "?"
        self.isFrequent = fields[0].hasPrefix("*") || fields[1].hasPrefix("*") || fields[2].hasPrefix("*")
    }

    /// Whether a day matches both day fields under the OR rule.
    func matches(day: CivilDay) -> Bool {
        let byDate = self.days.matches(day)
        let byWeekday = self.weekdays.matches(day)
        if self.daysStar || self.weekdaysStar { return byDate && byWeekday }
        return byDate || byWeekday
    }

    /// The first wall-clock time in `[from, limit)` (seconds since 1970 on a clock without a
    /// zone) that the expression matches.
    func firstMatch(from: Int64, before limit: Int64) -> Int64? {
        var wall = from
        while wall < limit {
            let day = CivilDay(days: wall.floorDivided(by: 86_400))
            let start = day.days * 86_400
            let time = Int(wall - start)
            guard self.months.contains(day.month) else {
                wall = day.startOfNextMonth * 86_400
                continue
            }
            guard self.matches(day: day) else {
                wall = start + 86_400
                continue
            }
            let hour = time / 3600
            guard let nextHour = self.hours.next(atOrAfter: hour) else {
                wall = start + 86_400
                continue
            }
            if nextHour != hour {
                wall = start + Int64(nextHour * 3600)
                continue
            }
            let minute = time % 3600 / 60
            let hourStart = start + Int64(hour * 3600)
            guard let nextMinute = self.minutes.next(atOrAfter: minute) else {
                wall = hourStart + 3600
                continue
            }
            if nextMinute != minute {
                wall = hourStart + Int64(nextMinute * 60)
                continue
            }
            let second = time % 60
            let minuteStart = hourStart + Int64(minute * 60)
            guard let nextSecond = self.seconds.next(atOrAfter: second) else {
                wall = minuteStart + 60
                continue
            }
            wall = minuteStart + Int64(nextSecond)
            return wall < limit ? wall : nil
        }
        return nil
    }
}

/// What is wrong with an expression: the field, the token and why.
public struct CronError: Error, Sendable, Hashable, CustomStringConvertible {
    /// "minute", "day-of-week", ...; nil when the expression as a whole is wrong.
    public var field: String?
    public var token: String
    public var reason: String

    public var description: String {
        if let field { return "\(field) field: '\(self.token)' \(self.reason)" }
        return "'\(self.token)' \(self.reason)"
    }
}

/// A set of small numbers (0...63).
struct ValueSet: Sendable, Hashable {
    var bits: UInt64 = 0

    func contains(_ value: Int) -> Bool { value >= 0 && value < 64 && self.bits & (1 << UInt64(value)) != 0 }

    mutating func insert(_ value: Int) { self.bits |= 1 << UInt64(value) }

    /// The smallest member at or above `value`.
    func next(atOrAfter value: Int) -> Int? {
        guard value < 64 else { return nil }
        let rest = self.bits >> UInt64(value)
        guard rest != 0 else { return nil }
        return value + rest.trailingZeroBitCount
    }
}

enum Field: String {
    case second, minute, hour
    case dayOfMonth = "day-of-month"
    case month
    case dayOfWeek = "day-of-week"

    var range: ClosedRange<Int> {
        switch self {
        case .second, .minute: 0 ... 59
        case .hour: 0 ... 23
        case .dayOfMonth: 1 ... 31
        case .month: 1 ... 12
        case .dayOfWeek: 0 ... 7
        }
    }

    /// The span a `*` or a wrapping range covers (the day of week without its second Sunday).
    var cycle: ClosedRange<Int> { self == .dayOfWeek ? 0 ... 6 : self.range }

    var names: [String: Int] {
        switch self {
        case .month:
            ["JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12]
        case .dayOfWeek:
            ["SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6]
        default: [:]
        }
    }

    func error(_ token: some StringProtocol, _ reason: String) -> CronError {
        CronError(field: self.rawValue, token: String(token), reason: reason)
    }

    /// One value: a number in range or a name.
    func value(_ text: Substring, in item: Substring) throws(CronError) -> Int {
        if let number = Int(text), text.allSatisfy(\.isASCII) {
            guard self.range.contains(number) else {
                throw self.error(item, "is out of range: \(self.rawValue) is \(self.range.lowerBound)-\(self.range.upperBound)")
            }
            return number
        }
        // Names are ASCII: "ſun" must not pass as SUN because "ſ".uppercased() is "S".
        if text.allSatisfy(\.isASCII), let named = self.names[text.uppercased()] { return named }
        if text.isEmpty { throw self.error(item, "is missing a value") }
        if self == .month || self == .dayOfWeek {
            let names = self.names.sorted { $0.value < $1.value }.map(\.key).joined(separator: " ")
            throw self.error(item, "is not a number or a name (\(names))")
        }
        throw self.error(item, "is not a number")
    }

    /// A whole field of plain items: `*`, `N`, `A-B`, with `/STEP`, comma-separated.
    func values(_ text: String) throws(CronError) -> ValueSet {
        var set = ValueSet()
        for item in try self.items(text) {
            for value in try self.sequence(item) { set.insert(value) }
        }
        return set
    }

    func items(_ text: String) throws(CronError) -> [Substring] {
        let items = text.split(separator: ",", omittingEmptySubsequences: false)
        for item in items where item.isEmpty { throw self.error(text, "has an empty list item") }
        for item in items where item.contains("?") {
            // The day fields take `?` as the whole field, before they get here.
            throw self.error(item, self == .dayOfMonth || self == .dayOfWeek ? "must stand alone: '?' is the whole field" : "is only allowed in day-of-month and day-of-week")
        }
        return items
    }

    /// The values of one item, in order: `*`, `N`, `A-B` (wrapping when B < A), `A/S`, `A-B/S`, `*/S`.
    func sequence(_ item: Substring) throws(CronError) -> [Int] {
        let parts = item.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { throw self.error(item, "has more than one '/'") }
        let base = parts[0]
        var values: [Int]
        if base == "*" {
            values = Array(self.cycle)
        } else if let dash = base.firstIndex(of: "-") {
            var low = try self.value(base[..<dash], in: item)
            let high = try self.value(base[base.index(after: dash)...], in: item)
            if self == .dayOfWeek, low == 7 { low = 0 }
            if low <= high {
                values = Array(low ... high)
            } else {
                // Wraps: 23-7 is 23, 0, 1, ..., 7; FRI-MON is 5, 6, 0, 1.
                values = Array(low ... self.cycle.upperBound) + Array(self.cycle.lowerBound ... high)
            }
        } else {
            let start = try self.value(base, in: item)
            values = parts.count == 2 ? Array(start ... max(start, self.cycle.upperBound)) : [start]
        }
        if parts.count == 2 {
            let span = self.cycle.count
            guard let step = Int(parts[1]), parts[1].allSatisfy(\.isASCII), (1 ... span).contains(step) else {
                throw self.error(item, "has step '\(parts[1])'; a step is a number from 1 to \(span)")
            }
            values = values.enumerated().filter { $0.offset % step == 0 }.map(\.element)
        }
        return self == .dayOfWeek ? values.map { $0 == 7 ? 0 : $0 } : values
    }
}

/// The day-of-month field: plain values plus `L`, `L-N`, `NW`, `LW`.
struct DaysOfMonth: Sendable, Hashable {
    var values = ValueSet()
    var last = false
    var beforeLast = ValueSet()
    var lastWeekday = false
    var nearestWeekday = ValueSet()

    init(_ text: String) throws(CronError) {
        let field = Field.dayOfMonth
        if text == "?" {
            self.values = try field.values("*")
            return
        }
        for item in try field.items(text) {
            let upper = item.uppercased()
            if upper == "L" {
                self.last = true
            } else if upper == "LW" || upper == "WL" {
                self.lastWeekday = true
            } else if upper.hasPrefix("L-") {
                guard let offset = Int(upper.dropFirst(2)), (1 ... 30).contains(offset) else {
                    throw field.error(item, "is not L-N with N from 1 to 30 (days before the last)")
                }
                self.beforeLast.insert(offset)
            } else if upper.hasSuffix("W") {
                let day = try field.value(item.dropLast(), in: item)
                self.nearestWeekday.insert(day)
            } else {
                for value in try field.sequence(item) { self.values.insert(value) }
            }
        }
    }

    func matches(_ day: CivilDay) -> Bool {
        if self.values.contains(day.day) { return true }
        let length = day.daysInMonth
        if self.last, day.day == length { return true }
        if self.beforeLast.bits != 0, self.beforeLast.contains(length - day.day) { return true }
        if self.lastWeekday, day.day == day.lastWeekdayOfMonth { return true }
        if self.nearestWeekday.bits != 0 {
            var target = 1
            while let wanted = self.nearestWeekday.next(atOrAfter: target) {
                if day.weekdayNearest(wanted) == day.day { return true }
                target = wanted + 1
            }
        }
        return false
    }
}

/// The day-of-week field: plain values plus `NL` (last N-day of the month), `N#K` (K-th N-day)
/// and `L` alone (Saturday).
struct DaysOfWeek: Sendable, Hashable {
    var values = ValueSet()
    var lastOfMonth = ValueSet()
    /// Bit `weekday * 8 + k` for `weekday#k`.
    var nth: UInt64 = 0

    init(_ text: String) throws(CronError) {
        let field = Field.dayOfWeek
        if text == "?" {
            self.values = try field.values("*")
            return
        }
        for item in try field.items(text) {
            let upper = item.uppercased()
            if upper == "L" {
                self.values.insert(6)
            } else if let hash = item.firstIndex(of: "#") {
                let weekday = try field.value(item[..<hash], in: item) % 7
                guard let k = Int(item[item.index(after: hash)...]), (1 ... 5).contains(k) else {
                    throw field.error(item, "is not DAY#K with K from 1 to 5 (MON#2 is the second Monday)")
                }
                self.nth |= 1 << UInt64(weekday * 8 + k)
            } else if upper.count > 1, upper.hasSuffix("L") {
                let weekday = try field.value(item.dropLast(), in: item) % 7
                self.lastOfMonth.insert(weekday)
            } else {
                for value in try field.sequence(item) { self.values.insert(value) }
            }
        }
    }

    func matches(_ day: CivilDay) -> Bool {
        let weekday = day.weekday
        if self.values.contains(weekday) { return true }
        if self.lastOfMonth.contains(weekday), day.day + 7 > day.daysInMonth { return true }
        if self.nth != 0 {
            let k = (day.day - 1) / 7 + 1
            if self.nth & (1 << UInt64(weekday * 8 + k)) != 0 { return true }
        }
        return false
    }
}

/// A day of the proleptic Gregorian calendar, from days since 1970-01-01.
struct CivilDay: Sendable {
    let days: Int64
    let year: Int
    let month: Int
    let day: Int

    /// Howard Hinnant's civil_from_days.
    init(days: Int64) {
        self.days = days
        let z = days + 719_468
        let era = z.floorDivided(by: 146_097)
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        self.day = Int(dayOfYear - (153 * mp + 2) / 5 + 1)
        self.month = Int(mp < 10 ? mp + 3 : mp - 9)
        self.year = Int(yearOfEra + era * 400) + (self.month <= 2 ? 1 : 0)
    }

    /// Howard Hinnant's days_from_civil.
    static func days(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = y.floorDivided(by: 400)
        let yearOfEra = y - era * 400
        let m = Int64(month)
        let dayOfYear = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// 0 Sunday ... 6 Saturday (1970-01-01 was a Thursday).
    var weekday: Int { Int((self.days + 4).floorModulo(7)) }

    var daysInMonth: Int {
        switch self.month {
        case 2: (self.year % 4 == 0 && self.year % 100 != 0) || self.year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    var startOfNextMonth: Int64 {
        self.month == 12 ? Self.days(year: self.year + 1, month: 1, day: 1) : Self.days(year: self.year, month: self.month + 1, day: 1)
    }

    func weekday(of day: Int) -> Int { Int((self.days - Int64(self.day - day) + 4).floorModulo(7)) }

    /// The last Monday-to-Friday day of the month.
    var lastWeekdayOfMonth: Int {
        let last = self.daysInMonth
        switch self.weekday(of: last) {
        case 6: return last - 1
        case 0: return last - 2
        default: return last
        }
    }

    /// The Monday-to-Friday day nearest `target` without leaving the month (Quartz's `W`); nil
    /// when the month has no such day.
    func weekdayNearest(_ target: Int) -> Int? {
        let length = self.daysInMonth
        guard target <= length else { return nil }
        switch self.weekday(of: target) {
        case 6: return target == 1 ? 3 : target - 1
        case 0: return target == length ? target - 2 : target + 1
        default: return target
        }
    }
}

extension Int64 {
    func floorDivided(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }

    func floorModulo(_ divisor: Int64) -> Int64 {
        let remainder = self % divisor
        return remainder < 0 ? remainder + divisor : remainder
    }
}
