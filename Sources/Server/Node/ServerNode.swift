import Foundation
public import Gateway
import GRPCCore
import GRPCNIOTransportHTTP2
import Hummingbird
public import Logging
public import RPC
public import ServiceLifecycle
public import UnixSignals

/// One Aspire server node, built and not yet running: its parts, and the services that run
/// them in dependency order. `aspire-server` runs ``services`` in one ServiceGroup; tests build
/// the same node in-process and run the same group.
///
/// A graceful shutdown stops the services in reverse order: the agent listener first (agents
/// are told to go elsewhere), then the REST gateway and the in-process Admin server, then the
/// metric ingest (which writes what it holds), the distributor and the task engine, and the
/// store last.
public struct ServerNode: Sendable {
    public let configuration: ServerConfiguration
    public let store: SQLStore
    public let registry: SessionRegistry
    /// The cluster's nodes as this one last read them.
    public let cluster: ClusterView
    public let tasks: TaskEngine
    public let distributor: ConfigDistributor
    public let metrics: MetricIngest
    /// The operators' token and the agents' enrollment token, made on first start.
    public let adminToken: String
    public let enrollmentToken: String
    /// The REST gateway, calling the node's own services in-process.
    public let gateway: Gateway
    /// Every long-lived part, in the order they start; they stop in the reverse order.
    public let services: [ServiceGroupConfiguration.ServiceConfiguration]
    let listener: AgentListener

    /// The address the agent listener is bound to, once it is.
    public var address: HostPort {
        get async throws { try await boundAddress(of: self.listener) }
    }

    /// The CA agents verify this node with (nil with TLS off).
    public var caFile: String? {
        self.configuration.insecure ? nil : self.configuration.certificateAuthority.paths.caCertificate
    }

    /// A ServiceGroup of every part of the node.
    public func serviceGroup(gracefulShutdownSignals: [UnixSignal] = [], logger: Logger) -> ServiceGroup {
        ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: self.services,
                gracefulShutdownSignals: gracefulShutdownSignals,
                logger: logger
            )
        )
    }
}

