import Foundation
import Logging
import SQLKit
import Synchronization
import Testing
import TestSupport

@testable import Server

/// The embedded engine's own layer over SQLite: values in and out as SQLiteKit had them,
/// statements kept prepared, errors that say what failed, the write-ahead log kept short.
@Suite("SQLite engine")
struct SQLiteEngineTests {
    /// Runs `body` on an engine over a new file in a directory of its own.
    static func withEngine(_ body: (SQLiteEngine, String) async throws -> Void) async throws {
        let directory = try makeTemporaryDirectory("sqlite-engine")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/store.sqlite"
        let engine = try await SQLiteEngine.open(path: path, logger: Logger(label: "sqlite-engine-test"))
        do {
            try await body(engine, path)
        } catch {
            await engine.shutdown()
            throw error
        }
        await engine.shutdown()
    }

    struct Values: Codable, Equatable {
        var text: String?
        var number: Int?
        var real: Double?
        var bytes: Data?
    }

    @Test("Values come back as stored: empty text and bytes are not NULL, NULL is, integers to their limits, any text")
    func values() async throws {
        try await Self.withEngine { engine, _ in
            let rows: [Values] = [
                Values(text: "", number: 0, real: 0, bytes: Data()),
                Values(text: nil, number: nil, real: nil, bytes: nil),
                Values(text: "héllo, 世界 🙂 'quoted' \"and\" \\", number: Int.max, real: -1.5e300, bytes: Data([0, 1, 2, 255])),
                Values(text: "with\u{0}nul", number: Int.min, real: .leastNonzeroMagnitude, bytes: Data(repeating: 7, count: 100_000)),
            ]
            let read = try await engine.withConnection { database in
                try await database.raw("CREATE TABLE v (id INTEGER PRIMARY KEY, text TEXT, number INTEGER, real REAL, bytes BLOB)").run()
                for (id, row) in rows.enumerated() {
                    try await database.raw("INSERT INTO v VALUES (\(bind: id), \(bind: row.text), \(bind: row.number), \(bind: row.real), \(bind: row.bytes))").run()
                }
                return try await database.raw("SELECT text, number, real, bytes FROM v ORDER BY id").all(decoding: Values.self)
            }
            #expect(read == rows)
            let nulls = try await engine.withConnection { database in
                try await database.raw("SELECT COUNT(*) AS n FROM v WHERE text IS NULL OR bytes IS NULL").first(decodingColumn: "n", as: Int.self)
            }
            #expect(nulls == 1, "only the row stored with NULLs has them")
        }
    }

