import Foundation
import GRPCCore
import Hummingbird
import RPC
import SwiftProtobuf

/// The console's pages: each reads what it shows from the Admin service with the operator's
/// token and hands the template plain values.
extension Console {
    // MARK: Dashboard

    func dashboard(_ visit: Visit) async throws -> Response {
        let metadata = visit.metadata
        async let dashboard = self.admin.dashboard(Aspire_V1_DashboardRequest(), metadata: metadata)
        async let regions = self.admin.listRegions(Aspire_V1_ListRegionsRequest(), metadata: metadata)
        async let tasks = self.admin.listTasks(.with { $0.limit = 8 }, metadata: metadata)
        async let events = self.admin.listEvents(.with { $0.limit = 10 }, metadata: metadata)
        let (summary, regionList, recentTasks, recentEvents) = try await (dashboard, regions, tasks, events)

        var perRegion: [[String: Any]] = []
        for region in regionList.regions {
            let count = try await self.admin.listHosts(.with { $0.region = region.id; $0.limit = 1 }, metadata: metadata).count
            perRegion.append(["name": region.name, "hosts": count, "href": "/hosts?region=\(region.id)"])
        }
        let taskRows = recentTasks.tasks.map { task -> [String: Any] in
            [
                "id": task.id, "command": task.command, "user": task.user, "status": task.status, "count": task.count,
                "complete": task.complete, "failed": task.failed, "created": ConsoleText.time(task.createdUnixMs),
                "failedAny": task.failed > 0,
            ]
        }
        return self.views.page(
            "dashboard", tab: .dashboard, session: visit.session,
            [
                "title": "Dashboard",
                "total": summary.hostsTotal, "online": summary.hostsOnline, "offline": summary.hostsOffline,
                "connectedHere": summary.connectedHere,
                // The kept counts, then the counts of now, which hold since the last of them.
                "historyChart": ConsoleChart.history(
                    summary.history.map { (time: $0.timeUnixMs, total: Int($0.total), online: Int($0.online)) }
                        + [(time: Int64(Date().timeIntervalSince1970 * 1000), total: Int(summary.hostsTotal), online: Int(summary.hostsOnline))],
                    now: Int64(Date().timeIntervalSince1970 * 1000)
                ),
                "hostsChart": ConsoleChart.split(
                    [("online", Int(summary.hostsOnline)), ("offline", Int(summary.hostsOffline)),
                     ("other", Int(summary.hostsTotal - summary.hostsOnline - summary.hostsOffline))],
                    label: "Hosts online and offline"
                ),
                "deployments": summary.deployments.map { deployment -> [String: Any] in
                    [
                        "name": deployment.name, "version": deployment.version, "hosts": deployment.hosts, "running": deployment.running,
                        "stopped": deployment.stopped, "fatal": deployment.fatal, "killed": deployment.killed,
                        "trouble": deployment.fatal + deployment.killed > 0,
                    ]
                },
                "nodes": summary.nodes.map { node -> [String: Any] in
                    ["name": node.name, "address": node.address, "state": node.state, "hosts": node.hosts, "href": "/hosts?node=\(ConsoleText.encoded(node.name))"]
                },
                "regions": perRegion,
                "tasks": taskRows,
                "tasksChart": ConsoleChart.tasks(recentTasks.tasks.reversed().map { (id: $0.id, complete: Int($0.complete), failed: Int($0.failed), count: Int($0.count)) }),
                "events": recentEvents.events.map(Self.event),
            ]
        )
    }

    // MARK: Hosts

    /// The host list's filters in its URL: the REST route's names (``Aspire_V1_ListHostsRequest/init(filter:)``).
    static var hostFilters: [String] { ["status", "tag", "hostname", "region", "node"] }

    func hosts(_ visit: Visit) async throws -> Response {
        let filter = try ConsolePager(visit.query, path: "/hosts", keeping: Self.hostFilters)
        var request = try Aspire_V1_ListHostsRequest(filter: visit.query)
        request.offset = filter.offset
        request.limit = filter.limit
        async let list = self.admin.listHosts(request, metadata: visit.metadata)
        async let regions = self.admin.listRegions(Aspire_V1_ListRegionsRequest(), metadata: visit.metadata)
        let (answer, regionList) = try await (list, regions)
        let names = Dictionary(regionList.regions.map { ($0.id, $0.name) }) { first, _ in first }
        return self.views.page(
            "hosts", tab: .hosts, session: visit.session,
            [
                "title": "Hosts",
                "note": visit.query.string("note"),
                "filter": [
                    "tag": filter["tag"], "hostname": filter["hostname"], "node": filter["node"],
                    "statuses": ["", "online", "offline", "deleted"].map { ["value": $0, "label": $0.isEmpty ? "any" : $0, "selected": $0 == filter["status"]] },
                    "regions": [["value": "", "label": "any", "selected": filter["region"].isEmpty]]
                        + regionList.regions.map { ["value": "\($0.id)", "label": $0.name, "selected": "\($0.id)" == filter["region"]] },
                ],
                "count": answer.count, "any": answer.count > 0,
                "first": answer.count == 0 ? 0 : Int(answer.offset) + 1,
                "last": Int(answer.offset) + answer.hosts.count,
                "pager": filter.values(count: Int(answer.count)),
                "hosts": answer.hosts.map { host -> [String: Any] in
                    var row = Self.hostFacts(host)
                    row["region"] = host.region == 0 ? "" : names[host.region] ?? "\(host.region)"
                    return row
                },
            ]
        )
    }

