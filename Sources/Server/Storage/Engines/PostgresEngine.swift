import Foundation
public import Logging
import NIOSSL
public import ServiceLifecycle
import PostgresKit
public import PostgresNIO
public import RPC
public import SQLKit

/// PostgreSQL (and compatible engines) through PostgresNIO's connection pool. `run()` must be
/// running (it is a ServiceLifecycle service) while the store is used.
public final class PostgresEngine: SQLEngine, Service {
    public let kind = SQLEngineKind.postgres
    public let client: PostgresClient
    public let database: String

    /// Connects with a URL: `postgres://user:password@host:port/database?sslmode=disable|prefer|require`.
    public init(url: String, logger: Logger) throws {
        guard let components = URLComponents(string: url), components.scheme == "postgres" || components.scheme == "postgresql",
            let host = components.host, !host.isEmpty
        else {
            throw AspireError(.badRequest, "database URL must look like postgres://user:password@host:5432/database")
        }
        let database = components.path.split(separator: "/").first.map(String.init) ?? "aspire"
        let sslmode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
        let tls: PostgresClient.Configuration.TLS
        switch sslmode {
        case "disable": tls = .disable
        case "prefer", "allow": tls = .prefer(.makeClientConfiguration())
        case "require", "verify-full", "verify-ca": tls = .require(.makeClientConfiguration())
        default: throw AspireError(.badRequest, "sslmode '\(sslmode)' is not one of disable, prefer, require")
        }
        var configuration = PostgresClient.Configuration(
            host: host,
            port: components.port ?? 5432,
            username: components.user?.removingPercentEncoding ?? "postgres",
            password: components.password?.removingPercentEncoding,
            database: database,
            tls: tls
        )
        configuration.options.maximumConnections = 8
        self.client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.database = database
    }

    public func run() async throws {
        await self.client.run()
    }

    public func withConnection<Result: Sendable>(_ body: (any SQLDatabase) async throws -> Result) async throws -> Result {
        try await self.client.withConnection { connection in
            try await body(connection.sql())
        }
    }

    public func shutdown() async {}
}
