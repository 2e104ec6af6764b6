import FoundationEssentials
import RPC
import Testing

/// The ids of commands, subtasks and staging names.
@Suite("Random ids")
struct RandomIDTests {
    @Test("UUID.random() makes version-4 RFC 4122 UUIDs, distinct, that read back as themselves")
    func versionFour() throws {
        var seen = Set<UUID>()
        for _ in 0 ..< 10_000 {
            let id = UUID.random()
            let text = id.uuidString.lowercased()
            #expect(UUID(uuidString: text) == id)
            let digits = Array(text)
            #expect(digits[14] == "4", "version nibble: \(text)")
            #expect("89ab".contains(digits[19]), "variant: \(text)")
            seen.insert(id)
        }
        #expect(seen.count == 10_000)
        // Every other bit is random: over many ids each of the 122 takes both values.
        var ones = [Int](repeating: 0, count: 128)
        for id in seen {
            let bytes = withUnsafeBytes(of: id.uuid) { Array($0) }
            for bit in 0 ..< 128 where bytes[bit / 8] >> (7 - bit % 8) & 1 == 1 { ones[bit] += 1 }
        }
        let fixed: Set<Int> = [48, 49, 50, 51, 64, 65]
        for bit in 0 ..< 128 where !fixed.contains(bit) {
            #expect((4000 ... 6000).contains(ones[bit]), "bit \(bit) set in \(ones[bit]) of 10,000")
        }
    }
}
