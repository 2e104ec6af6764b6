#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging
import RPC
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
    /// Where every part sends what the server must hear.
    let uplink: Uplink
    /// The command line's settings with what `config` commands changed.
    let settings: LiveSettings
    /// Which part answers each method.
    let handlers: CommandHandlers
    public let supervisor: Supervisor
    /// What the host's deployments declare, kept running through the supervisor.
    public let deployments: DeploymentKeeper
    /// Scheduled commands; their results go through the outbox like any other.
    public let scheduler: Scheduler
    /// Plugins: fetched, run on their periods or on demand; their metrics go out in batches.
    public let plugins: PluginManager
    let resolver: any AddressResolver
    /// The host's certificate: enrolled for, presented, renewed.
    let enrollment: Enrollment
    let logger: Logger
    let startedAt = Date()
    /// Checked once, at start.
    let missingTools = Tools.missing()

    /// Where commands get their cgroups (nil without a writable hierarchy).
    private let commandGroups: CommandGroups?
    private let commands: AsyncStream<Aspire_V1_Command>
    private let commandInput: AsyncStream<Aspire_V1_Command>.Continuation

    public init(configuration: AgentConfiguration, logger: Logger, resolver: (any AddressResolver)? = nil) throws {
        self.configuration = configuration
        self.logger = logger
        let state = try AgentState(directory: configuration.dataDirectory)
        let uplink = Uplink(state: state, logger: logger)
        let settings = LiveSettings(configuration: configuration, uplink: uplink, logger: logger)
        self.state = state
        self.uplink = uplink
        self.settings = settings
        self.agentSN = try configuration.agentSN ?? state.agentSN()
        self.enrollment = Enrollment(configuration: configuration, agentSN: self.agentSN, logger: logger)
        self.resolver = resolver ?? SystemResolver(overrides: configuration.resolveOverrides)
        (self.commands, self.commandInput) = AsyncStream.makeStream(of: Aspire_V1_Command.self)

        // Packages come over the open connection (the server's store) or from the web; the
        // enrollment token goes only to the agent's own servers.
        let web = WebDownload(
            caFile: configuration.caFile,
            enrollmentToken: configuration.enrollmentToken,
            serverHosts: { Set(settings.servers.map { $0.host.lowercased() }) },
            logger: logger
        )
        let downloads = PackageFetcher(store: uplink.storeDownload, web: web.callAsFunction)
        var bashConfiguration = configuration.bash
        // Commands' groups beside the sub-agents' parent group.
        bashConfiguration.groups?.parent = configuration.supervisor.cgroupParent
        bashConfiguration.groups?.owner = configuration.dataDirectory
        self.commandGroups = bashConfiguration.groups
        let bash = BashExecutor(configuration: bashConfiguration, logger: logger)
        self.supervisor = try Supervisor(
            configuration: configuration.supervisor, dataDirectory: configuration.dataDirectory, downloads: downloads,
            onChange: { event in
                // A sub-agent changed: the server hears of it at once, not at the next step.
                if let event { uplink.event(event) }
                uplink.statusChanged()
            },
            logger: logger
        )
        self.deployments = DeploymentKeeper(
            supervisor: self.supervisor, dataDirectory: configuration.dataDirectory,
            upgrade: SelfUpgrade(dataDirectory: configuration.dataDirectory, version: configuration.version, window: configuration.upgradeWindow),
            beforeHandover: { state.flush() }, onChange: { uplink.statusChanged() }, logger: logger
        )
        self.scheduler = Scheduler(
            dataDirectory: configuration.dataDirectory, bash: bash,
            delivery: { result in
                // A scheduled run's result waits in the outbox until the server acknowledges it.
                var logger = logger
                logger[metadataKey: "command.id"] = "\(result.id)"
                uplink.deliver(result, logger: logger)
            },
            events: uplink.event,
            logger: logger
        )
        self.plugins = PluginManager(
            directory: configuration.pluginsDirectory, dataDirectory: configuration.dataDirectory, host: ProcessInfo.processInfo.hostName,
            bash: bash, downloads: downloads,
            metrics: { metrics in uplink.metrics.append(metrics) },
            events: { plugin, message in uplink.event(Aspire_V1_Event(category: "plugin", message: message, attributes: ["plugin": plugin])) },
            logger: logger
        )
        self.handlers = CommandHandlers([
            ([.bash], bash),
            (GetInfo.methods, GetInfo()),
            (Supervisor.methods, self.supervisor),
            ([.config], settings),
            ([.scheduleSet], self.scheduler),
            ([.deploymentSet], self.deployments),
            (PluginManager.methods, self.plugins),
        ])
    }

    /// Connected, the agent runs a sliver of the code starting ran: those pages go back once
    /// the first connection has settled, and what work mapped since goes back every few minutes.
    private func releaseCodePages() async throws {
        var attachments = self.uplink.attachments.makeAsyncIterator()
        guard await attachments.next() != nil else { return }
        try await Task.sleep(for: self.configuration.releaseCodePagesAfter)
        let released = CodePages.release()
        self.logger.info(
            "released the pages start-up mapped",
            metadata: ["memory.released_kib": "\(released.bytes / 1024)", "memory.mappings": "\(released.mappings)"]
        )
        while true {
            try await Task.sleep(for: self.configuration.releaseCodePagesEvery)
            let released = CodePages.release()
            self.logger.debug("released mapped code pages", metadata: ["memory.released_kib": "\(released.bytes / 1024)"])
        }
    }

    public func run() async throws {
        _ = try self.configuration.security
        if !self.missingTools.isEmpty {
            self.logger.error("tools missing on this host; what needs them will fail", metadata: ["tools.missing": "\(self.missingTools.joined(separator: ", "))"])
        }
        self.logger.notice(
            "agent starting",
            metadata: [
                "agent.sn": "\(self.agentSN)", "agent.version": "\(self.configuration.version)",
                "agent.servers": "\(self.configuration.servers.map(\.description).joined(separator: ","))",
                "agent.data": "\(self.configuration.dataDirectory)",
            ]
        )
        await self.stopInterruptedCommands()
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
                        await self.deployments.run()
                    }
                    group.addTask {
                        await self.scheduler.run()
                    }
                    group.addTask {
                        await self.plugins.run()
                    }
                    group.addTask {
                        await self.uplink.shipMetrics()
                    }
                    group.addTask {
                        for await _ in self.uplink.statusWanted {
                            self.uplink.send(.status(self.statusReport))
                        }
                    }
                    if let address = self.configuration.controlListen {
                        group.addTask {
                            do {
                                try await LocalControl.listen(on: address, runtime: self, logger: self.logger)
                            } catch is CancellationError {
                            } catch {
                                self.logger.error("local control interface not available", metadata: ["control.listen": "\(address)", "error": "\(error)"])
                            }
                        }
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
                        try await self.releaseCodePages()
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

    /// Kills what the commands an earlier life of the agent was running when it died (SIGKILL,
    /// a crash, a service manager's `KillMode=process`) left running: they are reported
    /// interrupted and not run again, so nothing of them may go on unwatched. Found by their
    /// cgroups (without one, a command's processes cannot be told from others').
    private func stopInterruptedCommands() async {
        guard let groups = self.commandGroups else { return }
        for id in self.state.interruptedCommands() {
            guard let group = groups.leftover(of: id) else { continue }
            let processes = group.processes.count
            await group.killAll()
            group.remove()
            if processes > 0 {
                self.logger.warning(
                    "killed what an interrupted command left running",
                    metadata: ["command.id": "\(id)", "command.processes": "\(processes)", "command.cgroup": "\(group.path)"]
                )
            }
        }
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
            self.uplink.send(.result(.failed(id: command.id, .agentInternal, "agent cannot write its data directory: \(error)")))
            return
        }
        let result: Aspire_V1_CommandResult
        switch admission {
        case .run:
            logger.info("running command")
            let sequence = Atomic<UInt64>(0)
            result = await self.handlers.run(command) { stream, chunk in
                var output = Aspire_V1_CommandOutput()
                output.id = command.id
                output.seq = sequence.add(1, ordering: .relaxed).newValue
                output.stream = stream
                output.chunk = Data(chunk)
                self.uplink.send(.output(output))
            }
            logger.info(
                "command finished",
                metadata: ["command.resp": "\(result.resp)", "command.retcode": "\(result.retcode)"]
            )
        case .resend(let stored):
            logger.info("command already ran; sending its result again")
            self.uplink.send(.result(stored))
            return
        case .acknowledged, .running:
            logger.info("command already handled; not running it again")
            return
        case .interrupted:
            logger.warning("command was running when the agent stopped; not running it again")
            result = .failed(
                id: command.id, .interrupted,
                "the agent restarted while the command ran; it was not run again\(self.commandGroups == nil ? "" : ", and what it left running was killed")"
            )
        }
        self.uplink.deliver(result, logger: logger)
    }

    func acknowledge(_ ids: [String]) {
        self.uplink.acknowledged(ids)
    }

    var hello: Aspire_V1_Hello {
        var hello = Aspire_V1_Hello()
        hello.agentSn = self.agentSN
        hello.hostname = ProcessInfo.processInfo.hostName
        hello.version = self.configuration.version
        hello.os = "linux"
        hello.arch = GetInfo.uname().machine
        hello.tags = self.settings.tags
        hello.uptime = Int64(Date().timeIntervalSince(self.startedAt))
        hello.schedulesDigest = self.scheduler.digest
        hello.pluginsDigest = self.plugins.digest
        hello.deploymentsDigest = self.deployments.digest
        hello.missingTools = self.missingTools
        return hello
    }

    /// What `/me/status` of the local interface answers.
    var localStatus: JSONValue {
        [
            "agentsn": JSONValue(self.agentSN), "version": JSONValue(self.configuration.version), "hostname": JSONValue(ProcessInfo.processInfo.hostName),
            "uptime": JSONValue(Int(Date().timeIntervalSince(self.startedAt))), "servers": JSONValue(self.settings.servers.map(\.description)),
            "connected": JSONValue(self.uplink.isConnected), "tags": JSONValue(self.settings.tags), "step": JSONValue(self.settings.step.load(ordering: .relaxed)),
            "plugins": JSONValue(self.plugins.runner.states.count), "schedules_digest": JSONValue(self.scheduler.digest),
            "plugins_digest": JSONValue(self.plugins.digest), "metrics_waiting": JSONValue(self.uplink.metrics.count),
            "missing_tools": JSONValue(self.missingTools),
        ]
    }

    var statusReport: Aspire_V1_StatusReport {
        var report = Aspire_V1_StatusReport()
        report.hostname = ProcessInfo.processInfo.hostName
        report.version = self.configuration.version
        report.uptime = Int64(Date().timeIntervalSince(self.startedAt))
        report.timestamp = Int64(Date().timeIntervalSince1970)
        report.step = self.settings.step.load(ordering: .relaxed)
        report.tags = self.settings.tags
        report.agents = self.supervisor.statuses
        if let agent = self.deployments.selfStatus(startedAt: self.startedAt) { report.agents.append(agent) }
        report.deployments = self.deployments.states
        return report
    }
}
