import Foundation
import GRPCCore
import Hummingbird
import RPC
import SwiftProtobuf

/// Tasks: the list, newest first, and one task with each host's part and result.
extension Console {
    func tasks(_ visit: Visit) async throws -> Response {
        let pager = try ConsolePager(visit.query, path: "/tasks", newestFirst: true)
        let answer = try await self.admin.listTasks(
            .with {
                $0.offset = pager.offset
                $0.limit = pager.limit
            },
            metadata: visit.metadata
        )
        return self.views.page(
            "tasks", tab: .tasks, session: visit.session,
            [
                "title": "Tasks", "count": answer.count, "pager": pager.values(count: Int(answer.count)),
                "tasks": answer.tasks.map(Self.taskValues),
            ]
        )
    }

    func task(_ visit: Visit, id text: String) async throws -> Response {
        guard let id = Int64(text), id > 0 else { throw AspireError(.badRequest, "a task id is a number, not '\(text)'") }
        let detail = try await self.admin.getTask(.with { $0.id = id }, metadata: visit.metadata)
        // A page of the hosts, those of one status when asked (`?status=failed`).
        let pager = try ConsolePager(visit.query, path: "/tasks/\(id)", keeping: ["status"])
        let status = pager["status"]
        let chosen = status.isEmpty ? detail.subtasks : detail.subtasks.filter { $0.status == status }
        let shown = chosen.dropFirst(Int(pager.offset)).prefix(Int(pager.limit))
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
                "pager": pager.values(count: chosen.count),
                "subtasks": shown.map { subtask -> [String: Any] in
                    ConsoleText.result(of: subtask).merging([
                        "sn": subtask.agentSn, "href": "/hosts/\(ConsoleText.encoded(subtask.agentSn))", "status": subtask.status,
                        "modified": ConsoleText.time(subtask.modifiedUnixMs),
                    ]) { $1 }
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
