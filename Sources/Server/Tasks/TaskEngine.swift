import Foundation
public import Logging
public import RPC
public import ServiceLifecycle
import SwiftProtobuf
import Synchronization

/// Drives tasks on this node: creates them, pushes their subtasks to the agents this node holds
/// (at once, when an agent connects, and on a sweep), honours rate control, and stores results.
///
/// Everything it decides is in the store first, so a node that stops loses nothing: another
/// node (or this one, restarted) picks the deliveries up on its sweep.
public final class TaskEngine: Service {
    public struct Configuration: Sendable {
        /// A dispatched subtask with no result is sent again after this (the agent runs a
        /// command id once; a repeat only fetches the result).
        public var redeliverAfter: Duration = .seconds(60)
        /// A subtask whose host never connects becomes undeliverable after this.
        public var deliveryTimeout: Duration = .seconds(24 * 3600)
        /// How often the node looks for due deliveries of its agents.
        public var sweepInterval: Duration = .seconds(2)
        /// Window of a tag task that names none.
        public var defaultWindow: Duration = .seconds(3600)

        public init() {}
    }

    /// How a task is made, besides its request.
    public struct Options: Sendable {
        /// The id of the one subtask of a one-host task (a command id its caller chose).
        public var commandID: String?
        /// The agent streams the command's output while it runs (someone follows it).
        public var streamOutput = false
        /// Wake the nodes holding the task's hosts at once; off when the caller watches the one
        /// host's node itself (a watch sends what is due).
        public var wakePeers = true
        /// Hosts held by other nodes whose subtasks are stored dispatched already: the caller
        /// has their node send them (a command's watch carries it).
        public var sentElsewhere: Set<String> = []

        public init() {}
    }

    let configuration: Configuration
    let store: SQLStore
    let registry: SessionRegistry
    /// The other nodes, woken for the work created here for the hosts they hold; nil alone.
    let links: NodeLinks?
    let logger: Logger
    /// Results from every stream, stored in shared transactions.
    private let results: GroupCommit<AgentResult, Result<TaskRecord?, any Error>>
    /// The agents a dispatch pass runs for now.
    private let passes = DispatchPasses()

    public init(configuration: Configuration = .init(), store: SQLStore, registry: SessionRegistry, links: NodeLinks? = nil, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.registry = registry
        self.links = links
        self.logger = logger
        self.results = GroupCommit(maxBatch: 2000) { batch in
            do {
                // Scheduled runs (``ScheduleRunID``) are kept beside the tasks' results.
                let runs = batch.filter { $0.result.id.hasPrefix(ScheduleRunID.prefix) }
                if !runs.isEmpty { try await store.recordScheduleRuns(runs) }
                return try await store.recordResults(batch).map { .success($0) }
            } catch {
                return Array(repeating: .failure(error), count: batch.count)
            }
        }
    }

    // MARK: Creating

