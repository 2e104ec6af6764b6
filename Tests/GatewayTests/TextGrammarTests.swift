@testable import Gateway
import Foundation
import RPC
import TestSupport
import Testing

/// The grammars the parsers share with the REST document (numbers as text, rate limits, RFC 3339
/// times, a daemon's stop and socket, server lists, prefixes refused without a lookahead): each
/// pattern against the code that reads the same texts.
@Suite("Text grammars: each pattern against its parser")
struct TextGrammarTests {
    static func matches(_ pattern: String, _ text: String) -> Bool {
        PatternText.matches(text, pattern)
    }

    @Test("Whole numbers as text: the pattern of a range matches exactly the digits of its numbers")
    func wholeText() async {
        var random = SystemRandomNumberGenerator()
        var ranges: [ClosedRange<Int64>] = [
            0 ... 604_800, 10 ... 86_400, 1 ... 64, 1 ... 65_535, 0 ... 1000, 0 ... 99_999_999_999, 0 ... RateLimitText.maxCount, 7 ... 7, 0 ... 0, 99 ... 100,
        ]
        for _ in 0 ..< 40 {
            let low = Int64.random(in: 0 ... 5_000_000, using: &random)
            ranges.append(low ... low + Int64.random(in: 0 ... 3_000_000, using: &random))
        }
        for (round, range) in ranges.enumerated() {
            await yieldingEvery(1, round)
            let pattern = WholeText.pattern(range)
            var numbers: [Int64] = [range.lowerBound, range.upperBound, range.lowerBound + 1, range.upperBound + 1, max(0, range.lowerBound - 1), 0, 9, 10, 99, 100]
            for _ in 0 ..< 200 {
                numbers.append(Int64.random(in: 0 ... range.upperBound * 2 + 10, using: &random))
                numbers.append(Int64.random(in: range, using: &random))
            }
            for number in numbers {
                #expect(Self.matches(pattern, String(number)) == range.contains(number), "\(range): \(number)")
            }
            // Only the plain digits: no sign, no leading zero, no space, no exponent.
            for text in ["0\(range.upperBound)", "+\(range.lowerBound)", " \(range.lowerBound)", "\(range.lowerBound) ", "1e1", "", "-0"] where text != "0" {
                #expect(!Self.matches(pattern, text), "\(range): \(text.debugDescription)")
                #expect(WholeText.value(text) == nil || text == "0", "\(text.debugDescription)")
            }
        }
    }

    @Test("Rate limits: a count, or a share from 1% to 100%")
    func rateLimits() {
        let accepted = ["", "0", "10", "9007199254740991", "1%", "25%", "2.5%", "99.99%", "100%", "100.0%", "100.000%"]
        let refused = ["01", "-1", "+1", " 5", "5 ", "1e3", "9007199254740992", "0%", "0.5%", "00%", "100.5%", "101%", "%", "5 %", "1.%", ".5%", "5%%", "１０"]
        for text in accepted + refused {
            let checked = (try? RateLimitText.check(text, field: "max_errors")) != nil
            #expect(checked == accepted.contains(text), "\(text.debugDescription)")
            #expect(Self.matches(RateLimitText.pattern, text) == checked, "\(text.debugDescription)")
        }
    }

