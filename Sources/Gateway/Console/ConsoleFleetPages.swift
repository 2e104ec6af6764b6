import Foundation
import GRPCCore
import Hummingbird
import RPC
import SwiftProtobuf

/// Schedules, plugins and their metrics, and the audit trail: what the fleet is told to do on
/// its own, what it reports, and who did what.
extension Console {
    /// Targets as a page shows them: the hosts named, or the tags.
    static func targets(agents: [String], tags: [String: String]) -> [String: Any] {
        [
            "agents": agents.prefix(20).joined(separator: ", ") + (agents.count > 20 ? " and \(agents.count - 20) more" : ""),
            "tags": tags.sorted { $0.key < $1.key }.map { ["text": "\($0.key)=\($0.value)", "href": "/hosts?tag=\(ConsoleText.encoded("\($0.key)=\($0.value)"))"] },
        ]
    }

    func schedules(_ visit: Visit) async throws -> Response {
        async let list = self.admin.listSchedules(.with { $0.next = 3 }, metadata: visit.metadata)
        async let runs = self.admin.listScheduleRuns(.with { $0.limit = 20 }, metadata: visit.metadata)
        let (schedules, recent) = try await (list, runs)
        return self.views.page(
            "schedules", tab: .schedules, session: visit.session,
            [
                "title": "Schedules",
                "schedules": schedules.schedules.map { info -> [String: Any] in
                    let schedule = info.schedule
                    return Self.targets(agents: info.agents, tags: info.tags).merging([
                        "name": schedule.name, "expr": schedule.expr, "tz": schedule.tz.isEmpty ? "UTC" : schedule.tz, "user": schedule.user,
                        "command": schedule.command, "timeout": schedule.timeout, "enabled": !schedule.disabled,
                        "next": info.nextUnixMs.map(ConsoleText.time), "runsHref": "/schedules/runs?name=\(ConsoleText.encoded(schedule.name))",
                    ]) { $1 }
                },
                "runs": recent.runs.map(Self.scheduleRun),
            ]
        )
    }

    func scheduleRuns(_ visit: Visit) async throws -> Response {
        let name = visit.query.string("name")
        let answer = try await self.admin.listScheduleRuns(
            .with {
                $0.name = name
                $0.agentSn = visit.query.string("agentsn")
                $0.limit = 200
            },
            metadata: visit.metadata
        )
        return self.views.page(
            "scheduleruns", tab: .schedules, session: visit.session,
            ["title": name.isEmpty ? "Scheduled runs" : "Runs of \(name)", "count": answer.count, "runs": answer.runs.map(Self.scheduleRun)]
        )
    }

    static func scheduleRun(_ run: Aspire_V1_ScheduleRun) -> [String: Any] {
        let result = run.result
        return [
            "name": run.name, "sn": run.agentSn, "href": "/hosts/\(ConsoleText.encoded(run.agentSn))", "due": ConsoleText.time(run.dueUnixMs),
            "code": "\(result.retcode)", "message": result.message, "bad": result.resp != .success || result.retcode != 0,
            "output": String(decoding: result.data + result.stderr, as: UTF8.self),
        ]
    }

    func plugins(_ visit: Visit) async throws -> Response {
        let sn = visit.query.string("agentsn")
        let prefix = visit.query.string("prefix")
        async let list = self.admin.listPlugins(Aspire_V1_ListPluginsRequest(), metadata: visit.metadata)
        async let metrics = self.admin.queryMetrics(
            .with {
                $0.agentSn = sn
                $0.prefix = prefix
                $0.limit = 200
            },
            metadata: visit.metadata
        )
        let (plugins, values) = try await (list, metrics)
        return self.views.page(
            "plugins", tab: .plugins, session: visit.session,
            [
                "title": "Plugins and metrics", "sn": sn, "prefix": prefix, "metricCount": values.count,
                "plugins": plugins.plugins.map { info -> [String: Any] in
                    let plugin = info.plugin
                    return Self.targets(agents: info.agents, tags: info.tags).merging([
                        "name": plugin.name, "source": plugin.git.isEmpty ? plugin.url : "\(plugin.git) @ \(plugin.ref)", "period": plugin.period,
                        "user": plugin.user, "timeout": plugin.timeout, "updated": ConsoleText.time(info.modifiedUnixMs),
                    ]) { $1 }
                },
                "metrics": values.metrics.map { metric -> [String: Any] in
                    [
                        "sn": metric.agentSn, "href": "/hosts/\(ConsoleText.encoded(metric.agentSn))", "name": metric.name,
                        "tags": metric.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "),
                        "value": ConsoleText.number(metric.value), "time": ConsoleText.time(metric.timestamp * 1000),
                    ]
                },
            ]
        )
    }

    func audit(_ visit: Visit) async throws -> Response {
        let query = visit.query
        let page = Int(try query.integer("page", range: 1 ... 1_000_000) ?? 1)
        let answer = try await self.admin.listAudit(
            .with {
                $0.operator = query.string("operator")
                $0.method = query.string("method")
                $0.offset = Int32(page - 1) * Self.pageSize
                $0.limit = Self.pageSize
            },
            metadata: visit.metadata
        )
        let pages = max(1, (Int(answer.count) + Int(Self.pageSize) - 1) / Int(Self.pageSize))
        var filter = ["operator": query.string("operator"), "method": query.string("method")].filter { !$0.value.isEmpty }
            .map { "\($0.key)=\(ConsoleText.encoded($0.value))" }.sorted()
        func link(_ page: Int) -> String {
            filter.removeAll { $0.hasPrefix("page=") }
            return "/audit?" + (filter + ["page=\(page)"]).joined(separator: "&")
        }
        return self.views.page(
            "audit", tab: .audit, session: visit.session,
            [
                "title": "Audit", "filterOperator": query.string("operator"), "filterMethod": query.string("method"), "count": answer.count,
                "page": page, "pages": pages, "previous": page > 1 ? link(page - 1) : "", "next": page < pages ? link(page + 1) : "",
                "entries": answer.entries.map { entry -> [String: Any] in
                    [
                        "time": ConsoleText.time(entry.timeUnixMs), "actor": entry.actor, "role": entry.role, "address": entry.address,
                        "node": entry.node, "method": entry.method, "targets": entry.targets, "resolved": entry.resolved,
                        "command": entry.command, "outcome": entry.outcome, "bad": !entry.outcome.hasPrefix("ok"),
                        "task": entry.task == 0 ? "" : "\(entry.task)",
                    ]
                },
            ]
        )
    }
}
