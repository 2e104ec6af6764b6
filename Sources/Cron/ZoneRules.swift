#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// A time zone's UTC offsets over time, read from the host's time zone database: the TZif files
/// of `/usr/share/zoneinfo` (RFC 8536) that the C library and system cron read too.
///
/// Why not Foundation's `TimeZone`: outside Apple platforms its named zones come from ICU, whose
/// code and data (~40 MB) would be linked into the agent for this alone, and whose zone rules are
/// those of the toolchain the binary was built with rather than the host's (updated with its
/// `tzdata` package). Only the offsets are read; names and abbreviations are not needed here.
public struct ZoneRules: Sendable, Hashable, CustomStringConvertible {
    /// The zone's name: an IANA name, `UTC`, or what the host's zone was read from.
    public let identifier: String
    /// Instants (Unix seconds) at which the offset changes, ascending, with the offset (seconds
    /// east of UTC) from each on.
    private let transitions: [Int64]
    private let offsets: [Int64]
    /// The offset before the first transition (all the time, when there is none).
    private let initialOffset: Int64
    /// What follows the last transition (a TZif file's footer), when it says.
    private let rule: PosixRule?

    public var description: String { self.identifier }

    public static let utc = ZoneRules(identifier: "UTC", transitions: [], offsets: [], initialOffset: 0, rule: nil)

    private init(identifier: String, transitions: [Int64], offsets: [Int64], initialOffset: Int64, rule: PosixRule?) {
        self.identifier = identifier
        self.transitions = transitions
        self.offsets = offsets
        self.initialOffset = initialOffset
        self.rule = rule
    }

    // MARK: Offsets

    /// Seconds east of UTC at `instant` (Unix seconds).
    public func offset(at instant: Int64) -> Int64 {
        if let last = self.transitions.last, instant >= last, let rule = self.rule {
            return rule.offset(at: instant)
        }
        guard let index = self.lastTransition(atOrBefore: instant) else {
            return self.transitions.isEmpty ? (self.rule?.offset(at: instant) ?? self.initialOffset) : self.initialOffset
        }
        return self.offsets[index]
    }

    /// The first instant after `instant` at which the offset changes; nil when it never does again.
    public func nextTransition(after instant: Int64) -> Int64? {
        let next = (self.lastTransition(atOrBefore: instant) ?? -1) + 1
        if next < self.transitions.count { return self.transitions[next] }
        return self.rule?.nextTransition(after: max(instant, self.transitions.last ?? instant))
    }

    /// The instant a wall-clock time of this zone (Unix seconds as if the zone were UTC) names;
    /// in a gap, the instant as if the offset before it still held; where the clock repeats,
    /// the first pass.
    public func instant(wall: Int64) -> Int64 {
        // The offsets a day either side: no zone changes its offset twice within two days.
        let earlier = self.offset(at: wall - 86_400)
        let later = self.offset(at: wall + 86_400)
        for candidate in [wall - earlier, wall - later].sorted() where candidate + self.offset(at: candidate) == wall {
            return candidate
        }
        return wall - earlier
    }

    private func lastTransition(atOrBefore instant: Int64) -> Int? {
        var low = 0
        var high = self.transitions.count
        while low < high {
            let middle = (low + high) / 2
            if self.transitions[middle] <= instant { low = middle + 1 } else { high = middle }
        }
        return low == 0 ? nil : low - 1
    }

    // MARK: Loading

    /// The zone named `identifier` in the host's database (`UTC` and `GMT` without it); nil when
    /// the name is not a zone's or its file cannot be read. Zones are read once per process.
    public init?(named identifier: String) {
        if identifier == "UTC" || identifier == "GMT" {
            self = ZoneRules(identifier: identifier, transitions: [], offsets: [], initialOffset: 0, rule: nil)
            return
        }
        guard Self.isZoneName(identifier) else { return nil }
        if let cached = Self.loaded.withLock({ $0[identifier] }) {
            self = cached
            return
        }
        guard let data = FileManager.default.contents(atPath: "\(Self.directory)/\(identifier)"),
            let zone = ZoneRules(identifier: identifier, tzif: Array(data))
        else { return nil }
        Self.loaded.withLock { $0[identifier] = zone }
        self = zone
    }

    /// The host's zone, as the C library finds it: `TZ` (a zone name, a file, or a POSIX rule
    /// such as `CET-1CEST,M3.5.0,M10.5.0/3`), else `/etc/localtime`, else UTC. Read once per
    /// process, as Foundation's `TimeZone.current` was.
    public static let host: ZoneRules = Self.readHost()