/// Builds a node from its configuration: makes its tokens and TLS files on first start, opens
/// its store, and wires its parts together. Nothing listens and nothing is migrated until its
/// ``ServerNode/services`` run.
public func buildNode(configuration: ServerConfiguration, logger: Logger) async throws -> ServerNode {
    try NodeIdentity.validate(name: configuration.nodeName)
    if try AtomicFile.makePrivateDirectory(configuration.dataDirectory) {
        logger.warning("the data directory was open to other users; it is 0700 now", metadata: ["path": "\(configuration.dataDirectory)"])
    }

    let paths = configuration.tokenPaths
    let admin = try Secret.loadOrCreate(at: paths.admin)
    let enrollment = try Secret.loadOrCreate(at: paths.enrollment)
    logger.notice(admin.created ? "created admin token" : "admin token", metadata: ["path": "\(paths.admin)"])
    logger.notice(
        enrollment.created ? "created the first join token" : "first join token",
        metadata: ["path": "\(paths.enrollment)"]
    )

    var tls: (files: ServerTLSFiles, clientCA: String)?
    var signer: CertificateAuthority.Signer?
    var linkCredentials = NodeLinks.Credentials.token(admin.token)
    if configuration.insecure {
        logger.warning("TLS is off (--insecure): agent and admin traffic is plaintext, and agents are taken at their word (no certificates)")
    } else {
        let authority = configuration.certificateAuthority
        try authority.prepare(names: configuration.allTLSNames, node: configuration.nodeName, logger: logger)
        tls = (ServerTLSFiles(certificateChain: authority.paths.serverCertificate, privateKey: authority.paths.serverKey), authority.paths.caCertificate)
        // The node's certificate is also its client certificate towards the other nodes.
        linkCredentials = .certificate(
            caFile: authority.paths.caCertificate,
            identity: ClientIdentity(
                certificatePEM: try String(contentsOfFile: authority.paths.serverCertificate, encoding: .utf8),
                keyPEM: try String(contentsOfFile: authority.paths.serverKey, encoding: .utf8)
            )
        )
        signer = try authority.signer()
        logger.notice("agents verify this node with the CA, and it signs their certificates", metadata: ["path": "\(authority.paths.caCertificate)"])
    }

    // Every agent holds a descriptor: raise the soft limit as far as the hard one allows
    // (systemd's default soft limit is 1024), and hold no more agents than the rest fits.
    let openFiles = OpenFiles.raiseSoftLimit()
    let maxAgents = configuration.maxAgents ?? OpenFiles.agentCapacity(limit: openFiles)
    logger.notice("open-file limit", metadata: ["files.limit": "\(openFiles)", "node.max_agents": "\(maxAgents)"])
    if maxAgents < 10_000 && configuration.maxAgents == nil {
        logger.warning(
            "this node holds at most \(maxAgents) agents: raise its open-file limit (LimitNOFILE= in its systemd unit, ulimit -Hn) for more"
        )
    }

    let engine: any SQLEngine
    if let url = configuration.databaseURL {
        engine = try PostgresEngine(url: url, logger: logger)
    } else {
        engine = try await SQLiteEngine.open(path: configuration.sqlitePath, logger: logger)
    }
    let store = SQLStore(engine: engine, logger: logger)
    let registry = SessionRegistry(logger: logger)
    let cluster = ClusterView(nodeName: configuration.nodeName)
    let links = NodeLinks(cluster: cluster, store: store, credentials: linkCredentials, logger: logger)
    let tasks = TaskEngine(configuration: configuration.tasks, store: store, registry: registry, links: links, logger: logger)
    let commands = CommandRunner(nodeName: configuration.nodeName, store: store, engine: tasks, registry: registry, links: links, logger: logger)
    let distributor = ConfigDistributor(store: store, registry: registry, interval: configuration.tasks.sweepInterval, logger: logger)
    let metrics = MetricIngest(configuration: configuration.metrics, store: store, sessions: registry, logger: logger)
    let revocations = RevocationWatch(store: store, registry: registry, interval: configuration.revocationInterval, logger: logger)
    var packages = PackageFiles(dataDirectory: configuration.dataDirectory, maxBytes: configuration.maxPackageBytes)
    if engine.kind == .postgres {
        packages.shared = store
        packages.cacheBytes = configuration.packageCacheBytes
    }

    var channelConfiguration = AgentChannelService.Configuration(nodeName: configuration.nodeName)
    channelConfiguration.statusStep = configuration.statusStep
    channelConfiguration.pingInterval = configuration.pingInterval
    channelConfiguration.maxAgents = maxAgents
    let channel = AgentChannelService(
        configuration: channelConfiguration, registry: registry, store: store, engine: tasks, distributor: distributor, metrics: metrics,
        logger: logger
    )
    let adminService = AdminService(
        nodeName: configuration.nodeName, registry: registry, store: store, engine: tasks, packages: packages, distributor: distributor,
        metrics: metrics, revocations: revocations, commands: commands, logger: logger
    )
    let pollService = AgentPollService(store: store, engine: tasks, logger: logger)
    let packageService = PackageStoreService(store: store, packages: packages, logger: logger)
    let handlers: [any RegistrableRPCService] = [
        BootstrapService(
            nodeName: configuration.nodeName, policy: configuration.redirect, cluster: cluster, registry: registry, store: store, signer: signer,
            certificateLifetime: configuration.agentCertificateLifetime, maxAgents: maxAgents,
            admission: configuration.maxConnectRate.map { ConnectAdmission(rate: $0) }, logger: logger
        ),
        channel,
        pollService, packageService, adminService,
        NodeLinkService(registry: registry, store: store, engine: tasks, commands: commands, logger: logger),
    ]
    let interceptors = [AuthInterceptor(
        adminToken: admin.token, store: store, insecure: configuration.insecure, nodeName: configuration.nodeName, logger: logger
    )]
    let listener = try AgentListener(
        address: configuration.listen, tls: tls, silentPeer: configuration.silentPeer,
        config: Transports.serverConfig(keepalive: configuration.transportKeepalive)
    )
    let server = GRPCServer(transport: listener, services: handlers, interceptors: interceptors)

    // The REST gateway calls the same services, in-process, through the same interceptor.
    var gatewayConfiguration = Gateway.Configuration()
    gatewayConfiguration.maxBodyBytes = configuration.maxBodyBytes
    gatewayConfiguration.maxUploadBytes = configuration.maxPackageBytes
    gatewayConfiguration.consoleSessionLifetime = configuration.consoleSessionLifetime
    gatewayConfiguration.seedAgents = configuration.seedAgents
    gatewayConfiguration.adminToken = admin.token
    gatewayConfiguration.agentToken = enrollment.token
    let direct = DirectCalls(interceptors: interceptors)
    let gateway = Gateway(
        admin: Aspire_V1_Admin.DirectClient(service: adminService, calls: direct),
        poll: Aspire_V1_AgentPoll.DirectClient(service: pollService, calls: direct),
        packages: Aspire_V1_PackageStore.DirectClient(service: packageService, calls: direct),
        configuration: gatewayConfiguration, logger: logger
    )

    let ready = StartGate()
    var services: [NodeService] = [
        NodeService("store", logger: logger) {
            try await runStore(engine: engine, store: store, configuration: configuration, joinToken: enrollment.token, ready: ready, logger: logger)
        },
        NodeService("task engine", after: ready, logger: logger) { try await tasks.run() },
        NodeService("config distributor", after: ready, logger: logger) { try await distributor.run() },
        NodeService("rollouts", after: ready, logger: logger) {
            try await RolloutController(store: store, distributor: distributor, interval: configuration.tasks.sweepInterval, logger: logger).run()
        },
        NodeService("metric ingest", after: ready, logger: logger) { try await metrics.run() },
        NodeService("revocation watch", after: ready, logger: logger) { try await revocations.run() },
        NodeService("membership", after: ready, logger: logger) {
            try await Membership(store: store, cluster: cluster, interval: configuration.heartbeatInterval, logger: logger) {
                await advertisedAddress(configuration: configuration, listener: listener)
            }.run()
        },
        NodeService("node links", after: ready, logger: logger) { try await links.run() },
    ]
    if let listen = configuration.httpListen {
        let application = gateway.application(listen: listen, serverName: "aspire", addressFile: configuration.httpAddressFile)
        services.append(NodeService("gateway", after: ready, logger: logger) { try await application.run() })
    }
    services.append(
        NodeService("agent listener", after: ready, logger: logger) {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask {
                    await announce(listener, insecure: configuration.insecure, file: configuration.listenAddressFile, logger: logger)
                }
                group.addTask { await channel.keeper.run() }
                try await GRPCServerService(server: server) {
                    logger.notice("shutting down: closing agent streams")
                    ServiceManager.notify("STOPPING=1\nSTATUS=stopping")
                    registry.closeAll()
                }.run()
                group.cancelAll()
            }
        }
    )

    // Last, so it stops first: a node that drains before stopping sends its agents away while
    // its listener still serves them.
    let drainer = Drainer(
        configuration: configuration.drain, policy: configuration.redirect, cluster: cluster, registry: registry, store: store, logger: logger
    )
    services.append(NodeService("drainer", after: ready, logger: logger) { try await drainer.run() })

    return ServerNode(
        configuration: configuration, store: store, registry: registry, cluster: cluster, tasks: tasks, distributor: distributor, metrics: metrics,
        adminToken: admin.token, enrollmentToken: enrollment.token, gateway: gateway,
        services: services.map { .init(service: $0) }, listener: listener
    )
}

