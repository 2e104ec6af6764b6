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

    /// Connects with a URL: `postgres://user:password@host:port/database?sslmode=...&sslrootcert=ca.pem`;
    /// `sslmode` as libpq reads it (``PostgresTLS``).
    public init(url: String, logger: Logger) throws {
        guard let components = URLComponents(string: url), components.scheme == "postgres" || components.scheme == "postgresql",
            let host = components.host, !host.isEmpty
        else {
            throw AspireError(.badRequest, "database URL must look like postgres://user:password@host:5432/database")
        }
        let database = components.path.split(separator: "/").first.map(String.init) ?? "aspire"
        let query = components.queryItems ?? []
        let mode = try PostgresTLS(
            sslmode: query.first { $0.name == "sslmode" }?.value, rootCertificate: query.first { $0.name == "sslrootcert" }?.value, host: host
        )
        let tls = try mode.configuration()
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
        do {
            return try await self.client.withConnection { connection in
                try await body(connection.sql())
            }
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "53100" {
            // disk_full: the database server's disk.
            throw StoreFull(location: "PostgreSQL", detail: error.serverInfo?[.message] ?? "disk full").error
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "22021" {
            // character_not_in_repertoire: PostgreSQL's text holds no NUL (SQLite's does). The
            // caller's input, not the store's fault.
            throw AspireError(.badRequest, "the store cannot keep text with a NUL character (U+0000): \(error.serverInfo?[.message] ?? "")")
        }
    }

    public func shutdown() async {}
}

/// How the store's PostgreSQL connections use TLS, by libpq's `sslmode`: `disable` (never),
/// `allow` and `prefer` (when the server offers it, unverified; PostgresNIO cannot try plaintext
/// first, so `allow` is `prefer`), `require` (always, unverified), `verify-ca` (always, the
/// server's chain checked against `sslrootcert` or the system's roots), `verify-full` (that, and
/// the host name). Without `sslmode`, a loopback host is `prefer` and any other `verify-full`: a
/// store across a network is not trusted without proof.
public struct PostgresTLS: Sendable, Hashable {
    public enum Mode: String, Sendable, CaseIterable {
        case disable, allow, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    public let mode: Mode
    public let rootCertificate: String?

    public init(sslmode: String?, rootCertificate: String?, host: String) throws {
        if let sslmode {
            guard let mode = Mode(rawValue: sslmode) else {
                throw AspireError(.badRequest, "sslmode '\(sslmode)' is not one of \(Mode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            self.mode = mode
        } else {
            self.mode = Self.isLoopback(host) ? .prefer : .verifyFull
        }
        self.rootCertificate = rootCertificate
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.") || host == "[::1]"
    }

    public func configuration() throws -> PostgresClient.Configuration.TLS {
        var tls = TLSConfiguration.makeClientConfiguration()
        switch self.mode {
        case .disable:
            return .disable
        case .allow, .prefer, .require:
            tls.certificateVerification = .none
        case .verifyCA:
            tls.certificateVerification = .noHostnameVerification
        case .verifyFull:
            tls.certificateVerification = .fullVerification
        }
        if let rootCertificate = self.rootCertificate {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(rootCertificate))
        }
        return [.allow, .prefer].contains(self.mode) ? .prefer(tls) : .require(tls)
    }
}
