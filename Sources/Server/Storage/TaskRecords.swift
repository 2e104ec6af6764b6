public import RPC

/// A task as stored: a command for a list of hosts, or for the hosts carrying some tags within
/// a time window, with its counts.
public struct TaskRecord: Sendable, Hashable {
    public var id: Int
    public var status: TaskStatus
    public var user: String
    /// The method: sync.bash, getinfo.users, install, ...
    public var command: String
    /// The command's parameters, as the JSON the operator sent.
    public var body: String
    /// Tag selector (`{"svc":"ecs"}`) of a tag task; empty for a task by host list.
    public var selector: [String: String]
    public var windowStart: Int64
    public var windowEnd: Int64
    public var maxConcurrency: String
    public var maxErrors: String
    public var count: Int
    public var complete: Int
    public var failed: Int
    public var created: Int64
    public var modified: Int64
}

public enum TaskStatus: Int, Sendable, Hashable, CaseIterable {
    case pending = 0
    case running = 1
    case done = 2
    case failed = 3
    case cancelled = 4

    public var name: String {
        switch self {
        case .pending: "pending"
        case .running: "running"
        case .done: "done"
        case .failed: "failed"
        case .cancelled: "cancelled"
        }
    }
}

/// One host's part of a task; its id is the command id the agent sees.
public struct SubtaskRecord: Sendable, Hashable {
    public var id: String
    public var taskID: Int
    public var agentSN: String
    public var status: SubtaskStatus
    /// The result, once it came.
    public var resp: Int
    public var retcode: Int
    public var message: String
    public var data: [UInt8]
    public var stderr: [UInt8]
    public var truncated: Bool
    public var started: Int64
    public var finished: Int64
    public var created: Int64
    public var modified: Int64
}

public enum SubtaskStatus: Int, Sendable, Hashable, CaseIterable {
    /// Waiting for its host to be reachable.
    case pending = 0
    /// Sent to the agent; no result yet.
    case dispatched = 1
    /// The command ran and exited 0.
    case succeeded = 2
    /// The command failed, exited non-zero or timed out.
    case failed = 3
    /// Its host never came within the delivery time.
    case undeliverable = 4
    case cancelled = 5

    public var name: String {
        switch self {
        case .pending: "pending"
        case .dispatched: "dispatched"
        case .succeeded: "succeeded"
        case .failed: "failed"
        case .undeliverable: "undeliverable"
        case .cancelled: "cancelled"
        }
    }

    /// No further change can happen.
    public var isFinal: Bool { self.rawValue >= SubtaskStatus.succeeded.rawValue }
}

/// What an operator asks for.
public struct NewTask: Sendable, Hashable {
    public var user: String
    public var command: String
    public var body: String
    public var selector: [String: String]
    public var windowStart: Int64
    public var windowEnd: Int64
    public var maxConcurrency: String
    public var maxErrors: String

    public init(
        user: String = "", command: String, body: String = "{}", selector: [String: String] = [:], windowStart: Int64 = 0,
        windowEnd: Int64 = 0, maxConcurrency: String = "", maxErrors: String = ""
    ) {
        self.user = user
        self.command = command
        self.body = body
        self.selector = selector
        self.windowStart = windowStart
        self.windowEnd = windowEnd
        self.maxConcurrency = maxConcurrency
        self.maxErrors = maxErrors
    }
}

/// A command result as an agent sent it.
public struct AgentResult: Sendable {
    public var result: Aspire_V1_CommandResult
    public var agentSN: String

    public init(result: Aspire_V1_CommandResult, agentSN: String) {
        self.result = result
        self.agentSN = agentSN
    }
}
