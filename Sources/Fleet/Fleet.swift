import Agent
import Foundation
import Logging
public import RPC
public import Synchronization
import TestSupport

/// Many simulated agents in one process, each with its own connection to a server node.
///
/// grpc-swift-nio-transport cannot bind a client's source address, so the fleet spreads the
/// addresses it dials instead: agent i dials 127.x.y.z (a node listening on 0.0.0.0 answers
/// on all of 127.0.0.0/8), which spreads the connections' address pairs the same way and keeps
/// each pair far below the 28k ephemeral ports.
public final class Fleet: Sendable {
    public struct Configuration: Sendable {
        /// The node: its port, and its host when not spreading.
        public var server: HostPort
        /// Dial 127.1.0.1, 127.1.0.2, ... (the node must listen on 0.0.0.0) instead of `server.host`.
        public var spread = true
        /// Other nodes an agent tries, in order, when its server cannot be reached (as the real
        /// agent tries every address its server's name resolves to).
        public var fallbacks: [HostPort] = []
        /// The name the server certificate is checked against (SNI).
        public var authority = "localhost"
        public var security: ClientSecurity
        /// The enrollment token.
        public var token: String
        public var prefix = "sim"
        public var version = "sim-1.0"
        public var tags: [String: String] = [:]
        /// Run commands for real (sync.bash, getinfo.*) instead of answering at once.
        public var execute = false
        /// How long a canned answer takes; a stream that ends meanwhile loses the command, as
        /// a command in flight on a broken connection is lost.
        public var answerDelay: Duration = .zero

        public init(server: HostPort, security: ClientSecurity, token: String) {
            self.server = server
            self.security = security
            self.token = token
        }
    }

    /// What the fleet saw, for the benchmarks to read.
    public final class Counters: Sendable {
        /// Agents whose stream is open and welcomed now.
        public let online = Atomic<Int>(0)
        public let welcomes = Atomic<Int>(0)
        /// Init or Connect attempts that failed.
        public let failures = Atomic<Int>(0)
        /// Inits a node answered with a later slot (its connect rate).
        public let slotsGiven = Atomic<Int>(0)
        public let commands = Atomic<Int>(0)
        public let results = Atomic<Int>(0)
        public let acks = Atomic<Int>(0)
        /// Commands run to their end, by command id: the agents' own record of what they ran.
        let executed = Mutex<[String: Int]>([:])

        /// How many times each command id was run.
        public var executions: [String: Int] { self.executed.withLock { $0 } }
    }

    /// What every agent of the fleet shares.
    final class Shared: Sendable {
        let configuration: Configuration
        let counters = Counters()
        /// When each Welcome arrived (milliseconds since 1970), in order.
        let welcomeTimes = Mutex<[Int64]>([])
        /// When each Init was accepted (milliseconds since 1970), in order.
        let admissionTimes = Mutex<[Int64]>([])
        let handlers: CommandHandlers
        let pongs = Mutex<[UInt64: CheckedContinuation<Bool, Never>]>([:])
        let nonces = Atomic<UInt64>(0)

        init(configuration: Configuration) {
            self.configuration = configuration
            var logger = Logger(label: "aspire.fleet")
            logger.logLevel = .error
            self.handlers = CommandHandlers.local(bash: BashExecutor(logger: logger))
        }

        func welcomed() {
            self.counters.online.add(1, ordering: .relaxed)
            self.counters.welcomes.add(1, ordering: .relaxed)
            let now = Date().unixMilliseconds
            self.welcomeTimes.withLock { $0.append(now) }
        }

        func admitted() {
            let now = Date().unixMilliseconds
            self.admissionTimes.withLock { $0.append(now) }
        }

        /// The result of a command: a canned success (after `answerDelay`), or the real
        /// executors' answer; nil when the stream ended first.
        func answer(_ command: Aspire_V1_Command) async -> Aspire_V1_CommandResult? {
            defer { self.counters.executed.withLock { $0[command.id, default: 0] += 1 } }
            if self.configuration.execute {
                return await self.handlers.run(command)
            }
            if self.configuration.answerDelay > .zero {
                // A stream that ends meanwhile loses the command: it did not run.
                guard (try? await Task.sleep(for: self.configuration.answerDelay)) != nil else {
                    self.counters.executed.withLock { $0[command.id, default: 0] -= 1 }
                    return nil
                }
            }
            let now = Date().unixMilliseconds
            var result = Aspire_V1_CommandResult()
            result.id = command.id
            result.resp = .success
            result.message = "success"
            result.startedUnixMs = now
            result.finishedUnixMs = now
            return result
        }

        func pongArrived(_ nonce: UInt64, answered: Bool) {
            self.pongs.withLock { $0.removeValue(forKey: nonce) }?.resume(returning: answered)
        }
    }

    let shared: Shared
    let agents: [SimulatedAgent]

    /// A fleet of `count` agents named `<prefix>-000001`, ...
    public init(configuration: Configuration, count: Int) {
        let shared = Shared(configuration: configuration)
        self.shared = shared
        self.agents = (0 ..< count).map { index in
            SimulatedAgent(agentSN: Self.agentSN(configuration.prefix, index), address: Self.dialAddress(configuration, index), shared: shared)
        }
    }

