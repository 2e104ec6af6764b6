import Foundation
import Logging
import SQLKit
import Server

/// Fresh stores for tests: a temporary SQLite file, or a new database on the PostgreSQL server
/// named by ASPIRE_TEST_POSTGRES_URL (scripts/postgres-for-tests.sh starts one).
enum StoreHarness {
    static var postgresURL: String? {
        ProcessInfo.processInfo.environment["ASPIRE_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The engines the conformance suite runs on here.
    static var engines: [SQLEngineKind] {
        postgresURL == nil ? [.sqlite] : [.sqlite, .postgres]
    }

    static let logger = Logger(label: "store-test")

    /// Runs `body` with a migrated store on a database of its own, removed afterwards.
    static func withStore<Result: Sendable>(
        _ kind: SQLEngineKind,
        _ body: (SQLStore) async throws -> Result
    ) async throws -> Result {
        switch kind {
        case .sqlite:
            let path = "/tmp/aspire-store-\(UUID().uuidString.prefix(8)).sqlite"
            defer {
                for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            }
            let engine = try await SQLiteEngine.open(path: path, logger: self.logger)
            defer { Task { await engine.shutdown() } }
            let store = SQLStore(engine: engine, logger: self.logger)
            try await store.migrate()
            return try await body(store)
        case .postgres:
            guard let url = self.postgresURL else { throw HarnessError("ASPIRE_TEST_POSTGRES_URL is not set") }
            let name = "aspire_t_\(UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: ""))"
            try await self.withPostgres(url: url) { admin in
                try await admin.withConnection { try await $0.raw("CREATE DATABASE \(unsafeRaw: name)").run() }
            }
            let drop = {
                try? await self.withPostgres(url: url) { admin in
                    try await admin.withConnection { try await $0.raw("DROP DATABASE IF EXISTS \(unsafeRaw: name) WITH (FORCE)").run() }
                }
            }
            let databaseURL = url.replacingOccurrences(of: "/postgres?", with: "/\(name)?")
            do {
                let result = try await self.withPostgres(url: databaseURL) { engine in
                    let store = SQLStore(engine: engine, logger: self.logger)
                    try await store.migrate()
                    return try await body(store)
                }
                await drop()
                return result
            } catch {
                await drop()
                throw error
            }
        }
    }

    /// Runs `body` with a PostgreSQL engine whose pool runs meanwhile.
    static func withPostgres<Result: Sendable>(url: String, _ body: (PostgresEngine) async throws -> Result) async throws -> Result {
        let engine = try PostgresEngine(url: url, logger: self.logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await engine.run() }
            defer { group.cancelAll() }
            return try await body(engine)
        }
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
