import Foundation
import Gateway
import GRPCCore
import GRPCInProcessTransport
import GRPCNIOTransportHTTP2
import Hummingbird
public import Logging
import RPC
public import ServiceLifecycle

/// One Aspire server node: the gRPC listener for agents and operators, with its tokens and
/// certificates made on first start.
public final class ServerNode: Service {
    public let configuration: ServerConfiguration
    public let registry: SessionRegistry
    private let logger: Logger

    public init(configuration: ServerConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.registry = SessionRegistry(logger: logger)
    }

    public func run() async throws {
        let configuration = self.configuration
        try AtomicFile.makeDirectory(configuration.dataDirectory, mode: 0o700)

        let paths = configuration.tokenPaths
        let admin = try Secret.loadOrCreate(at: paths.admin)
        let enrollment = try Secret.loadOrCreate(at: paths.enrollment)
        self.logger.notice(
            admin.created ? "created admin token" : "admin token",
            metadata: ["path": "\(paths.admin)"]
        )
        self.logger.notice(
            enrollment.created ? "created agent enrollment token" : "agent enrollment token",
            metadata: ["path": "\(paths.enrollment)"]
        )

        var tls: ServerTLSFiles?
        if configuration.insecure {
            self.logger.warning("TLS is off (--insecure): agent and admin traffic is plaintext")
        } else {
            let authority = configuration.certificateAuthority
            try authority.prepare(names: configuration.allTLSNames, logger: self.logger)
            tls = ServerTLSFiles(certificateChain: authority.paths.serverCertificate, privateKey: authority.paths.serverKey)
            self.logger.notice("agents verify this node with the CA", metadata: ["path": "\(authority.paths.caCertificate)"])
        }

        // Every agent holds a descriptor: raise the soft limit as far as the hard one allows
        // (systemd's default soft limit is 1024), and hold no more agents than the rest fits.
        let openFiles = OpenFiles.raiseSoftLimit()
        let maxAgents = configuration.maxAgents ?? OpenFiles.agentCapacity(limit: openFiles)
        self.logger.notice("open-file limit", metadata: ["files.limit": "\(openFiles)", "node.max_agents": "\(maxAgents)"])
        if maxAgents < 10_000 && configuration.maxAgents == nil {
            self.logger.warning(
                "this node holds at most \(maxAgents) agents: raise its open-file limit (LimitNOFILE= in its systemd unit, ulimit -Hn) for more"
            )
        }

        let engine: any SQLEngine
        if let url = configuration.databaseURL {
            engine = try PostgresEngine(url: url, logger: self.logger)
        } else {
            engine = try await SQLiteEngine.open(path: configuration.sqlitePath, logger: self.logger)
        }
        let store = SQLStore(engine: engine, logger: self.logger)

        let engineTasks = TaskEngine(configuration: configuration.tasks, store: store, registry: self.registry, logger: self.logger)
        let distributor = ConfigDistributor(store: store, registry: self.registry, interval: configuration.tasks.sweepInterval, logger: self.logger)
        let metrics = MetricIngest(configuration: configuration.metrics, store: store, sessions: self.registry, logger: self.logger)

        let transport = try Transports.server(
            listen: configuration.listen,
            tls: tls,
            keepalive: configuration.transportKeepalive
        )
        var channelConfiguration = AgentChannelService.Configuration(nodeName: configuration.nodeName)
        channelConfiguration.statusStep = configuration.statusStep
        channelConfiguration.pingInterval = configuration.pingInterval
        let packages = PackageFiles(dataDirectory: configuration.dataDirectory, maxBytes: configuration.maxPackageBytes)
        let services: [any RegistrableRPCService] = [
            BootstrapService(
                nodeName: configuration.nodeName, policy: configuration.redirect, registry: self.registry, maxAgents: maxAgents,
                logger: self.logger
            ),
            AgentChannelService(
                configuration: channelConfiguration, registry: self.registry, store: store, engine: engineTasks, distributor: distributor,
                metrics: metrics, logger: self.logger
            ),
            AgentPollService(store: store, engine: engineTasks, logger: self.logger),
            PackageStoreService(store: store, packages: packages, logger: self.logger),
            AdminService(
                nodeName: configuration.nodeName, registry: self.registry, store: store, engine: engineTasks, packages: packages,
                distributor: distributor, metrics: metrics, logger: self.logger
            ),
        ]
        let interceptors = [AuthInterceptor(adminToken: admin.token, enrollmentToken: enrollment.token)]
        let server = GRPCServer(transport: transport, services: services, interceptors: interceptors)

        // The REST gateway calls the same services, in-process, through the same interceptor.
        let inProcess = InProcessTransport()
        let localServer = GRPCServer(transport: inProcess.server, services: services, interceptors: interceptors)
        let localClient = GRPCClient(transport: inProcess.client)
        var gatewayConfiguration = Gateway<InProcessTransport.Client>.Configuration()
        gatewayConfiguration.maxBodyBytes = configuration.maxBodyBytes
        gatewayConfiguration.adminToken = admin.token
        gatewayConfiguration.agentToken = enrollment.token
        let gateway = Gateway(client: localClient, configuration: gatewayConfiguration, logger: self.logger)
        let application = configuration.httpListen.map { listen in
            gateway.application(listen: listen, serverName: "aspire", addressFile: configuration.httpAddressFile)
        }

        let registry = self.registry
        let logger = self.logger
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                if let postgres = engine as? PostgresEngine {
                    group.addTask { try await postgres.run() }
                }
                try await store.migrate()
                // Hosts this node held before it stopped are not held any more.
                try await store.releaseHosts(of: configuration.nodeName)
                logger.notice(
                    "store ready",
                    metadata: ["store.engine": "\(engine.kind)", "store.location": "\(configuration.databaseURL.map(Self.redacted) ?? configuration.sqlitePath)"]
                )
                group.addTask { try await engineTasks.run() }
                group.addTask { try await distributor.run() }
                group.addTask { try await metrics.run() }
                group.addTask { try await localServer.serve() }
                group.addTask { try await localClient.runConnections() }
                if let application {
                    group.addTask { try await application.run() }
                }
                group.addTask {
                    let address = try await transport.listeningAddress
                    let text: String
                    if let v4 = address.ipv4 {
                        text = HostPort(host: v4.host, port: v4.port).description
                    } else if let v6 = address.ipv6 {
                        text = HostPort(host: v6.host, port: v6.port).description
                    } else {
                        text = "\(address)"
                    }
                    try AtomicFile.write(text + "\n", to: configuration.listenAddressFile)
                    logger.notice(
                        "listening for agents and admin calls",
                        metadata: ["grpc.address": "\(text)", "grpc.tls": "\(!configuration.insecure)"]
                    )
                }
                // The node runs while the gRPC server serves; then the pool and the sweep stop.
                try await server.serve()
                group.cancelAll()
                while let next = await group.nextResult() {
                    if case .failure(let error) = next, !(error is CancellationError) {
                        logger.debug("background work ended", metadata: ["error": "\(error)"])
                    }
                }
            }
        } onGracefulShutdown: {
            logger.notice("shutting down: closing agent streams")
            server.beginGracefulShutdown()
            localServer.beginGracefulShutdown()
            registry.closeAll()
        }
        await engine.shutdown()
    }

    /// A database URL without its password, for logs.
    static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? "postgres://***"
    }
}
