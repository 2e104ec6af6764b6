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

    /// A scheduled run as reported: it has ended.
    static func scheduleRun(_ run: Aspire_V1_ScheduleRun) -> [String: Any] {
        ConsoleText.result(run.result, ended: true).merging([
            "name": run.name, "sn": run.agentSn, "href": "/hosts/\(ConsoleText.encoded(run.agentSn))", "due": ConsoleText.time(run.dueUnixMs),
        ]) { $1 }
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
        let pager = try ConsolePager(visit.query, path: "/audit", keeping: ["operator", "method"], newestFirst: true)
        let answer = try await self.admin.listAudit(
            .with {
                $0.operator = pager["operator"]
                $0.method = pager["method"]
                $0.offset = pager.offset
                $0.limit = pager.limit
            },
            metadata: visit.metadata
        )
        return self.views.page(
            "audit", tab: .audit, session: visit.session,
            [
                "title": "Audit", "filterOperator": pager["operator"], "filterMethod": pager["method"], "count": answer.count,
                "pager": pager.values(count: Int(answer.count)),
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
