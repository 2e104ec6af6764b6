import Fleet
import Foundation
import Logging
import Server
import TestSupport

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
        migratedThrough version: Int = .max,
        _ body: (SQLStore) async throws -> Result
    ) async throws -> Result {
        try await ScratchStore.with(kind, postgresURL: self.postgresURL, migratedThrough: version, logger: self.logger, body)
    }
}