    @Test("RFC 3339 times: what the pattern takes is read to the millisecond; impossible days are refused")
    func rfc3339() throws {
        let pattern = "^(?:\(RFC3339.alternatives))$"
        let times: [(String, Int64)] = [
            ("2026-12-02T10:00:00Z", 1_796_205_600_000), ("2026-12-02T10:00:00.5Z", 1_796_205_600_500),
            ("2026-12-02T10:00:00.123456789Z", 1_796_205_600_123), ("2026-12-02T10:00:00+01:00", 1_796_202_000_000),
            ("2026-12-02T10:00:00-18:00", 1_796_270_400_000), ("1970-01-01T00:00:00Z", 0), ("2028-02-29T00:00:00Z", 1_835_395_200_000),
            ("9999-12-31T23:59:59Z", 253_402_300_799_000), ("2000-02-29T12:00:00+05:45", 951_804_900_000),
        ]
        for (text, milliseconds) in times {
            #expect(Self.matches(pattern, text), "\(text)")
            #expect(try RFC3339.milliseconds(text, field: "t") == milliseconds, "\(text)")
        }
        // Foundation's ISO 8601 parser takes each of these.
        for text in ["2026-12-02T10:00:00Zjunk", "2026-02-30T10:00:00Z", "2026-12-02T24:00:00Z", "2026-12-02T10:00:60Z", "2026-12-02T10:00:00+0100",
                     "2026-12-02T10:00:00+19:00", "2026-12-02 10:00:00Z", "2026-12-02t10:00:00z", "1969-12-31T23:59:59Z", "2026-12-02T10:00:00.1234567891Z"] {
            #expect(!Self.matches(pattern, text), "\(text)")
            #expect(try RFC3339.milliseconds(text, field: "t") == nil, "\(text)")
        }
        // Well-formed, and no such moment: 422.
        for text in ["2026-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "1970-01-01T00:30:00+01:00"] where Self.matches(pattern, text) {
            let error = #expect(throws: AspireError.self) { try RFC3339.milliseconds(text, field: "t") }
            #expect(error?.code == .unprocessable, "\(text)")
        }
    }

    @Test("Times written as RFC 3339 to the second read back, and agree with Foundation's ISO 8601 text")
    func rfc3339Text() throws {
        #expect(RFC3339.text(milliseconds: 1_796_205_600_500) == "2026-12-02T10:00:00Z")
        #expect(RFC3339.text(milliseconds: 0) == "1970-01-01T00:00:00Z")
        #expect(RFC3339.text(milliseconds: 951_782_400_000) == "2000-02-29T00:00:00Z")
        #expect(RFC3339.text(milliseconds: 253_402_300_799_999) == "9999-12-31T23:59:59Z")
        var generator = SystemRandomNumberGenerator()
        for _ in 0 ..< 2000 {
            let milliseconds = Int64.random(in: 0 ... 253_402_300_799_999, using: &generator)
            let text = RFC3339.text(milliseconds: milliseconds)
            #expect(text == Date(timeIntervalSince1970: Double(milliseconds / 1000)).formatted(.iso8601), "\(milliseconds)")
            #expect(try RFC3339.milliseconds(text, field: "t") == milliseconds / 1000 * 1000, "\(text)")
        }
        // Past year 9999 the four-digit form ends; Foundation's text then.
        #expect(RFC3339.text(milliseconds: 253_402_300_800_000) == Date(timeIntervalSince1970: 253_402_300_800).formatted(.iso8601))
    }

    @Test("Prefixes refused without a lookahead; a daemon's stop as its parser reads it")
    func prefixesAndStops() {
        let prefixes = ["kill:", "process:"]
        let pattern = "^(?:\(PatternText.notStarting(with: prefixes)))$"
        for text in ["", "k", "ki", "kil", "kill", "kill:", "kill:x", "killall x", "p", "process", "process:", "process:x", "proc", "pkill", "xyz", "Kill:9", "\n"] {
            #expect(Self.matches(pattern, text) == !prefixes.contains(where: text.hasPrefix), "\(text.debugDescription)")
        }
        for text in ["", "kill:TERM", "kill:term", "kill:SIGterm", "kill:sigKILL", "kill:9", "kill:64", "kill:0", "kill:65", "kill:09", "kill:+9", "kill:ſigterm",
                     "kill:", "kill:SIG", "kill:FOO", "process:", "process:stop.sh", "stop.sh", "kill -9 1", "Kill:9", "kill:USR1", "kill:usr2"] {
            let parsed = (try? DaemonStop(parsing: text, owner: "t")) != nil
            #expect(Self.matches(DaemonStop.pattern, text) == parsed, "\(text.debugDescription)")
        }
    }

