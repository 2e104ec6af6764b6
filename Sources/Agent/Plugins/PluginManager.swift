#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
public import Logging
public import RPC
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where a plugin's files come from: a tar archive with its checksum, or a git repository.
public struct PluginSource: Codable, Sendable, Hashable {
    public var url = ""
    public var checksum = ""
    public var git = ""
    public var ref = ""

    public init(url: String = "", checksum: String = "", git: String = "", ref: String = "") {
        self.url = url
        self.checksum = checksum
        self.git = git
        self.ref = ref
    }

    var description: String { self.git.isEmpty ? "\(self.url) (\(self.checksum))" : "\(self.git)\(self.ref.isEmpty ? "" : " @ \(self.ref)")" }
}

/// The agent's plugins: the set the server sends (`plugin.set`), fetched into
/// `<plugins>/<name>/` and run by a ``PluginRunner``, and the commands that act on one
/// (`plugin.run`, `plugin.enable`, `plugin.disable`, `plugin.update`, `plugin.list`) — from the
/// server or from the local interface. The set, what is installed from where, and which plugins
/// are disabled until when are kept in `<data>/plugins.json`, so a restarted agent runs what it
/// ran, disconnected or not.
public actor PluginManager {
    /// What `<data>/plugins.json` holds.
    struct Saved: Codable {
        /// ``Aspire_V1_PluginParams/digest`` of the set last received, for Hello.
        var digest = ""
        var plugins: [PluginConfig] = []
        /// Name → the source its files came from.
        var installed: [String: PluginSource] = [:]
        var disabled: [String: Date] = [:]

        /// What runs: each plugin of the set whose files are there, with the settings of the
        /// set and the source its files came from (an older one when the newest could not be
        /// fetched).
        var runnable: [PluginConfig] {
            self.plugins.compactMap { config in
                guard let source = self.installed[config.name] else { return nil }
                var config = config
                config.source = source
                return config
            }
        }
    }

    public nonisolated let runner: PluginRunner
    public let directory: String
    let statePath: String
    let logger: Logger
    private let fetcher: PackageFetcher
    private var saved: Saved
    /// Installs run one at a time (a `plugin.set` and a `plugin.update` must not interleave).
    private var installs: Task<Void, Never>?

    /// Plugins come from `downloads` (the server's store over the agent's connection, or the
    /// web); their metrics go to `metrics` and their problems to `events`.
    init(
        directory: String,
        dataDirectory: String,
        host: String,
        bash: BashExecutor,
        downloads: PackageFetcher = PackageFetcher(),
        metrics: @escaping PluginRunner.MetricsHandler = { _ in },
        events: @escaping PluginRunner.EventHandler = { _, _ in },
        logger: Logger
    ) {
        let statePath = "\(dataDirectory)/plugins.json"
        var saved = Saved()
        if let data = FileManager.default.contents(atPath: statePath) {
            do {
                saved = try JSONDecoder().decode(Saved.self, from: data)
            } catch {
                logger.error("cannot read the saved plugins; none run until the server sends them", metadata: ["path": "\(statePath)", "error": "\(error)"])
            }
        }
        let runner = PluginRunner(directory: directory, host: host, bash: bash, metrics: metrics, events: events, logger: logger)
        do {
            try runner.configure(saved.runnable)
            runner.restore(disabled: saved.disabled)
        } catch {
            logger.error("saved plugins refused", metadata: ["error": "\(error.cause)"])
        }
        self.directory = directory
        self.fetcher = downloads
        self.statePath = statePath
        self.logger = logger
        self.runner = runner
        self.saved = saved
        self.savedDigest = Mutex(saved.digest)
    }

    /// The digest of the set last received (empty when none was): said in Hello.
    public nonisolated var digest: String { self.savedDigest.withLock { $0 } }
    private nonisolated let savedDigest: Mutex<String>

    public func run() async {
        await self.runner.run()
    }

    /// The methods it answers: `plugin.set` from the server, the others from tasks and the local interface.
    public static var methods: [CommandMethod] { CommandMethod.PluginAction.allCases.map(CommandMethod.plugin) }

    /// Carries out a plugin command; every outcome is a result.
    public func perform(_ action: CommandMethod.PluginAction, _ params: Aspire_V1_PluginParams, id: String) async -> Aspire_V1_CommandResult {
        let started = Date()
        do throws(AspireError) {
            switch action {
            case .set:
                return try await self.serialized { () throws(AspireError) in try await self.set(params, id: id, started: started) }
            case .list:
                return .success(id: id, data: JSONValue.array(self.list()).encoded(), message: "success", started: started)
            case .run:
                let run = try await self.runner.runNow(
                    params.name, timeout: params.timeout > 0 ? params.timeout : nil, param: params.param.isEmpty ? nil : params.param
                )
                return Self.result(of: run, id: id, started: started)
            case .enable:
                try self.runner.enable(params.name)
                try self.saveDisabled()
                return .success(id: id, data: JSONValue.object(["plugin": JSONValue(params.name), "enabled": true]).encoded(), message: "plugin \(params.name) enabled", started: started)
            case .disable:
                let until = try self.runner.disable(params.name, for: params.disableSeconds > 0 ? .seconds(Int(params.disableSeconds)) : nil)
                try self.saveDisabled()
                let data = JSONValue.object(["plugin": JSONValue(params.name), "enabled": false, "disabled_until": JSONValue(until.formatted(.iso8601))]).encoded()
                return .success(id: id, data: data, message: "plugin \(params.name) disabled until \(until.formatted(.iso8601))", started: started)
            case .update:
                return try await self.serialized { () throws(AspireError) in try await self.update(params.name, id: id, started: started) }
            }
        } catch {
            return .failed(id: id, error.code, error.cause, started: started)
        }
    }

    /// What `plugin.list` answers: each plugin with its state.
    public nonisolated func list() -> [JSONValue] {
        self.runner.states.map { state in
            var entry: [String: JSONValue] = [
                "name": JSONValue(state.config.name), "period": JSONValue(state.config.period), "user": JSONValue(state.config.user),
                "timeout": JSONValue(state.config.timeout), "param": JSONValue(state.config.param), "enabled": JSONValue(state.enabled),
                "running": JSONValue(state.running),
                "source": JSONValue(state.config.source.git.isEmpty ? state.config.source.url : state.config.source.git),
            ]
            if let until = state.disabledUntil { entry["disabled_until"] = JSONValue(until.formatted(.iso8601)) }
            if let last = state.lastRun { entry["last_run"] = JSONValue(last.formatted(.iso8601)) }
            if let status = state.lastStatus { entry["last_status"] = JSONValue(status) }
            if !state.lastMessage.isEmpty { entry["last_message"] = JSONValue(state.lastMessage) }
            return .object(entry)
        }
    }

    // MARK: The set

    /// Makes the server's set the one that runs: fetches what is new or changed, drops what is
    /// gone. A plugin that cannot be fetched is named in the result (and an event); one that
    /// ran before keeps running from its old files.
    private func set(_ params: Aspire_V1_PluginParams, id: String, started: Date) async throws(AspireError) -> Aspire_V1_CommandResult {
        var configs: [PluginConfig] = []
        var refused: [(name: String, error: AspireError)] = []
        var names: Set<String> = []
        for plugin in params.plugins {
            let config = PluginConfig(plugin)
            do throws(AspireError) {
                try plugin.check(code: .invalidParams)
                guard names.insert(config.name).inserted else { throw AspireError(.invalidParams, "two plugins are named '\(config.name)'") }
                if !plugin.url.isEmpty, try BuiltinCollector(url: plugin.url) == nil { _ = try PackageSource(plugin.url) }
                guard Account.user(named: config.user) != nil else {
                    throw AspireError(.unknownUser, "plugin \(config.name): no user '\(config.user)' on this host")
                }
                configs.append(config)
            } catch {
                refused.append((plugin.name, error))
            }
        }
        var installed = self.saved.installed
        for config in configs where installed[config.name] != config.source {
            do throws(AspireError) {
                try await self.install(config)
                installed[config.name] = config.source
            } catch {
                refused.append((config.name, error))
            }
        }
        // Plugins gone from the set: their files go too.
        for name in installed.keys where !names.contains(name) {
            installed[name] = nil
            try? FileManager.default.removeItem(atPath: "\(self.directory)/\(name)")
        }
        self.saved = Saved(digest: params.digest, plugins: configs, installed: installed)
        let running = self.saved.runnable
        try self.runner.configure(running)
        // Saved with what stays disabled (a plugin gone from the set is forgotten).
        try self.saveDisabled()
        self.savedDigest.withLock { $0 = params.digest }
        self.logger.notice("plugins set", metadata: ["plugins": "\(running.count)", "refused": "\(refused.count)"])
        let data = JSONValue.object(["plugins": JSONValue(running.map(\.name))]).encoded()
        guard let first = refused.first else { return .success(id: id, data: data, message: "success", started: started) }
        var result = Aspire_V1_CommandResult.failed(
            id: id, first.error.code,
            "\(refused.count) plugin\(refused.count == 1 ? "" : "s") not installed: " + refused.map { "\($0.name): \($0.error.cause)" }.joined(separator: "; "),
            started: started
        )
        result.data = data
        return result
    }

    /// Fetches a plugin's files again (a git repository's newest commit of its ref).
    private func update(_ name: String, id: String, started: Date) async throws(AspireError) -> Aspire_V1_CommandResult {
        guard let config = self.saved.plugins.first(where: { $0.name == name }) else {
            throw AspireError(.notFound, "no plugin named '\(name)'")
        }
        try await self.install(config)
        self.saved.installed[name] = config.source
        try self.runner.configure(self.saved.runnable)
        try self.save()
        return .success(id: id, data: JSONValue.object(["plugin": JSONValue(name), "source": JSONValue(config.source.description)]).encoded(), message: "plugin \(name) updated", started: started)
    }

    /// Fetches a plugin into a staging directory, checks it has its plugin.sh, then puts it in
    /// place of the old files in one rename.
    private func install(_ config: PluginConfig) async throws(AspireError) {
        // A built-in collector has no files: the agent runs it itself.
        if try BuiltinCollector(url: config.source.url) != nil { return }
        let target = "\(self.directory)/\(config.name)"
        let staging = "\(self.directory)/.staging-\(UUID.random().uuidString.lowercased())"
        do {
            try AtomicFile.makeDirectory(self.directory, mode: 0o755)
            try AtomicFile.makeDirectory(staging, mode: 0o700)
        } catch {
            throw AspireError(.agentInternal, "cannot create \(staging): \(error)")
        }
        defer { try? FileManager.default.removeItem(atPath: staging) }
        let tree = "\(staging)/tree"
        if config.source.git.isEmpty {
            let archive = "\(staging)/package"
            try await self.fetcher.fetch(try PackageSource(config.source.url), checksum: config.source.checksum, to: archive)
            guard try PackageFormat(path: archive) == .tarball else {
                throw AspireError(.badPackage, "plugin \(config.name): the package is not a tar archive")
            }
            try Tarball.validate(try await Tarball.list(archive, scratch: staging))
            do {
                try AtomicFile.makeDirectory(tree, mode: 0o755)
            } catch {
                throw AspireError(.agentInternal, "cannot create \(tree): \(error)")
            }
            try await Tarball.extract(archive, into: tree, scratch: staging)
        } else {
            try await Self.clone(config.source, into: tree, scratch: staging)
        }
        let root = Tarball.root(of: tree, marker: "plugin.sh")
        if let problem = PluginRunner.checkScript("\(root)/plugin.sh", user: config.user) {
            throw AspireError(.badPackage, "plugin \(config.name): \(problem.replacing(root, with: "the package"))")
        }
        chmod(root, 0o755)
        if FileManager.default.fileExists(atPath: target) {
            try? FileManager.default.moveItem(atPath: target, toPath: "\(staging)/replaced")
        }
        guard rename(root, target) == 0 else {
            throw AspireError(.agentInternal, "cannot move plugin \(config.name) to \(target): \(String(cString: strerror(errno)))")
        }
        AtomicFile.sync(self.directory)
        self.logger.notice("plugin installed", metadata: ["plugin": "\(config.name)", "plugin.source": "\(config.source.description)"])
    }

    private static func clone(_ source: PluginSource, into tree: String, scratch: String) async throws(AspireError) {
        guard let git = Tools.find("git") else {
            throw AspireError(.toolMissing, "git is not installed on this host: a git plugin cannot be fetched (give a package url instead)")
        }
        let log = "\(scratch)/git.log"
        let pinned = source.ref.count == 40 && source.ref.allSatisfy(\.isHexDigit) ? source.ref.lowercased() : nil
        var arguments = ["-c", "protocol.ext.allow=never", "clone", "--quiet"]
        if pinned != nil {
            // A commit is checked out by its id: git verifies every object against it.
            arguments += ["--no-checkout"]
        } else {
            arguments += ["--depth", "1"]
            if !source.ref.isEmpty { arguments += ["--branch", source.ref] }
        }
        arguments += ["--", source.git, tree]
        try await Self.git(git, arguments, log: log, what: "git clone \(source.git)")
        if let pinned {
            try await Self.git(git, ["-C", tree, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", pinned], log: log, what: "git checkout \(pinned)")
        }
    }

    private static func git(_ git: String, _ arguments: [String], log: String, what: String) async throws(AspireError) {
        let termination = try await Launcher.run(
            Launcher.Request(
                executable: git, arguments: arguments,
                environment: Tools.rootEnvironment.merging(["GIT_TERMINAL_PROMPT": "0", "GIT_SSH_COMMAND": "ssh -o BatchMode=yes"]) { $1 },
                outputPath: log
            ),
            timeout: .seconds(600)
        )
        guard termination.succeeded else {
            throw AspireError(.downloadFailed, "\(what) failed (\(termination.description)): \(Launcher.tail(log))")
        }
    }

    // MARK: Saving

    private func saveDisabled() throws(AspireError) {
        self.saved.disabled = self.runner.disabled
        try self.save()
    }

    private func save() throws(AspireError) {
        do {
            try AtomicFile.writeJSON(self.saved, to: self.statePath)
        } catch {
            throw AspireError(.agentInternal, "cannot save \(self.statePath): \(error)")
        }
    }

    /// Runs `body` after every install before it has ended.
    private func serialized<T: Sendable>(_ body: @escaping @Sendable () async throws(AspireError) -> T) async throws(AspireError) -> T {
        let previous = self.installs
        let task = Task<Result<T, AspireError>, Never> {
            await previous?.value
            do throws(AspireError) {
                return .success(try await body())
            } catch {
                return .failure(error)
            }
        }
        self.installs = Task { _ = await task.value }
        return try await task.value.get()
    }

    // MARK: Results

    static func result(of run: PluginRun, id: String, started: Date) -> Aspire_V1_CommandResult {
        var result = run.result
        result.id = id
        result.startedUnixMs = started.unixMilliseconds
        let metrics = run.metrics.map { metric -> JSONValue in
            ["name": JSONValue(metric.name), "timestamp": JSONValue(metric.timestamp), "tags": JSONValue(metric.tags), "value": JSONValue(metric.value)]
        }
        result.data = JSONValue.object([
            "plugin": JSONValue(run.plugin), "retcode": JSONValue(run.result.retcode), "metrics": .array(metrics), "problems": JSONValue(run.problems),
        ]).encoded()
        if let problem = run.problems.first, result.resp == .success {
            result.resp = .failed
            result.message = "plugin \(run.plugin): \(problem)"
            if result.retcode == 0 { result.retcode = ErrorCode.badPackage.rawValue }
        }
        return result
    }
}

extension PluginConfig {
    init(_ plugin: Aspire_V1_Plugin) {
        self.init(
            name: plugin.name, period: Int(plugin.period), user: plugin.user.isEmpty ? "nobody" : plugin.user,
            timeout: plugin.timeout > 0 ? plugin.timeout : 10, param: plugin.param
        )
        self.source = PluginSource(url: plugin.url, checksum: plugin.checksum, git: plugin.git, ref: plugin.ref)
    }
}

extension PluginManager: CommandHandler {
    public func handle(_ command: Aspire_V1_Command, as method: CommandMethod, output: BashExecutor.OutputHandler?) async -> Aspire_V1_CommandResult {
        guard case .plugin(let action) = method else { return CommandHandlers.misrouted(command, to: "plugin manager") }
        return await self.perform(action, command.plugins, id: command.id)
    }
}