    /// Validates and stores a task, then sends what can be sent now.
    public func create(
        _ request: Aspire_V1_CreateTaskRequest, actor: String = "", options: Options = .init()
    ) async throws -> (TaskRecord, [SubtaskRecord]) {
        var request = request
        // Refuse bad parameters before anything is stored or sent.
        var typed = try CommandParameters.command(method: request.command, parameters: request.parameters)
        let method = try typed.checkedMethod()
        if case .subAgent(let action) = method, action.installs {
            request.parameters = try await self.resolvePackage(request.parameters, command: request.command)
            typed = try CommandParameters.command(method: request.command, parameters: request.parameters)
        }
        typed.streamOutput = options.streamOutput
        let byHosts = !request.agents.isEmpty
        let byTags = !request.tags.isEmpty
        guard byHosts != byTags else {
            throw AspireError(.badRequest, "target either agents (a list of AgentSNs) or tags, not \(byHosts ? "both" : "neither")")
        }
        for agent in request.agents {
            try AgentIdentity.validate(agentSN: agent)
        }
        // As new tasks write them (stored ones are read as they were written).
        try RateLimitText.check(request.maxConcurrency, field: "max_concurrency")
        try RateLimitText.check(request.maxErrors, field: "max_errors")
        let now = Date().unixMilliseconds
        var start: Int64 = 0
        var end: Int64 = 0
        if byTags {
            start = request.window.startUnixMs > 0 ? request.window.startUnixMs : now
            end = request.window.endUnixMs > 0 ? request.window.endUnixMs : start + self.configuration.defaultWindow.milliseconds
            // Two values the document cannot compare: well-formed, and still refused.
            guard end > start else { throw AspireError(.unprocessable, "the window must end after it starts") }
        }
        let body = try request.parameters.jsonString()
        var new = NewTask(
            user: request.user, command: request.command, body: body, typed: typed, selector: request.tags, windowStart: start,
            windowEnd: end, maxConcurrency: request.maxConcurrency, maxErrors: request.maxErrors
        )
        new.actor = actor
        // The hosts held here get their subtasks as soon as they are stored, and those are
        // stored dispatched in the same transaction (a task with rate control claims its places
        // as it sends).
        let rateControlled = !request.maxConcurrency.isEmpty || !request.maxErrors.isEmpty
        let held = rateControlled ? [] : Set(request.agents.filter { self.registry.session(for: $0) != nil })
        var (task, subtasks) = try await self.store.createTask(
            new, agents: request.agents, subtaskID: options.commandID, claimed: held.union(options.sentElsewhere), retryAfter: self.retryAfter
        )
        if byTags, start <= now {
            // Hosts online now that carry the tags join at once; the others when they connect.
            var query = HostQuery()
            query.tags = request.tags
            query.status = .online
            query.page = Page(offset: 0, limit: Int(Int32.max))
            for host in try await self.store.hosts(query).items {
                if let subtask = try await self.store.addSubtask(taskID: task.id, agentSN: host.agentSN) {
                    subtasks.append(subtask)
                }
            }
            task = try await self.store.task(id: task.id) ?? task
        }
        self.logger.info(
            "task created",
            metadata: ["task.id": "\(task.id)", "task.command": "\(task.command)", "task.hosts": "\(subtasks.count)"]
        )
        let target = task.selector.isEmpty
            ? "\(subtasks.count) host\(subtasks.count == 1 ? "" : "s")"
            : "hosts tagged \(task.selector.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))"
        // Direct commands (a host's one command, RunCommand) are in the audit trail; events
        // would only repeat them at their rate.
        if options.commandID == nil {
            await self.store.recordServerEvent("task", "task \(task.id) created by \(actor.isEmpty ? "an operator" : actor): \(task.command) on \(target)")
        }
        try await self.sendNew(task, subtasks, claimed: held, wakePeers: options.wakePeers)
        return (task, subtasks)
    }

    /// An install or upgrade without a url installs a package of the store: its url
    /// (`aspire://package/OS/ARCH/FILE`, fetched over the agent's own connection) and checksum
    /// are filled in from the store, and kept in the task as sent — or, when the store has
    /// builds of it for several platforms, chosen for each host as it is sent (see
    /// ``command(_:for:builds:)``). One with a url but no version (the seed's jobs carry none)
    /// takes the version its file name gives.
    func resolvePackage(_ parameters: Google_Protobuf_Struct, command: String) async throws -> Google_Protobuf_Struct {
        let fields = JSONFields(parameters.fields, context: command, code: .badRequest)
        let name = try fields.string("name")
        let version = try fields.string("version")
        let url = try fields.string("url")
        let checksum = try fields.string("checksum")
        guard url.isEmpty || (StoreFile.isStoreURL(url) && checksum.isEmpty) else {
            guard version.isEmpty else { return parameters }
            guard let named = PackageFileName.version(inURL: url, name: name) else {
                // The url against the name: well-formed, and still refused.
                throw AspireError(
                    .unprocessable,
                    "\(command) \(name): give a version; the url's file name does not carry one (\(name)-VERSION.tar.gz, .rpm or .deb)"
                )
            }
            var resolved = parameters
            resolved.fields["version"] = Google_Protobuf_Value(stringValue: named)
            return resolved
        }
        if url.isEmpty, !version.isEmpty, try await self.store.builds(name: name, version: version).count > 1 {
            return parameters
        }
        let package = try await self.store.storedPackage(name: name, version: version, url: url, context: "\(command) \(name)")
        var resolved = parameters
        resolved.fields["url"] = Google_Protobuf_Value(stringValue: package.url)
        resolved.fields["checksum"] = Google_Protobuf_Value(stringValue: "SHA256:\(package.sha256)")
        if version.isEmpty { resolved.fields["version"] = Google_Protobuf_Value(stringValue: package.version) }
        return resolved
    }

