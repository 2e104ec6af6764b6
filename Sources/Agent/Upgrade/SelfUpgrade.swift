#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SystemPackage
public import Logging
public import RPC

#if canImport(Glibc)
import Glibc
#endif

/// BootAgent upgrading itself, as the deployment named `BootAgent` declares it.
///
/// The running agent fetches the new binary (a store package or a url, SHA256 checked; the
/// file itself or a tar archive holding `boot`), keeps it in its data directory
/// (`bin/boot-VERSION`), checks that it runs (`--version`), writes the trial (`upgrade.json`),
/// starts a watchdog, and hands over by exec: the same process (pid, pid file, data directory,
/// identity, outbox, adopted sub-agents) goes on as the new version. The new version commits
/// the trial once it has reconnected, within the window; the watchdog, a copy of the old
/// binary, otherwise kills it and starts the old binary again with its arguments (the new one
/// hung, or exited before it reconnected). The old binary then reports the revision failed and
/// does not try it again; the server's rollout decides what follows.
///
/// Once committed, `boot.json` says which binary this host runs: when a service manager starts
/// the package's binary again (the one the upgrade replaced), it execs the upgraded one at once.
public struct SelfUpgrade: Sendable {
    /// The deployment (and status entry) name of the agent itself.
    public static let name = "BootAgent"

    let dataDirectory: String
    /// The running agent's version.
    let version: String
    /// How long a new version has to reconnect.
    let window: Duration

    public init(dataDirectory: String, version: String, window: Duration = .seconds(120)) {
        self.dataDirectory = dataDirectory
        self.version = version
        self.window = window
    }

    var trialPath: String { "\(self.dataDirectory)/upgrade.json" }
    var installedPath: String { "\(self.dataDirectory)/boot.json" }
    var binaries: String { "\(self.dataDirectory)/bin" }

    /// An upgrade under way, or how it ended.
    struct Trial: Codable, Equatable, Sendable {
        enum State: String, Codable, Sendable {
            case trial, failed
        }

        var from: String
        var fromPath: String
        var to: String
        var toPath: String
        var revision: Int64
        /// Unix ms by which the new version must have reconnected.
        var deadline: Int64
        var pid: Int32
        /// The agent's command line, to start the old binary again with.
        var arguments: [String]
        var state: State = .trial
        var reason: String = ""
    }

    /// Which binary this host runs after a committed upgrade.
    struct Installed: Codable, Equatable, Sendable {
        var version: String
        var path: String
        /// The version of the binary the service manager starts (the one first upgraded from).
        var base: String
        var previous: String
    }

    // MARK: Start

    /// The binary to run instead of this one: the upgraded one, when this binary is the one it
    /// replaced (a service manager restarted the package's binary) and no trial is under way.
    public static func launchTarget(dataDirectory: String, version: String) -> String? {
        let upgrade = SelfUpgrade(dataDirectory: dataDirectory, version: version)
        guard upgrade.read(Trial.self, upgrade.trialPath) == nil, let installed = upgrade.read(Installed.self, upgrade.installedPath),
            installed.base == version, installed.version != version, FileManager.default.isExecutableFile(atPath: installed.path)
        else { return nil }
        return installed.path
    }

    /// Replaces this process with `path`, with this process's arguments; returns only on failure.
    public static func exec(_ path: String) -> AspireError {
        var argv: [UnsafeMutablePointer<CChar>?] = ([path] + Self.ownArguments.dropFirst()).map { strdup($0) } + [nil]
        execv(path, &argv)
        let error = String(cString: strerror(errno))
        argv.forEach { free($0) }
        return AspireError(.agentInternal, "cannot run \(path): \(error)")
    }

    /// This process's arguments without the ones that would not suit another version.
    static var ownArguments: [String] {
        var arguments: [String] = []
        var skip = false
        for argument in CommandLine.arguments {
            if skip {
                skip = false
            } else if argument == "--report-version" {
                skip = true
            } else if !argument.hasPrefix("--report-version=") {
                arguments.append(argument)
            }
        }
        return arguments
    }

    /// What an earlier life left: the trial this version is on, or the failed one this
    /// (restored) version must report. A trial of another version still marked as under way
    /// means the new one died and a service manager started this one: failed.
    func atStart() -> (onTrial: Trial?, failed: Trial?) {
        guard var trial = self.read(Trial.self, self.trialPath) else { return (nil, nil) }
        if trial.state == .trial, trial.to == self.version { return (trial, nil) }
        if trial.state == .trial {
            trial.state = .failed
            trial.reason = "\(trial.to) stopped before it reconnected; \(self.version) runs again"
        }
        try? FileManager.default.removeItem(atPath: self.trialPath)
        return (nil, trial)
    }

    /// The trial passed: this version is the host's from now on.
    func commit(_ trial: Trial) throws(AspireError) {
        let earlier = self.read(Installed.self, self.installedPath)
        let installed = Installed(version: self.version, path: trial.toPath, base: earlier?.base ?? trial.from, previous: trial.from)
        try self.write(installed, self.installedPath)
        // Gone: the watchdog stops watching.
        try? FileManager.default.removeItem(atPath: self.trialPath)
    }

    /// The version this host ran before the last committed upgrade ("" when none).
    var previousVersion: String { self.read(Installed.self, self.installedPath)?.previous ?? "" }

    // MARK: Upgrade

