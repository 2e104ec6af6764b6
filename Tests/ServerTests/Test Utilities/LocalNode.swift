import Fleet
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Gateway
import Hummingbird
import HummingbirdTesting
import Logging
import RPC
import Server
import ServiceLifecycle
import Synchronization
import TestSupport

/// A server node built in this process by `buildNode`, its services running in a ServiceGroup,
/// its agent listener on a loopback address of its own (TLS, as in production).
struct LocalNode: NodeUnderTest {
    let node: ServerNode
    let address: HostPort
    let logPath: String

    var caFile: String { self.node.configuration.certificateAuthority.paths.caCertificate }
    var adminToken: String { self.node.adminToken }
    var store: SQLStore { self.node.store }

    /// Runs `body` with Hummingbird's test client on the node's REST gateway (no socket).
    func withREST<Result: Sendable>(_ body: @Sendable (any TestClientProtocol) async throws -> Result) async throws -> Result {
        try await Application(router: self.node.gateway.router()).test(.router, body)
    }

    /// The admin token as a request header.
    var bearer: HTTPFields { [.authorization: "Bearer \(self.node.adminToken)"] }

    /// An agent stream served in this process by `service` (over this node's registry, store and
    /// engines), as the listener would run it: the agent's messages are what `input` yields,
    /// the node's go to `writer`.
    func agentStream(
        _ service: AgentChannelService, writer: some RPCWriterProtocol<Aspire_V1_ServerMessage>
    ) -> (stream: Task<Void, any Error>, input: AsyncThrowingStream<Aspire_V1_AgentMessage, any Error>.Continuation) {
        let (requests, input) = AsyncThrowingStream.makeStream(of: Aspire_V1_AgentMessage.self)
        let context = ServerContext(
            descriptor: Aspire_V1_AgentChannel.Method.Connect.descriptor, remotePeer: "ipv4:127.0.0.1:1", localPeer: "ipv4:127.0.0.1:2",
            cancellation: ServerContext.RPCCancellationHandle()
        )
        let response = RPCWriter(wrapping: writer)
        let stream = Task { try await service.connect(request: RPCAsyncSequence(wrapping: requests), response: response, context: context) }
        return (stream, input)
    }

    /// The agent channel's service on this node's registry, store and engines, with `configuration`.
    func channelService(_ configuration: AgentChannelService.Configuration) -> AgentChannelService {
        AgentChannelService(
            configuration: configuration, registry: self.node.registry, store: self.store, engine: self.node.tasks,
            distributor: self.node.distributor, metrics: self.node.metrics, logger: Logger(label: "test")
        )
    }
}

/// Builds a node in-process on a fresh data directory and a SQLite file (`configure` may change
/// any setting, a PostgreSQL URL among them), runs its services, runs `body`, then shuts the node
/// down gracefully and removes its directory, however `body` ends.
func withLocalNode<Result: Sendable>(
    name: String = "node",
    sharingSecretsOf other: LocalNode? = nil,
    configure: (inout ServerConfiguration) -> Void = { _ in },
    _ body: (LocalNode) async throws -> Result
) async throws -> Result {
    try await withTemporaryDirectory("aspire-node") { directory in
        var configuration = ServerConfiguration()
        configuration.dataDirectory = "\(directory)/\(name)"
        if let other {
            // Nodes of one cluster share the CA and the tokens; each issues its own certificate.
            let from = other.node.configuration.dataDirectory
            try FileManager.default.createDirectory(atPath: "\(configuration.dataDirectory)/tls", withIntermediateDirectories: true)
            for file in ["admin.token", "enroll.token", "tls/ca.pem", "tls/ca.key"] {
                try FileManager.default.copyItem(atPath: "\(from)/\(file)", toPath: "\(configuration.dataDirectory)/\(file)")
            }
        }
        configuration.nodeName = name
        configuration.listen = HostPort(host: Loopback.address(), port: 0)
        configuration.httpListen = nil
        configuration.tlsNames = ["aspire.test"]
        configuration.maxAgents = 10_000
        configuration.tasks.sweepInterval = .milliseconds(200)
        configure(&configuration)
        let logPath = "\(directory)/\(name).log"
        let log = LogFile(logPath)
        let logger = Logger(label: "aspire.\(name)") { label in FileLogHandler(file: log, label: label) }
        let node = try await buildNode(configuration: configuration, logger: logger)
        let group = node.serviceGroup(logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let result: Result
            do {
                let local = LocalNode(node: node, address: try await node.address, logPath: logPath)
                result = try await body(local)
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw AnnotatedError(error, log: logPath)
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        }
    }
}

/// A failure with the tail of the node's log, which the temporary directory takes with it.
struct AnnotatedError: Error, CustomStringConvertible {
    let description: String

    init(_ error: any Error, log: String) {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        self.description = "\(error)\n-- node log (last lines):\n\(text.suffix(6000))"
    }
}

/// swift-log to a file, for nodes that live inside the test process.
struct FileLogHandler: LogHandler {
    let file: LogFile
    let label: String
    var logLevel: Logger.Level = .debug
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = self.metadata.merging(event.metadata ?? [:]) { $1 }
        let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        self.file.append("\(Date()) \(event.level) \(self.label): \(event.message) \(fields)\n")
    }
}

/// One log file that every logger of a node writes to.
final class LogFile: Sendable {
    let path: String
    private let handle: Mutex<FileHandle?>

    init(_ path: String) {
        self.path = path
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        self.handle = Mutex(FileHandle(forWritingAtPath: path))
    }

    func append(_ line: String) {
        self.handle.withLock { handle in
            try? handle?.write(contentsOf: Data(line.utf8))
        }
    }

    deinit {
        self.handle.withLock { try? $0?.close() }
    }
}

/// Runs `body` with `count` nodes built in this process on one new PostgreSQL database (at
/// `server`), sharing their CA and tokens as a cluster's nodes do; all are torn down and the
/// database dropped afterwards.
func withLocalCluster<Result: Sendable>(
    nodes count: Int,
    postgres server: String,
    configure: @escaping (inout ServerConfiguration) -> Void = { _ in },
    _ body: ([LocalNode]) async throws -> Result
) async throws -> Result {
    try await ScratchStore.withPostgresDatabase(server: server, logger: Logger(label: "cluster-test")) { database in
        func start(_ built: [LocalNode]) async throws -> Result {
            guard built.count < count else { return try await body(built) }
            return try await withLocalNode(name: "node\(built.count + 1)", sharingSecretsOf: built.first, configure: {
                $0.databaseURL = database
                configure(&$0)
            }) {
                try await start(built + [$0])
            }
        }
        return try await start([])
    }
}
