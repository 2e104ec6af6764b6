import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging
public import RPC
public import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The BootAgent: keeps a stream to a server node, runs the commands it pushes, and delivers
/// every result until it is acknowledged.
///
/// Commands run in the runtime's own task group, not the stream's: a command outlives the
/// stream it came on, and its result waits in the outbox for the next one.
public final class AgentRuntime: Service {
    public let configuration: AgentConfiguration
    public let agentSN: String
    let state: AgentState
    let runner: CommandRunner
    public let supervisor: Supervisor
    /// Scheduled commands; their results go through the outbox like any other.
    public let scheduler: Scheduler
    /// Plugins: fetched, run on their periods or on demand; their metrics go out in batches.
    public let plugins: PluginManager
    let metrics = MetricQueue()
    let resolver: any AddressResolver
    let logger: Logger
    let startedAt = Date()

    /// The stream now open, if any: where results and status reports go.
    private let sink = Mutex<AsyncStream<Aspire_V1_AgentMessage>.Continuation?>(nil)
    /// The connection of the open stream: packages of the server's store come over it.
    private let client = Mutex<GRPCClient<HTTP2ClientTransport.Posix>?>(nil)
    private let commands: AsyncStream<Aspire_V1_Command>
    private let commandInput: AsyncStream<Aspire_V1_Command>.Continuation
    /// Seconds between status reports; the server's Welcome and `config` may change it.
    let step = Atomic<Int32>(600)
    /// What `config` commands set (saved in the data directory).
    private let settings: Mutex<AgentSettings>

    public init(configuration: AgentConfiguration, logger: Logger, resolver: (any AddressResolver)? = nil) throws {
        self.configuration = configuration
        self.logger = logger
        self.state = try AgentState(directory: configuration.dataDirectory)
        self.agentSN = try configuration.agentSN ?? self.state.agentSN()
        self.runner = CommandRunner(bash: BashExecutor(configuration: configuration.bash, logger: logger))
        self.resolver = resolver ?? SystemResolver(overrides: configuration.resolveOverrides)
        (self.commands, self.commandInput) = AsyncStream.makeStream(of: Aspire_V1_Command.self)
        let settings = AgentSettings.load(from: configuration.dataDirectory)
        if settings.step > 0 { self.step.store(settings.step, ordering: .relaxed) }
        self.settings = Mutex(settings)
        self.supervisor = try Supervisor(configuration: configuration.supervisor, dataDirectory: configuration.dataDirectory, logger: logger)
        self.scheduler = Scheduler(dataDirectory: configuration.dataDirectory, bash: BashExecutor(configuration: configuration.bash, logger: logger), logger: logger)
        self.plugins = PluginManager(
            directory: configuration.pluginsDirectory, dataDirectory: configuration.dataDirectory, host: ProcessInfo.processInfo.hostName,
            bash: BashExecutor(configuration: configuration.bash, logger: logger), logger: logger
        )
        self.supervisor.setDownloads(store: self.storeDownload, web: self.webDownload)
        self.plugins.runner.setHandlers(
            metrics: { [weak self] metrics in self?.metrics.append(metrics) },
            events: { [weak self] plugin, message in
                self?.send(.event(Aspire_V1_Event(category: "plugin", message: message, attributes: ["plugin": plugin])))
            }
        )
        // A sub-agent changed: the server hears of it at once, not at the next step.
        // A scheduled run's result waits in the outbox until the server acknowledges it.
        self.scheduler.setDelivery { [weak self] result in
            guard let self else { return }
            var logger = self.logger
            logger[metadataKey: "command.id"] = "\(result.id)"
            self.deliver(result, logger: logger)
        }
        self.supervisor.setObserver { [weak self] event in
            guard let self else { return }
            if let event { self.send(.event(event)) }
            self.send(.status(self.statusReport))
        }
    }

    /// Fetches a file of the server's package store over the open connection.
    private var storeDownload: PackageFetcher.StoreDownload {
        { [weak self] path, handle throws(AspireError) in
            try await Self.download(path, into: handle, client: self?.client.withLock { $0 })
        }
    }

    private var webDownload: PackageFetcher.WebDownload {
        { [weak self] url, handle throws(AspireError) in
            guard let self else { throw AspireError(.downloadFailed, "the agent is stopping") }
            try await self.web(url, into: handle)
        }
    }

