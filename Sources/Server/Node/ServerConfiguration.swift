import Foundation
public import RPC

/// Settings of one server node. Every field has a default that works on one machine.
public struct ServerConfiguration: Sendable {
    /// Holds the tokens, the CA and TLS files, and (later) the embedded database.
    public var dataDirectory: String = "/var/lib/aspire"
    /// `postgres://user:password@host:5432/db` for a cluster; nil for the embedded SQLite file
    /// `<data>/aspire.db`.
    public var databaseURL: String?
    /// gRPC listener for agents and Admin calls: an IP literal and a port (0 picks a free one).
    public var listen = HostPort(host: "0.0.0.0", port: 8443)
    /// REST gateway (plain HTTP/1.1): an IP literal and a port (0 picks a free one); nil for none.
    /// Loopback by default: put a TLS proxy in front to reach it from elsewhere.
    public var httpListen: HostPort? = HostPort(host: "127.0.0.1", port: 8180)
    /// Networks the seed's plain-HTTP agents may call the gateway from; empty: those routes are off.
    public var seedAgents: [IPNetwork] = []
    /// Largest JSON body the gateway accepts.
    public var maxBodyBytes = 1 << 20
    /// How long a web console sign-in lasts.
    public var consoleSessionLifetime: Duration = .seconds(12 * 3600)
    /// Largest package upload.
    public var maxPackageBytes: Int64 = 1 << 30
    /// Package files a node of a PostgreSQL cluster keeps (the database holds them all).
    public var packageCacheBytes: Int64 = 10 << 30
    /// Plaintext gRPC instead of TLS; only behind an explicit `--insecure`.
    public var insecure = false
    /// Names and addresses the TLS certificate must be valid for, besides localhost, the host
    /// name and the loopback addresses.
    public var tlsNames: [String] = []
    /// This node's name in logs, Welcome and Init answers.
    public var nodeName: String = ProcessInfo.processInfo.hostName
    /// Whether Init accepts agents here or sends them to other nodes: by default spread over the
    /// cluster's live nodes (one node alone takes them all).
    public var redirect: RedirectPolicy = .cluster
    /// Seconds between agents' status reports (the seed's `step`).
    public var statusStep: Int32 = 600
    /// Application pings on each stream; a stream silent for three intervals is dropped.
    /// Rare on purpose: a ping through the stream costs the node ~370 µs of CPU (task hops,
    /// TLS, protobuf), three times an HTTP/2 keepalive ping, which the event loop answers.
    public var pingInterval: Duration = .seconds(300)
    /// A host silent this long on its connection (it lost power, or the network between went:
    /// no FIN, no RST) is dropped and offline; the kernel keeps the watch (``SilentPeer``).
    public var silentPeer = SilentPeer.standard
    /// HTTP/2 keepalive pings after this much silence on a connection. Rare: the kernel finds
    /// dead peers (``silentPeer``) and stream pings hung agents, and every ping wakes the node.
    public var transportKeepalive: Duration = .seconds(3600)

    /// How long the agents' certificates this node signs are valid; agents renew after a third.
    public var agentCertificateLifetime: Duration = .seconds(CertificateAuthority.Signer.agentLifetime)
    /// How peers and agents reach this node (HOST:PORT); nil: the address its listener is bound to.
    public var advertise: HostPort?
    /// Seconds between this node's heartbeats in the cluster's `nodes` table.
    public var heartbeatInterval: Duration = .seconds(3)
    /// How often the node reads the cluster's certificate revocations (hosts deleted or banned
    /// on any node) and closes the streams they name.
    public var revocationInterval: Duration = .seconds(2)

    /// Sending agents away: the rate, and whether the node drains before it stops.
    public var drain = Drainer.Configuration()

    /// Agents this node holds at most; nil: what its open-file limit allows (see `OpenFiles`).
    public var maxAgents: Int?
    /// New agents accepted a second at most; more are given later slots (``ConnectAdmission``).
    /// Nil: as fast as they come.
    public var maxConnectRate: Int? = ConnectAdmission.defaultRate

    /// Task delivery: redelivery, delivery timeout, sweep interval, default tag window.
    public var tasks = TaskEngine.Configuration()
    /// Plugin metrics: how they are stored, exported and forwarded.
    public var metrics = MetricIngest.Configuration()

    public init() {}

    public var tokenPaths: (admin: String, enrollment: String) {
        ("\(self.dataDirectory)/admin.token", "\(self.dataDirectory)/enroll.token")
    }

    /// The CA files live in `<data>/tls`.
    public var certificateAuthority: CertificateAuthority {
        CertificateAuthority(directory: "\(self.dataDirectory)/tls")
    }

    /// The embedded database file.
    public var sqlitePath: String {
        "\(self.dataDirectory)/aspire.db"
    }

    /// Where the node writes the address it listens on, once bound.
    public var listenAddressFile: String {
        "\(self.dataDirectory)/grpc.addr"
    }

    /// Where the node writes the address of its REST gateway, once bound.
    public var httpAddressFile: String {
        "\(self.dataDirectory)/http.addr"
    }

    /// The names the server certificate covers.
    public var allTLSNames: [String] {
        var names = ["localhost", ProcessInfo.processInfo.hostName, "127.0.0.1", "::1"]
        if self.listen.host != "0.0.0.0", self.listen.host != "::" { names.append(self.listen.host) }
        names += self.tlsNames
        return names.uniqued()
    }
}
