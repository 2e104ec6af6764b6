import Cron
import Foundation
import TestSupport
import Testing

/// `CronExpression.pattern` (the REST document's) and the parser take exactly the same texts.
@Suite("The cron pattern and the parser agree")
struct CronPatternTests {
    /// A small seeded generator, so a failure is the same on every run.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            self.state &+= 0x9E37_79B9_7F4A_7C15
            var z = self.state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let words = [
        "*", "?", "L", "l", "W", "LW", "wl", "L-3", "L-31", "L-0", "15W", "32W", "0W", "5L", "FRIL", "fril", "MON#2", "7#5", "1#6", "SUN#0",
        "JAN", "dec", "Mon", "FRI", "sat", "ſun", "frı", "JANUARY", "MO", "@hourly", "@weekly", "@WEEKLY", "@wee\u{212A}ly", "@reboot",
        "+5", "+", "007", "-1", "60", "59", "24", "23", "31", "32", "12", "13", "7", "8", "0", "1-5", "5-1", "23-7/2", "*/0", "*/60", "*/61",
        "0/30", "*/7", "*/8", "MON-FRI", "SAT-MON", "1,2,,3", ",", "5/2/1", "1-2-3", "?", "??", "1?", "L/2", "#", "5#", "x", "\u{0301}",
    ]

    static func expression(_ random: inout Generator) -> String {
        let count = [1, 5, 5, 6, 6, 6, 7].randomElement(using: &random)!
        // Each field's own range most of the time, so that many come out valid.
        let ranges: [ClosedRange<Int>] = Array([0 ... 59, 0 ... 59, 0 ... 23, 1 ... 31, 1 ... 12, 0 ... 7].suffix(min(count, 6)))
        var fields: [String] = []
        for index in 0 ..< count {
            let range = Int.random(in: 0 ..< 25, using: &random) == 0 || index >= ranges.count ? 0 ... 62 : ranges[index]
            let items = (0 ..< Int.random(in: 1 ... 3, using: &random)).map { _ in
                Int.random(in: 0 ..< 15, using: &random) == 0 ? Self.words.randomElement(using: &random)! : Self.item(range, &random)
            }
            fields.append(items.joined(separator: ","))
        }
        var text = fields.joined(separator: [" ", " ", "  ", "\t"].randomElement(using: &random)!)
        if Int.random(in: 0 ..< 4, using: &random) == 0 {
            // A mutation: a character in, or out.
            let alphabet = Array("0123456789*?,-/#LWlw @+\tJAN\u{85}\n")
            var characters = Array(text)
            let at = Int.random(in: 0 ... characters.count, using: &random)
            if Bool.random(using: &random) || characters.isEmpty {
                characters.insert(alphabet.randomElement(using: &random)!, at: at)
            } else {
                characters.remove(at: min(at, characters.count - 1))
            }
            text = String(characters)
        }
        return Int.random(in: 0 ..< 8, using: &random) == 0 ? " \(text) " : text
    }

    static func item(_ range: ClosedRange<Int>, _ random: inout Generator) -> String {
        let value = { (random: inout Generator) -> String in String(Int.random(in: range, using: &random)) }
        let step = { (random: inout Generator) -> String in String(Int.random(in: 0 ... range.count + 1, using: &random)) }
        switch Int.random(in: 0 ..< 5, using: &random) {
        case 0: return value(&random)
        case 1: return "\(value(&random))-\(value(&random))"
        case 2: return "*/\(step(&random))"
        case 3: return "*"
        default: return "\(value(&random))-\(value(&random))/\(step(&random))"
        }
    }

    @Test("On 20,000 generated and mutated expressions, the pattern matches exactly those the parser takes")
    func agree() async throws {
        let regex = try Regex(CronExpression.pattern).matchingSemantics(.unicodeScalar)
        var random = Generator(state: 20_261_202)
        var taken = 0
        for round in 0 ..< 20_000 {
            await yieldingEvery(200, round)
            let text = Self.expression(&random)
            let parsed = (try? CronExpression(text)) != nil
            let matched = (try? regex.wholeMatch(in: text)) != nil
            #expect(parsed == matched, "'\(text.debugDescription)': the parser \(parsed ? "takes" : "refuses") it, the pattern \(matched ? "matches" : "does not")")
            if parsed { taken += 1 }
        }
        // Both sides are exercised: many valid, many not.
        #expect(taken > 3_000 && taken < 17_000, "\(taken) of 20,000 valid")
    }

    @Test("Names are ASCII: a letter whose uppercase is ASCII is not one")
    func asciiNames() {
        #expect((try? CronExpression("0 0 * * ſun")) == nil)
        #expect((try? CronExpression("@wee\u{212A}ly")) == nil)
        #expect((try? CronExpression("0 0 * * sun")) != nil)
    }
}

@Suite("Time zone names")
struct ZoneNameTests {
    @Test("Zones of the database (links too) and UTC are names; what Foundation also reads but the database has not is not")
    func names() throws {
        for name in ["UTC", "GMT", "Europe/Berlin", "Asia/Kolkata", "Asia/Calcutta", "America/New_York"] {
            #expect(CronSchedule.zoneNames.contains(name), "\(name)")
            _ = try CronSchedule("0 0 * * *", timeZone: name)
        }
        for name in ["GMT+8", "UTC+08:00", "utc", "Asia/shanghai", "Nowhere/Land", "../../etc/passwd"] {
            #expect(throws: CronError.self, "\(name)") { try CronSchedule("0 0 * * *", timeZone: name) }
        }
    }
}