    /// Fetches an http(s) package; the enrollment token goes only to the agent's own servers.
    private var web: WebDownload {
        WebDownload(
            caFile: self.configuration.caFile,
            enrollmentToken: self.configuration.enrollmentToken,
            serverHosts: { [weak self] in Set(self?.servers.map { $0.host.lowercased() } ?? []) },
            logger: self.logger
        )
    }

    /// Fetches a file of the server's package store over the open connection.
    private static func download(
        _ path: String,
        into handle: FileHandle,
        client: GRPCClient<HTTP2ClientTransport.Posix>?
    ) async throws(AspireError) {
        guard let client else { throw AspireError(.downloadFailed, "not connected to a server: cannot fetch aspire://package/\(path)") }
        var request = Aspire_V1_DownloadRequest()
        request.path = path
        do {
            try await Aspire_V1_PackageStore.Client(wrapping: client).download(request) { response in
                for try await chunk in response.messages {
                    try handle.write(contentsOf: chunk.data)
                }
            }
        } catch let error as RPCError {
            throw AspireError(.downloadFailed, "cannot fetch aspire://package/\(path) from the server: \(error.message)")
        } catch {
            throw AspireError(.downloadFailed, "cannot fetch aspire://package/\(path) from the server: \(error)")
        }
    }

    /// Servers to try: the configured ones, then those a `config` command added.
    var servers: [HostPort] {
        let extra = self.settings.withLock { $0.servers }.compactMap { try? HostPort(parsing: $0) }
        return (self.configuration.servers + extra).uniqued()
    }

    /// Tags: the configured ones, with those of `config` commands over them.
    var tags: [String: String] {
        self.configuration.tags.merging(self.settings.withLock { $0.tags }) { $1 }
    }

    /// The server's step from Welcome, unless a `config` command set this host's own.
    func welcomed(step: Int32) {
        guard step > 0, self.settings.withLock({ $0.step }) == 0 else { return }
        self.step.store(step, ordering: .relaxed)
    }

    /// Carries out a `config` command: saves the new settings, applies them, and reports at once.
    func configure(_ command: Aspire_V1_Command) -> Aspire_V1_CommandResult {
        guard case .config(let config)? = command.params else {
            return .failed(id: command.id, .invalidParams, "config needs config parameters (svrlist, step, tags)")
        }
        let applied: AgentSettings
        do {
            applied = try self.settings.withLock { settings throws(AspireError) in
                let next = try settings.applying(config)
                do {
                    try next.save(in: self.configuration.dataDirectory)
                } catch {
                    throw AspireError(.agentInternal, "cannot save \(AgentSettings.path(in: self.configuration.dataDirectory)): \(error)")
                }
                settings = next
                return next
            }
        } catch {
            return .failed(id: command.id, error.code, error.cause)
        }
        if applied.step > 0 { self.step.store(applied.step, ordering: .relaxed) }
        self.logger.notice(
            "configuration changed",
            metadata: ["config.step": "\(applied.step)", "config.servers": "\(applied.servers)", "config.tags": "\(applied.tags)"]
        )
        self.send(
            .event(
                Aspire_V1_Event(
                    category: "config",
                    message: "configuration changed: step \(self.step.load(ordering: .relaxed)) s, extra servers \(applied.servers), tags \(self.tags)"
                )
            )
        )
        self.send(.status(self.statusReport))
        var result = Aspire_V1_CommandResult()
        result.id = command.id
        result.resp = .success
        result.message = "success"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        result.data = (try? encoder.encode(AppliedConfig(step: self.step.load(ordering: .relaxed), svrlist: applied.servers.joined(separator: ","), tags: self.tags))) ?? Data()
        return result
    }

    /// Carries out `schedule.set`: the server's schedules for this host replace the agent's.
    /// Those this host cannot run (an unknown user, say) are refused one by one, reported in
    /// the result and as an event; the others run.
    func setSchedules(_ command: Aspire_V1_Command) -> Aspire_V1_CommandResult {
        guard case .schedules(let params)? = command.params else {
            return .failed(id: command.id, .invalidParams, "schedule.set needs the schedules")
        }
        let commands = params.schedules.map { schedule in
            ScheduledCommand(
                name: schedule.name, expression: schedule.expr, timeZone: schedule.tz, user: schedule.user, group: schedule.group,
                command: schedule.command, timeout: schedule.timeout, enabled: !schedule.disabled
            )
        }
        let refused: [(name: String, error: AspireError)]
        do {
            refused = try self.scheduler.replace(commands, digest: params.digest)
        } catch {
            return .failed(id: command.id, error.code, error.cause)
        }
        self.logger.notice("schedules set", metadata: ["schedules": "\(commands.count - refused.count)", "refused": "\(refused.count)"])
        var result = Aspire_V1_CommandResult()
        result.id = command.id
        let names = commands.map(\.name).filter { name in !refused.contains { $0.name == name } }
        result.data = Data((try? JSONSerialization.data(withJSONObject: ["schedules": names], options: [.sortedKeys])) ?? Data())
        guard let first = refused.first else {
            result.resp = .success
            result.message = "success"
            return result
        }
        let reasons = refused.map(\.error.cause).joined(separator: "; ")
        let event = Aspire_V1_Event(category: "schedule", message: "\(refused.count) schedule\(refused.count == 1 ? "" : "s") refused: \(reasons)")
        self.send(.event(event))
        result.resp = .failed
        result.retcode = first.error.code.rawValue
        result.message = event.message
        return result
    }

