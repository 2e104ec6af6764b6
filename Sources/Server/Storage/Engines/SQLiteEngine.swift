public import Logging
import NIOPosix
public import SQLKit

/// The embedded default: one SQLite file in WAL mode, one connection, calls taken in turn
/// (SQLite has one writer anyway; batching, not more connections, is what makes it fast).
/// Statements run kept prepared (`SQLiteFile`), in place on the store's own thread
/// (`SQLiteThread`).
public final class SQLiteEngine: SQLEngine {
    public let kind = SQLEngineKind.sqlite
    public let path: String
    private let file: SQLiteFile
    private let checkpointer: SQLiteCheckpointer
    private let logger: Logger
    private let lock = AsyncLock()

    private init(file: SQLiteFile, checkpointer: SQLiteCheckpointer, logger: Logger) {
        self.path = file.path
        self.file = file
        self.checkpointer = checkpointer
        self.logger = logger
        file.checkpoint(by: checkpointer)
    }

    /// Opens (creating when missing) the database file at `path`.
    public static func open(path: String, logger: Logger) async throws -> SQLiteEngine {
        let file = try SQLiteFile.open(path: path, pragmas: [
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=5000",
            // A 64 MiB page cache and in-memory statement journals: batched writes touch many
            // pages, and the default 2 MiB cache sends each batch back to the file.
            "PRAGMA cache_size=-65536",
            "PRAGMA temp_store=MEMORY",
        ])
        do {
            return SQLiteEngine(file: file, checkpointer: try SQLiteCheckpointer(path: path, logger: logger), logger: logger)
        } catch {
            file.close()
            throw error
        }
    }

    public func withConnection<Result: Sendable>(_ body: (any SQLDatabase) async throws -> Result) async throws -> Result {
        do {
            return try await withTaskExecutorPreference(SQLiteThread.shared) {
                try await self.lock.withLock { try await body(SQLiteRows(file: self.file, logger: self.logger)) }
            }
        } catch let failure as SQLiteFailure where failure.isDiskFull {
            // The disk under the store: a clear answer for callers, not an internal error.
            throw StoreFull(location: self.path, detail: failure.message).error
        }
    }

    /// The connection's statement counts (see `SQLiteFile.preparations`).
    var preparations: (prepared: Int, reprepared: Int) {
        get async throws { try await self.lock.withLock { self.file.preparations } }
    }

    /// Closes the database, once whoever holds it is done.
    public func shutdown() async {
        try? await self.lock.withLock {
            self.checkpointer.close()
            self.file.close()
        }
    }
}

/// The thread SQLite statements run on: a transaction's code runs there from its start to its
/// end, so that the statements, which block (a batch of thousands of rows, the disk), never
/// hold one of the few threads every task of the process shares. A transaction hops onto it
/// and back once, where SQLiteNIO made three hops a statement. One for the process: a node has
/// one database, and a thread per engine would outlive engines that were not shut down.
final class SQLiteThread: TaskExecutor {
    static let shared = SQLiteThread()

    private let pool: NIOThreadPool

    private init() {
        self.pool = NIOThreadPool(numberOfThreads: 1)
        self.pool.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = self.asUnownedTaskExecutor()
        self.pool.submit { _ in job.runSynchronously(on: executor) }
    }
}
