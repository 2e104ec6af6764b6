import Cron
import Foundation
import TestSupport
import Testing

/// `Crontab.pattern` (the REST document's pattern for an import's crontab) against
/// `Crontab.parse` on generated files: every line kind, CRLF, stray carriage returns, combining
/// marks after blanks, both readings of fields=0, with and without a user column.
@Suite("Crontab pattern and parser agree")
struct CrontabPatternTests {
    static let user = "[a-z][a-z0-9_-]{0,7}"

    /// What the import takes: the parser reads it whole, finds a schedule, and every command says something.
    static func accepted(_ text: String, fields: Int?, withUser: Bool) -> Bool {
        let users = try! Regex("^\(Self.user)$").matchingSemantics(.unicodeScalar)
        guard let entries = try? Crontab.parse(
            text, fields: fields, isUser: { _ in withUser }, acceptsUser: { (try? users.wholeMatch(in: $0)) != nil }
        ) else { return false }
        let blanks: Set<Unicode.Scalar> = [" ", "\t", "\n", "\u{0B}", "\u{0C}", "\r"]
        return !entries.isEmpty && entries.allSatisfy { !$0.command.unicodeScalars.allSatisfy(blanks.contains) }
    }

    static let times = [
        "* * * * *", "*/5 * * * *", "0 6 * * sun", "0 0 1 1 *", "30 2 * * 1-5", "0 0 * * * *", "*/10 * * * * *", "0 30 2 * * mon",
        "@daily", "@HOURLY", "@reboot", "61 * * * *", "* * * *", "* * * * * 8", "0 0 31 2 *", "*  *\t* * *",
    ]
    static let words = ["root", "nobody", "echo", "hi", "sun", "mon", "5", "\r", "\u{0B}", "\u{301}x", "Root", "a-b", "x=y", "#", "ünï", "''", "-"]
    static let others = ["", " ", "\t", "# a comment", "  # indented", "PATH=/usr/bin", "_X = 'y'", "A B=c", "é=1", "\r", "  \r", "\r\r", "x", "=1", "A=\r"]

    static func line(_ random: inout SystemRandomNumberGenerator) -> String {
        switch Int.random(in: 0 ..< 10, using: &random) {
        case 0 ..< 3:
            return Self.others.randomElement(using: &random)!
        default:
            let count = Int.random(in: 0 ... 4, using: &random)
            let tail = (0 ..< count).map { _ in Self.words.randomElement(using: &random)! }
            let separators = [" ", "  ", "\t", " \u{301}"]
            var text = Self.times.randomElement(using: &random)!
            for word in tail { text += (Int.random(in: 0 ..< 8, using: &random) == 0 ? separators.randomElement(using: &random)! : " ") + word }
            if Int.random(in: 0 ..< 6, using: &random) == 0 { text += [" ", "\r", " \r", "\r\r"].randomElement(using: &random)! }
            return (Int.random(in: 0 ..< 6, using: &random) == 0 ? " " : "") + text
        }
    }

    @Test("Generated crontabs: the pattern matches exactly those the import takes", arguments: [nil, 5, 6] as [Int?])
    func agreement(fields: Int?) async throws {
        var random = SystemRandomNumberGenerator()
        for withUser in [false, true] {
            let pattern = try Regex(Crontab.pattern(fields: fields, user: withUser ? Self.user : nil)).matchingSemantics(.unicodeScalar)
            var accepted = 0
            for round in 0 ..< 1500 {
                // Seconds of CPU in a debug build: let the other tests' jobs run between rounds (see `yieldingEvery`).
                await yieldingEvery(50, round)
                let lines = (0 ..< Int.random(in: 1 ... 4, using: &random)).map { _ in Self.line(&random) }
                let text = lines.joined(separator: Int.random(in: 0 ..< 4, using: &random) == 0 ? "\r\n" : "\n")
                let expected = Self.accepted(text, fields: fields, withUser: withUser)
                if expected { accepted += 1 }
                #expect((try pattern.wholeMatch(in: text) != nil) == expected, "fields \(String(describing: fields)), user \(withUser): \(text.debugDescription)")
            }
            // Both outcomes are exercised, not one.
            #expect(accepted > 20 && accepted < 1480, "\(accepted) of 1500 accepted")
        }
    }
}