    private static func readHost() -> ZoneRules {
        let environment = ProcessInfo.processInfo.environment
        if var name = environment["TZ"], !name.isEmpty {
            if name.hasPrefix(":") { name.removeFirst() }
            if name.hasPrefix("/") {
                if let data = FileManager.default.contents(atPath: name), let zone = ZoneRules(identifier: name, tzif: Array(data)) { return zone }
            } else if let zone = ZoneRules(named: name) {
                return zone
            } else if let rule = PosixRule(Substring(name)) {
                return ZoneRules(identifier: name, transitions: [], offsets: [], initialOffset: rule.standardOffset, rule: rule)
            }
            return .utc
        }
        guard let data = FileManager.default.contents(atPath: "/etc/localtime") else { return .utc }
        // /etc/localtime is usually a link into the database: its target names the zone.
        let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/etc/localtime")) ?? ""
        let name = target.firstRange(of: "zoneinfo/").map { String(target[$0.upperBound...]) } ?? "localtime"
        return ZoneRules(identifier: name, tzif: Array(data)) ?? .utc
    }

    /// Where the database is: `TZDIR`, as for the C library, else `/usr/share/zoneinfo`.
    static var directory: String {
        ProcessInfo.processInfo.environment["TZDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/usr/share/zoneinfo"
    }

    private static let loaded = Mutex<[String: ZoneRules]>([:])

    /// Names a file of the database may have: `Area/Location` words of letters, digits and
    /// `_ + -`, none starting with a dot, so that no name leaves the directory.
    static func isZoneName(_ name: String) -> Bool {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        return name.utf8.count <= 64
            && parts.allSatisfy { part in
                guard let first = part.utf8.first, first != UInt8(ascii: "."), first != UInt8(ascii: "-") else { return false }
                return part.utf8.allSatisfy { byte in
                    (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A)
                        || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-")
                }
            }
    }

    /// The names of the zones (and links) the database holds, from its `tzdata.zi` summary.
    static func databaseNames() -> [String] {
        guard let data = FileManager.default.contents(atPath: "\(Self.directory)/tzdata.zi") else { return [] }
        var names: [String] = []
        // "Z Europe/Berlin ..." names a zone; "L Etc/GMT GMT" makes GMT a link to one.
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let words = line.split(separator: " ")
            if words.first == "Z", words.count > 1 { names.append(String(words[1])) }
            if words.first == "L", words.count > 2 { names.append(String(words[2])) }
        }
        return names
    }

    // MARK: TZif (RFC 8536)

    /// Reads a TZif file: the 64-bit data of version 2 and later (the 32-bit data of version 1),
    /// and the footer's rule for the times after its last transition.
    init?(identifier: String, tzif bytes: [UInt8]) {
        var reader = TZifReader(bytes: bytes)
        guard let first = reader.header() else { return nil }
        var header = first
        var timeSize = 4
        if first.version >= 2 {
            // Skip the version 1 block; the one after its header has 64-bit times.
            guard reader.skip(first.blockSize(timeSize: 4)), let second = reader.header() else { return nil }
            header = second
            timeSize = 8
        }
        guard header.typeCount > 0, let times = reader.integers(count: header.timeCount, size: timeSize),
            let indices = reader.bytes(count: header.timeCount)
        else { return nil }
        // Each type: its offset, then its DST flag and abbreviation index, which are not needed.
        var typeOffsets: [Int64] = []
        for _ in 0 ..< header.typeCount {
            guard let offset = reader.integers(count: 1, size: 4)?.first, reader.skip(2) else { return nil }
            typeOffsets.append(offset)
        }
        guard indices.allSatisfy({ Int($0) < header.typeCount }), zip(times, times.dropFirst()).allSatisfy({ $0 < $1 }),
            reader.skip(header.characterCount + header.leapCount * (timeSize + 4) + header.standardCount + header.utCount)
        else { return nil }
        var rule: PosixRule?
        if header.version >= 2 {
            guard let footer = reader.footer() else { return nil }
            if !footer.isEmpty {
                guard let parsed = PosixRule(footer) else { return nil }
                rule = parsed
            }
        }
        // Before the first transition: type 0 (RFC 8536).
        let initial = typeOffsets[0]
        // Only the changes of offset are kept: a change of name or of DST flag alone is none here.
        var transitions: [Int64] = []
        var offsets: [Int64] = []
        var current = initial
        for (time, index) in zip(times, indices) where typeOffsets[Int(index)] != current {
            current = typeOffsets[Int(index)]
            transitions.append(time)
            offsets.append(current)
        }
        // The rule takes over at the last transition of the data, kept even when the offset
        // did not change there.
        if rule != nil, let last = times.last, transitions.last != last {
            transitions.append(last)
            offsets.append(current)
        }
        self.init(identifier: identifier, transitions: transitions, offsets: offsets, initialOffset: initial, rule: rule)
    }
}

/// Reads a TZif file's parts in order.
private struct TZifReader {
    let bytes: [UInt8]
    var position = 0

