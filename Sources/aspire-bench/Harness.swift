import ArgumentParser
import Fleet
import Foundation
import RPC
import Synchronization
import TestSupport

/// Options every benchmark takes.
struct BenchOptions: ParsableArguments {
    @Flag(help: "Small sizes that finish in under a minute (what CI runs).")
    var quick = false

    @Option(name: .customLong("bin-dir"), help: "Where aspire-server and boot are (default: next to aspire-bench).")
    var binDirectory: String?

    @Option(name: .customLong("work-dir"), help: "Scratch directory for data and logs (default: a new one under /tmp).")
    var workDirectory: String?

    @Flag(help: "Keep the scratch directory (logs, databases) afterwards.")
    var keep = false

    @Flag(name: .customLong("json-only"), help: "Print only the JSON line of each benchmark.")
    var jsonOnly = false

    @Option(
        name: .customLong("time-limit"),
        help: "Seconds one benchmark may take before aspire-bench gives up and exits, killing what it started (default 600 with --quick: more than any of their own waits, which name what they waited for, 3600 otherwise)."
    )
    var timeLimit: Int?

    var effectiveTimeLimit: Duration { .seconds(self.timeLimit ?? (self.quick ? 600 : 3600)) }
}

/// Starts real processes for one benchmark in a scratch directory, and removes it afterwards.
struct Harness {
    let options: BenchOptions
    let work: String
    let bin: String

    init(_ options: BenchOptions, name: String) throws {
        self.options = options
        self.work = options.workDirectory.map { "\($0)/\(name)" } ?? "/tmp/aspire-bench-\(name)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: self.work, withIntermediateDirectories: true)
        self.bin = options.binDirectory ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
        // Thousands of connections: this process and the nodes it starts need the descriptors.
        let limit = raiseOpenFileLimit()
        if limit < 4096 {
            FileHandle.standardError.write(Data("warning: open-file limit is \(limit); large fleets need root or a higher ulimit -n\n".utf8))
        }
    }

