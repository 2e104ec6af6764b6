import ArgumentParser
import Foundation
import Logging
import RPC
import Server
import Settings
import ServiceLifecycle
import UnixSignals

@main
struct AspireServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aspire-server",
        abstract: "An Aspire server node, or a REST gateway in front of one.",
        version: AspireVersion.current,
        subcommands: [Serve.self, GatewayCommand.self],
        defaultSubcommand: Serve.self
    )

    /// Runs with the node's options from its configuration file and the environment; they
    /// configure `serve` (the default), not the gateway.
    static func main() async {
        var commandLine = Array(CommandLine.arguments.dropFirst())
        if commandLine.first == GatewayCommand.configuration.commandName {
            await Self.main(commandLine)
            return
        }
        let named = commandLine.first == Serve.configuration.commandName
        if named { commandLine.removeFirst() }
        let sources = OptionSources(for: Serve.self, defaultFile: Serve.configFile, environmentPrefix: Serve.environmentPrefix)
        do {
            await Self.main((named ? [Serve.configuration.commandName!] : []) + (try sources.arguments(commandLine: commandLine)))
        } catch {
            Self.exit(withError: ValidationError(error.description))
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run one Aspire server node (the default).",
        discussion: """
            On first start the node creates, in its data directory, an admin token (admin.token), \
            an agent enrollment token (enroll.token), and its own CA with a server certificate \
            (tls/ca.pem, tls/server.pem). Give agents tls/ca.pem and enroll.token; give operators \
            admin.token. The address it listens on is written to grpc.addr once bound.

            The REST gateway (/api/v1/server/..., the seed's /agent/status and /agent/job/result, \
            /api/v1/openapi.json) listens on --http-listen, loopback by default; its address is \
            written to http.addr. Every /api route needs 'Authorization: Bearer <admin token>'.

            SIGTERM or SIGINT stops it gracefully: agent streams are closed and agents reconnect \
            to another node.
            """,
        version: AspireVersion.current
    )

    @Option(name: .customLong("data-dir"), help: "Directory for tokens, TLS files and state.")
    var dataDirectory = "/var/lib/aspire"

    @Option(
        help: """
            postgres://user:password@host:5432/database[?sslmode=disable|prefer|require] for a cluster on \
            one PostgreSQL (env ASPIRE_DATABASE). Default: the SQLite file aspire.db in the data directory.
            """
    )
    var database: String?

    @Option(help: "gRPC listen address for agents and admin calls (IP:PORT; port 0 picks a free one).")
    var listen = "0.0.0.0:8443"

    @Option(
        name: .customLong("http-listen"),
        help: "REST gateway listen address (IP:PORT; port 0 picks a free one; 'off' for none). Plain HTTP: keep it on loopback or behind a TLS proxy."
    )
    var httpListen = "127.0.0.1:8180"

    @Option(
        name: .customLong("seed-agents"),
        help: """
            Networks (CIDR, comma-separated) the seed's plain-HTTP agents may call /agent/status and /agent/job/result from; \
            off without it. Their bodies carry no credentials: keep this to the networks where such agents live.
            """
    )
    var seedAgents: String?

    @Option(
        name: .customLong("agent-certificate-lifetime"),
        help: "Seconds an agent's certificate is valid (default 30 days); agents renew after a third of it."
    )
    var agentCertificateLifetime: Int?

    @Option(name: .customLong("max-body-size"), help: "Largest JSON body the REST gateway accepts, in bytes.")
    var maxBodySize = 1 << 20

    @Option(name: .customLong("max-package-size"), help: "Largest package upload, in bytes.")
    var maxPackageSize: Int64 = 1 << 30

    @Option(
        name: .customLong("package-cache-size"),
        help: "With PostgreSQL (which holds every package file): bytes of package files this node keeps on disk; the least recently served go first."
    )
    var packageCacheSize: Int64 = 10 << 30

    @Flag(help: "Serve plaintext gRPC instead of TLS. Never on a real network.")
    var insecure = false

    @Option(name: .customLong("tls-name"), help: "Extra DNS name or IP address the server certificate must cover (repeatable).")
    var tlsNames: [String] = []

    @Option(name: .customLong("node-name"), help: "This node's name in logs and answers (default: the host name).")
    var nodeName: String?

    @Option(
        name: .customLong("redirect-to"),
        help: "Hold no agents: answer every Init with a redirect to these servers, in order (HOST:PORT,HOST:PORT)."
    )
    var redirectTo: String?

    @Option(
        help: """
            A fixed list of cluster peers (HOST:PORT,...) for rendezvous hashing of AgentSNs, in place \
            of the live nodes of the cluster's table (the default spreads agents over the active nodes \
            sharing the database). Needs --advertise.
            """
    )
    var peers: String?

    @Option(
        help: """
            How the other nodes and redirected agents reach this node (HOST:PORT; it must be in the \
            TLS certificate, see --tls-name). Default: the listen address, with the host name for a \
            wildcard one.
            """
    )
    var advertise: String?

    @Flag(
        name: .customLong("drain-on-stop"),
        help: """
            On SIGTERM, send this node's agents to the other active nodes (--drain-rate a second) \
            before closing their streams, instead of closing them all at once.
            """
    )
    var drainOnStop = false

    @Option(name: .customLong("drain-rate"), help: "Agents a draining node sends away per second (aspirectl nodes drain, --drain-on-stop).")
    var drainRate = 200

    @Option(name: .customLong("drain-timeout"), help: "Seconds a drain before stopping may take; the streams left are then closed.")
    var drainTimeout = 60

    @Option(name: .customLong("status-step"), help: "Seconds between agents' status reports.")
    var statusStep: Int32 = 600

    @Option(
        name: .customLong("ping-interval"),
        help: "Seconds between application pings on each agent stream: they find an agent whose process hangs; three silent intervals drop it."
    )
    var pingInterval: Int = 300

    @Option(
        name: .customLong("silent-peer-timeout"),
        help: "Seconds a host's connection may hear nothing (power lost, network gone: no FIN, no RST) before the host is dropped and offline; the kernel's TCP keepalive probes and TCP_USER_TIMEOUT keep the watch, at no cost to the node."
    )
    var silentPeerTimeout: Int = Int(SilentPeer.standard.timeout.components.seconds)

    @Option(help: "Seconds of silence on a connection before the node also sends an HTTP/2 keepalive ping; no answer within 10 s closes it.")
    var keepalive: Int = 3600

    @Option(
        name: .customLong("max-agents"),
        help: "Agents this node holds at most; more are refused and try another node (default: its open-file limit less 512)."
    )
    var maxAgents: Int?

    @Option(
        name: .customLong("max-connect-rate"),
        help: "New agents this node accepts a second; more are each given a later slot and told when to come back, so a reconnect storm arrives at this pace (0: no limit)."
    )
    var maxConnectRate: Int = ConnectAdmission.defaultRate

    @Option(
        name: .customLong("metrics-max-age"),
        help: "Seconds a host's plugin metric stays in /metrics after the agent last sent it."
    )
    var metricsMaxAge: Int = 3600

    @Option(
        name: .customLong("influx-url"),
        help: """
            Also forward plugin metrics to InfluxDB, in line protocol at second precision: its write URL, e.g. \
            http://influx:8086/write?db=aspire (1.x) or http://influx:8086/api/v2/write?org=ORG&bucket=aspire (2.x).
            """
    )
    var influxURL: String?

    @Option(name: .customLong("influx-token-file"), help: "File holding the InfluxDB 2.x API token (sent as 'Authorization: Token ...').")
    var influxTokenFile: String?

    @Option(help: OptionSources.help(defaultFile: Self.configFile, environmentPrefix: Self.environmentPrefix))
    var config: String?

    static let configFile = "/etc/aspire/server.conf"
    static let environmentPrefix = "ASPIRE_SERVER_"

    @OptionGroup var console: ConsoleOptions

    @OptionGroup var log: LogOptions

    func run() async throws {
        let logger = self.log.bootstrap(label: "aspire.server")

        var configuration = ServerConfiguration()
        configuration.dataDirectory = self.dataDirectory
        configuration.listen = try HostPort(parsing: self.listen, allowPortZero: true)
        configuration.databaseURL = self.database ?? ProcessInfo.processInfo.environment["ASPIRE_DATABASE"].flatMap { $0.isEmpty ? nil : $0 }
        configuration.insecure = self.insecure
        configuration.httpListen = self.httpListen == "off" ? nil : try HostPort(parsing: self.httpListen, allowPortZero: true)
        if let lifetime = self.agentCertificateLifetime {
            guard lifetime >= 60 else { throw ValidationError("--agent-certificate-lifetime: at least 60 seconds") }
            configuration.agentCertificateLifetime = .seconds(lifetime)
        }
        if let advertise {
            let address = try HostPort(parsing: advertise)
            configuration.advertise = address
            configuration.tlsNames.append(address.host)
        }
        configuration.seedAgents = try (self.seedAgents ?? "").split(separator: ",").map { try IPNetwork(parsing: $0.trimmingCharacters(in: .whitespaces)) }
        guard self.maxBodySize >= 1024 else { throw ValidationError("--max-body-size must be at least 1024") }
        configuration.maxBodyBytes = self.maxBodySize
        configuration.consoleSessionLifetime = self.console.sessionLifetime
        guard self.maxPackageSize >= 1 else { throw ValidationError("--max-package-size must be positive") }
        configuration.maxPackageBytes = self.maxPackageSize
        guard self.packageCacheSize >= 0 else { throw ValidationError("--package-cache-size must not be negative") }
        configuration.packageCacheBytes = self.packageCacheSize
        configuration.tlsNames = self.tlsNames
        if let nodeName { configuration.nodeName = nodeName }
        configuration.statusStep = self.statusStep
        guard self.pingInterval >= 1 else { throw ValidationError("--ping-interval must be at least 1") }
        configuration.pingInterval = .seconds(self.pingInterval)
        guard self.keepalive >= 1 else { throw ValidationError("--keepalive must be at least 1") }
        configuration.transportKeepalive = .seconds(self.keepalive)
        do {
            configuration.silentPeer = try SilentPeer(seconds: self.silentPeerTimeout, option: "--silent-peer-timeout")
        } catch {
            throw ValidationError(error.cause)
        }
        guard self.maxConnectRate >= 0 else { throw ValidationError("--max-connect-rate must not be negative") }
        configuration.maxConnectRate = self.maxConnectRate == 0 ? nil : self.maxConnectRate
        if let maxAgents {
            guard maxAgents >= 1 else { throw ValidationError("--max-agents must be at least 1") }
            configuration.maxAgents = maxAgents
        }
        guard self.metricsMaxAge >= 1 else { throw ValidationError("--metrics-max-age must be at least 1") }
        configuration.metrics.maxAge = .seconds(self.metricsMaxAge)
        if let influxURL {
            guard let url = URL(string: influxURL), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host?.isEmpty == false else {
                throw ValidationError("--influx-url must be an http(s) URL, e.g. http://influx:8086/write?db=aspire")
            }
            var influx = InfluxForwarder.Configuration(url: url)
            if let influxTokenFile {
                guard let token = try? String(contentsOfFile: influxTokenFile, encoding: .utf8) else {
                    throw ValidationError("cannot read --influx-token-file \(influxTokenFile)")
                }
                influx.token = token.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            configuration.metrics.influx = influx
        } else if self.influxTokenFile != nil {
            throw ValidationError("--influx-token-file needs --influx-url")
        }

        guard self.drainRate > 0, self.drainTimeout > 0 else {
            throw ValidationError("--drain-rate and --drain-timeout must be positive")
        }
        configuration.drain.onStop = self.drainOnStop
        configuration.drain.rate = self.drainRate
        configuration.drain.stopTimeout = .seconds(self.drainTimeout)

        switch (self.redirectTo, self.peers) {
        case (.some, .some):
            throw ValidationError("--redirect-to and --peers exclude each other")
        case (let targets?, nil):
            let servers = try HostPort.parseList(targets)
            guard !servers.isEmpty else { throw ValidationError("--redirect-to names no server") }
            configuration.redirect = .redirectAll(servers)
        case (nil, let peers?):
            guard let advertise else { throw ValidationError("--peers needs --advertise HOST:PORT") }
            let current = try HostPort(parsing: advertise)
            configuration.redirect = .rendezvous(current: current, peers: try HostPort.parseList(peers))
        case (nil, nil):
            configuration.redirect = .cluster
        }

        let node = try await buildNode(configuration: configuration, logger: logger)
        let group = node.serviceGroup(gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}