    struct Header {
        var version: Int
        var utCount, standardCount, leapCount, timeCount, typeCount, characterCount: Int

        /// The size of the data block after this header.
        func blockSize(timeSize: Int) -> Int {
            self.timeCount * timeSize + self.timeCount + self.typeCount * 6 + self.characterCount
                + self.leapCount * (timeSize + 4) + self.standardCount + self.utCount
        }
    }

    mutating func header() -> Header? {
        guard let magic = self.bytes(count: 4), magic.elementsEqual("TZif".utf8), let version = self.bytes(count: 1), self.skip(15),
            let counts = self.integers(count: 6, size: 4), counts.allSatisfy({ $0 >= 0 && $0 < 1 << 20 })
        else { return nil }
        let number: Int = version.first == 0 ? 1 : Int(version.first ?? 0x31) - 0x30
        return Header(
            version: number, utCount: Int(counts[0]), standardCount: Int(counts[1]), leapCount: Int(counts[2]), timeCount: Int(counts[3]),
            typeCount: Int(counts[4]), characterCount: Int(counts[5])
        )
    }

    mutating func bytes(count: Int) -> ArraySlice<UInt8>? {
        guard count >= 0, self.bytes.count - self.position >= count else { return nil }
        defer { self.position += count }
        return self.bytes[self.position ..< self.position + count]
    }

    mutating func skip(_ count: Int) -> Bool {
        self.bytes(count: count) != nil
    }

    /// Big-endian two's-complement integers of `size` bytes.
    mutating func integers(count: Int, size: Int) -> [Int64]? {
        guard let raw = self.bytes(count: count * size) else { return nil }
        return stride(from: raw.startIndex, to: raw.endIndex, by: size).map { start in
            let value = raw[start ..< start + size].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            return size == 4 ? Int64(Int32(truncatingIfNeeded: value)) : Int64(bitPattern: value)
        }
    }

    /// The text between the two newlines that end a version 2+ file.
    mutating func footer() -> Substring? {
        guard self.bytes(count: 1)?.first == 0x0A else { return nil }
        let rest = self.bytes[self.position...]
        guard let end = rest.firstIndex(of: 0x0A) else { return nil }
        return Substring(decoding: rest[..<end], as: UTF8.self)
    }
}

/// A POSIX `TZ` rule (with RFC 8536's extensions): standard time, and daylight saving time
/// between two dates of each year, e.g. `CET-1CEST,M3.5.0,M10.5.0/3` or `<+0330>-3:30`.
struct PosixRule: Sendable, Hashable {
    /// Seconds east of UTC.
    var standardOffset: Int64
    var daylight: Daylight?

    struct Daylight: Sendable, Hashable {
        var offset: Int64
        var start: Day
        var startTime: Int64
        var end: Day
        var endTime: Int64
    }

    enum Day: Sendable, Hashable {
        /// `Jn`: day n of 1...365, February 29 never counted.
        case julian(Int)
        /// `n`: day n of 0...365, February 29 counted.
        case ordinal(Int)
        /// `Mm.w.d`: weekday d (0 Sunday) of week w (5: the last) of month m.
        case weekday(month: Int, week: Int, weekday: Int)

        /// Days since 1970-01-01 of this day in `year`.
        func days(in year: Int) -> Int64 {
            let january1 = CivilDay.days(year: year, month: 1, day: 1)
            switch self {
            case .julian(let n):
                let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
                return january1 + Int64(n - 1) + (leap && n >= 60 ? 1 : 0)
            case .ordinal(let n):
                return january1 + Int64(n)
            case .weekday(let month, let week, let weekday):
                let first = CivilDay(days: CivilDay.days(year: year, month: month, day: 1))
                var day = 1 + (weekday - first.weekday + 7) % 7 + 7 * (week - 1)
                while day > first.daysInMonth { day -= 7 }
                return first.days + Int64(day - 1)
            }
        }
    }

    /// Instants further than this (about a billion years) from 1970 are answered in standard time:
    /// their years' arithmetic would overflow.
    static let reach: Int64 = 1 << 55

    /// Seconds east of UTC at `instant`.
    func offset(at instant: Int64) -> Int64 {
        guard let daylight = self.daylight, (-Self.reach ..< Self.reach).contains(instant) else { return self.standardOffset }
        let year = CivilDay(days: instant.floorDivided(by: 86_400)).year
        var inDaylight = false
        for (time, starts) in self.changes(around: year) where time <= instant {
            inDaylight = starts
        }
        return inDaylight ? daylight.offset : self.standardOffset
    }

    func nextTransition(after instant: Int64) -> Int64? {
        guard self.daylight != nil, (-Self.reach ..< Self.reach).contains(instant) else { return nil }
        let year = CivilDay(days: instant.floorDivided(by: 86_400)).year
        return self.changes(around: year).first { $0.time > instant }?.time
    }