    @Test("HOST:PORT for a daemon's socket and config's server list")
    func addresses() {
        let addresses = ["a:1", "host.example-1_x:65535", "10.0.0.1:8080", "[::1]:80", "[fe80::1]:443"]
        let refused = ["a", "a:0", "a:65536", "a:01", "a:+1", " a:1", "a:1 ", "a b:1", "[::1]", "::1:80", "é:1", ":80"]
        for text in addresses + refused {
            #expect(HostPort.isAddress(text) == addresses.contains(text), "\(text.debugDescription)")
        }
        for list in ["", "a:1", "a:1,b:2", "a:1,b:2,", ",a:1", ",,", "a:1,[::1]:80"] {
            #expect(Self.matches(HostPort.listPattern, list), "\(list.debugDescription)")
        }
        for list in ["a", "a:1;b:2", "a:1, b:2", "a:1,b"] {
            #expect(!Self.matches(HostPort.listPattern, list), "\(list.debugDescription)")
        }
        for socket in ["", "/run/x.sock", "127.0.0.1:80"] { #expect(Self.matches(Aspire_V1_DaemonSpec.socketPattern, socket), "\(socket)") }
        for socket in ["run/x.sock", "127.0.0.1", "x:0"] { #expect(!Self.matches(Aspire_V1_DaemonSpec.socketPattern, socket), "\(socket)") }
    }

    @Test("A plugin's sources: built-in collectors, archives, git urls and refs as their checks read them")
    func pluginSources() {
        for url in ["builtin://port?ports=22", "builtin://port?ports=22,8080,65535", "BUILTIN://port?ports=1", "builtin://process?names=sshd",
                    "builtin://process?pidfiles=/run/x.pid", "builtin://process?names=a,b&pidfiles=/x", "builtin://process?pidfiles=/x&names=a",
                    "builtin://port?ports=0", "builtin://port?ports=65536", "builtin://port?ports=", "builtin://port", "builtin://port?ports=22&ports=23",
                    "builtin://port?ports=22&x=1", "builtin://process?names=a/b", "builtin://process?pidfiles=x.pid", "builtin://process?names=",
                    "builtin://process?names=%73shd", "builtin://disk?path=/", "builtin://PORT?ports=22", "builtin://process?names=a,", "builtin://port?ports=022"] {
            let parsed = (try? BuiltinCollector(url: url)) != nil
            #expect(Self.matches(BuiltinCollector.pattern, url) == parsed, "\(url)")
        }
        func checked(_ change: (inout Aspire_V1_Plugin) -> Void) -> Bool {
            var plugin = Aspire_V1_Plugin()
            plugin.name = "p"
            change(&plugin)
            return (try? plugin.check(code: .badRequest)) != nil
        }
        for git in ["https://h/r.git", "ssh://git@h/r", "file:///srv/r", "git@h.example.com:team/r.git", "HTTPS://h/r", "git://h/r", "http://h/r",
                    "git@h:", "git@h::x", "https://h/a b", "https://h/é", "-u@h:x", "h:x"] {
            let valid = checked { $0.git = git; $0.allowMovingRef = true }
            #expect(Self.matches(Aspire_V1_Plugin.gitPattern, git) == valid, "\(git)")
        }
        for ref in ["", "main", "v1.2", "release/1.x", "a.", "a.-b", "-a", ".a", "a..b", "é", "a b", String(repeating: "a", count: 40)] {
            let valid = checked { $0.git = "https://h/r"; $0.ref = ref; $0.allowMovingRef = true }
            #expect(Self.matches(Aspire_V1_Plugin.refPattern, ref) == valid, "\(ref)")
        }
        // A combining mark after the prefix's last "/": by characters the prefix would be hidden.
        let marked = "aspire://package/\u{301}linux/x86_64/a.tar.gz"
        #expect(StoreFile.isStoreURL(marked) && StoreFile(url: marked)?.os == "\u{301}linux")
        #expect(Self.matches(StoreFile.storeURLPattern, marked))
    }
}