    func executable(_ name: String) throws -> String {
        let path = "\(self.bin)/\(name)"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ValidationError("\(path) is not there: build with 'swift build -c release' or pass --bin-dir")
        }
        return path
    }

    /// A node listening on `listen` (all addresses by default, so a spread fleet reaches it).
    func startNode(
        _ name: String = "node",
        listen: String = "0.0.0.0:0",
        http: Bool = false,
        database: String? = nil,
        arguments: [String] = [],
        sharingSecretsOf other: NodeProcess? = nil
    ) async throws -> NodeProcess {
        if let other {
            // Nodes of one cluster share the CA and the tokens; each issues its own certificate.
            let data = "\(self.work)/\(name)"
            try FileManager.default.createDirectory(atPath: "\(data)/tls", withIntermediateDirectories: true)
            for file in ["admin.token", "enroll.token", "tls/ca.pem", "tls/ca.key"] {
                try FileManager.default.copyItem(atPath: "\(other.dataDirectory)/\(file)", toPath: "\(data)/\(file)")
            }
        }
        return try await NodeProcess.start(
            binary: try self.executable("aspire-server"),
            dataDirectory: "\(self.work)/\(name)",
            listen: try HostPort(parsing: listen, allowPortZero: true),
            httpListen: http ? HostPort(host: "127.0.0.1", port: 0) : nil,
            name: name,
            arguments: ["--log-level", "warning"] + (database.map { ["--database", $0] } ?? []) + arguments,
            log: "\(self.work)/\(name).log"
        )
    }

    /// A fleet of `count` simulated agents for `node`.
    func fleet(
        of node: NodeProcess, count: Int, prefix: String = "sim", execute: Bool = false, plaintext: Bool = false, tags: [String: String] = [:]
    ) throws -> Fleet {
        var configuration = Fleet.Configuration(
            server: node.dialAddress, security: plaintext ? .plaintext : .tls(caFile: node.caFile), token: try node.enrollToken
        )
        configuration.spread = node.address.host == "0.0.0.0"
        configuration.prefix = prefix
        configuration.execute = execute
        configuration.tags = tags
        return Fleet(configuration: configuration, count: count)
    }

    /// `count` simulated agents of `node` in another `aspire-bench fleet` process: a fleet larger
    /// than one process's open-file limit (or than one process should hold) is split over several.
    func startSimulator(_ name: String, of node: NodeProcess, count: Int) throws -> ChildProcess {
        try ChildProcess(
            try self.executable("aspire-bench"),
            ["fleet", "--server", "\(node.dialAddress)", "--ca", node.caFile, "--enroll-token-file", node.enrollTokenFile,
             "--count", "\(count)", "--prefix", name, "--spread"],
            log: "\(self.work)/\(name).log"
        )
    }

    /// A real `boot` agent of `node`, with its own data directory.
    func startAgent(_ name: String, of node: NodeProcess, agentSN: String? = nil) throws -> (process: ChildProcess, agentSN: String) {
        try self.startAgent(name, servers: [node.dialAddress], caFile: node.caFile, tokenFile: node.enrollTokenFile, agentSN: agentSN)
    }

    /// A real `boot` agent that knows `servers` (the nodes of a cluster), with its own data directory.
    func startAgent(
        _ name: String, servers: [HostPort], caFile: String, tokenFile: String, agentSN: String? = nil, logLevel: String = "warning"
    ) throws -> (process: ChildProcess, agentSN: String) {
        let sn = agentSN ?? "bench-\(name)"
        let process = try ChildProcess(
            try self.executable("boot"),
            ["-f", "--data-dir", "\(self.work)/\(name)", "--ca", caFile, "--token-file", tokenFile, "--agent-sn", sn,
             "--backoff-cap", "1", "--start-delay", "0", "--log-level", logLevel] + servers.flatMap { ["--server", "\($0)"] },
            log: "\(self.work)/\(name).log"
        )
        return (process, sn)
    }

    func finish() {
        if !self.options.keep {
            try? FileManager.default.removeItem(atPath: self.work)
        }
    }
}

/// Runs `body` with a harness and removes its scratch directory after, whatever happens.
/// A hang fails the run instead of stalling it: past the time limit a watchdog thread exits the
/// process (its children die with it), naming the benchmark and where its logs are.
func withHarness<Result>(_ options: BenchOptions, name: String, _ body: (Harness) async throws -> Result) async throws -> Result {
    let harness = try Harness(options, name: name)
    let watchdog = Watchdog(
        limit: options.effectiveTimeLimit,
        message: "\(name) did not finish within \(options.effectiveTimeLimit) (--time-limit); its logs are in \(harness.work)"
    )
    defer { watchdog.disarm() }
    do {
        let result = try await body(harness)
        harness.finish()
        return result
    } catch {
        // Left in place: the logs say what went wrong.
        FileHandle.standardError.write(Data("\(name) failed; its logs are in \(harness.work)\n".utf8))
        throw error
    }
}

/// Exits the process with status 3 unless disarmed within `limit`. A thread of its own, so a
/// stuck cooperative pool or event loop cannot hold it up.
final class Watchdog: Sendable {
    private let armed = Mutex(true)

    init(limit: Duration, message: String) {
        let deadline = ContinuousClock.now.advanced(by: limit)
        let thread = Thread { [self] in
            while ContinuousClock.now < deadline {
                Thread.sleep(forTimeInterval: 0.5)
                if !self.isArmed { return }
            }
            guard self.isArmed else { return }
            FileHandle.standardError.write(Data("aspire-bench: \(message)\n".utf8))
            _exit(3)
        }
        thread.start()
    }

    private var isArmed: Bool { self.armed.withLock { $0 } }

    func disarm() { self.armed.withLock { $0 = false } }
}
