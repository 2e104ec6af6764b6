import Agent
import ArgumentParser
import Settings
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import RPC
import ServiceLifecycle
import SystemPackage
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

@main
struct Boot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "BootAgent: hold a stream to an Aspire server and run the commands it sends.",
        discussion: """
            The agent resolves each --server name to all its addresses and tries them in order, \
            follows the node's redirects, and keeps one TLS stream open, reconnecting with \
            backoff. Results are kept in the data directory until the server acknowledges them.

            Example: boot -L /var/log/booter.log -P /run/booter.pid -f \\
                       --server config.cargo.com:8443 --ca /etc/aspire/ca.pem --token-file /etc/aspire/enroll.token

            Without -f the agent detaches and runs in the background.

            Sub-agents (install, upgrade, ... commands) live under --agents-root, each started by \
            its package's control script in a group of its own (a cgroup where the host has one) \
            and restarted by the seed's policy. They keep running when the agent stops or dies, \
            and the agent adopts them when it starts again: under systemd, give the agent's unit \
            KillMode=process.

            BootAgent upgrades itself when a deployment named BootAgent says so: the new binary is \
            kept in the data directory and takes over this process by exec; if it does not \
            reconnect within --upgrade-window, a watchdog brings this binary back. A restarted \
            agent runs the upgraded binary.
            """,
        version: AspireVersion.current
    )

    @Option(name: [.customShort("L"), .customLong("log-file")], help: "Log file (appended). Default: standard error.")
    var logFile: String?

    @Option(name: [.customShort("P"), .customLong("pid-file")], help: "PID file, locked while the agent runs (a second agent refuses to start).")
    var pidFile: String?

    @Flag(name: [.customShort("f"), .customLong("foreground")], help: "Stay in the foreground instead of detaching.")
    var foreground = false

    @Option(name: .customLong("server"), help: "Server HOST:PORT, or a comma-separated list tried in order (repeatable).")
    var servers: [String] = ["localhost:8443"]

    @Option(name: .customLong("resolve"), help: "NAME:PORT:ADDR[,ADDR...] used instead of DNS for NAME:PORT, as curl's --resolve.")
    var resolve: [String] = []

    @Option(name: .customLong("data-dir"), help: "Directory for the AgentSN, the result outbox and state.")
    var dataDirectory = "/var/lib/aspire-boot"

    @Option(name: .customLong("plugins-dir"), help: "Where plugins are fetched, one directory each (must be reachable by the plugins' users).")
    var pluginsDirectory = "/var/lib/aspire-plugins"

    @Option(
        name: .customLong("control-socket"),
        help: "Unix socket of the local control interface (BasicAgentCtl, curl --unix-socket), root only; 'off' for none."
    )
    var controlSocket = "/run/aspire-boot.sock"

    @Option(
        name: .customLong("control-listen"),
        help: "Serve the local interface on this loopback HOST:PORT too (as the seed's agent did); any local user reaches it."
    )
    var controlListen: String?

    @Option(help: "CA certificate (PEM) that signed the server's certificate, e.g. the server's tls/ca.pem.")
    var ca: String?

    @Option(
        name: .customLong("token-file"),
        help: "File holding a join token (the server's enroll.token, or one made by 'aspirectl token create'): the host enrolls with it once and gets its own certificate; not needed after."
    )
    var tokenFile: String?

    @Option(help: "The join token itself: any user can read it in ps; prefer --token-file (or env ASPIRE_ENROLL_TOKEN).")
    var token: String?

    @Flag(help: "Plaintext gRPC, no TLS. Never on a real network.")
    var insecure = false

    @Option(name: .customLong("tag"), help: "Host tag KEY=VALUE sent to the server (repeatable).")
    var tags: [String] = []

    @Option(name: .customLong("agent-sn"), help: "Use this AgentSN instead of the one kept in the data directory.")
    var agentSN: String?

    @Option(name: .customLong("backoff-cap"), help: "Longest wait in seconds between connection rounds.")
    var backoffCap: Int = 60

    @Option(
        name: .customLong("silent-peer-timeout"),
        help: "Seconds the connection may hear nothing from its node (power lost, network gone: no FIN, no RST) before the agent leaves it for the next address; the kernel keeps the watch."
    )
    var silentPeerTimeout: Int = Int(SilentPeer.standard.timeout.components.seconds)

    @Option(
        name: .customLong("start-delay"),
        help: "Wait a random while before the first connection: 'auto' (up to the status step, at most 60 s, when the host booted under 5 minutes ago, so a rebooted rack does not arrive at once), or at most this many seconds after every start (0: never)."
    )
    var startDelay = "auto"

    @Option(name: .customLong("output-cap"), help: "Bytes kept of each of a command's stdout and stderr (head and tail).")
    var outputCap: Int = 1 << 20

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.")
    var logLevel = "info"

    @Option(name: .customLong("agents-root"), help: "Where sub-agents are installed: ROOT/NAME/VERSION/ with ROOT/NAME/.version.")
    var agentsRoot = "/opt/aspire/agents"

    @Option(
        help: "How sub-agents' limits are enforced: auto (cgroup v2, else cgroup v1, else rlimits), cgroup2, cgroup1 or rlimits."
    )
    var limits: String = "auto"

    @Option(name: .customLong("cgroup-parent"), help: "The cgroup under which each sub-agent gets its own (e.g. /sys/fs/cgroup/memory/aspire/NAME).")
    var cgroupParent = "aspire"

    @Option(name: .customLong("check-interval"), help: "Seconds between checks of the sub-agents (the seed's 60).")
    var checkInterval = 60

    @Option(
        name: .customLong("restart-holdoff"),
        help: "A sub-agent that exits sooner than this many seconds after its start is restarted only once they have passed (the seed's 180)."
    )
    var restartHoldoff = 180

    @Option(name: .customLong("anomaly-window"), help: "An exit sooner than this many seconds after start is an anomaly (the seed's 900).")
    var anomalyWindow = 900

    @Option(name: .customLong("max-anomalies"), help: "More anomalies in a row than this make a sub-agent fatal: no more restarts (the seed's 3).")
    var maxAnomalies = 3

    @Option(
        name: .customLong("health-window"),
        help: "Seconds a sub-agent must keep running after install, upgrade or start; an upgrade that fails it is rolled back."
    )
    var healthWindow = 10

    @Option(name: .customLong("upgrade-window"), help: "Seconds a new BootAgent version has to reconnect before this one is restored.")
    var upgradeWindow = 120

    @Option(help: OptionSources.help(defaultFile: Self.configFile, environmentPrefix: Self.environmentPrefix))
    var config: String?

    static let configFile = "/etc/aspire/boot.conf"
    static let environmentPrefix = "ASPIRE_BOOT_"

    /// Runs with the options of the configuration file and the environment.
    static func main() async {
        await Self.main(sources: OptionSources(for: Self.self, defaultFile: Self.configFile, environmentPrefix: Self.environmentPrefix))
    }

    @Option(name: .customLong("resend-interval"), help: .hidden)
    var resendInterval = 30

    @Option(name: .customLong("report-version"), help: .hidden)
    var reportVersion: String?

    @Option(name: .customLong("upgrade-watchdog"), help: .hidden)
    var upgradeWatchdog: String?

    mutating func validate() throws {
        // The watchdog an upgrade starts takes nothing else.
        if self.upgradeWatchdog != nil { return }
        guard self.upgradeWindow >= 5 else { throw ValidationError("--upgrade-window must be at least 5 seconds") }
        guard Logger.Level(name: self.logLevel) != nil else { throw ValidationError("unknown log level '\(self.logLevel)'") }
        guard self.backoffCap >= 1 else { throw ValidationError("--backoff-cap must be at least 1") }
        do {
            _ = try SilentPeer(seconds: self.silentPeerTimeout, option: "--silent-peer-timeout")
            _ = try StartDelay(parsing: self.startDelay)
        } catch {
            throw ValidationError(error.cause)
        }
        guard self.outputCap >= 1024 else { throw ValidationError("--output-cap must be at least 1024") }
        guard ResourceControlMode(rawValue: self.limits) != nil else {
            throw ValidationError("--limits must be one of \(ResourceControlMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard self.checkInterval >= 1, self.restartHoldoff >= 0, self.anomalyWindow >= 1, self.maxAnomalies >= 0, self.healthWindow >= 0 else {
            throw ValidationError("--check-interval and --anomaly-window must be at least 1; --restart-holdoff, --max-anomalies and --health-window not negative")
        }
        guard (try? Supervisor.checkName(self.cgroupParent, field: "--cgroup-parent")) != nil else {
            throw ValidationError("--cgroup-parent must be one path component of letters, digits and . _ + -")
        }
        guard self.agentsRoot.hasPrefix("/") else { throw ValidationError("--agents-root must be an absolute path") }
        if !self.insecure, self.ca == nil {
            throw ValidationError("give the server's CA with --ca FILE (or --insecure for plaintext)")
        }
    }

    func run() async throws {
        if let trial = self.upgradeWatchdog {
            Glibc.exit(SelfUpgrade.watch(trialPath: trial))
        }
        let version = self.reportVersion ?? AspireVersion.current
        if let upgraded = SelfUpgrade.launchTarget(dataDirectory: self.dataDirectory, version: version) {
            // An upgrade replaced this binary: the service manager started the one it replaced.
            _ = try? FileDescriptor.standardError.writeAll("boot: \(version) was upgraded; running \(upgraded)\n".utf8)
            throw ValidationError(SelfUpgrade.exec(upgraded).cause)
        }
        // Errors an operator must see (another agent running, bad log path) are reported on
        // the terminal, before detaching and before output goes to the log file.
        if let pidFile {
            try Daemon.PIDFile.checkFree(path: pidFile)
        }
        if let logFile {
            try Daemon.checkWritable(logFile)
        }
        if !self.foreground {
            try Daemon.detach()
        }
        var pidLock: Daemon.PIDFile?
        if let pidFile {
            pidLock = try Daemon.PIDFile(path: pidFile)
        }
        defer { pidLock?.remove() }
        if let logFile {
            try Daemon.redirectOutput(to: logFile)
        }
        LogSetup.bootstrap(level: Logger.Level(name: self.logLevel) ?? .info)
        let logger = Logger(label: "aspire.boot")

        var configuration = AgentConfiguration()
        configuration.servers = try self.servers.flatMap { try HostPort.parseList($0, defaultPort: 8443) }
        guard !configuration.servers.isEmpty else { throw ValidationError("--server names no server") }
        configuration.resolveOverrides = try self.resolve.map { try ResolveOverride(parsing: $0) }
        configuration.dataDirectory = self.dataDirectory
        configuration.pluginsDirectory = self.pluginsDirectory
        configuration.controlSocket = self.controlSocket == "off" ? nil : self.controlSocket
        configuration.logFile = self.logFile
        if let controlListen {
            let address = try HostPort(parsing: controlListen)
            guard ["127.", "::1", "localhost"].contains(where: { address.host.hasPrefix($0) }) else {
                throw ValidationError("--control-listen must be a loopback address (127.x.x.x, ::1 or localhost): the interface has no authentication of its own")
            }
            configuration.controlListen = address
        }
        configuration.caFile = self.ca
        configuration.insecure = self.insecure
        configuration.agentSN = self.agentSN
        configuration.backoffCap = .seconds(self.backoffCap)
        configuration.silentPeer = try SilentPeer(seconds: self.silentPeerTimeout, option: "--silent-peer-timeout")
        configuration.startDelay = (try? StartDelay(parsing: self.startDelay)) ?? .auto
        configuration.bash.outputCap = self.outputCap
        configuration.supervisor.root = self.agentsRoot
        configuration.supervisor.resourceControl = ResourceControlMode(rawValue: self.limits) ?? .auto
        configuration.supervisor.cgroupParent = self.cgroupParent
        configuration.supervisor.checkInterval = .seconds(self.checkInterval)
        configuration.supervisor.holdoff = .seconds(self.restartHoldoff)
        configuration.supervisor.anomalyWindow = .seconds(self.anomalyWindow)
        configuration.supervisor.maxAnomalies = self.maxAnomalies
        configuration.supervisor.healthWindow = .seconds(self.healthWindow)
        configuration.version = version
        configuration.upgradeWindow = .seconds(self.upgradeWindow)
        configuration.resendInterval = .seconds(max(1, self.resendInterval))
        configuration.enrollmentToken = try self.enrollmentToken()
        if self.token != nil {
            logger.warning("--token puts the join token in the command line, where any user of this host can read it (ps); use --token-file")
        }
        for tag in self.tags {
            guard let equals = tag.firstIndex(of: "="), equals != tag.startIndex else {
                throw ValidationError("--tag '\(tag)': expected KEY=VALUE")
            }
            configuration.tags[String(tag[..<equals])] = String(tag[tag.index(after: equals)...])
        }

        let runtime = try AgentRuntime(configuration: configuration, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: runtime)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }

    private func enrollmentToken() throws -> String {
        if let token { return token }
        if let tokenFile { return try Secret.read(tokenFile) }
        if let value = ProcessInfo.processInfo.environment["ASPIRE_ENROLL_TOKEN"], !value.isEmpty { return value }
        // A host that holds its certificate needs none; one that does not says so when it tries.
        return ""
    }
}