    /// The host list's rows as they change, as Server-Sent Events (`status` {sn, status,
    /// modified, node} for each row that changed, every row first; `count` when the number of
    /// matches moves): the same filters and page as the list, read every ``liveInterval``. One
    /// stream per open page, ended when the page goes.
    func hostsLive(_ visit: Visit) async throws -> Response {
        let filter = try ConsolePager(visit.query, path: "/hosts", keeping: Self.hostFilters)
        var request = try Aspire_V1_ListHostsRequest(filter: visit.query)
        request.offset = filter.offset
        request.limit = filter.limit
        let (admin, metadata, interval, query) = (self.admin, visit.metadata, self.liveInterval, request)
        return ConsoleEvents.response { events in
            var seen: [String: String] = [:]
            var count: Int32 = -1
            while !Task.isCancelled {
                let answer = try await admin.listHosts(query, metadata: metadata)
                if answer.count != count {
                    count = answer.count
                    events.yield(ConsoleEvents.encode("count", ["count": Int(count)]))
                }
                for host in answer.hosts {
                    let state = "\(host.status)|\(host.modifiedUnixMs)|\(host.node)"
                    guard seen[host.agentSn] != state else { continue }
                    seen[host.agentSn] = state
                    events.yield(
                        ConsoleEvents.encode(
                            "status",
                            ["sn": host.agentSn, "status": host.status, "node": host.node, "modified": ConsoleText.time(host.modifiedUnixMs)]
                        )
                    )
                }
                try await Task.sleep(for: interval)
            }
        }
    }

    func host(_ visit: Visit, sn: String, facts read: [String: Any]? = nil) async throws -> Response {
        var request = Aspire_V1_GetHostRequest()
        request.agentSn = sn
        async let host = self.admin.getHost(request, metadata: visit.metadata)
        async let events = self.admin.listEvents(.with { $0.agentSn = sn; $0.limit = 20 }, metadata: visit.metadata)
        let mayReadMetrics = visit.session.may("QueryMetrics")
        async let metrics = mayReadMetrics
            ? self.admin.queryMetrics(.with { $0.agentSn = sn; $0.limit = 100 }, metadata: visit.metadata).metrics : []
        async let regions = self.admin.listRegions(Aspire_V1_ListRegionsRequest(), metadata: visit.metadata)
        let (record, eventList, metricList, regionList) = try await (host, events, metrics, regions)
        var facts = Self.hostFacts(record)
        facts["tagsAction"] = "/hosts/\(ConsoleText.encoded(sn))/tags"
        facts["regionAction"] = "/hosts/\(ConsoleText.encoded(sn))/region"
        facts["regionName"] = regionList.regions.first { $0.id == record.region }?.name ?? (record.region == 0 ? "global" : "\(record.region)")
        facts["regions"] = [["id": 0, "name": "global", "selected": record.region == 0]]
            + regionList.regions.filter { $0.id != 0 }.map { ["id": $0.id, "name": $0.name, "selected": $0.id == record.region] }
        facts["identity"] = record.identity
        facts["prevers"] = record.prevers
        facts["missingTools"] = record.missingTools.joined(separator: ", ")
        facts["step"] = record.step
        facts["created"] = ConsoleText.time(record.createdUnixMs)
        facts["lastSeen"] = ConsoleText.time(record.lastSeenUnixMs)
        facts["certificateNotAfter"] = record.certificateNotAfter == 0 ? "" : ConsoleText.time(record.certificateNotAfter * 1000)
        return self.views.page(
            "host", tab: .hosts, session: visit.session,
            [
                "title": record.hostname.isEmpty ? record.agentSn : record.hostname,
                "note": visit.query.string("note"),
                "host": facts,
                "subagents": record.agents.map { agent -> [String: Any] in
                    [
                        "name": agent.name, "version": agent.version, "status": agent.status, "pid": agent.pid, "restarts": agent.restarts,
                        "uptime": ConsoleText.duration(seconds: agent.uptime), "message": agent.message, "trouble": ["fatal", "killed"].contains(agent.status),
                    ]
                },
                "events": eventList.events.map(Self.event),
                "results": record.recent.map { recent -> [String: Any] in
                    ConsoleText.result(of: recent.subtask).merging([
                        "task": recent.taskID, "href": "/tasks/\(recent.taskID)", "command": recent.command, "status": recent.subtask.status,
                        "time": ConsoleText.time(recent.subtask.modifiedUnixMs),
                    ]) { $1 }
                },
                "metrics": metricList.map { metric -> [String: Any] in
                    [
                        "name": metric.name, "tags": metric.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "),
                        "value": ConsoleText.number(metric.value), "time": ConsoleText.time(metric.timestamp * 1000),
                    ]
                },
                "topics": CommandMethod.GetInfoTopic.allCases.map { ["name": $0.rawValue, "selected": $0.rawValue == (read?["topic"] as? String)] },
            ].merging(read.map { ["read": $0] } ?? [:]) { $1 }
        )
    }