    // MARK: Delivering

    /// Sends a new task's subtasks to the hosts this node holds now, and wakes the nodes that
    /// hold the others; hosts offline get theirs when they connect.
    private func sendNew(_ task: TaskRecord, _ subtasks: [SubtaskRecord], claimed: Set<String>, wakePeers: Bool) async throws {
        var here: [SubtaskRecord] = []
        var elsewhere: [String] = []
        for subtask in subtasks {
            if self.registry.session(for: subtask.agentSN) != nil { here.append(subtask) } else { elsewhere.append(subtask.agentSN) }
        }
        var builds = Builds()
        let sent = try await self.send(
            here, of: task, claimed: Set(here.filter { claimed.contains($0.agentSN) }.map(\.id)), builds: &builds
        ) { subtask, command in
            self.registry.session(for: subtask.agentSN)?.send(command: command) ?? false
        }
        if sent > 0 {
            self.logger.debug("subtasks sent", metadata: ["task.id": "\(task.id)", "count": "\(sent)"])
        }
        if wakePeers { try await self.wakeHolders(of: elsewhere) }
    }

    /// Wakes the peer nodes that hold `agents` (hosts not held here), so they send what is due
    /// now rather than on their next sweep.
    private func wakeHolders(of agents: [String]) async throws {
        guard let links = self.links, !agents.isEmpty, links.cluster.active.count > 1 || links.cluster.draining else { return }
        var byNode: [String: [String]] = [:]
        for (agent, node) in try await self.store.holders(of: agents) where node != links.cluster.nodeName {
            byNode[node, default: []].append(agent)
        }
        for (node, agents) in byNode { links.wake(node, agents: agents) }
    }

    /// Sends the due subtasks of an agent this node holds; `inFlight` sends again those sent
    /// and not answered (the agent runs a command id once: a repeat only fetches its result).
    ///
    /// One pass per agent at a time: a dispatch asked for while one runs (a wake-up, a sweep,
    /// a status report, a freed place) makes it run once more instead of reading the same due
    /// subtasks beside it, which would send them twice.
    public func dispatch(to agentSN: String, inFlight: Bool = false) async {
        guard self.passes.begin(agentSN, inFlight: inFlight) else { return }
        await self.runPasses(for: agentSN, inFlight: inFlight)
    }

    /// Sends what is due to each of `agents` this node holds, batched: one read of their due
    /// subtasks and one claim per task, instead of a pass per agent (a wake-up for a task's
    /// hosts here, the sweep, a freed place).
    public func dispatch(to agents: [String]) async {
        let mine = agents.filter { self.registry.session(for: $0) != nil && self.passes.begin($0, inFlight: false) }
        guard !mine.isEmpty else { return }
        do {
            var tasks: [Int: TaskRecord] = [:]
            var due: [Int: [SubtaskRecord]] = [:]
            for subtask in try await self.store.dueSubtasks(agentSNs: mine) {
                if tasks[subtask.taskID] == nil { tasks[subtask.taskID] = try await self.store.task(id: subtask.taskID) }
                due[subtask.taskID, default: []].append(subtask)
            }
            var builds = Builds()
            var sent = 0
            for (id, subtasks) in due.sorted(by: { $0.key < $1.key }) {
                guard let task = tasks[id], task.status.isOpen else { continue }
                sent += try await self.send(subtasks, of: task, builds: &builds) { subtask, command in
                    self.registry.session(for: subtask.agentSN)?.send(command: command) ?? false
                }
            }
            if sent > 0 { self.logger.debug("subtasks sent", metadata: ["hosts": "\(mine.count)", "count": "\(sent)"]) }
        } catch {
            self.failed("cannot send subtasks", error, ["hosts": "\(mine.count)"])
        }
        // Passes asked for meanwhile run now, one agent at a time.
        for agent in mine {
            var inFlight = false
            if self.passes.again(agent, inFlight: &inFlight) { await self.runPasses(for: agent, inFlight: inFlight) }
        }
    }

