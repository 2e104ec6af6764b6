import Foundation
import GRPCCore
public import GRPCNIOTransportHTTP2
public import RPC
public import TestSupport

/// A real `aspire-server` process with its data directory, started and waited for until it
/// listens (its grpc.addr and http.addr files appear).
public struct NodeProcess: Sendable {
    public let process: ChildProcess
    public let dataDirectory: String
    /// The gRPC listener (the host as given to --listen, the port as bound).
    public let address: HostPort
    /// The REST gateway, unless it was turned off.
    public let httpAddress: HostPort?
    /// Started with --insecure: plaintext gRPC.
    public var plaintext = false

    /// Starts `binary serve` on `listen` with data in `dataDirectory`; `arguments` are added
    /// to the command line.
    public static func start(
        binary: String,
        dataDirectory: String,
        listen: HostPort,
        httpListen: HostPort? = nil,
        name: String = "node",
        arguments: [String] = [],
        log: String,
        timeout: Duration = .seconds(60)
    ) async throws -> NodeProcess {
        try FileManager.default.createDirectory(atPath: "\(dataDirectory)/tls", withIntermediateDirectories: true)
        let addressFile = "\(dataDirectory)/grpc.addr"
        let httpAddressFile = "\(dataDirectory)/http.addr"
        try? FileManager.default.removeItem(atPath: addressFile)
        try? FileManager.default.removeItem(atPath: httpAddressFile)
        let process = try ChildProcess(
            binary,
            ["serve", "--data-dir", dataDirectory, "--listen", "\(listen)", "--http-listen", httpListen.map { "\($0)" } ?? "off",
             "--node-name", name] + arguments,
            log: log
        )
        try await eventually(timeout: timeout, "\(name) to listen (log \(log))") {
            guard process.isRunning else { throw HarnessError("\(name) exited; its log \(log):\n\(process.log.suffix(4000))") }
            return FileManager.default.fileExists(atPath: addressFile)
                && (httpListen == nil || FileManager.default.fileExists(atPath: httpAddressFile))
        }
        func read(_ path: String) throws -> HostPort {
            try HostPort(parsing: String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return NodeProcess(
            process: process,
            dataDirectory: dataDirectory,
            address: try read(addressFile),
            httpAddress: httpListen == nil ? nil : try read(httpAddressFile),
            plaintext: arguments.contains("--insecure")
        )
    }

    public var caFile: String { "\(self.dataDirectory)/tls/ca.pem" }
    public var enrollTokenFile: String { "\(self.dataDirectory)/enroll.token" }
    public var adminToken: String { get throws { try Secret.read("\(self.dataDirectory)/admin.token") } }
    public var enrollToken: String { get throws { try Secret.read(self.enrollTokenFile) } }

    /// Where a client on this machine dials the node: loopback when it listens on every address.
    public var dialAddress: HostPort {
        switch self.address.host {
        case "0.0.0.0": HostPort(host: "127.0.0.1", port: self.address.port)
        case "::": HostPort(host: "::1", port: self.address.port)
        default: self.address
        }
    }

    /// Runs `body` with one Admin client of this node (one TLS connection for all its calls).
    public func withAdmin<Result: Sendable>(
        _ body: (Aspire_V1_Admin.Client<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws -> Result {
        let transport = try Transports.client(
            address: self.dialAddress, authority: "localhost", security: self.plaintext ? .plaintext : .tls(caFile: self.caFile)
        )
        let interceptors: [any ClientInterceptor] = try [BearerTokenInterceptor(token: self.adminToken)]
        return try await withGRPCClient(transport: transport, interceptors: interceptors) { client in
            try await body(Aspire_V1_Admin.Client(wrapping: client))
        }
    }
}
