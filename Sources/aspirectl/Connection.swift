import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RPC

/// Where the Admin service is and how to prove who we are.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Server HOST:PORT (env ASPIRE_SERVER; default localhost:8443).")
    var server: String?

    @Option(name: .customLong("server-data"), help: "A server data directory on this host to take the token and CA from (env ASPIRE_SERVER_DATA; default /var/lib/aspire).")
    var serverData: String?

    @Option(name: .customLong("token-file"), help: "File holding the admin token (env ASPIRE_TOKEN_FILE).")
    var tokenFile: String?

    @Option(help: "CA certificate of the server (env ASPIRE_CA).")
    var ca: String?

    @Flag(help: "Plaintext gRPC, for a server started with --insecure.")
    var insecure = false

    private var environment: [String: String] { ProcessInfo.processInfo.environment }

    private var dataDirectory: String {
        self.serverData ?? self.environment["ASPIRE_SERVER_DATA"] ?? "/var/lib/aspire"
    }

    func address() throws -> HostPort {
        let text = self.server ?? self.environment["ASPIRE_SERVER"] ?? "localhost:8443"
        return try HostPort(parsing: text, defaultPort: 8443)
    }

    func token() throws -> String {
        if let value = self.environment["ASPIRE_TOKEN"], !value.isEmpty, self.tokenFile == nil { return value }
        let path = self.tokenFile ?? self.environment["ASPIRE_TOKEN_FILE"] ?? "\(self.dataDirectory)/admin.token"
        do {
            return try Secret.read(path)
        } catch {
            throw ValidationError("cannot read the admin token from \(path): pass --token-file or set ASPIRE_TOKEN")
        }
    }

    func security() throws -> ClientSecurity {
        if self.insecure { return .plaintext }
        let path = self.ca ?? self.environment["ASPIRE_CA"] ?? "\(self.dataDirectory)/tls/ca.pem"
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw ValidationError("cannot read the server's CA at \(path): pass --ca FILE (or --insecure)")
        }
        return .tls(caFile: path)
    }

    /// Runs `body` with an Admin client connected to the server.
    func withAdmin<Result: Sendable>(
        _ body: (Aspire_V1_Admin.Client<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws -> Result {
        let transport = try Transports.client(address: try self.address(), security: try self.security())
        return try await withGRPCClient(
            transport: transport,
            interceptors: [BearerTokenInterceptor(token: try self.token())]
        ) { client in
            try await body(Aspire_V1_Admin.Client(wrapping: client))
        }
    }
}

/// Output format shared by the subcommands.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table
    case json
}

/// Exit codes documented in `aspirectl --help`.
enum Exit {
    static let nonZero = ExitCode(2)
    static let timeoutOrOffline = ExitCode(3)
    static let noMatch = ExitCode(4)
    static let usageOrConnection = ExitCode(1)
}

/// Prints an RPC failure the way operators read it and picks the exit code.
func report(_ error: any Error, prefix: String) -> ExitCode {
    if let error = error as? RPCError {
        let code = ErrorCode(rpcError: error)
        var text = "\(prefix)\(code.message): \(error.message)"
        if let cause = error.cause { text += " (\(cause))" }
        FileHandle.standardError.write(Data((text + "\n").utf8))
        switch code {
        case .agentOffline, .agentTimeout: return Exit.timeoutOrOffline
        case .notFound: return Exit.noMatch
        default: return Exit.usageOrConnection
        }
    }
    FileHandle.standardError.write(Data("\(prefix)\(error)\n".utf8))
    return Exit.usageOrConnection
}

extension FileHandle {
    func write(_ text: String) {
        self.write(Data(text.utf8))
    }
}