    /// Logs a step that failed — unless it was cancelled, as the node's work is when it shuts
    /// down: nothing is lost then (what was due stays due in the store, a result not stored is not
    /// acknowledged and comes again), and an error line per agent would say otherwise.
    private func failed(_ message: Logger.Message, _ error: any Error, _ metadata: Logger.Metadata) {
        guard !(error is CancellationError) else { return }
        self.logger.error(message, metadata: metadata.merging(["error": "\(String(reflecting: error))"]) { $1 })
    }

    /// Runs the dispatch pass the caller began for `agentSN`, and the ones asked for meanwhile.
    private func runPasses(for agentSN: String, inFlight: Bool) async {
        var inFlight = inFlight
        repeat {
            guard let session = self.registry.session(for: agentSN) else { continue }
            do {
                let since = inFlight ? session.connectedAt.unixMilliseconds : nil
                try await self.deliver(to: agentSN, resendSince: since) { session.send(command: $0) }
            } catch {
                self.failed("cannot send subtasks", error, ["agent.sn": "\(agentSN)"])
            }
        } while self.passes.again(agentSN, inFlight: &inFlight)
    }

    /// The commands due for an agent that polls (the seed's plain-HTTP agents): it joins the
    /// open tag tasks it matches, and what is due counts as delivered once answered.
    public func poll(for agentSN: String) async throws -> [Aspire_V1_Command] {
        try await self.joinTagTasks(agentSN)
        var commands: [Aspire_V1_Command] = []
        try await self.deliver(to: agentSN, resendSince: nil) { command in
            commands.append(command)
            return true
        }
        return commands
    }

    /// Hands each due subtask of `agentSN` that rate control lets through to `send`; with
    /// `resendSince` (when its stream began), also those sent before then and not answered.
    private func deliver(to agentSN: String, resendSince: Int64?, send: (Aspire_V1_Command) -> Bool) async throws {
        var tasks: [Int: TaskRecord] = [:]
        var due: [Int: [SubtaskRecord]] = [:]
        for subtask in try await self.store.dueSubtasks(agentSN: agentSN, inFlight: resendSince != nil) {
            if tasks[subtask.taskID] == nil {
                tasks[subtask.taskID] = try await self.store.task(id: subtask.taskID)
            }
            due[subtask.taskID, default: []].append(subtask)
        }
        var builds = Builds()
        var sent = 0
        for (id, subtasks) in due.sorted(by: { $0.key < $1.key }) {
            guard let task = tasks[id], task.status.isOpen else { continue }
            sent += try await self.send(subtasks, of: task, resendSince: resendSince, builds: &builds) { _, command in send(command) }
        }
        if sent > 0 {
            self.logger.debug("subtasks sent", metadata: ["agent.sn": "\(agentSN)", "count": "\(sent)"])
        }
    }