/// Runs the database for as long as the node runs: the pool (PostgreSQL), the migrations, and
/// the release of hosts this node held before it stopped; then opens `ready`.
private func runStore(
    engine: any SQLEngine,
    store: SQLStore,
    configuration: ServerConfiguration,
    joinToken: String,
    ready: StartGate,
    logger: Logger
) async throws {
    do {
        try await withThrowingTaskGroup(of: Void.self) { group in
            if let postgres = engine as? PostgresEngine {
                group.addTask { try await postgres.run() }
            }
            do {
                try await store.migrate()
                // Hosts this node held before it stopped are not held any more.
                try await store.releaseHosts(of: configuration.nodeName)
                try await store.registerJoinToken(secret: joinToken, note: "the node's enroll.token")
            } catch {
                ready.fail(error)
                throw error
            }
            logger.notice(
                "store ready",
                metadata: ["store.engine": "\(engine.kind)", "store.location": "\(configuration.databaseURL.map(redacted) ?? configuration.sqlitePath)"]
            )
            ready.open()
            try? await gracefulShutdown()
            group.cancelAll()
        }
    } catch {
        await engine.shutdown()
        throw error
    }
    await engine.shutdown()
}

/// Writes the agent listener's address to `file` once it is bound, and logs it.
private func announce(_ listener: AgentListener, insecure: Bool, file: String, logger: Logger) async {
    let text: String
    do {
        text = try await boundAddress(of: listener).description
        try AtomicFile.write(text + "\n", to: file)
    } catch {
        logger.error("agent listener address unknown", metadata: ["path": "\(file)", "error": "\(error)"])
        return
    }
    logger.notice("listening for agents and admin calls", metadata: ["grpc.address": "\(text)", "grpc.tls": "\(!insecure)"])
    // systemd's Type=notify: the node serves from now on.
    ServiceManager.notify("READY=1\nSTATUS=serving agents and admin calls on \(text)")
}

/// How the other nodes and redirected agents reach this node: `--advertise`, else the address
/// the listener is bound to (with the host name in place of a wildcard address).
private func advertisedAddress(configuration: ServerConfiguration, listener: AgentListener) async -> String {
    if let advertise = configuration.advertise { return advertise.description }
    guard var bound = try? await boundAddress(of: listener) else { return configuration.listen.description }
    if bound.host == "0.0.0.0" || bound.host == "::" { bound.host = ProcessInfo.processInfo.hostName }
    return bound.description
}

/// The IP address and port `listener` is bound to, once it is.
private func boundAddress(of listener: AgentListener) async throws -> HostPort {
    let address = try await listener.listeningAddress
    if let v4 = address.ipv4 { return HostPort(host: v4.host, port: v4.port) }
    if let v6 = address.ipv6 { return HostPort(host: v6.host, port: v6.port) }
    throw AspireError(.internalError, "the agent listener is bound to \(address), not an IP address")
}

/// A database URL without its password, for logs.
func redacted(_ url: String) -> String {
    guard var components = URLComponents(string: url), components.password != nil else { return url }
    components.password = "***"
    return components.string ?? "postgres://***"
}
