import CSQLiteSupport
import Logging
import NIOCore
import NIOPosix
import SQLiteNIO
import Synchronization
// SQLite as SQLiteNIO bundles and builds it (3.5x, its functions prefixed `sqlite_nio_`): the
// same library the store always used, with no second copy and nothing from the system.
import VaporCSQLite

/// One SQLite connection, driven through the C API on the caller's thread, its statements
/// prepared once and kept.
///
/// SQLiteNIO parses every statement anew and runs it on its thread pool: three thread wake-ups
/// and a parse per statement, 91–113 µs for an `UPDATE … RETURNING` of one row where the same
/// statement kept prepared and run in place takes 17–19 µs (bench/README.md, "Performance round
/// two"). The store already takes its connection in turn (`SQLiteEngine`'s lock), so nothing here
/// locks: a caller owns the connection while it runs a statement. A statement is short (the
/// longest, a batch of results, a few milliseconds); the write-ahead log's checkpoints, the one
/// long thing SQLite would do inside a commit, run on a thread of their own (`SQLiteCheckpointer`).
final class SQLiteFile: @unchecked Sendable {
    /// A statement kept prepared, with its result columns.
    final class Statement {
        let pointer: OpaquePointer
        let columns: SQLiteColumns

        init(pointer: OpaquePointer) {
            self.pointer = pointer
            self.columns = SQLiteColumns((0..<sqlite_nio_sqlite3_column_count(pointer)).map { String(cString: sqlite_nio_sqlite3_column_name(pointer, $0)) })
        }

        deinit { sqlite_nio_sqlite3_finalize(self.pointer) }
    }

    let path: String
    private var handle: OpaquePointer?
    private var statements: [String: Statement] = [:]
    /// Statements differ by their number of values (a batch of N rows, a list of N ids): past
    /// this many kept, the cache starts again rather than grow.
    private static let statementsKept = 512
    /// How many statements were prepared (not found kept), and re-prepared by SQLite itself.
    var preparations: (prepared: Int, reprepared: Int) {
        (self.prepared, self.statements.values.reduce(0) { $0 + Int(sqlite_nio_sqlite3_stmt_status($1.pointer, SQLITE_STMTSTATUS_REPREPARE, 0)) })
    }
    private var prepared = 0

    private init(path: String, handle: OpaquePointer) {
        self.path = path
        self.handle = handle
    }

