import Foundation
import RPC

/// What one host of a console run has done so far.
struct ConsoleHostRun: Sendable {
    enum State: String, Sendable {
        /// Not sent yet (runs send to a few hosts at a time).
        case waiting
        case running
        /// Exit status 0.
        case ok
        /// Ran and failed: a non-zero exit status, a timeout, an unknown user.
        case failed
        /// Never ran: offline, unknown, refused.
        case error
    }

    let sn: String
    var state = State.waiting
    var taskID: Int64 = 0
    var node = ""
    /// What it printed, stdout and stderr as they came, at most ``ConsoleRuns/maxOutput`` bytes.
    var output = ""
    var truncated = false
    var code: Int32?
    var message = ""

    var ended: Bool { self.state == .ok || self.state == .failed || self.state == .error }
}

/// An event of a run, for the page that follows it.
enum ConsoleRunEvent: Sendable {
    /// A host's state changed (its output not included).
    case host(ConsoleHostRun)
    /// A host printed this.
    case output(sn: String, stderr: Bool, text: String)
    /// Every host has ended.
    case done
}

/// Commands started from the Run page. The commands themselves are the server's (each host's a
/// direct command, stored and audited as a task); a run is the gateway's view of them for the
/// page: each host's state and output so far, so a page reloaded or opened late shows the same,
/// and the live events for pages that follow it. Runs are kept in memory, the latest ``maxRuns``,
/// each visible to the operator who started it.
actor ConsoleRuns {
    static let maxOutput = 64 << 10
    static let maxRuns = 100
    static let maxHosts = 500

    struct Run: Sendable {
        let id: String
        let owner: String
        let command: String
        let user: String
        let timeout: Int32
        let created: Date
        var order: [String]
        var hosts: [String: ConsoleHostRun]
        var finished = false

        var failed: [String] { self.order.filter { self.hosts[$0]?.state == .failed || self.hosts[$0]?.state == .error } }
    }

    private var runs: [String: Run] = [:]
    private var subscribers: [String: [UUID: AsyncStream<ConsoleRunEvent>.Continuation]] = [:]

    func create(owner: String, command: String, user: String, timeout: Int32, hosts: [String]) -> Run {
        let id = UUID.random().uuidString.lowercased()
        let run = Run(
            id: id, owner: owner, command: command, user: user, timeout: timeout, created: Date(), order: hosts,
            hosts: Dictionary(hosts.map { ($0, ConsoleHostRun(sn: $0)) }) { first, _ in first }
        )
        self.runs[id] = run
        if self.runs.count > Self.maxRuns {
            let oldest = self.runs.values.filter(\.finished).sorted { $0.created < $1.created }
            for old in oldest.prefix(self.runs.count - Self.maxRuns) { self.runs[old.id] = nil }
        }
        return run
    }

    /// The run, if `owner` started it.
    func run(_ id: String, owner: String) -> Run? {
        guard let run = self.runs[id], run.owner == owner else { return nil }
        return run
    }

    /// The run as it is now and its events from now on, with nothing between the two lost.
    func follow(_ id: String, owner: String) -> (Run, AsyncStream<ConsoleRunEvent>)? {
        guard let run = self.run(id, owner: owner) else { return nil }
        let (stream, continuation) = AsyncStream.makeStream(of: ConsoleRunEvent.self, bufferingPolicy: .bufferingNewest(4096))
        if run.finished {
            continuation.finish()
        } else {
            let key = UUID.random()
            self.subscribers[id, default: [:]][key] = continuation
            continuation.onTermination = { _ in Task { await self.unsubscribe(id, key) } }
        }
        return (run, stream)
    }

    private func unsubscribe(_ id: String, _ key: UUID) {
        self.subscribers[id]?[key] = nil
    }

    func update(_ id: String, _ sn: String, _ change: (inout ConsoleHostRun) -> Void) {
        guard var host = self.runs[id]?.hosts[sn] else { return }
        change(&host)
        self.runs[id]?.hosts[sn] = host
        self.send(id, .host(host))
    }

    func output(_ id: String, _ sn: String, stderr: Bool, text: String) {
        guard var host = self.runs[id]?.hosts[sn] else { return }
        let room = Self.maxOutput - host.output.utf8.count
        if room <= 0 {
            guard !host.truncated else { return }
            host.truncated = true
        } else {
            host.output += text.utf8.count <= room ? text : String(decoding: text.utf8.prefix(room), as: UTF8.self)
            if text.utf8.count > room { host.truncated = true }
        }
        self.runs[id]?.hosts[sn] = host
        self.send(id, .output(sn: sn, stderr: stderr, text: text))
    }

    func finish(_ id: String) {
        self.runs[id]?.finished = true
        self.send(id, .done)
        for continuation in (self.subscribers.removeValue(forKey: id) ?? [:]).values { continuation.finish() }
    }

    private func send(_ id: String, _ event: ConsoleRunEvent) {
        for continuation in (self.subscribers[id] ?? [:]).values { continuation.yield(event) }
    }
}
