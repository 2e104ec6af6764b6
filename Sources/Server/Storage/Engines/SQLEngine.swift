public import SQLKit
import RPC
import Synchronization

/// Where the store's SQL runs. One engine per database kind; the store's queries are the same.
public protocol SQLEngine: Sendable {
    var kind: SQLEngineKind { get }
    /// Runs `body` on one connection that no one else uses meanwhile.
    func withConnection<Result: Sendable>(_ body: (any SQLDatabase) async throws -> Result) async throws -> Result
    /// Closes the engine's connections.
    func shutdown() async
}

public enum SQLEngineKind: String, Sendable, CaseIterable {
    case sqlite
    case postgres
}

/// A lock that suspends instead of blocking, for one shared connection.
final class AsyncLock: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func withLock<Result>(_ body: () async throws -> Result) async throws -> Result {
        await self.acquire()
        defer { self.release() }
        return try await body()
    }

    private func acquire() async {
        // Free: taken without suspending (the common case: most calls find no one waiting).
        let taken: Bool = self.state.withLock { state in
            if state.locked { return false }
            state.locked = true
            return true
        }
        if taken { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired: Bool = self.state.withLock { state in
                if state.locked {
                    state.waiters.append(continuation)
                    return false
                }
                state.locked = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    private func release() {
        let next: CheckedContinuation<Void, Never>? = self.state.withLock { state in
            if state.waiters.isEmpty {
                state.locked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}

/// The store could not write: its disk is full. Callers get `unavailable` (HTTP 503, try again)
/// with where and why, and the node goes on serving; the agents keep what was not stored.
struct StoreFull {
    var location: String
    var detail: String

    var error: AspireError {
        AspireError(.unavailable, "the store cannot write: \(self.detail) (\(self.location)); free space and the node resumes")
    }
}