    /// The starts and ends of daylight saving time from the year before `year` to the one
    /// after, as instants in order (an end before a start at the same instant: DST all year).
    private func changes(around year: Int) -> [(time: Int64, starts: Bool)] {
        guard let daylight = self.daylight else { return [] }
        var changes: [(time: Int64, starts: Bool)] = []
        for year in year - 1 ... year + 1 {
            // The start is given in standard time, the end in daylight saving time.
            changes.append((daylight.start.days(in: year) * 86_400 + daylight.startTime - self.standardOffset, true))
            changes.append((daylight.end.days(in: year) * 86_400 + daylight.endTime - daylight.offset, false))
        }
        return changes.sorted { $0.time < $1.time || ($0.time == $1.time && !$0.starts && $1.starts) }
    }

    init?(_ text: Substring) {
        var scanner = RuleScanner(text: text)
        guard scanner.name(), let standard = scanner.offset() else { return nil }
        self.standardOffset = -standard
        if scanner.atEnd {
            self.daylight = nil
            return
        }
        guard scanner.name() else { return nil }
        var daylightOffset = self.standardOffset + 3600
        if !scanner.atEnd, scanner.peek != ",", let given = scanner.offset() { daylightOffset = -given }
        // Without dates, POSIX leaves the rule to the implementation: the US rule, as glibc.
        var start = Day.weekday(month: 3, week: 2, weekday: 0)
        var end = Day.weekday(month: 11, week: 1, weekday: 0)
        var startTime: Int64 = 7200
        var endTime: Int64 = 7200
        if !scanner.atEnd {
            guard scanner.take(","), let first = scanner.day() else { return nil }
            start = first
            if scanner.take("/") { guard let time = scanner.offset(hours: 167) else { return nil }; startTime = time }
            guard scanner.take(","), let second = scanner.day() else { return nil }
            end = second
            if scanner.take("/") { guard let time = scanner.offset(hours: 167) else { return nil }; endTime = time }
            guard scanner.atEnd else { return nil }
        }
        self.daylight = Daylight(offset: daylightOffset, start: start, startTime: startTime, end: end, endTime: endTime)
    }
}

/// Reads the parts of a POSIX `TZ` rule.
private struct RuleScanner {
    let text: Substring
    var index: Substring.Index

    init(text: Substring) {
        self.text = text
        self.index = text.startIndex
    }

    var atEnd: Bool { self.index == self.text.endIndex }
    var peek: Character? { self.atEnd ? nil : self.text[self.index] }

    mutating func take(_ character: Character) -> Bool {
        guard self.peek == character else { return false }
        self.index = self.text.index(after: self.index)
        return true
    }

    /// A zone abbreviation: three or more letters, or `<...>` of letters, digits, + and -.
    mutating func name() -> Bool {
        if self.take("<") {
            guard let close = self.text[self.index...].firstIndex(of: ">") else { return false }
            let inside = self.text[self.index ..< close]
            guard inside.count >= 3, inside.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "-") }) else { return false }
            self.index = self.text.index(after: close)
            return true
        }
        let letters = self.text[self.index...].prefix { $0.isASCII && $0.isLetter }
        guard letters.count >= 3 else { return false }
        self.index = letters.endIndex
        return true
    }

    /// `[+-]hh[:mm[:ss]]` in seconds, hours up to `hours`.
    mutating func offset(hours limit: Int64 = 24) -> Int64? {
        var sign: Int64 = 1
        if self.take("-") { sign = -1 } else { _ = self.take("+") }
        guard let hours = self.number(), hours <= limit else { return nil }
        var seconds = hours * 3600
        if self.take(":") {
            guard let minutes = self.number(), minutes < 60 else { return nil }
            seconds += minutes * 60
            if self.take(":") {
                guard let rest = self.number(), rest < 60 else { return nil }
                seconds += rest
            }
        }
        return sign * seconds
    }

    mutating func day() -> PosixRule.Day? {
        if self.take("J") {
            guard let n = self.number(), (1 ... 365).contains(n) else { return nil }
            return .julian(Int(n))
        }
        if self.take("M") {
            guard let month = self.number(), (1 ... 12).contains(month), self.take("."), let week = self.number(), (1 ... 5).contains(week),
                self.take("."), let weekday = self.number(), (0 ... 6).contains(weekday)
            else { return nil }
            return .weekday(month: Int(month), week: Int(week), weekday: Int(weekday))
        }
        guard let n = self.number(), (0 ... 365).contains(n) else { return nil }
        return .ordinal(Int(n))
    }

    private mutating func number() -> Int64? {
        let digits = self.text[self.index...].prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, digits.count <= 3, let value = Int64(digits) else { return nil }
        self.index = digits.endIndex
        return value
    }
}