    /// Opens (creating when missing) the database file at `path` and runs `pragmas` on it;
    /// closes it again if one fails.
    static func open(path: String, pragmas: [String]) throws -> SQLiteFile {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let status = sqlite_nio_sqlite3_open_v2(path, &handle, flags, nil)
        guard status == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite_nio_sqlite3_close(handle)
            throw SQLiteFailure(code: status, message: message, sql: "open \(path)")
        }
        sqlite_nio_sqlite3_extended_result_codes(handle, 1)
        let stable = aspire_sqlite_stable_plans(UnsafeMutableRawPointer(handle))
        guard stable == SQLITE_OK else {
            sqlite_nio_sqlite3_close(handle)
            throw SQLiteFailure(code: stable, message: "cannot keep query plans stable", sql: "open \(path)")
        }
        let file = SQLiteFile(path: path, handle: handle)
        do {
            for pragma in pragmas {
                try file.run(pragma, []) { _ in }
            }
        } catch {
            file.close()
            throw error
        }
        return file
    }

    /// Runs `sql` with `binds` (`?1`, `?2`, … in order), handing each result row to `onRow`.
    func run(_ sql: String, _ binds: [SQLiteData], _ onRow: (SQLiteValues) throws -> Void) throws {
        guard let handle = self.handle else {
            throw SQLiteFailure(code: SQLITE_MISUSE, message: "the database is closed", sql: sql)
        }
        let statement = try self.statement(sql, in: handle)
        let pointer = statement.pointer
        defer {
            // Through `statement`, which keeps it alive to here: a statement that changes the
            // schema empties the cache, and would otherwise be finalized before it is reset.
            sqlite_nio_sqlite3_reset(statement.pointer)
            sqlite_nio_sqlite3_clear_bindings(statement.pointer)
        }
        for (index, value) in binds.enumerated() {
            let status = Self.bind(value, at: Int32(index + 1), to: pointer)
            guard status == SQLITE_OK else { throw self.failure(status, sql) }
        }
        while true {
            switch sqlite_nio_sqlite3_step(pointer) {
            case SQLITE_ROW:
                try onRow(SQLiteValues(columns: statement.columns, values: Self.values(of: pointer, count: statement.columns.names.count)))
            case SQLITE_DONE:
                if Self.changesSchema(sql) { self.statements.removeAll() }
                return
            case let status:
                throw self.failure(status, sql)
            }
        }
    }

    /// Hands each commit's write-ahead log size, in pages, to `checkpointer`, which SQLite then
    /// leaves the log's checkpoints to (it would otherwise run one inside a commit now and then).
    func checkpoint(by checkpointer: SQLiteCheckpointer) {
        let context = Unmanaged.passUnretained(checkpointer).toOpaque()
        sqlite_nio_sqlite3_wal_hook(self.handle, { context, handle, database, pages in
            guard let context else { return SQLITE_OK }
            if pages >= SQLiteCheckpointer.pagesInPlace {
                // The checkpoints behind have not caught up with the writes: this commit copies
                // the log itself, as SQLite's own automatic checkpoint would.
                // Its answer is not the commit's, which has happened (SQLite's ignores it too).
                _ = sqlite_nio_sqlite3_wal_checkpoint_v2(handle, database, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
                return SQLITE_OK
            }
            Unmanaged<SQLiteCheckpointer>.fromOpaque(context).takeUnretainedValue().logGrew(to: Int(pages))
            return SQLITE_OK
        }, context)
    }

    /// Copies what it can of the write-ahead log into the file without waiting for anyone.
    fileprivate func checkpointPassively() -> (status: Int32, message: String) {
        let status = sqlite_nio_sqlite3_wal_checkpoint_v2(self.handle, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
        return (status, self.handle.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "closed")
    }

    /// Closes the connection; its statements first.
    func close() {
        self.statements.removeAll()
        sqlite_nio_sqlite3_close_v2(self.handle)
        self.handle = nil
    }

    /// The statement for `sql`, prepared when first asked.
    private func statement(_ sql: String, in handle: OpaquePointer) throws -> Statement {
        if let kept = self.statements[sql] { return kept }
        var pointer: OpaquePointer?
        let status = sqlite_nio_sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &pointer, nil)
        guard status == SQLITE_OK, let pointer else { throw self.failure(status, sql) }
        let statement = Statement(pointer: pointer)
        self.prepared += 1
        if self.statements.count >= Self.statementsKept { self.statements.removeAll() }
        self.statements[sql] = statement
        return statement
    }

    /// A statement that changes tables may change what a kept statement's `*` means: after
    /// one, every statement is prepared anew (migrations, at start only).
    private static func changesSchema(_ sql: String) -> Bool {
        let verb = sql.drop { $0.isWhitespace }.prefix(6).uppercased()
        return verb.hasPrefix("CREATE") || verb.hasPrefix("ALTER") || verb.hasPrefix("DROP")
    }

    private func failure(_ status: Int32, _ sql: String) -> SQLiteFailure {
        SQLiteFailure(code: status, message: self.handle.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "", sql: sql)
    }

    /// SQLite copies what is bound before the call returns.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    private static func bind(_ value: SQLiteData, at index: Int32, to statement: OpaquePointer) -> Int32 {
        switch value {
        case .integer(let int):
            return sqlite_nio_sqlite3_bind_int64(statement, index, Int64(int))
        case .float(let double):
            return sqlite_nio_sqlite3_bind_double(statement, index, double)
        case .text(var string):
            // An empty buffer may have no address, which SQLite would bind as NULL.
            return string.withUTF8 { utf8 in
                guard let base = utf8.baseAddress else { return sqlite_nio_sqlite3_bind_text(statement, index, "", 0, transient) }
                return base.withMemoryRebound(to: CChar.self, capacity: utf8.count) {
                    sqlite_nio_sqlite3_bind_text(statement, index, $0, Int32(utf8.count), transient)
                }
            }
        case .blob(let bytes):
            return bytes.withUnsafeReadableBytes { raw in
                guard let base = raw.baseAddress, !raw.isEmpty else { return sqlite_nio_sqlite3_bind_zeroblob(statement, index, 0) }
                return sqlite_nio_sqlite3_bind_blob(statement, index, base, Int32(raw.count), transient)
            }
        case .null:
            return sqlite_nio_sqlite3_bind_null(statement, index)
        }
    }

    /// The current row's values, as SQLiteNIO reads them.
    private static func values(of statement: OpaquePointer, count: Int) -> [SQLiteData] {
        (0..<Int32(count)).map { column in
            switch sqlite_nio_sqlite3_column_type(statement, column) {
            case SQLITE_INTEGER:
                return .integer(SQLiteInt64(sqlite_nio_sqlite3_column_int64(statement, column)))
            case SQLITE_FLOAT:
                return .float(sqlite_nio_sqlite3_column_double(statement, column))
            case SQLITE_TEXT:
                guard let text = sqlite_nio_sqlite3_column_text(statement, column) else { return .text("") }
                let length = Int(sqlite_nio_sqlite3_column_bytes(statement, column))
                return .text(String(decoding: UnsafeBufferPointer(start: text, count: length), as: UTF8.self))
            case SQLITE_BLOB:
                let length = Int(sqlite_nio_sqlite3_column_bytes(statement, column))
                guard let blob = sqlite_nio_sqlite3_column_blob(statement, column), length > 0 else { return .blob(ByteBuffer()) }
                return .blob(ByteBuffer(bytes: UnsafeRawBufferPointer(start: blob, count: length)))
            default:
                return .null
            }
        }
    }
}

