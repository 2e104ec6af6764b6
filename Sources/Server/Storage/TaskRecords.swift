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
    /// The command as the task engine made it from `command` and `body` when the task was
    /// created; nil for tasks stored before it was kept.
    public var typed: Aspire_V1_Command?
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

/// Where a task is: the Admin API's enum, kept in the store by its number.
public typealias TaskStatus = Aspire_V1_TaskStatus

extension Aspire_V1_TaskStatus {
    /// The word the seed's clients read (the Admin API's `status`, the REST `status`).
    public var name: String {
        switch self {
        case .pending: "pending"
        case .running: "running"
        case .done: "done"
        case .failed: "failed"
        case .cancelled: "cancelled"
        case .UNRECOGNIZED(let value): "unknown(\(value))"
        }
    }

    /// A task that still sends to hosts and takes new ones.
    public var isOpen: Bool { self == .pending || self == .running }
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

/// Where one host's part of a task is: the Admin API's enum, kept in the store by its number.
/// The transitions and the SQL that makes each are listed at the top of `SQLStore+Tasks.swift`.
public typealias SubtaskStatus = Aspire_V1_SubtaskStatus

extension Aspire_V1_SubtaskStatus {
    /// The word the seed's clients read.
    public var name: String {
        switch self {
        case .pending: "pending"
        case .dispatched: "dispatched"
        case .succeeded: "succeeded"
        case .failed: "failed"
        case .undeliverable: "undeliverable"
        case .cancelled: "cancelled"
        case .UNRECOGNIZED(let value): "unknown(\(value))"
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
    /// The command as it will be sent (without an id).
    public var typed: Aspire_V1_Command?
    /// The operator who created it (its dispatches are audited in that name).
    public var actor: String = ""

    public init(
        user: String = "", command: String, body: String = "{}", typed: Aspire_V1_Command? = nil, selector: [String: String] = [:],
        windowStart: Int64 = 0, windowEnd: Int64 = 0, maxConcurrency: String = "", maxErrors: String = ""
    ) {
        self.user = user
        self.command = command
        self.body = body
        self.typed = typed
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
