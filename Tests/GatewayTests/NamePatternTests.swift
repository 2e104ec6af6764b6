import Foundation
import RPC
import SwiftProtobuf
import TestSupport
import Testing

/// The REST document's patterns say what the checks take: each pattern against its check, on
/// generated names near every rule's edge.
@Suite("Name patterns and their checks")
struct NamePatternTests {
    static func matches(_ pattern: String, _ text: String) throws -> Bool {
        try Regex(pattern).matchingSemantics(.unicodeScalar).wholeMatch(in: text) != nil
    }

    /// Texts from an alphabet of allowed and refused characters, of lengths around each limit.
    static func texts(_ alphabet: [String], lengths: [Int], count: Int) -> [String] {
        var random = SystemRandomNumberGenerator()
        return (0 ..< count).map { _ in
            let length = lengths.randomElement(using: &random)!
            return (0 ..< length).map { _ in alphabet.randomElement(using: &random)! }.joined()
        }
    }

    static let alphabet = ["a", "Z", "0", "9", ".", "-", "_", ":", "$", "+", "/", " ", "é", "@", "s", "c", "h", "e", "d", "u", "l", "\u{0}"]

    @Test("Command ids: 1 to 128 of letters, digits and . - _ :, never a scheduled run's (schedule:...)")
    func commandIDs() async throws {
        let near = ["schedule:", "schedule", "schedul", "s", "schedule:x", "Schedule:x", "schedule_x", "xschedule:"]
        let generated = Self.texts(Self.alphabet, lengths: [0, 1, 2, 8, 9, 10, 127, 128, 129], count: 3000)
        let prefixed = near.flatMap { head in Self.texts(["a", ":", "s", "-"], lengths: [0, 1, 3], count: 20).map { head + $0 } }
        for (round, id) in (generated + prefixed + near + [String(repeating: "a", count: 128), String(repeating: "a", count: 129)]).enumerated() {
            await yieldingEvery(100, round)
            let checked = (try? CommandID.check(id)) != nil || id.isEmpty
            #expect(checked == (try Self.matches(CommandID.pattern, id)), "\(id.debugDescription)")
        }
    }

    @Test("User and group names; path names (schedule, plugin and sub-agent names)")
    func accountsAndPaths() throws {
        let generated = Self.texts(Self.alphabet, lengths: [0, 1, 2, 63, 64, 65, 127, 128, 129], count: 3000)
        for name in generated + ["-x", "x-", ".x", "$", "root", "nobody"] {
            let account = (try? AccountName.check([name], owner: "t")) != nil
            #expect(account == (try Self.matches(AccountName.pattern, name)), "account \(name.debugDescription)")
            let path = (try? PathName.check(name, field: "t")) != nil
            #expect(path == (try Self.matches(PathName.pattern, name)), "path \(name.debugDescription)")
        }
    }

    @Test("The command route's methods are exactly those its fields make whole")
    func commandRouteMethods() throws {
        // cmd, timeout, user, group and args are all the route carries: the methods that need
        // nothing more than these (sync.bash with its cmd).
        let plain = [CommandMethod.config.taskName, CommandMethod.plugin(.list).taskName]
        let getInfo = CommandMethod.GetInfoTopic.allCases.map { CommandMethod.getInfo($0).taskName }
        for method in CommandParameters.methods {
            let bare = (try? CommandParameters.command(method: method, parameters: Google_Protobuf_Struct())) != nil
            let withCmd = (try? CommandParameters.command(method: method, parameters: Google_Protobuf_Struct(fields: ["cmd": .init(stringValue: "true")]))) != nil
            let withArgs = (try? CommandParameters.command(method: method, parameters: Google_Protobuf_Struct(fields: ["args": .init(stringValue: "-a")]))) != nil
            #expect(bare == (plain.contains(method) || getInfo.contains(method)), "\(method) with nothing")
            #expect(withCmd == (method == CommandMethod.bash.taskName), "\(method) with cmd")
            #expect(withArgs == getInfo.contains(method), "\(method) with args")
        }
    }
}
