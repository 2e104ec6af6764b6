import Foundation
import RPC

/// RFC 3339 times as the REST API takes them (`2026-12-02T10:00:00Z`, `...T10:00:00.5+08:00`),
/// read exactly as the document's pattern says: Foundation's ISO 8601 parser also takes
/// "Zjunk", February 30 and 24:00, each a day or a moment nobody meant.
enum RFC3339 {
    /// The pattern's alternatives, without anchors: the year from 1970, each month's days (a
    /// February 29 of a year without one is well-formed and refused), the offset within ±18:00.
    static let alternatives: String = {
        let year = "(?:19[7-9][0-9]|[2-9][0-9]{3})"
        let monthDay = "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-9]))"
        let time = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,9})?"
        let offset = "(?:Z|[+-](?:(?:0[0-9]|1[0-7]):[0-5][0-9]|18:00))"
        return "\(year)-\(monthDay)T\(time)\(offset)"
    }()

    /// Milliseconds since 1970 of `text`; nil when the pattern does not match it; an error
    /// (422) for a well-formed time that is not one: February 29 of a common year, or before 1970.
    static func milliseconds(_ text: String, field: String) throws(AspireError) -> Int64? {
        guard PatternText.matches(text, "^(?:\(Self.alternatives))$") else { return nil }
        let bytes = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int64 { bytes[range].reduce(0) { $0 * 10 + Int64($1 - 48) } }
        let (year, month, day) = (number(0 ..< 4), number(5 ..< 7), number(8 ..< 10))
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        if month == 2, day == 29, !leap { throw AspireError(.unprocessable, "\(field): \(year) has no February 29") }
        var seconds = Self.days(year: year, month: month, day: day) * 86_400 + number(11 ..< 13) * 3600 + number(14 ..< 16) * 60 + number(17 ..< 19)
        var index = 19
        var millis: Int64 = 0
        if bytes[index] == UInt8(ascii: ".") {
            index += 1
            var scale: Int64 = 100
            while index < bytes.count, (48 ... 57).contains(bytes[index]) {
                millis += Int64(bytes[index] - 48) * scale
                scale /= 10
                index += 1
            }
        }
        if bytes[index] != UInt8(ascii: "Z") {
            let offset = number(index + 1 ..< index + 3) * 3600 + number(index + 4 ..< index + 6) * 60
            seconds -= bytes[index] == UInt8(ascii: "+") ? offset : -offset
        }
        guard seconds >= 0 else { throw AspireError(.unprocessable, "\(field): \(text) is before 1970") }
        return seconds * 1000 + millis
    }

    /// `2026-12-02T10:00:00Z`: the UTC second `unixMilliseconds` falls in (for times from 1970).
    static func text(milliseconds unixMilliseconds: Int64) -> String {
        let seconds = unixMilliseconds / 1000
        let (days, second) = (seconds / 86_400, seconds % 86_400)
        let (year, month, day) = Self.civil(days: days)
        guard (1000 ... 9999).contains(year) else { return Date(timeIntervalSince1970: Double(seconds)).formatted(.iso8601) }
        // Written digit by digit: the host list writes three of these per host.
        return String(unsafeUninitializedCapacity: 20) { text in
            // `value` in `width` digits ending before `end`, and `mark` at `end`.
            func put(_ value: Int64, width: Int, end: Int, _ mark: Unicode.Scalar) {
                var value = value
                for index in stride(from: end - 1, through: end - width, by: -1) {
                    text[index] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
                text[end] = UInt8(ascii: mark)
            }
            put(year, width: 4, end: 4, "-")
            put(month, width: 2, end: 7, "-")
            put(day, width: 2, end: 10, "T")
            put(second / 3600, width: 2, end: 13, ":")
            put(second / 60 % 60, width: 2, end: 16, ":")
            put(second % 60, width: 2, end: 19, "Z")
            return 20
        }
    }

    /// The date of the proleptic Gregorian calendar `days` after 1970-01-01 (Howard Hinnant's
    /// civil_from_days, the inverse of ``days(year:month:day:)``).
    static func civil(days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
    /// days_from_civil).
    static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
