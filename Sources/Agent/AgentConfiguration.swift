public import RPC

/// Settings of the BootAgent. Every field has a default except where the agent must be told
/// (the CA file, unless `insecure`).
public struct AgentConfiguration: Sendable {
    /// Servers to try in order (each name resolved to all its addresses).
    public var servers: [HostPort] = [HostPort(host: "localhost", port: 8443)]
    /// `--resolve NAME:PORT:ADDR[,ADDR]` entries that replace DNS for a name and port.
    public var resolveOverrides: [ResolveOverride] = []
    /// Holds the AgentSN, the outbox and the agent's state.
    public var dataDirectory: String = "/var/lib/aspire-boot"
    /// Plugins are fetched into `<plugins>/<name>/`: outside the data directory (which only
    /// root may enter), because plugins run as nobody by default and must reach their files.
    public var pluginsDirectory: String = "/var/lib/aspire-plugins"
    /// The local control interface's Unix socket (`boot` uses /run/aspire-boot.sock); none when nil.
    public var controlSocket: String?
    /// CA that signed the server's certificate; required unless `insecure`.
    public var caFile: String?
    /// Plaintext gRPC, only behind an explicit `--insecure`.
    public var insecure = false
    /// The join token the host enrolls with when it has no certificate yet (on a node without
    /// TLS, the bearer token of every call). Not needed once the host holds a certificate.
    public var enrollmentToken: String = ""
    /// Fixed AgentSN instead of the one kept in the data directory.
    public var agentSN: String?
    public var tags: [String: String] = [:]
    /// Full-jitter exponential backoff between rounds: base and cap.
    public var backoffBase: Duration = .milliseconds(500)
    public var backoffCap: Duration = .seconds(60)
    /// The wait before the first connection after a start.
    public var startDelay = StartDelay.auto
    /// Redirects followed from one first server before the round gives up.
    public var maxRedirects = 4
    /// Time for one Init call, connection included.
    public var connectTimeout: Duration = .seconds(5)
    /// A node silent this long (it lost power, or the network between went) is left for
    /// another: the kernel watches the connection (``SilentPeer``), the agent does not wake for it.
    public var silentPeer = SilentPeer.standard
    /// HTTP/2 keepalive pings to the server after this much silence: none by default, the
    /// kernel's probes find a dead node without them.
    public var keepalive: Duration?
    /// When the pages of code the agent mapped are released (``CodePages``): this long after
    /// the first connection (what start-up alone ran), then this often (what work since ran).
    public var releaseCodePagesAfter: Duration = .seconds(20)
    public var releaseCodePagesEvery: Duration = .seconds(300)
    public var bash = BashExecutor.Configuration()
    public var supervisor = SupervisorConfiguration()
    /// The agent's own log file (`-L`), which the local interface may serve; nil for standard error.
    public var logFile: String?
    /// The local interface on a loopback TCP address too (`--control-listen`).
    public var controlListen: HostPort?
    /// The version the agent reports (its own; a test of self-upgrades gives another).
    public var version = AspireVersion.current
    /// How long a new BootAgent version has to reconnect before the old one is restored.
    public var upgradeWindow: Duration = .seconds(120)
    /// How often results the server has not acknowledged are sent again while connected (it
    /// acknowledges what it stored; a node whose disk is full stores nothing until it has room).
    public var resendInterval: Duration = .seconds(30)

    public init() {}

    public var security: ClientSecurity {
        get throws {
            if self.insecure { return .plaintext }
            guard let caFile = self.caFile else {
                throw AspireError(.badRequest, "no CA file given: pass --ca FILE (the server's ca.pem), or --insecure for plaintext")
            }
            return .tls(caFile: caFile)
        }
    }
}
