import Foundation
import GRPCCore
import Logging
import RPC
import SwiftProtobuf
import Synchronization

/// Records a mutating call in the audit trail once, when it has ended: who (the operator, or the
/// host for its own enrollment), from where, the method, the targets as given and, for tasks and
/// commands, as resolved, the call's message (JSON) and its digest, and the outcome. Tokens are
/// never in a message (they travel in metadata), so they never reach the trail.
struct CallAudit: Sendable {
    let store: SQLStore
    let node: String
    let logger: Logger

    /// Runs `next` and records how the call ended. `message` is the call's one request message
    /// when it was read (unary calls).
    func around<Output: Sendable>(
        actor: String,
        role: String,
        message: (any SwiftProtobuf.Message & Sendable)?,
        context: ServerContext,
        _ next: () async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        var record = AuditRecord(time: Date().unixMilliseconds, actor: actor, method: context.descriptor.method)
        record.role = role
        record.address = context.remotePeer
        record.node = self.node
        if let message {
            record.record(command: (try? message.jsonString()) ?? "")
            record.targets = Self.targets(of: message)
        }
        let response: StreamingServerResponse<Output>
        do {
            response = try await next()
        } catch {
            await self.append(record, outcome: Self.outcome(of: error))
            throw error
        }
        guard case .success(let contents) = response.accepted else {
            if case .failure(let error) = response.accepted { await self.append(record, outcome: Self.outcome(of: error)) }
            return response
        }
        // Unary handlers already ran; their answer is written by the producer, seen here.
        let started = record
        return StreamingServerResponse(metadata: contents.metadata) { writer in
            let first = Mutex<Output?>(nil)
            do {
                let trailers = try await contents.producer(
                    RPCWriter(wrapping: Observing(base: writer) { message in first.withLock { if $0 == nil { $0 = message } } })
                )
                var done = started
                if let output = first.withLock({ $0 }) { Self.resolve(output, request: message, into: &done) }
                await self.append(done, outcome: "ok")
                return trailers
            } catch {
                await self.append(started, outcome: Self.outcome(of: error))
                throw error
            }
        }
    }

    private func append(_ record: AuditRecord, outcome: String) async {
        var record = record
        record.outcome = outcome
        do {
            try await self.store.appendAudit(record)
        } catch {
            self.logger.error(
                "cannot record a call in the audit trail",
                metadata: ["audit.actor": "\(record.actor)", "audit.method": "\(record.method)", "error": "\(String(reflecting: error))"]
            )
        }
    }

    static func outcome(of error: any Error) -> String {
        if let error = error as? RPCError { return "\(error.code): \(error.message)" }
        if let error = error as? AspireError { return "\(error.code.rawValue): \(error.cause)" }
        return "\(error)"
    }

    /// The targets a call names, as JSON: its agents and tags (``ScopeCheck/Targets/given(by:)``),
    /// or the task it cancels.
    static func targets(of message: any SwiftProtobuf.Message) -> String {
        var object: [String: Any]
        if let given = ScopeCheck.Targets.given(by: message) {
            object = ["agents": given.agents]
            if !given.selector.isEmpty { object["tags"] = given.selector }
        } else if let request = message as? Aspire_V1_CancelTaskRequest {
            object = ["task": request.id]
        } else {
            return ""
        }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// The hosts a task or a command went to, and the task's id, from the call's answer.
    static func resolve(_ output: Any, request: (any SwiftProtobuf.Message & Sendable)?, into record: inout AuditRecord) {
        var hosts: [String] = []
        switch (output, request) {
        case (let detail as Aspire_V1_TaskDetail, _):
            hosts = detail.subtasks.map(\.agentSn)
            record.task = Int(detail.task.id)
        case (let response as Aspire_V1_RunCommandResponse, let request as Aspire_V1_RunCommandRequest):
            hosts = [request.agentSn]
            record.task = Int(response.taskID)
        case (let event as Aspire_V1_CommandEvent, let request as Aspire_V1_RunCommandRequest):
            hosts = [request.agentSn]
            record.task = Int(event.accepted.taskID)
        default:
            return
        }
        guard !hosts.isEmpty, let data = try? JSONSerialization.data(withJSONObject: hosts) else { return }
        record.resolved = String(decoding: data, as: UTF8.self)
    }
}

/// A writer that shows each message to `seen` before passing it on.
private struct Observing<Element: Sendable>: RPCWriterProtocol {
    let base: RPCWriter<Element>
    let seen: @Sendable (Element) -> Void

    func write(_ element: Element) async throws {
        self.seen(element)
        try await self.base.write(element)
    }

    func write(contentsOf elements: some Sequence<Element>) async throws {
        for element in elements { try await self.write(element) }
    }
}