    @Test("Statements run off the threads every task shares: while long statements of several engines run, other tasks go on")
    func ownThread() async throws {
        // Four engines each run a statement of a second or so at once. Run on the cooperative
        // pool (as wide as the machine's cores), they would hold every thread of it, and a task
        // beside them could not finish before one of them did.
        let directory = try makeTemporaryDirectory("sqlite-thread")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var opened: [SQLiteEngine] = []
        for index in 0 ..< max(4, ProcessInfo.processInfo.activeProcessorCount * 2) {
            opened.append(try await SQLiteEngine.open(path: "\(directory)/\(index).sqlite", logger: Logger(label: "sqlite-thread-test")))
        }
        let engines = opened
        let order = Finished()
        await withTaskGroup(of: Void.self) { group in
            for engine in engines {
                group.addTask {
                    _ = try? await engine.withConnection { database in
                        try await database.raw(
                            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) SELECT COUNT(*) AS n FROM c"
                        ).first(decodingColumn: "n", as: Int.self)
                    }
                    order.list.withLock { $0.append("statement") }
                }
            }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(50))
                order.list.withLock { $0.append("beside") }
            }
        }
        for engine in engines { await engine.shutdown() }
        #expect(order.list.withLock { $0.first } == "beside", "\(order.list.withLock { $0 })")
    }

    final class Finished: Sendable {
        let list = Mutex<[String]>([])
    }

    @Test("A statement kept prepared sees the table as it is after a change; more statements than are kept still run")
    func statements() async throws {
        try await Self.withEngine { engine, _ in
            try await engine.withConnection { database in
                try await database.raw("CREATE TABLE s (a INTEGER)").run()
                try await database.raw("INSERT INTO s VALUES (1)").run()
                let before = try await database.raw("SELECT * FROM s").all()
                #expect(before.first?.allColumns == ["a"])
                try await database.raw("ALTER TABLE s ADD COLUMN b TEXT DEFAULT 'x'").run()
                let after = try await database.raw("SELECT * FROM s").all()
                #expect(after.first?.allColumns == ["a", "b"])
                #expect(try after.first?.decode(column: "b", as: String.self) == "x")
                // Distinct statements past the number kept: each still answers its own.
                for n in 0 ..< 1_200 {
                    let answer = try await database.raw("SELECT \(unsafeRaw: String(n)) + \(bind: 1) AS n").first(decodingColumn: "n", as: Int.self)
                    #expect(answer == n + 1)
                }
            }
        }
    }

    @Test("A statement is prepared once and kept, whatever values it is given, even one compared with a partial index's condition or used as a limit")
    func preparedOnce() async throws {
        try await Self.withEngine { engine, _ in
            try await engine.withConnection { database in
                try await database.raw("CREATE TABLE p (id INTEGER PRIMARY KEY, status INTEGER, due INTEGER)").run()
                try await database.raw("CREATE INDEX p_open ON p (due) WHERE status < 2").run()
                for id in 0 ..< 50 {
                    try await database.raw("INSERT INTO p VALUES (\(bind: id), \(bind: id % 4), \(bind: id))").run()
                }
            }
            let before = try await engine.preparations
            for round in 0 ..< 40 {
                let open = try await engine.withConnection { database in
                    try await database.raw("SELECT id FROM p WHERE status < \(bind: round % 3) AND due <= \(bind: 40 + round % 7) ORDER BY id LIMIT \(bind: round % 5)").all()
                }
                #expect(open.count == min(round % 5, (0 ..< 50).filter { $0 % 4 < round % 3 && $0 <= 40 + round % 7 }.count))
            }
            let after = try await engine.preparations
            #expect(after.prepared - before.prepared == 1, "prepared \(after.prepared - before.prepared) times")
            #expect(after.reprepared == before.reprepared, "SQLite prepared it again \(after.reprepared - before.reprepared) times")
        }
    }

    @Test("A failed statement says what and where, leaves nothing half done, and the engine goes on")
    func failures() async throws {
        try await Self.withEngine { engine, _ in
            try await engine.withConnection { database in
                try await database.raw("CREATE TABLE f (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)").run()
                try await database.raw("INSERT INTO f (name) VALUES (\(bind: "one"))").run()
            }
            await #expect {
                try await engine.withConnection { try await $0.raw("SELEC nonsense").run() }
            } throws: { "\($0)".contains("syntax error") && "\($0)".contains("SELEC nonsense") }
            await #expect {
                try await engine.withConnection { try await $0.raw("INSERT INTO f (name) VALUES (\(bind: "one"))").run() }
            } throws: { "\($0)".contains("UNIQUE constraint failed: f.name") }
            await #expect {
                try await engine.withConnection { try await $0.raw("INSERT INTO f (name) VALUES (NULL)").run() }
            } throws: { "\($0)".contains("NOT NULL") }
            let names = try await engine.withConnection { database in
                try await database.raw("INSERT INTO f (name) VALUES (\(bind: "two"))").run()
                return try await database.raw("SELECT name FROM f ORDER BY id").all().map { try $0.decode(column: "name", as: String.self) }
            }
            #expect(names == ["one", "two"])
        }
    }

    @Test("The write-ahead log is copied into the file while writes go on, and stays short")
    func checkpoints() async throws {
        try await Self.withEngine { engine, path in
            let size = { (file: String) in ((try? FileManager.default.attributesOfItem(atPath: file)[.size]) as? Int) ?? 0 }
            try await engine.withConnection { try await $0.raw("CREATE TABLE w (id INTEGER PRIMARY KEY, payload BLOB)").run() }
            let payload = Data(repeating: 0xA5, count: 8 << 10)
            func write(_ rows: Range<Int>) async throws {
                for id in rows {
                    try await engine.withConnection { try await $0.raw("INSERT INTO w VALUES (\(bind: id), \(bind: payload))").run() }
                }
            }
            // 6 MiB in commits of one row each (~2,300 pages): past the log's threshold, short of
            // the size at which a commit would checkpoint in place. Only the checkpoints run behind
            // the writes can copy it into the file, and they do before any close — at least the
            // threshold's 1,000 pages (a log started again keeps up to 999 pages until the next).
            try await write(0 ..< 768)
            try await eventually(timeout: .seconds(30), "the database file holds what was written (\(size(path)) bytes)") {
                size(path) >= SQLiteCheckpointer.pages * 4096
            }
            // 48 MiB more without a pause: checkpoints behind a writer that never stops cannot
            // copy all of the log, and commits then do it in place; the log stays short of it all.
            try await write(768 ..< 6_912)
            let log = size("\(path)-wal")
            #expect(log < 40 << 20, "the log was started again, not grown to hold everything (\(log) bytes)")
            let count = try await engine.withConnection { try await $0.raw("SELECT COUNT(*) AS n FROM w").first(decodingColumn: "n", as: Int.self) }
            #expect(count == 6_912)
        }
    }
}
