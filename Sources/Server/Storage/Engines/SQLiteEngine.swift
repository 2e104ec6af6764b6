public import Logging
import NIOCore
import NIOPosix
public import SQLKit
import SQLiteKit
import SQLiteNIO

/// The embedded default: one SQLite file in WAL mode, one connection, calls taken in turn
/// (SQLite has one writer anyway; batching, not more connections, is what makes it fast).
public final class SQLiteEngine: SQLEngine {
    public let kind = SQLEngineKind.sqlite
    public let path: String
    private let connection: SQLiteConnection
    private let lock = AsyncLock()

    private init(path: String, connection: SQLiteConnection) {
        self.path = path
        self.connection = connection
    }

    /// Opens (creating when missing) the database file at `path`.
    public static func open(path: String, logger: Logger) async throws -> SQLiteEngine {
        let connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        let database = connection.sql()
        try await database.raw("PRAGMA journal_mode=WAL").run()
        try await database.raw("PRAGMA synchronous=NORMAL").run()
        try await database.raw("PRAGMA foreign_keys=ON").run()
        try await database.raw("PRAGMA busy_timeout=5000").run()
        // A 64 MiB page cache and in-memory statement journals: batched writes touch many
        // pages, and the default 2 MiB cache sends each batch back to the file.
        try await database.raw("PRAGMA cache_size=-65536").run()
        try await database.raw("PRAGMA temp_store=MEMORY").run()
        return SQLiteEngine(path: path, connection: connection)
    }

    public func withConnection<Result: Sendable>(_ body: (any SQLDatabase) async throws -> Result) async throws -> Result {
        do {
            return try await self.lock.withLock { try await body(SQLiteRows(self.connection)) }
        } catch let error as SQLiteError where [.full, .ioError].contains(error.reason) {
            // The disk under the store: a clear answer for callers, not an internal error.
            throw StoreFull(location: self.path, detail: error.message).error
        }
    }

    /// Closes the database; also from a cancelled task (the async `close()` gives up when
    /// cancelled, and a connection left open traps when it is freed).
    public func shutdown() async {
        let closed: EventLoopFuture<Void> = self.connection.close()
        try? await closed.get()
    }
}