    /// Fetches, checks and keeps the binary of `version`; its path.
    func prepare(_ params: Aspire_V1_SubAgentParams, fetcher: PackageFetcher) async throws(AspireError) -> String {
        try PathName.check(params.version, field: "BootAgent version")
        guard CommandParameters.isSHA256(params.checksum) else {
            throw AspireError(.invalidParams, "BootAgent \(params.version): checksum must be SHA256:<64 hex digits>; binaries are not run unchecked")
        }
        let source = try PackageSource(params.url)
        if case .command = source { throw AspireError(.invalidParams, "BootAgent comes as a file or a tar archive, not a command") }
        do {
            try AtomicFile.makeDirectory(self.binaries, mode: 0o700)
        } catch {
            throw AspireError(.agentInternal, "cannot create \(self.binaries): \(error)")
        }
        let staging = "\(self.binaries)/.staging-\(UUID.random().uuidString.lowercased())"
        do {
            try AtomicFile.makeDirectory(staging, mode: 0o700)
        } catch {
            throw AspireError(.agentInternal, "cannot create \(staging): \(error)")
        }
        defer { try? FileManager.default.removeItem(atPath: staging) }
        let download = "\(staging)/download"
        try await fetcher.fetch(source, checksum: params.checksum, to: download)
        var binary = download
        if (try? PackageFormat(path: download)) == .tarball {
            let entries = try await Tarball.list(download, scratch: staging)
            try Tarball.validate(entries)
            let tree = "\(staging)/tree"
            try? FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: false)
            try await Tarball.extract(download, into: tree, scratch: staging)
            binary = "\(Tarball.root(of: tree, marker: "boot"))/boot"
            guard FileManager.default.fileExists(atPath: binary) else {
                throw AspireError(.badPackage, "BootAgent \(params.version): the archive holds no file named boot")
            }
        }
        let target = "\(self.binaries)/boot-\(params.version)"
        try? FileManager.default.removeItem(atPath: target)
        guard chmod(binary, 0o755) == 0, rename(binary, target) == 0 else {
            throw AspireError(.agentInternal, "cannot put the new binary at \(target): \(String(cString: strerror(errno)))")
        }
        // It must at least run here (the right architecture, its libraries present).
        let check = try await Launcher.run(
            Launcher.Request(executable: target, arguments: ["--version"], environment: Tools.rootEnvironment, outputPath: "\(staging)/check.out"),
            timeout: .seconds(20)
        )
        guard check.succeeded else {
            throw AspireError(.badPackage, "BootAgent \(params.version) does not run here: --version \(check.description): \(Launcher.tail("\(staging)/check.out", from: 0))")
        }
        return target
    }

    /// Writes the trial, starts the watchdog and execs `path`; returns only on failure.
    func handOver(to path: String, version: String, revision: Int64) -> AspireError {
        // What runs this version: the binary an earlier upgrade installed, or this process's.
        let installed = self.read(Installed.self, self.installedPath)
        let me = installed?.version == self.version ? installed!.path
            : (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let watchdog = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? me
        let trial = Trial(
            from: self.version, fromPath: me, to: version, toPath: path, revision: revision,
            deadline: Date().unixMilliseconds + Int64(self.window.components.seconds) * 1000, pid: getpid(), arguments: Self.ownArguments
        )
        do {
            try self.write(trial, self.trialPath)
            try DetachedProcess.spawn(watchdog, [watchdog, "--upgrade-watchdog", self.trialPath])
        } catch {
            try? FileManager.default.removeItem(atPath: self.trialPath)
            return error
        }
        let failure = Self.exec(path)
        var failed = trial
        failed.state = .failed
        failed.reason = failure.cause
        try? self.write(failed, self.trialPath)
        return failure
    }

    // MARK: Watchdog

    /// Watches a trial until it is committed, or restores the old binary; the exit status.
    public static func watch(trialPath: String) -> Int32 {
        let upgrade = SelfUpgrade(dataDirectory: FilePath(trialPath).removingLastComponent().string, version: "")
        while true {
            guard var trial = upgrade.read(Trial.self, trialPath), trial.state == .trial else { return 0 }
            let alive = ProcessTable.isAlive(trial.pid)
            if alive, Date().unixMilliseconds < trial.deadline {
                usleep(200_000)
                continue
            }
            if alive {
                kill(trial.pid, SIGKILL)
                for _ in 0 ..< 50 where ProcessTable.isAlive(trial.pid) { usleep(100_000) }
            }
            // A commit that came at the last moment wins.
            guard upgrade.read(Trial.self, trialPath)?.state == .trial else { return 0 }
            trial.state = .failed
            trial.reason = alive
                ? "\(trial.to) did not reconnect in time; killed, \(trial.from) runs again"
                : "\(trial.to) exited before it reconnected; \(trial.from) runs again"
            try? upgrade.write(trial, trialPath)
            do {
                try DetachedProcess.spawn(trial.fromPath, [trial.fromPath] + trial.arguments.dropFirst())
            } catch {
                return 1
            }
            return 0
        }
    }

    // MARK: Files

    func read<Value: Decodable>(_ type: Value.Type, _ path: String) -> Value? {
        FileManager.default.contents(atPath: path).flatMap { try? JSONDecoder().decode(type, from: $0) }
    }

    func write(_ value: some Encodable, _ path: String) throws(AspireError) {
        do {
            try AtomicFile.writeJSON(value, to: path)
        } catch {
            throw AspireError(.agentInternal, "cannot write \(path): \(error)")
        }
    }
}