    /// getinfo on demand: the host answers now (through whichever node holds it), and its
    /// page shows the answer.
    func readFacts(_ visit: Visit, form: FormFields, sn: String) async throws -> Response {
        try visit.require("RunCommand", to: "ask a host for its facts")
        guard let topic = CommandMethod.GetInfoTopic(rawValue: form["topic"]) else {
            throw AspireError(.badRequest, "topic is one of \(CommandMethod.GetInfoTopic.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var request = Aspire_V1_RunCommandRequest()
        request.agentSn = sn
        request.command.method = CommandMethod.getInfo(topic).name
        request.command.getinfo = Aspire_V1_GetInfoParams()
        request.waitSeconds = 30
        let result = try await self.admin.runCommand(request, metadata: visit.metadata).result
        let data = result.data
        var text = String(decoding: data, as: UTF8.self)
        if let object = try? JSONSerialization.jsonObject(with: data),
            let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        {
            text = String(decoding: pretty, as: UTF8.self)
        }
        let ok = result.resp == .success && result.retcode == 0
        return try await self.host(
            visit, sn: sn,
            facts: ["topic": topic.rawValue, "output": text, "message": ok ? "" : result.message, "failed": !ok, "time": ConsoleText.time(result.finishedUnixMs)]
        )
    }

    func setRegion(_ visit: Visit, form: FormFields, sn: String) async throws -> Response {
        guard let region = Int64(form["region"]) else { throw AspireError(.badRequest, "which region? (region)") }
        _ = try await self.admin.setHostRegion(.with { $0.agentSns = [sn]; $0.region = region }, metadata: visit.metadata)
        return Self.back(to: "/hosts/\(ConsoleText.encoded(sn))", note: "Moved to region \(region).")
    }

    func bindTag(_ visit: Visit, form: FormFields, sn: String) async throws -> Response {
        var request = Aspire_V1_BindTagRequest()
        request.name = form["name"].trimmingCharacters(in: .whitespaces)
        request.value = form["value"].trimmingCharacters(in: .whitespaces)
        request.agentSns = [sn]
        request.unbind = form["unbind"] == "1"
        _ = try await self.admin.bindTag(request, metadata: visit.metadata)
        let done = request.unbind ? "Unbound" : "Bound"
        return Self.back(to: "/hosts/\(ConsoleText.encoded(sn))", note: "\(done) \(request.name)=\(request.value).")
    }

    // MARK: Agent versions

    func versions(_ visit: Visit) async throws -> Response {
        let answer = try await self.admin.listPackages(.with { $0.limit = 1000; $0.sortBy = "name" }, metadata: visit.metadata)
        return self.views.page(
            "versions", tab: .versions, session: visit.session,
            [
                "title": "Agent versions",
                "note": visit.query.string("note"),
                "packages": answer.packages.map { package -> [String: Any] in
                    [
                        "name": package.name, "version": package.version, "os": package.os, "arch": package.arch, "path": package.path,
                        "file": package.file, "sha256": package.sha256, "size": ConsoleText.bytes(package.size),
                        "id": package.id,
                        "install": "aspirectl deploy \(package.name) \(package.version) --agents SN1,SN2",
                        "installTag": "aspirectl deploy \(package.name) \(package.version) --tag KEY=VALUE",
                        "rest": #"{"command":"install","agents":["SN1"],"parameters":{"name":"\#(package.name)","version":"\#(package.version)"}}"#,
                        "deployHref": "/versions/deploy?name=\(ConsoleText.encoded(package.name))&version=\(ConsoleText.encoded(package.version))",
                    ]
                },
            ]
        )
    }

    // MARK: Tags

    func tags(_ visit: Visit) async throws -> Response {
        let answer = try await self.admin.listTags(Aspire_V1_ListTagsRequest(), metadata: visit.metadata)
        return self.views.page(
            "tags", tab: .tags, session: visit.session,
            [
                "title": "Tags",
                "note": visit.query.string("note"),
                "tags": answer.tags.map { tag -> [String: Any] in
                    [
                        "id": tag.id, "name": tag.name, "value": tag.value, "hosts": tag.hosts,
                        "href": "/hosts?tag=\(ConsoleText.encoded("\(tag.name)=\(tag.value)"))", "modified": ConsoleText.time(tag.modifiedUnixMs),
                    ]
                },
            ]
        )
    }

    func createTag(_ visit: Visit, form: FormFields) async throws -> Response {
        var request = Aspire_V1_CreateTagRequest()
        request.name = form["name"].trimmingCharacters(in: .whitespaces)
        request.value = form["value"].trimmingCharacters(in: .whitespaces)
        let tag = try await self.admin.createTag(request, metadata: visit.metadata)
        return Self.back(to: "/tags", note: "Created \(tag.name)=\(tag.value).")
    }

    func deleteTag(_ visit: Visit, form: FormFields) async throws -> Response {
        guard let id = Int64(form["id"]) else { throw AspireError(.badRequest, "which tag? (id)") }
        _ = try await self.admin.deleteTag(.with { $0.id = id }, metadata: visit.metadata)
        return Self.back(to: "/tags", note: "Deleted the tag.")
    }

    // MARK: Formatting

    static func hostFacts(_ host: Aspire_V1_Host) -> [String: Any] {
        [
            "sn": host.agentSn, "href": "/hosts/\(ConsoleText.encoded(host.agentSn))", "hostname": host.hostname, "ip": host.ipaddr,
            "os": host.os, "arch": host.arch, "version": host.curvers, "status": host.status, "node": host.node,
            "online": host.status == "online", "modified": ConsoleText.time(host.modifiedUnixMs),
            "tags": host.tags.map { tag in ["name": tag.name, "value": tag.value, "href": "/hosts?tag=\(ConsoleText.encoded("\(tag.name)=\(tag.value)"))"] },
            "tagCount": host.tags.count, "hasTags": !host.tags.isEmpty,
        ]
    }

    static func event(_ event: Aspire_V1_EventEntry) -> [String: Any] {
        [
            "sn": event.agentSn, "href": "/hosts/\(ConsoleText.encoded(event.agentSn))", "category": event.category, "message": event.message,
            "time": ConsoleText.time(event.occurredUnixMs),
        ]
    }
}

/// Values as the pages show them.
enum ConsoleText {
    /// A command's result as the pages show it: its exit status (once it ended), message,
    /// stdout and stderr, and whether it failed.
    static func result(_ result: Aspire_V1_CommandResult, ended: Bool) -> [String: Any] {
        [
            "code": ended ? "\(result.retcode)" : "", "message": result.message,
            "output": String(decoding: result.data, as: UTF8.self), "stderr": String(decoding: result.stderr, as: UTF8.self),
            "bad": ended && (result.resp != .success || result.retcode != 0),
        ]
    }

    /// A host's part of a task: ended once the host answered (or the task ended it).
    static func result(of subtask: Aspire_V1_Subtask) -> [String: Any] {
        self.result(subtask.result, ended: subtask.hasResult && subtask.result.resp != .unspecified)
    }

    /// A time as operators read it: UTC, to the second.
    static func time(_ unixMilliseconds: Int64) -> String {
        guard unixMilliseconds > 0 else { return "" }
        let date = Date(timeIntervalSince1970: Double(unixMilliseconds) / 1000)
        return date.formatted(.iso8601.year().month().day().dateSeparator(.dash).dateTimeSeparator(.space).time(includingFractionalSeconds: false).timeSeparator(.colon)) + " UTC"
    }

    static func duration(seconds: Int64) -> String {
        switch seconds {
        case ..<1: ""
        case ..<120: "\(seconds) s"
        case ..<7200: "\(seconds / 60) min"
        case ..<172_800: "\(seconds / 3600) h"
        default: "\(seconds / 86400) d"
        }
    }

    /// A metric's value: whole numbers without a fraction, others to 4 significant digits.
    static func number(_ value: Double) -> String {
        value.rounded() == value && abs(value) < 1e15 ? String(Int64(value)) : String(format: "%.4g", value)
    }

    static func bytes(_ count: Int64) -> String {
        ByteCountFormatter.string(fromByteCount: count, countStyle: .binary)
    }

    /// A value for a path segment or a query item.
    static func encoded(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}
