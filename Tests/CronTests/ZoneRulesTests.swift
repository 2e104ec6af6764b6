@testable import Cron
import Foundation
import Testing

/// The zone reader against offsets written out by hand from the zones' published rules (the
/// host's tzdata; Tests/wire/test_cron_peer.py compares it with Python's zoneinfo at every
/// quarter hour of whole seasons).
@Suite("Time zone rules read from the host's TZif files")
struct ZoneRulesTests {
    static func instant(_ text: String) throws -> Int64 {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        let date = try #require(formatter.date(from: text), "bad test time \(text)")
        return Int64(date.timeIntervalSince1970)
    }

    static func zone(_ name: String) throws -> ZoneRules {
        try #require(ZoneRules(named: name), "\(name) does not load")
    }

    @Test("A northern zone: CET and CEST, the changes at 01:00 UTC on the last Sundays of March and October")
    func berlin() throws {
        let berlin = try Self.zone("Europe/Berlin")
        #expect(berlin.offset(at: try Self.instant("2026-03-29T00:59:59Z")) == 3600)
        #expect(berlin.offset(at: try Self.instant("2026-03-29T01:00:00Z")) == 7200)
        #expect(berlin.nextTransition(after: try Self.instant("2026-01-01T00:00:00Z")) == (try Self.instant("2026-03-29T01:00:00Z")))
        #expect(berlin.nextTransition(after: try Self.instant("2026-03-29T01:00:00Z")) == (try Self.instant("2026-10-25T01:00:00Z")))
        // Past the file's last transition the footer's rule (CET-1CEST,M3.5.0,M10.5.0/3) answers.
        #expect(berlin.nextTransition(after: try Self.instant("2100-01-01T00:00:00Z")) == (try Self.instant("2100-03-28T01:00:00Z")))
        #expect(berlin.offset(at: try Self.instant("2100-07-01T00:00:00Z")) == 7200)
        #expect(berlin.offset(at: try Self.instant("2100-12-31T23:59:59Z")) == 3600)
        // Before its first transition a zone keeps its first type: local mean time.
        #expect(berlin.offset(at: try Self.instant("1850-01-01T00:00:00Z")) == 3208)
    }

    @Test("A southern zone: DST across the new year, ending in April and starting in October")
    func sydney() throws {
        let sydney = try Self.zone("Australia/Sydney")
        #expect(sydney.offset(at: try Self.instant("2026-01-01T00:00:00Z")) == 39600)
        #expect(sydney.nextTransition(after: try Self.instant("2026-01-01T00:00:00Z")) == (try Self.instant("2026-04-04T16:00:00Z")))
        #expect(sydney.offset(at: try Self.instant("2026-04-04T16:00:00Z")) == 36000)
        #expect(sydney.nextTransition(after: try Self.instant("2026-04-04T16:00:00Z")) == (try Self.instant("2026-10-03T16:00:00Z")))
        #expect(sydney.offset(at: try Self.instant("2090-01-01T00:00:00Z")) == 39600)
        #expect(sydney.offset(at: try Self.instant("2090-06-01T00:00:00Z")) == 36000)
    }

    @Test("Half-hour DST (Lord Howe), negative DST (Dublin), no DST (Kolkata), UTC")
    func oddZones() throws {
        let lordHowe = try Self.zone("Australia/Lord_Howe")
        #expect(lordHowe.offset(at: try Self.instant("2026-10-03T15:29:59Z")) == 37800)
        #expect(lordHowe.offset(at: try Self.instant("2026-10-03T15:30:00Z")) == 39600)
        let dublin = try Self.zone("Europe/Dublin")
        #expect(dublin.offset(at: try Self.instant("2026-01-15T12:00:00Z")) == 0)
        #expect(dublin.offset(at: try Self.instant("2026-07-15T12:00:00Z")) == 3600)
        #expect(dublin.offset(at: try Self.instant("2080-07-15T12:00:00Z")) == 3600)
        let kolkata = try Self.zone("Asia/Kolkata")
        #expect(kolkata.offset(at: try Self.instant("2026-07-15T12:00:00Z")) == 19800)
        #expect(kolkata.nextTransition(after: try Self.instant("2026-07-15T12:00:00Z")) == nil)
        for utc in [try Self.zone("UTC"), ZoneRules.utc] {
            #expect(utc.offset(at: 0) == 0 && utc.nextTransition(after: 0) == nil)
        }
    }

    @Test("A wall time names the instant the clock shows it; in a gap, as if the clock had not moved; repeated, the first pass")
    func wallTimes() throws {
        let berlin = try Self.zone("Europe/Berlin")
        let wall = { (text: String) throws -> Int64 in try Self.instant(text + "Z") }
        #expect(berlin.instant(wall: try wall("2026-07-01T12:00:00")) == (try Self.instant("2026-07-01T10:00:00Z")))
        #expect(berlin.instant(wall: try wall("2026-03-29T02:30:00")) == (try Self.instant("2026-03-29T01:30:00Z")))
        #expect(berlin.instant(wall: try wall("2026-10-25T02:30:00")) == (try Self.instant("2026-10-25T00:30:00Z")))
    }