    /// The one way subtasks go out, whoever sends them (task creation, a connecting or polling
    /// agent, a freed place, the sweep): the waiting subtasks of a task with `max_concurrency` or
    /// `max_errors` go only as far as the store grants places
    /// (``SQLStore/claimDispatch(taskID:ids:limit:maxFailures:retryAfter:)``, which also says when
    /// the task has failed too often: then it is stopped), and each gets its command through
    /// `transmit`. Returns how many were sent.
    private func send(
        _ subtasks: [SubtaskRecord],
        of task: TaskRecord,
        resendSince: Int64? = nil,
        claimed preclaimed: Set<String> = [],
        builds: inout Builds,
        transmit: (SubtaskRecord, Aspire_V1_Command) -> Bool
    ) async throws -> Int {
        guard !subtasks.isEmpty else { return 0 }
        var going = subtasks
        var claimed = preclaimed
        let concurrency = try RateLimit(parsing: task.maxConcurrency, field: "max_concurrency")?.value(of: task.count)
        let errors = try RateLimit(parsing: task.maxErrors, field: "max_errors")?.value(of: task.count)
        if concurrency != nil || errors != nil {
            let waiting = subtasks.filter { $0.status == .pending && !preclaimed.contains($0.id) }.map(\.id)
            switch try await self.store.claimDispatch(
                taskID: task.id, ids: waiting, limit: concurrency, maxFailures: errors, retryAfter: self.retryAfter
            ) {
            case .claimed(let ids):
                claimed.formUnion(ids)
            case .overErrors(let failed):
                // Past max_errors a task sends nothing more: its undelivered subtasks are cancelled.
                try await self.store.stopTask(id: task.id)
                self.logger.notice("task stopped: too many errors", metadata: ["task.id": "\(task.id)", "task.failed": "\(failed)"])
                return 0
            }
            going = subtasks.filter { $0.status != .pending || claimed.contains($0.id) }
        }
        var command = try Self.command(of: task)
        var ready: [(SubtaskRecord, Aspire_V1_Command)] = []
        var refused: [(Aspire_V1_CommandResult, String)] = []
        for subtask in going {
            command.id = subtask.id
            switch try await self.command(command, for: subtask.agentSN, builds: &builds) {
            case .send(let resolved): ready.append((subtask, resolved))
            case .refuse(let result): refused.append((result, subtask.agentSN))
            }
        }
        // Each delivery is claimed before it goes, so one sent by another pass meanwhile (or
        // answered already) is not sent again.
        claimed.formUnion(
            try await self.store.markDispatched(
                ready.map(\.0.id).filter { !claimed.contains($0) }, retryAfter: self.retryAfter, sentBefore: resendSince
            )
        )
        var sent = 0
        var unsent: [String] = []
        for (subtask, resolved) in ready where claimed.contains(subtask.id) {
            if transmit(subtask, resolved) { sent += 1 } else { unsent.append(subtask.id) }
        }
        // What could not go is given back: it waits (and frees its place) again.
        try await self.store.releaseDispatch(unsent)
        for (result, agentSN) in refused { _ = await self.resultArrived(result, from: agentSN) }
        return sent
    }

    private var retryAfter: Int64 { self.configuration.redeliverAfter.milliseconds }

    /// The command a subtask sends its host (its package build chosen for the host), or the
    /// result that refuses it (no build for the host's platform).
    func command(for subtask: SubtaskRecord, of task: TaskRecord) async throws -> Delivery {
        var command = try Self.command(of: task)
        command.id = subtask.id
        var builds = Builds()
        return try await self.command(command, for: subtask.agentSN, builds: &builds)
    }

    /// The command a task sends to each of its hosts (its id is the subtask's): as made when the
    /// task was created; a task stored before commands were kept is translated from its body.
    private static func command(of task: TaskRecord) throws -> Aspire_V1_Command {
        if let typed = task.typed { return typed }
        return try CommandParameters.command(method: task.command, parameters: try Google_Protobuf_Struct(jsonString: task.body))
    }

    /// An agent connected here or reported: it joins the open tag tasks it matches, and gets
    /// what is due. A new stream also gets again what the agent was sent and did not answer: a
    /// node that died, or a connection that broke, may have lost it.
    public func agentConnected(_ agentSN: String, newStream: Bool = false) async {
        do {
            try await self.joinTagTasks(agentSN)
        } catch {
            self.failed("cannot match tag tasks", error, ["agent.sn": "\(agentSN)"])
        }
        await self.dispatch(to: agentSN, inFlight: newStream)
    }

