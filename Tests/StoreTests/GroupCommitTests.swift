import Synchronization
import Testing

@testable import Server

@Suite("Group commit")
struct GroupCommitTests {
    @Test("Every caller gets its own answer, each item is written once, and waiting callers share batches")
    func batches() async throws {
        let batches = Mutex<[[Int]]>([])
        let commit = GroupCommit<Int, String>(maxBatch: 64) { items in
            batches.withLock { $0.append(items) }
            try? await Task.sleep(for: .milliseconds(2))
            return items.map { "answer \($0)" }
        }
        let answers = await withTaskGroup(of: (Int, String).self) { group in
            for item in 0 ..< 2000 {
                group.addTask { (item, await commit.submit(item)) }
            }
            return await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect(answers.count == 2000)
        #expect(answers.allSatisfy { $0.value == "answer \($0.key)" })
        let written = batches.withLock { $0 }
        #expect(written.flatMap { $0 }.sorted() == Array(0 ..< 2000), "each item written exactly once")
        #expect(written.allSatisfy { $0.count <= 64 })
        #expect(written.count < 2000 / 4, "callers that wait share batches (\(written.count) batches)")
    }

    @Test("A lone caller is written at once, alone")
    func lone() async {
        let commit = GroupCommit<Int, Int>(maxBatch: 10) { $0.map { $0 * 2 } }
        #expect(await commit.submit(21) == 42)
        #expect(await commit.submit(4) == 8)
    }
}