    @Test("Only names of the database's files: nothing that leaves its directory, and no file that is not TZif")
    func names() {
        for name in ["", "/etc/passwd", "../etc/passwd", "Europe/../../etc/passwd", ".hidden", "Europe//Berlin", "-rf", "zone.tab", "tzdata.zi", "Europe"] {
            #expect(ZoneRules(named: name) == nil, "\(name)")
        }
    }

    /// A version 2 TZif file with no transitions: everything comes from the footer's rule.
    static func footerOnly(_ rule: String) -> [UInt8] {
        func be32(_ value: Int32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian, Array.init) }
        let counts = [0, 0, 0, 0, 1, 4].flatMap { be32(Int32($0)) }
        let header = Array("TZif2".utf8) + [UInt8](repeating: 0, count: 15) + counts
        let block = be32(0) + [0, 0] + Array("UTC\0".utf8)
        return header + block + header + block + Array("\n\(rule)\n".utf8)
    }

    @Test("POSIX rules of footers: the forms of M, J and day-of-year dates, times past 24 h, quoted names, DST all year")
    func posixRules() throws {
        let berlin = try Self.zone("Europe/Berlin")
        let cet = try #require(ZoneRules(identifier: "cet", tzif: Self.footerOnly("CET-1CEST,M3.5.0,M10.5.0/3")))
        let sydney = try Self.zone("Australia/Sydney")
        let aest = try #require(ZoneRules(identifier: "aest", tzif: Self.footerOnly("AEST-10AEDT,M10.1.0,M4.1.0/3")))
        for day in stride(from: try Self.instant("2030-01-01T00:30:00Z"), to: try Self.instant("2031-01-01T00:00:00Z"), by: 3 * 3600 + 17) {
            #expect(cet.offset(at: day) == berlin.offset(at: day), "\(day)")
            #expect(aest.offset(at: day) == sydney.offset(at: day), "\(day)")
        }
        let tehranStyle = try #require(ZoneRules(identifier: "x", tzif: Self.footerOnly("<+0330>-3:30")))
        #expect(tehranStyle.offset(at: 0) == 12600 && tehranStyle.nextTransition(after: 0) == nil)
        // Day-of-year forms: J60 is March 1 every year; 59 is February 29 in a leap year.
        let julian = try #require(ZoneRules(identifier: "x", tzif: Self.footerOnly("XST3XDT,J60/0,59/0")))
        #expect(julian.nextTransition(after: try Self.instant("2028-01-01T00:00:00Z")) == (try Self.instant("2028-02-29T02:00:00Z")))
        #expect(julian.nextTransition(after: try Self.instant("2028-02-29T02:00:00Z")) == (try Self.instant("2028-03-01T03:00:00Z")))
        // Greenland's rule: the change at -1:00 local time, and DST (-1) until 0:00 in October.
        let nuuk = try #require(ZoneRules(identifier: "x", tzif: Self.footerOnly("<-02>2<-01>,M3.5.0/-1,M10.5.0/0")))
        #expect(nuuk.nextTransition(after: try Self.instant("2026-01-01T00:00:00Z")) == (try Self.instant("2026-03-29T01:00:00Z")))
        #expect(nuuk.offset(at: try Self.instant("2026-07-01T00:00:00Z")) == -3600)
        // DST all year (RFC 8536 3.3.1): the offset never leaves daylight time.
        let always = try #require(ZoneRules(identifier: "x", tzif: Self.footerOnly("EST5EDT,0/0,J365/25")))
        for text in ["2026-01-01T00:00:00Z", "2026-01-01T05:00:00Z", "2026-07-01T00:00:00Z", "2026-12-31T23:59:59Z", "2027-01-01T04:30:00Z"] {
            #expect(always.offset(at: try Self.instant(text)) == -4 * 3600, "\(text)")
        }
        for bad in ["CE", "CET", "CET-1CEST,M3.5.0", "CET-1CEST,M13.5.0,M10.5.0", "CET-1CEST,J0,J10", "<+03-3", "CET-1CEST,M3.5.0/200,M10.5.0"] {
            #expect(ZoneRules(identifier: "x", tzif: Self.footerOnly(bad)) == nil, "\(bad)")
        }
    }

    @Test("A damaged file is refused, never a crash: every cut of a real one, and bytes changed at random")
    func damagedFiles() throws {
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: "/usr/share/zoneinfo/Europe/Berlin")))
        #expect(ZoneRules(identifier: "x", tzif: bytes) != nil)
        for length in 0 ..< bytes.count - 1 {
            #expect(ZoneRules(identifier: "x", tzif: Array(bytes[..<length])) == nil, "cut at \(length)")
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0 ..< 2000 {
            var damaged = bytes
            for _ in 0 ..< Int.random(in: 1 ... 4, using: &generator) {
                damaged[Int.random(in: 0 ..< damaged.count, using: &generator)] = UInt8.random(in: 0 ... 255, using: &generator)
            }
            if let zone = ZoneRules(identifier: "x", tzif: damaged) {
                for instant in [Int64.random(in: -(1 << 40) ... 1 << 40, using: &generator), .min, .max] {
                    _ = zone.offset(at: instant)
                    _ = zone.nextTransition(after: instant)
                }
            }
        }
    }
}
