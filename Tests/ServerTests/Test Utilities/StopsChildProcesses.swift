import Foundation
import Testing
import TestSupport

/// Stops every child process a test started (nodes, agents, CLIs) when the test ends, however it
/// ends, and waits for them (``ChildScope``).
struct StopsChildProcesses: TestTrait, SuiteTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        guard testCase != nil else { return try await function() }
        try await ChildScope.run { try await function() }
    }
}

extension Trait where Self == StopsChildProcesses {
    /// See ``StopsChildProcesses``.
    static var stopsChildProcesses: Self { Self() }
}

@Suite("Test support: child scopes")
struct ChildScopeTests {
    @Test("Children started in a scope are stopped and reaped when it ends, also when it throws")
    func stopsChildren() async throws {
        let log = "/tmp/aspire-scope-\(UInt32.random(in: 0 ... .max)).log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let child = try await ChildScope.run { try ChildProcess("/bin/sleep", ["300"], log: log) }
        #expect(!child.isRunning)
        var thrown: ChildProcess?
        await #expect(throws: HarnessError.self) {
            try await ChildScope.run {
                thrown = try ChildProcess("/bin/sleep", ["300"], log: log)
                throw HarnessError("the test failed")
            }
        }
        #expect(thrown?.isRunning == false)
    }
}
