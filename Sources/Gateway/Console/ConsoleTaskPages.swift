import Foundation
import GRPCCore
import Hummingbird
import RPC
import SwiftProtobuf

/// Tasks: the list, newest first, and one task with each host's part and result.
extension Console {
    func tasks(_ visit: Visit) async throws -> Response {
        let page = Int(try visit.query.integer("page", range: 1 ... 1_000_000) ?? 1)
        let answer = try await self.admin.listTasks(
            .with {
                $0.offset = Int32(page - 1) * Self.pageSize
                $0.limit = Self.pageSize
            },
            metadata: visit.metadata
        )
        let pages = max(1, (Int(answer.count) + Int(Self.pageSize) - 1) / Int(Self.pageSize))
        return self.views.page(
            "tasks", tab: .tasks, session: visit.session,
            [
                "title": "Tasks", "count": answer.count, "page": page, "pages": pages,
                "previous": page > 1 ? "/tasks?page=\(page - 1)" : "", "next": page < pages ? "/tasks?page=\(page + 1)" : "",
                "tasks": answer.tasks.map(Self.taskValues),
            ]
        )
    }

    func task(_ visit: Visit, id text: String) async throws -> Response {
        guard let id = Int64(text), id > 0 else { throw AspireError(.badRequest, "a task id is a number, not '\(text)'") }
        let detail = try await self.admin.getTask(.with { $0.id = id }, metadata: visit.metadata)
        // A page of the hosts, those of one status when asked (`?status=failed`).
        let status = visit.query.string("status")
        let chosen = status.isEmpty ? detail.subtasks : detail.subtasks.filter { $0.status == status }
        let page = Int(try visit.query.integer("page", range: 1 ... 1_000_000) ?? 1)
        let size = Int(Self.pageSize)
        let pages = max(1, (chosen.count + size - 1) / size)
        let shown = chosen.dropFirst((page - 1) * size).prefix(size)
        func link(_ page: Int) -> String {
            "/tasks/\(id)?" + (status.isEmpty ? "" : "status=\(ConsoleText.encoded(status))&") + "page=\(page)"
        }
        let statuses = Dictionary(grouping: detail.subtasks, by: \.status).map { (name: $0.key, count: $0.value.count) }.sorted { $0.name < $1.name }
        var values = Self.taskValues(detail.task)
        values["parameters"] = (try? detail.task.parameters.jsonString()) ?? ""
        values["targets"] = detail.task.tags.isEmpty ? "" : detail.task.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
        values["cancellable"] = detail.task.state == .pending || detail.task.state == .running
        return self.views.page(
            "task", tab: .tasks, session: visit.session,
            [
                "title": "Task \(id)", "note": visit.query.string("note"), "task": values,
                "statuses": [["name": "all", "count": detail.subtasks.count, "href": "/tasks/\(id)", "current": status.isEmpty]]
                    + statuses.map { ["name": $0.name, "count": $0.count, "href": "/tasks/\(id)?status=\(ConsoleText.encoded($0.name))", "current": $0.name == status] },
                "page": page, "pages": pages, "previous": page > 1 ? link(page - 1) : "", "next": page < pages ? link(page + 1) : "",
                "subtasks": shown.map { subtask -> [String: Any] in
                    let result = subtask.result
                    let ended = subtask.hasResult && result.resp != .unspecified
                    return [
                        "sn": subtask.agentSn, "href": "/hosts/\(ConsoleText.encoded(subtask.agentSn))", "status": subtask.status,
                        "code": ended ? "\(result.retcode)" : "", "message": result.message,
                        "output": String(decoding: result.data, as: UTF8.self), "stderr": String(decoding: result.stderr, as: UTF8.self),
                        "bad": ended && (result.resp != .success || result.retcode != 0),
                        "modified": ConsoleText.time(subtask.modifiedUnixMs),
                    ]
                },
            ]
        )
    }

    func cancelTask(_ visit: Visit, form: FormFields) async throws -> Response {
        guard let id = Int64(form["id"]) else { throw AspireError(.badRequest, "which task? (id)") }
        _ = try await self.admin.cancelTask(.with { $0.id = id }, metadata: visit.metadata)
        return Self.back(to: "/tasks/\(id)", note: "Cancelled: hosts that have not started it will not.")
    }

    static func taskValues(_ task: Aspire_V1_Task) -> [String: Any] {
        [
            "id": task.id, "href": "/tasks/\(task.id)", "command": task.command, "user": task.user, "status": task.status,
            "count": task.count, "complete": task.complete, "failed": task.failed, "failedAny": task.failed > 0,
            "created": ConsoleText.time(task.createdUnixMs), "modified": ConsoleText.time(task.modifiedUnixMs),
            "progress": ConsoleChart.split(
                [("ok", Int(task.complete - task.failed)), ("failed", Int(task.failed)), ("pending", Int(task.count - task.complete))],
                label: "Hosts of task \(task.id) by outcome"
            ),
            "maxConcurrency": task.maxConcurrency, "maxErrors": task.maxErrors,
        ]
    }
}
