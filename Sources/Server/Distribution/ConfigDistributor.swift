import Foundation
public import Logging
import RPC
public import ServiceLifecycle
import Synchronization

/// Keeps every agent held by this node running the schedules and plugins that target it. An
/// agent gets each whole set (`schedule.set`, `plugin.set`) when its stream opens, when it
/// reports (its tags may have changed), and whenever the sets change — here at once, on other
/// nodes within a sweep, which sees the store's revisions move. A set goes only when its digest
/// differs from the one the agent has (said in Hello, then the last one sent): a reconnecting
/// fleet whose sets did not change is sent nothing. The agent keeps them on disk and runs them
/// connected or not.
public final class ConfigDistributor: Service {
    /// How often the node looks at the store's revisions.
    let interval: Duration
    let store: SQLStore
    let registry: SessionRegistry
    let logger: Logger
    private let cache = Mutex<(revision: String?, schedules: [ScheduleRecord], plugins: [PluginRecord])>((nil, [], []))
    /// The revision every session here was last checked against (a `refresh` may load a new
    /// revision for one agent before the sweep takes it to all).
    private let swept = Mutex<String?>(nil)

    public init(store: SQLStore, registry: SessionRegistry, interval: Duration = .seconds(2), logger: Logger) {
        self.store = store
        self.registry = registry
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: self.interval)
                await self.sweep()
            }
        }
    }

    /// Sends every agent held here its sets when they changed in the store.
    public func sweep() async {
        do {
            try await self.reload()
            let revision = self.cache.withLock { $0.revision }
            guard self.swept.withLock({ $0 }) != revision else { return }
            self.swept.withLock { $0 = revision }
            let sessions = self.registry.sessions
            let tags = try await self.store.tags(ofAgents: sessions.map(\.agentSN))
            var sent = 0
            for session in sessions where self.send(to: session, tags: tags[session.agentSN] ?? [:]) {
                sent += 1
            }
            if sent > 0 {
                self.logger.info("schedules and plugins sent", metadata: ["agents": "\(sent)"])
            }
        } catch is CancellationError {
        } catch {
            self.logger.error("cannot send schedules and plugins", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    /// Sends one agent its sets where they differ from what it has. Called on every connect
    /// and status report, so it reads the cached set (the sweep keeps it within an interval of
    /// the store, and sends any newer set to every agent here) and only its host's tags.
    public func refresh(agentSN: String) async {
        guard let session = self.registry.session(for: agentSN) else { return }
        do {
            if self.cache.withLock({ $0.revision }) == nil { try await self.reload() }
            let tags = try await self.store.tags(ofAgents: [agentSN])[agentSN] ?? [:]
            if self.send(to: session, tags: tags) {
                self.logger.debug("schedules or plugins sent", metadata: ["agent.sn": "\(agentSN)"])
            }
        } catch {
            self.logger.error("cannot send schedules and plugins", metadata: ["agent.sn": "\(agentSN)", "error": "\(String(reflecting: error))"])
        }
    }

    /// Reads the sets again when the store's revisions moved; true when they did.
    @discardableResult
    private func reload() async throws -> Bool {
        let revision = "\(try await self.store.scheduleRevision())/\(try await self.store.pluginRevision())"
        guard self.cache.withLock({ $0.revision }) != revision else { return false }
        let schedules = try await self.store.schedules()
        let plugins = try await self.store.plugins()
        self.cache.withLock { $0 = (revision, schedules, plugins) }
        return true
    }

    /// Sends the agent each set that changed; true when one was sent.
    private func send(to session: AgentSession, tags: [String: String]) -> Bool {
        let (schedules, plugins) = self.cache.withLock { ($0.schedules, $0.plugins) }
        var sent = false
        var scheduleSet = Aspire_V1_ScheduleParams()
        scheduleSet.schedules = schedules.filter { $0.targets(agentSN: session.agentSN, tags: tags) }.map(Aspire_V1_Schedule.init(_:))
        if session.digestChanged(.schedules, to: scheduleSet.digest) {
            sent = session.send(command: Self.command(.scheduleSet, .schedules(scheduleSet), id: "schedules")) || sent
        }
        var pluginSet = Aspire_V1_PluginParams()
        pluginSet.plugins = plugins.filter { $0.targets(agentSN: session.agentSN, tags: tags) }.map(\.plugin)
        if session.digestChanged(.plugins, to: pluginSet.digest) {
            sent = session.send(command: Self.command(.plugin(.set), .plugins(pluginSet), id: "plugins")) || sent
        }
        return sent
    }

    /// A set to send: a fresh id every time (`kind:UUID`), since the agent runs an id once and a
    /// set may come back to an earlier one.
    private static func command(_ method: CommandMethod, _ params: Aspire_V1_Command.OneOf_Params, id kind: String) -> Aspire_V1_Command {
        Aspire_V1_Command(id: "\(kind):\(UUID().uuidString.lowercased())", method, params)
    }
}

extension Aspire_V1_Schedule {
    init(_ record: ScheduleRecord) {
        self.init()
        self.name = record.name
        self.expr = record.expression
        self.tz = record.timeZone
        self.user = record.user
        self.group = record.group
        self.command = record.command
        self.timeout = Int32(clamping: record.timeout)
        self.disabled = !record.enabled
    }
}
