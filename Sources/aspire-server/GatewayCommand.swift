import ArgumentParser
import Foundation
import Gateway
import GRPCCore
import GRPCNIOTransportHTTP2
import Hummingbird
import Logging
import RPC
import Server
import ServiceLifecycle
import UnixSignals

/// `aspire-server gateway`: only the REST gateway, calling a remote node's services over
/// HTTP/2 gRPC. The node checks every token; this process holds none but, optionally, the
/// enrollment token it presents for the seed's plain-HTTP agents.
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run the REST gateway in front of a remote server node.",
        discussion: """
            The routes and answers are those of a node's own gateway; each call goes to --upstream \
            over gRPC with the caller's bearer token. Example:

              aspire-server gateway --upstream aspire-1.example:8443 --ca ca.pem --http-listen 127.0.0.1:8180
            """
    )

    @Option(help: "The node to call (HOST:PORT of its gRPC listener).")
    var upstream: String

    @Option(help: "CA certificate of the node (its tls/ca.pem).")
    var ca: String?

    @Flag(help: "Plaintext gRPC to a node started with --insecure.")
    var insecure = false

    @Option(name: .customLong("enroll-token-file"), help: "Enrollment token presented for the seed's plain-HTTP agents (/agent/status, /agent/job/result); without it they must send their own.")
    var enrollTokenFile: String?

    @Option(
        name: .customLong("admin-token-file"),
        help: "The node's admin token: the gateway serves the seed's plain-HTTP agents and download links with it (without it, it serves neither)."
    )
    var adminTokenFile: String?

    @Option(name: .customLong("seed-agents"), help: "Networks (CIDR, comma-separated) the seed's plain-HTTP agents may call from; off without it.")
    var seedAgents: String?

    @Option(name: .customLong("http-listen"), help: "Listen address (IP:PORT; port 0 picks a free one).")
    var httpListen = "127.0.0.1:8180"

    @Option(name: .customLong("address-file"), help: "Write the bound address to this file.")
    var addressFile: String?

    @Option(name: .customLong("max-body-size"), help: "Largest JSON body accepted, in bytes.")
    var maxBodySize = 1 << 20

    @Option(name: .customLong("max-package-size"), help: "Largest package file an upload may carry, in bytes (spooled to a temporary file until the form ends).")
    var maxPackageSize: Int64 = 1 << 30

    @OptionGroup var console: ConsoleOptions

    @OptionGroup var log: LogOptions

    func run() async throws {
        let logger = self.log.bootstrap(label: "aspire.gateway")
        let upstream = try HostPort(parsing: self.upstream)
        let listen = try HostPort(parsing: self.httpListen, allowPortZero: true)
        let security: ClientSecurity
        if self.insecure {
            security = .plaintext
        } else {
            guard let ca = self.ca else { throw ValidationError("pass --ca FILE (the node's tls/ca.pem), or --insecure") }
            security = .tls(caFile: ca)
        }
        var configuration = Gateway.Configuration()
        configuration.maxBodyBytes = self.maxBodySize
        configuration.maxUploadBytes = self.maxPackageSize
        configuration.consoleSessionLifetime = self.console.sessionLifetime
        if let path = self.enrollTokenFile { configuration.agentToken = try Secret.read(path) }
        if let path = self.adminTokenFile { configuration.adminToken = try Secret.read(path) }
        configuration.seedAgents = try (self.seedAgents ?? "").split(separator: ",").map { try IPNetwork(parsing: $0.trimmingCharacters(in: .whitespaces)) }

        let client = GRPCClient(transport: try Transports.client(address: upstream, security: security))
        let gateway = Gateway(client: client, configuration: configuration, logger: logger)
        let application = gateway.application(listen: listen, serverName: "aspire-gateway", addressFile: self.addressFile)
        logger.notice("REST gateway calls its node", metadata: ["upstream": "\(upstream)"])
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: GRPCClientService(client: client)), .init(service: application)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}