    private struct AppliedConfig: Encodable {
        var step: Int32
        var svrlist: String
        var tags: [String: String]
    }

    public func run() async throws {
        _ = try self.configuration.security
        self.logger.notice(
            "agent starting",
            metadata: [
                "agent.sn": "\(self.agentSN)", "agent.version": "\(AspireVersion.current)",
                "agent.servers": "\(self.configuration.servers.map(\.description).joined(separator: ","))",
                "agent.data": "\(self.configuration.dataDirectory)",
            ]
        )
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask {
                        try await Connector(runtime: self).run()
                    }
                    group.addTask {
                        await self.supervisor.run()
                    }
                    group.addTask {
                        await self.scheduler.run()
                    }
                    await self.plugins.setDownloads(store: self.storeDownload, web: self.webDownload)
                    group.addTask {
                        await self.plugins.run()
                    }
                    group.addTask {
                        await self.shipMetrics()
                    }
                    if let socket = self.configuration.controlSocket {
                        group.addTask {
                            // Without it the agent still does its work: said loudly, not fatal.
                            do {
                                try await LocalControl(path: socket, runtime: self, logger: self.logger).run()
                            } catch is CancellationError {
                            } catch {
                                self.logger.error("local control interface not available", metadata: ["control.socket": "\(socket)", "error": "\(error)"])
                            }
                        }
                    }
                    group.addTask {
                        // Outbox writes reach the disk in batches, off the commands' path.
                        for await _ in self.state.flushRequests {
                            try await Task.sleep(for: .milliseconds(20))
                            self.state.flush()
                        }
                    }
                    for await command in self.commands {
                        group.addTask { await self.execute(command) }
                    }
                }
            }
        } catch is CancellationError {
            // A graceful stop cancels the connector and running commands: not an error.
        }
        self.state.flush()
        self.logger.notice("agent stopped", metadata: ["agent.sn": "\(self.agentSN)"])
    }

    /// Queues a command pushed by the server.
    func submit(_ command: Aspire_V1_Command) {
        self.commandInput.yield(command)
    }

    private func execute(_ command: Aspire_V1_Command) async {
        var logger = self.logger
        logger[metadataKey: "command.id"] = "\(command.id)"
        logger[metadataKey: "command.method"] = "\(command.method)"
        guard !command.id.isEmpty else {
            logger.warning("command without an id ignored")
            return
        }
        let admission: AgentState.Admission
        do {
            admission = try self.state.admit(command.id)
        } catch {
            logger.error("cannot record the command in the data directory", metadata: ["error": "\(error)"])
            self.send(.result(.failed(id: command.id, .agentInternal, "agent cannot write its data directory: \(error)")))
            return
        }
        let result: Aspire_V1_CommandResult
        switch admission {
        case .run:
            logger.info("running command")
            let sequence = Atomic<UInt64>(0)
            if command.method == "config" {
                result = self.configure(command)
                break
            }
            if command.method == "schedule.set" {
                result = self.setSchedules(command)
                break
            }
            if PluginManager.methods.contains(command.method) {
                result = await self.plugins.perform(command)
                break
            }
            if Supervisor.methods.contains(command.method) {
                result = await self.supervisor.perform(command)
                break
            }
            result = await self.runner.run(command) { stream, chunk in
                var output = Aspire_V1_CommandOutput()
                output.id = command.id
                output.seq = sequence.add(1, ordering: .relaxed).newValue
                output.stream = stream
                output.chunk = Data(chunk)
                self.send(.output(output))
            }
            logger.info(
                "command finished",
                metadata: ["command.resp": "\(result.resp)", "command.retcode": "\(result.retcode)"]
            )
        case .resend(let stored):
            logger.info("command already ran; sending its result again")
            self.send(.result(stored))
            return
        case .acknowledged, .running:
            logger.info("command already handled; not running it again")
            return
        case .interrupted:
            logger.warning("command was running when the agent stopped; not running it again")
            result = .failed(id: command.id, .interrupted, "the agent restarted while the command ran; it was not run again")
        }
        self.deliver(result, logger: logger)
    }

    /// Puts a result in the outbox (where it waits for the server's acknowledgement), then
    /// sends it on the open stream, if any.
    private func deliver(_ result: Aspire_V1_CommandResult, logger: Logger) {
        do {
            try self.state.finish(result)
        } catch {
            logger.error("cannot store the result in the outbox", metadata: ["error": "\(error)"])
        }
        self.send(.result(result))
    }

    /// Sends a message on the open stream; dropped when none is open (results stay in the
    /// outbox). False when it was dropped.
    @discardableResult
    func send(_ body: Aspire_V1_AgentMessage.OneOf_Body) -> Bool {
        var message = Aspire_V1_AgentMessage()
        message.body = body
        return self.sink.withLock { sink in
            guard let sink, case .enqueued = sink.yield(message) else { return false }
            return true
        }
    }

    /// Sends queued plugin metrics every second while a stream is open.
    private func shipMetrics() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            while true {
                let (batch, dropped) = self.metrics.take()
                if dropped > 0 {
                    self.logger.warning("plugin metrics dropped: too many waiting for a connection", metadata: ["count": "\(dropped)"])
                }
                guard !batch.isEmpty else { break }
                var metrics = Aspire_V1_MetricBatch()
                metrics.metrics = batch
                guard self.send(.metrics(metrics)) else {
                    self.metrics.putBack(batch)
                    break
                }
            }
        }
    }

    /// Makes `continuation` the stream results go to, and re-sends every unacknowledged result.
    func attach(_ continuation: AsyncStream<Aspire_V1_AgentMessage>.Continuation, client: GRPCClient<HTTP2ClientTransport.Posix>) {
        self.sink.withLock { $0 = continuation }
        self.client.withLock { $0 = client }
        let pending = self.state.pendingResults()
        if !pending.isEmpty {
            self.logger.info("re-sending unacknowledged results", metadata: ["count": "\(pending.count)"])
        }
        for result in pending {
            var message = Aspire_V1_AgentMessage()
            message.result = result
            continuation.yield(message)
        }
    }

    func detach() {
        self.sink.withLock { $0 = nil }
        self.client.withLock { $0 = nil }
    }

    func acknowledge(_ ids: [String]) {
        self.state.acknowledge(ids)
    }

    var hello: Aspire_V1_Hello {
        var hello = Aspire_V1_Hello()
        hello.agentSn = self.agentSN
        hello.hostname = ProcessInfo.processInfo.hostName
        hello.version = AspireVersion.current
        hello.os = "linux"
        hello.arch = GetInfo.uname().machine
        hello.tags = self.tags
        hello.uptime = Int64(Date().timeIntervalSince(self.startedAt))
        hello.schedulesDigest = self.scheduler.digest
        hello.pluginsDigest = self.plugins.digest
        return hello
    }

    /// What `/me/status` of the local interface answers.
    var localStatus: [String: Any] {
        [
            "agentsn": self.agentSN, "version": AspireVersion.current, "hostname": ProcessInfo.processInfo.hostName,
            "uptime": Int(Date().timeIntervalSince(self.startedAt)), "servers": self.servers.map(\.description),
            "connected": self.sink.withLock { $0 != nil }, "tags": self.tags, "step": Int(self.step.load(ordering: .relaxed)),
            "plugins": self.plugins.runner.states.count, "schedules_digest": self.scheduler.digest, "plugins_digest": self.plugins.digest,
            "metrics_waiting": self.metrics.count,
        ]
    }

    var statusReport: Aspire_V1_StatusReport {
        var report = Aspire_V1_StatusReport()
        report.hostname = ProcessInfo.processInfo.hostName
        report.version = AspireVersion.current
        report.uptime = Int64(Date().timeIntervalSince(self.startedAt))
        report.timestamp = Int64(Date().timeIntervalSince1970)
        report.step = self.step.load(ordering: .relaxed)
        report.tags = self.tags
        report.agents = self.supervisor.statuses
        return report
    }
}