    /// Adds the agent to the open tag tasks whose tags its host carries.
    private func joinTagTasks(_ agentSN: String) async throws {
        // Every status report comes here: the host is read only when a tag task is open.
        let open = try await self.store.openTagTasks(at: Date().unixMilliseconds)
        guard !open.isEmpty, let host = try await self.store.host(agentSN: agentSN) else { return }
        let tags = Dictionary(host.tags.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
        for task in open where task.selector.allSatisfy({ tags[$0.key] == $0.value }) {
            _ = try await self.store.addSubtask(taskID: task.id, agentSN: agentSN)
        }
    }

    /// Stores a result from an agent (once, in a transaction shared with the results arriving
    /// at the same time); true when it may be acknowledged.
    public func resultArrived(_ result: Aspire_V1_CommandResult, from agentSN: String) async -> Bool {
        do {
            if let task = try await self.results.submit(AgentResult(result: result, agentSN: agentSN)).get() {
                if task.complete >= task.count, task.selector.isEmpty {
                    self.logger.info(
                        "task finished",
                        metadata: ["task.id": "\(task.id)", "task.status": "\(task.status.name)", "task.failed": "\(task.failed)"]
                    )
                    if task.count > 1 {
                        await self.store.recordServerEvent("task", "task \(task.id) \(task.status.name): \(task.failed) of \(task.count) hosts failed")
                    }
                } else if !task.maxConcurrency.isEmpty {
                    // A slot is free: send the next subtasks of this task that wait for one,
                    // here or on the nodes that hold their hosts.
                    let waiting = try await self.store.waitingAgents(taskID: task.id)
                    await self.dispatch(to: waiting)
                    try await self.wakeHolders(of: waiting.filter { self.registry.session(for: $0) == nil })
                }
            }
            return true
        } catch {
            self.failed("cannot store a result", error, ["agent.sn": "\(agentSN)", "command.id": "\(result.id)"])
            return false
        }
    }

    // MARK: Sweeping

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: self.configuration.sweepInterval)
                await self.sweep()
            }
        }
    }

    /// One pass: due deliveries of agents held here, undeliverable subtasks, ended tag windows.
    public func sweep() async {
        do {
            await self.dispatch(to: try await self.store.agentsWithDueSubtasks())
            let now = Date().unixMilliseconds
            let expired = try await self.store.expireUndeliverable(createdBefore: now - self.configuration.deliveryTimeout.milliseconds)
            if expired > 0 {
                self.logger.notice("subtasks undeliverable", metadata: ["count": "\(expired)"])
            }
            try await self.store.closeTagTasks(endedBefore: now)
            let silent = try await self.store.expireSilentHosts(of: AgentPollService.polledNode, now: now)
            if silent > 0 {
                self.logger.notice("polling agents went silent: offline", metadata: ["count": "\(silent)"])
            }
        } catch {
            self.failed("task sweep failed", error, [:])
        }
    }
}

/// `max_concurrency` / `max_errors`: a number ("10") or a share of the task's hosts ("25%").
struct RateLimit: Hashable {
    enum Kind: Hashable {
        case count(Int)
        case percent(Double)
    }

    var kind: Kind

    init?(parsing text: String, field: String) throws(AspireError) {
        let text = text.trimmingCharacters(in: .whitespaces)
        if text.isEmpty { return nil }
        if text.hasSuffix("%") {
            guard let value = Double(text.dropLast()), value > 0, value <= 100 else {
                throw AspireError(.badRequest, "\(field) '\(text)': a share must be from 1% to 100%")
            }
            self.kind = .percent(value)
        } else {
            guard let value = Int(text), value >= 0 else {
                throw AspireError(.badRequest, "\(field) '\(text)': expected a number or a share like 25%")
            }
            self.kind = .count(value)
        }
    }

    /// The limit for a task of `hosts` hosts (a share rounds up, and is at least 1).
    func value(of hosts: Int) -> Int {
        switch self.kind {
        case .count(let value): value
        case .percent(let share): max(1, Int((Double(hosts) * share / 100).rounded(.up)))
        }
    }
}

/// Which agents a dispatch pass runs for, and whether another was asked for meanwhile.
final class DispatchPasses: Sendable {
    private struct Asked {
        var again = false
        var inFlight = false
    }

    private let running = Mutex<[String: Asked]>([:])

    /// True when the caller runs the pass; false when one runs, which will run again.
    func begin(_ agentSN: String, inFlight: Bool) -> Bool {
        self.running.withLock { running in
            if var asked = running[agentSN] {
                asked.again = true
                asked.inFlight = asked.inFlight || inFlight
                running[agentSN] = asked
                return false
            }
            running[agentSN] = Asked()
            return true
        }
    }

    /// Whether to run once more (with what was asked); else the pass ends.
    func again(_ agentSN: String, inFlight: inout Bool) -> Bool {
        self.running.withLock { running in
            guard let asked = running[agentSN], asked.again else {
                running[agentSN] = nil
                return false
            }
            inFlight = asked.inFlight
            running[agentSN] = Asked()
            return true
        }
    }
}
