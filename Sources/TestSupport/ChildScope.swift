import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The child processes started within a scope (a test), stopped together when it ends,
/// however it ends — awaited, where a `defer { Task { await stop() } }` would leave them to
/// chance. A ``ChildProcess`` made inside ``run(_:)`` joins the scope by itself.
public final class ChildScope: Sendable {
    @TaskLocal public static var current: ChildScope?

    private let children = Mutex<[ChildProcess]>([])

    public init() {}

    func adopt(_ child: ChildProcess) {
        self.children.withLock { $0.append(child) }
    }

    /// Runs `body`; then stops every child it started that still runs.
    public static func run<Result>(_ body: () async throws -> Result) async throws -> Result {
        let scope = ChildScope()
        do {
            let result = try await Self.$current.withValue(scope) { try await body() }
            await scope.stopAll()
            return result
        } catch {
            await scope.stopAll()
            throw error
        }
    }

    /// Stops the children still running, all at once (a frozen one is woken first, so its
    /// SIGTERM is heard).
    public func stopAll() async {
        let children = self.children.withLock { $0 }
        await withDiscardingTaskGroup { group in
            for child in children where child.isRunning {
                group.addTask {
                    child.signal(SIGCONT)
                    await child.stop()
                }
            }
        }
    }
}
