import Foundation
public import RPC
import SwiftProtobuf

extension Aspire_V1_Task {
    /// The wire form of a stored task.
    public init(_ record: TaskRecord) {
        self.init()
        self.id = Int64(record.id)
        self.state = record.status
        self.status = record.status.name
        self.user = record.user
        self.command = record.command
        self.parameters = (try? Google_Protobuf_Struct(jsonString: record.body)) ?? Google_Protobuf_Struct()
        self.tags = record.selector
        if record.windowStart > 0 || record.windowEnd > 0 {
            self.window.startUnixMs = record.windowStart
            self.window.endUnixMs = record.windowEnd
        }
        self.maxConcurrency = record.maxConcurrency
        self.maxErrors = record.maxErrors
        self.count = Int32(record.count)
        self.complete = Int32(record.complete)
        self.failed = Int32(record.failed)
        self.createdUnixMs = record.created
        self.modifiedUnixMs = record.modified
    }
}

extension Aspire_V1_Subtask {
    /// The wire form of a stored subtask, with its result once the agent answered.
    public init(_ record: SubtaskRecord) {
        self.init()
        self.id = record.id
        self.agentSn = record.agentSN
        self.state = record.status
        self.status = record.status.name
        self.createdUnixMs = record.created
        self.modifiedUnixMs = record.modified
        if record.status == .succeeded || record.status == .failed {
            var result = Aspire_V1_CommandResult()
            result.id = record.id
            result.resp = Aspire_V1_CommandResult.Resp(rawValue: record.resp) ?? .unspecified
            result.retcode = Int32(record.retcode)
            result.message = record.message
            result.data = Data(record.data)
            result.stderr = Data(record.stderr)
            result.truncated = record.truncated
            result.startedUnixMs = record.started
            result.finishedUnixMs = record.finished
            self.result = result
        } else if !record.message.isEmpty {
            self.result.id = record.id
            self.result.resp = .failed
            self.result.message = record.message
        }
    }
}

extension Aspire_V1_TaskDetail {
    init(task: TaskRecord, subtasks: [SubtaskRecord]) {
        self.init()
        self.task = Aspire_V1_Task(task)
        self.subtasks = subtasks.map(Aspire_V1_Subtask.init(_:))
    }
}
