import Foundation
public import Logging
import RPC
public import ServiceLifecycle
import Synchronization

/// Keeps every agent held by this node running the schedules, plugins and deployments that
/// target it. An agent gets each whole set (`schedule.set`, `plugin.set`, `deployment.set`)
/// when its stream opens, when it reports, and whenever the sets or its tags change — here at
/// once, on other nodes within a sweep, which sees the store's revisions move. A set goes only when its digest
/// differs from the one the agent has (said in Hello, then the last one sent): a reconnecting
/// fleet whose sets did not change is sent nothing. The agent keeps them on disk and runs them
/// connected or not.
public final class ConfigDistributor: Service {
    /// How often the node looks at the store's revisions.
    let interval: Duration
    let store: SQLStore
    let registry: SessionRegistry
    let logger: Logger
    private let cache = Mutex<Sets>(Sets())

    /// What the store says every agent's sets are made of, at one revision.
    struct Sets {
        var revision: String?
        var schedules: [ScheduleRecord] = []
        var plugins: [PluginRecord] = []
        var deployments: [DeploymentRecord] = []
        /// The hosts each rollout moved, by deployment.
        var moves: [String: Set<String>] = [:]
        /// The builds of every store package a deployment names, by name and version.
        var builds: [String: [PackageRecord]] = [:]
    }
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
        try await repeatEvery(self.interval) { await self.sweep() }
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
                self.logger.info("schedules, plugins or deployments sent", metadata: ["agents": "\(sent)"])
            }
        } catch is CancellationError {
        } catch {
            self.logger.error("cannot send schedules, plugins and deployments", metadata: ["error": "\(String(reflecting: error))"])
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
                self.logger.debug("schedules, plugins or deployments sent", metadata: ["agent.sn": "\(agentSN)"])
            }
        } catch {
            self.logger.error("cannot send schedules, plugins and deployments", metadata: ["agent.sn": "\(agentSN)", "error": "\(String(reflecting: error))"])
        }
    }

    /// Reads the sets again when the store's revisions moved (tags bound or unbound move one
    /// too: they change which hosts a set targets); true when they did.
    @discardableResult
    private func reload() async throws -> Bool {
        let revision = try await self.store.distributionRevision()
        guard self.cache.withLock({ $0.revision }) != revision else { return false }
        var sets = Sets(revision: revision)
        sets.schedules = try await self.store.schedules()
        sets.plugins = try await self.store.plugins()
        sets.deployments = try await self.store.deployments()
        sets.moves = try await self.store.deploymentMoves()
        for record in sets.deployments {
            for spec in [record.spec, record.stable].compactMap({ $0 }) where spec.url.isEmpty {
                let key = Self.buildKey(spec)
                if sets.builds[key] == nil { sets.builds[key] = try await self.store.builds(name: spec.name, version: spec.version) }
            }
        }
        self.cache.withLock { $0 = sets }
        return true
    }

    /// Sends the agent each set that changed; true when one was sent.
    private func send(to session: AgentSession, tags: [String: String]) -> Bool {
        let sets = self.cache.withLock { $0 }
        var sent = false
        var scheduleSet = Aspire_V1_ScheduleParams()
        scheduleSet.schedules = sets.schedules.filter { $0.targets(agentSN: session.agentSN, tags: tags) }.map(Aspire_V1_Schedule.init(_:))
        if session.digestChanged(.schedules, to: scheduleSet.digest) {
            sent = session.send(command: Self.command(.scheduleSet, .schedules(scheduleSet), id: "schedules")) || sent
        }
        var pluginSet = Aspire_V1_PluginParams()
        pluginSet.plugins = sets.plugins.filter { $0.targets(agentSN: session.agentSN, tags: tags) }.map(\.plugin)
        if session.digestChanged(.plugins, to: pluginSet.digest) {
            sent = session.send(command: Self.command(.plugin(.set), .plugins(pluginSet), id: "plugins")) || sent
        }
        let deploymentSet = Self.deploymentSet(sets, agentSN: session.agentSN, tags: tags, os: session.hello.os, arch: session.hello.arch)
        if session.digestChanged(.deployments, to: deploymentSet.digest) {
            sent = session.send(command: Self.command(.deploymentSet, .deployments(deploymentSet), id: "deployments")) || sent
        }
        return sent
    }

    /// What one host must run of every deployment matching its tags: the revision the rollout
    /// gives it, with the store build for its os and arch.
    static func deploymentSet(_ sets: Sets, agentSN: String, tags: [String: String], os: String, arch: String) -> Aspire_V1_DeploymentParams {
        var set = Aspire_V1_DeploymentParams()
        for record in sets.deployments where record.matches(tags: tags) {
            let (spec, revision) = record.target(moved: sets.moves[record.name]?.contains(agentSN) ?? false)
            var entry = Aspire_V1_DeployedAgent()
            entry.agent = spec.subAgent
            entry.revision = revision
            entry.removeOnLeave = record.removesOnLeave
            if spec.url.isEmpty {
                let builds = sets.builds[Self.buildKey(spec)] ?? []
                if let build = builds.first(where: { $0.os == os && $0.arch == arch }) {
                    entry.agent.url = build.url
                    entry.agent.checksum = "SHA256:\(build.sha256)"
                } else {
                    let have = builds.map { "\($0.os)/\($0.arch)" }.sorted().joined(separator: ", ")
                    entry.unavailable = "the store has \(spec.name) \(spec.version) for \(have.isEmpty ? "no platform" : have), not for \(os)/\(arch)"
                }
            }
            set.deployments.append(entry)
        }
        return set
    }

    private static func buildKey(_ spec: Aspire_V1_DeploymentSpec) -> String { "\(spec.name)\u{0}\(spec.version)" }

    /// A set to send: a fresh id every time (`kind:UUID`), since the agent runs an id once and a
    /// set may come back to an earlier one.
    private static func command(_ method: CommandMethod, _ params: Aspire_V1_Command.OneOf_Params, id kind: String) -> Aspire_V1_Command {
        Aspire_V1_Command(id: "\(kind):\(UUID.random().uuidString.lowercased())", method, params)
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
