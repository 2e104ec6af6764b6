public import Foundation
public import Logging
import SQLKit
public import Server
import TestSupport

/// Throw-away stores for tests and benchmarks: a temporary SQLite file, or a new database on
/// a PostgreSQL server, migrated, and removed afterwards whatever happens.
public enum ScratchStore {
    /// Runs `body` with a migrated store of `kind` (through migration `version`: an older
    /// release's store); PostgreSQL needs `postgresURL`, a server whose user may create
    /// databases (`postgres://user@host:port/postgres?sslmode=disable`).
    public static func with<Result: Sendable>(
        _ kind: SQLEngineKind,
        postgresURL: String?,
        migratedThrough version: Int = .max,
        logger: Logger,
        _ body: (SQLStore) async throws -> Result
    ) async throws -> Result {
        switch kind {
        case .sqlite:
            let path = "/tmp/aspire-store-\(UUID().uuidString.prefix(8)).sqlite"
            defer {
                for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            }
            let engine = try await SQLiteEngine.open(path: path, logger: logger)
            let store = SQLStore(engine: engine, logger: logger)
            do {
                try await store.migrate(through: version)
                let result = try await body(store)
                await engine.shutdown()
                return result
            } catch {
                await engine.shutdown()
                throw error
            }
        case .postgres:
            guard let url = postgresURL else { throw HarnessError("no PostgreSQL server given") }
            return try await self.withPostgresDatabase(server: url, logger: logger) { database in
                try await self.withPostgres(url: database, logger: logger) { engine in
                    let store = SQLStore(engine: engine, logger: logger)
                    try await store.migrate(through: version)
                    return try await body(store)
                }
            }
        }
    }

    /// Runs `body` with the URL of a new, empty database on the PostgreSQL server at `server`
    /// (whose user may create databases), and drops it afterwards, whatever happens.
    public static func withPostgresDatabase<Result: Sendable>(
        server: String,
        logger: Logger,
        _ body: (String) async throws -> Result
    ) async throws -> Result {
        let name = "aspire_t_\(UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: ""))"
        guard var components = URLComponents(string: server) else { throw HarnessError("bad PostgreSQL URL \(server)") }
        try await self.withPostgres(url: server, logger: logger) { admin in
            try await admin.withConnection { try await $0.raw("CREATE DATABASE \(unsafeRaw: name)").run() }
        }
        let drop = {
            try? await self.withPostgres(url: server, logger: logger) { admin in
                try await admin.withConnection { try await $0.raw("DROP DATABASE IF EXISTS \(unsafeRaw: name) WITH (FORCE)").run() }
            }
        }
        components.path = "/\(name)"
        do {
            let result = try await body(components.string ?? server)
            await drop()
            return result
        } catch {
            await drop()
            throw error
        }
    }

    /// Runs `body` with a PostgreSQL engine whose pool runs meanwhile.
    public static func withPostgres<Result: Sendable>(
        url: String,
        logger: Logger,
        _ body: (PostgresEngine) async throws -> Result
    ) async throws -> Result {
        let engine = try PostgresEngine(url: url, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await engine.run() }
            defer { group.cancelAll() }
            return try await body(engine)
        }
    }
}