/// The write-ahead log's checkpoints, on a connection and a thread of their own.
///
/// A checkpoint copies the log's pages into the database file and syncs it: milliseconds that
/// SQLite would otherwise spend inside whichever commit took the log past its threshold, on the
/// caller's thread (`SQLiteFile` runs statements in place). Here the commit only asks, and a
/// passive checkpoint runs on NIO's blocking pool while the store goes on writing; the log
/// starts again from its beginning once a checkpoint has copied all of it.
final class SQLiteCheckpointer: Sendable {
    /// SQLite's own threshold for its automatic checkpoints.
    static let pages = 1000
    /// Past this, a commit checkpoints in place: a passive checkpoint never waits for the writer
    /// and may copy only part of the log while writes go on, and the log must not grow without end.
    static let pagesInPlace: Int32 = 8 * 1000

    private let file: Mutex<SQLiteFile?>
    private let asked = Atomic(false)
    /// The log's size at the latest commit.
    private let logPages = Atomic(0)
    private let logger: Logger

    init(path: String, logger: Logger) throws {
        // A connection learns the file is in WAL mode when it first reads it; until then a
        // checkpoint is a no-op.
        self.file = Mutex(try SQLiteFile.open(path: path, pragmas: ["PRAGMA journal_mode=WAL"]))
        self.logger = logger
    }

    /// Called by SQLite after each commit, with the log's size.
    fileprivate func logGrew(to pages: Int) {
        self.logPages.store(pages, ordering: .releasing)
        guard pages >= Self.pages, !self.asked.exchange(true, ordering: .acquiringAndReleasing) else { return }
        NIOThreadPool.singleton.submit { _ in self.checkpoint() }
    }

    /// Checkpoints until no commit came meanwhile: the commits during a checkpoint found it
    /// asked for already, and the last of them must not wait in the log for the next.
    private func checkpoint() {
        while true {
            let seen = self.logPages.load(ordering: .acquiring)
            let (status, message) = self.file.withLock { $0?.checkpointPassively() ?? (SQLITE_OK, "") }
            if status != SQLITE_OK && status & 0xFF != SQLITE_BUSY {
                self.logger.warning("checkpoint of the write-ahead log failed", metadata: ["status": "\(status)", "error": "\(message)"])
            }
            self.asked.store(false, ordering: .releasing)
            guard self.logPages.load(ordering: .acquiring) != seen, !self.asked.exchange(true, ordering: .acquiringAndReleasing) else { return }
        }
    }

    /// Closes its connection, after the checkpoint under way if any.
    func close() {
        self.file.withLock { file in
            file?.close()
            file = nil
        }
    }
}

/// A statement's result column names, looked up by name.
final class SQLiteColumns: Sendable {
    let names: [String]

    init(_ names: [String]) {
        self.names = names
    }

    /// The first of a repeated name, as SQLiteNIO's rows answer. A scan, not a dictionary: a
    /// row has tens of columns at most, short names compare as two machine words, and hashing
    /// the name at every column of every row cost more (bench/README.md, P6).
    func index(of name: String) -> Int? { self.names.firstIndex(of: name) }
}

/// One result row.
struct SQLiteValues: Sendable {
    let columns: SQLiteColumns
    let values: [SQLiteData]

    func value(_ column: String) -> SQLiteData? {
        self.columns.index(of: column).map { self.values[$0] }
    }
}

/// What SQLite answered when a statement failed, with the statement.
struct SQLiteFailure: Error, CustomStringConvertible {
    /// The extended result code.
    let code: Int32
    let message: String
    let sql: String

    /// The disk under the file is full, or failing.
    var isDiskFull: Bool { [SQLITE_FULL, SQLITE_IOERR].contains(self.code & 0xFF) }

    var description: String { "SQLite error \(self.code): \(self.message) (in \(self.sql.prefix(200)))" }
}