    public var configuration: Configuration { self.shared.configuration }
    public var counters: Counters { self.shared.counters }
    public var count: Int { self.agents.count }
    public var online: Int { self.counters.online.load(ordering: .relaxed) }

    public static func agentSN(_ prefix: String, _ index: Int) -> String {
        "\(prefix)-\(String(format: "%06d", index + 1))"
    }

    /// The AgentSNs of the fleet, in order.
    public var agentSNs: [String] { self.agents.map(\.agentSN) }

    /// Enrolls every agent that holds no certificate yet (`concurrency` at a time), as a fleet
    /// installed at once would; throws the first failure.
    public func enroll(concurrency: Int = 64) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, agent) in self.agents.enumerated() {
                if index >= concurrency { try await group.next() }
                group.addTask { _ = try await agent.security(at: agent.address) }
            }
            try await group.waitForAll()
        }
    }

    static func dialAddress(_ configuration: Configuration, _ index: Int) -> HostPort {
        guard configuration.spread else { return configuration.server }
        let host = "127.\(1 + index / 62_500 % 254).\(index / 250 % 250).\(1 + index % 250)"
        return HostPort(host: host, port: configuration.server.port)
    }

    /// Welcome times (milliseconds since 1970) from `since` on.
    public func welcomes(since: Int64) -> [Int64] {
        self.shared.welcomeTimes.withLock { $0.filter { $0 >= since } }
    }

    /// When Inits were accepted (milliseconds since 1970) from `since` on.
    public func admissions(since: Int64) -> [Int64] {
        self.shared.admissionTimes.withLock { $0.filter { $0 >= since } }
    }

    /// Runs the fleet while `body` runs: agents start with at most `window` of them connecting
    /// at a time (a real fleet's arrival is spread too), then `body` gets the fleet; when it
    /// returns, every agent is cancelled and given `settle` to disconnect.
    ///
    /// The agents run as tasks of their own, not children of a group: a group waits for every
    /// child, and one simulated connection that did not wind down (seen once in a thousand-agent
    /// storm whose node had just been stopped) then held the benchmark until its time limit.
    /// What has not stopped after `settle` is counted, logged and left behind, cancelled.
    public func run<Result: Sendable>(
        window: Int = 256,
        settle: Duration = .seconds(15),
        _ body: @escaping @Sendable (Fleet) async throws -> Result
    ) async throws -> Result {
        var tasks: [Task<Void, Never>] = []
        let stopped = Counter()
        let outcome: Swift.Result<Result, any Error>
        do {
            for (launched, agent) in self.agents.enumerated() {
                while launched - self.counters.welcomes.load(ordering: .relaxed) >= window {
                    try await Task.sleep(for: .milliseconds(2))
                }
                tasks.append(
                    Task {
                        await agent.run()
                        stopped.add()
                    }
                )
            }
            outcome = .success(try await body(self))
        } catch {
            outcome = .failure(error)
        }
        for task in tasks { task.cancel() }
        // Polled, not awaited: awaiting a task that never ends cannot be given up.
        let deadline = ContinuousClock.now.advanced(by: settle)
        while stopped.value < tasks.count, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let left = tasks.count - stopped.value
        if left > 0 {
            FileHandle.standardError.write(Data("fleet: \(left) of \(tasks.count) simulated agents had not stopped \(settle) after the end; left behind, cancelled\n".utf8))
        }
        return try outcome.get()
    }

    /// Waits until `count` agents (all by default) are online.
    public func waitOnline(_ count: Int? = nil, timeout: Duration) async throws {
        let wanted = count ?? self.count
        try await eventually(timeout: timeout, interval: .milliseconds(10), "\(wanted) agents online (\(self.online) are)") {
            self.online >= wanted
        }
    }

    /// Every online agent sends a status report now; returns how many did.
    @discardableResult
    public func reportAll() -> Int {
        self.agents.reduce(0) { $0 + ($1.send($1.statusReport) ? 1 : 0) }
    }

    /// Every online agent pings the node; returns when all pongs are back. A node handles a
    /// stream's messages in order, so everything an agent sent before has been handled then.
    public func pingAll() async {
        await withDiscardingTaskGroup { group in
            for index in self.agents.indices {
                group.addTask { _ = await self.ping(from: index) }
            }
        }
    }

    /// One application ping from agent `index` to the node and back (the stream's round
    /// trip); nil when the agent has no stream open.
    @discardableResult
    public func ping(from index: Int = 0) async -> Duration? {
        let agent = self.agents[index]
        let nonce = self.shared.nonces.add(1, ordering: .relaxed).newValue
        var message = Aspire_V1_AgentMessage()
        message.ping.nonce = nonce
        let clock = ContinuousClock()
        let started = clock.now
        let sent = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            self.shared.pongs.withLock { $0[nonce] = continuation }
            agent.unansweredPings.withLock { _ = $0.insert(nonce) }
            if !agent.send(message) {
                agent.unansweredPings.withLock { _ = $0.remove(nonce) }
                self.shared.pongs.withLock { $0.removeValue(forKey: nonce) }?.resume(returning: false)
            }
        }
        return sent ? clock.now - started : nil
    }
}

/// A count shared with child tasks.
final class Counter: Sendable {
    private let count = Mutex(0)

    func add() { self.count.withLock { $0 += 1 } }

    var value: Int { self.count.withLock { $0 } }
}
