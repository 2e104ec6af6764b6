import Foundation
import RPC
import SwiftProtobuf

/// The REST shapes of the Admin messages: the seed's field names (`agentsn`, `gmt_create`,
/// `occured`, ...), integers as JSON numbers and times as RFC 3339.
enum RESTJSON {
    typealias Object = JSONObject

    /// RFC 3339 in UTC to the second, or null for "never".
    static func time(_ unixMilliseconds: Int64) -> String? {
        unixMilliseconds > 0 ? RFC3339.text(milliseconds: unixMilliseconds) : nil
    }

    static func package(_ package: Aspire_V1_Package) -> Object {
        [
            "id": Int(package.id), "name": package.name, "os": package.os, "arch": package.arch,
            "version": package.version, "file": package.file, "path": package.path, "sha256": package.sha256,
            "size": Int(package.size), "gmt_create": time(package.createdUnixMs), "gmt_modify": time(package.modifiedUnixMs),
        ]
    }

    static func tag(_ tag: Aspire_V1_Tag) -> Object {
        [
            "gmt_create": time(tag.createdUnixMs), "gmt_modify": time(tag.modifiedUnixMs), "hosts": Int(tag.hosts),
            "id": Int(tag.id), "name": tag.name, "value": tag.value,
        ]
    }

    /// A page writes fifty of these: keys in order (see `JSONObject`).
    static func host(_ host: Aspire_V1_Host) -> Object {
        [
            "agents": host.agents.map { agent in
                [
                    "message": agent.message, "name": agent.name, "pid": Int(agent.pid), "prevers": agent.previousVersion,
                    "restarts": Int(agent.restarts), "status": agent.status, "uptime": Int(agent.uptime), "version": agent.version,
                ] as Object
            },
            "agentsn": host.agentSn, "arch": host.arch, "certificate_expires": time(host.certificateNotAfter * 1000),
            "curvers": host.curvers, "feature": Int(host.feature), "gmt_create": time(host.createdUnixMs),
            "gmt_modify": time(host.modifiedUnixMs), "hostname": host.hostname, "id": Int(host.id), "identity": host.identity,
            "ipaddr": host.ipaddr, "last_seen": time(host.lastSeenUnixMs), "missing_tools": host.missingTools, "node": host.node,
            "os": host.os, "prevers": host.prevers,
            "recent": host.recent.map { ["command": $0.command, "subtask": subtask($0.subtask), "task": Int($0.taskID)] as Object },
            "region": Int(host.region), "status": host.status, "step": Int(host.step), "tags": host.tags.map(tag),
        ]
    }

    static func connected(_ agent: Aspire_V1_ConnectedAgent) -> Object {
        [
            "agentsn": agent.agentSn, "hostname": agent.hostname, "version": agent.version, "os": agent.os,
            "arch": agent.arch, "tags": agent.tags, "peer": agent.peer, "connected": time(agent.connectedUnixMs),
            "last_seen": time(agent.lastSeenUnixMs), "node": agent.node,
        ]
    }

    static func region(_ region: Aspire_V1_Region) -> Object {
        ["id": Int(region.id), "name": region.name]
    }

    static func event(_ event: Aspire_V1_EventEntry) -> Object {
        [
            "id": Int(event.id), "agentsn": event.agentSn, "category": event.category, "localid": Int(event.localID),
            "occured": time(event.occurredUnixMs), "message": event.message, "gmt_create": time(event.createdUnixMs),
        ]
    }

    static func task(_ task: Aspire_V1_Task) -> Object {
        var object: Object = [
            "command": task.command, "complete": Int(task.complete), "count": Int(task.count), "failed": Int(task.failed),
            "gmt_create": time(task.createdUnixMs), "gmt_modify": time(task.modifiedUnixMs), "id": Int(task.id),
            "max_concurrency": task.maxConcurrency, "max_errors": task.maxErrors, "parameters": structObject(task.parameters),
            "status": task.status, "tags": task.tags, "user": task.user,
        ]
        if task.hasWindow {
            object["window"] = ["start": time(task.window.startUnixMs), "end": time(task.window.endUnixMs)]
        }
        return object
    }

    static func subtask(_ subtask: Aspire_V1_Subtask) -> Object {
        var object: Object = [
            "agentsn": subtask.agentSn, "gmt_create": time(subtask.createdUnixMs), "gmt_modify": time(subtask.modifiedUnixMs),
            "id": subtask.id, "status": subtask.status,
        ]
        if subtask.hasResult {
            object["result"] = subtask.result
        }
        return object
    }

    static func taskDetail(_ detail: Aspire_V1_TaskDetail) -> Object {
        ["subtasks": detail.subtasks.map(subtask), "task": task(detail.task)]
    }

    static func schedule(_ info: Aspire_V1_ScheduleInfo) -> Object {
        var object = schedule(info.schedule)
        object["agents"] = info.agents
        object["tags"] = info.tags
        object["next"] = info.nextUnixMs.map(time)
        object["gmt_create"] = time(info.createdUnixMs)
        object["gmt_modify"] = time(info.modifiedUnixMs)
        return object
    }

    static func scheduleRun(_ run: Aspire_V1_ScheduleRun) -> Object {
        ["name": run.name, "agentsn": run.agentSn, "due": time(run.dueUnixMs), "result": run.result]
    }

    static func schedule(_ schedule: Aspire_V1_Schedule) -> Object {
        [
            "name": schedule.name, "expr": schedule.expr, "tz": schedule.tz, "user": schedule.user, "group": schedule.group,
            "command": schedule.command, "timeout": Int(schedule.timeout), "enabled": !schedule.disabled,
        ]
    }

    static func pluginInfo(_ info: Aspire_V1_PluginInfo) -> Object {
        var object = Self.plugin(info.plugin)
        object["agents"] = info.agents
        object["tags"] = info.tags
        object["gmt_create"] = time(info.createdUnixMs)
        object["gmt_modify"] = time(info.modifiedUnixMs)
        return object
    }

    /// A value that is not a number comes as `text` too (`value` 0).
    static func metric(_ metric: Aspire_V1_MetricValue) -> Object {
        var object: Object = [
            "agentsn": metric.agentSn, "name": metric.name, "tags": metric.tags, "value": metric.value,
            "timestamp": Int(metric.timestamp), "received": time(metric.receivedUnixMs),
        ]
        if !metric.text.isEmpty { object["text"] = metric.text }
        return object
    }

    static func plugin(_ plugin: Aspire_V1_Plugin) -> Object {
        var object: Object = ["name": plugin.name, "period": Int(plugin.period), "user": plugin.user, "timeout": Int(plugin.timeout), "param": plugin.param]
        if !plugin.url.isEmpty { object["url"] = plugin.url }
        if !plugin.checksum.isEmpty { object["checksum"] = plugin.checksum }
        if !plugin.git.isEmpty { object["git"] = plugin.git }
        if !plugin.ref.isEmpty { object["ref"] = plugin.ref }
        if plugin.allowMovingRef { object["allow_moving_ref"] = true }
        return object
    }

    /// A seed job (`/agent/status` answer) for a command.
    static func job(_ command: Aspire_V1_Command) -> Object {
        var job: Object = ["id": command.id, "method": command.method]
        let method = CommandMethod(name: command.method)
        // The seed's jobs name sub-agent actions without their `agent.` prefix.
        job["action"] = method?.taskName ?? command.method
        switch command.params {
        case .subagent(let params)?:
            job["name"] = params.name
            if !params.version.isEmpty { job["version"] = params.version }
            if !params.url.isEmpty { job["url"] = params.url }
            if !params.checksum.isEmpty { job["checksum"] = params.checksum }
            if !params.envs.isEmpty { job["envs"] = params.envs }
            var limits: [String: String] = [:]
            if !params.limits.cpu.isEmpty { limits["CPU"] = params.limits.cpu }
            if !params.limits.memory.isEmpty { limits["memory"] = params.limits.memory }
            if !params.limits.pids.isEmpty { limits["pids"] = params.limits.pids }
            if !limits.isEmpty { job["limits"] = limits }
            if !params.user.isEmpty { job["user"] = params.user }
            if !params.group.isEmpty { job["group"] = params.group }
        case .config(let params)?:
            if !params.svrlist.isEmpty { job["svrlist"] = params.svrlist }
            if params.step > 0 { job["step"] = Int(params.step) }
            if !params.tags.isEmpty { job["tags"] = params.tags }
        case .bash(let params)?:
            job["cmd"] = params.cmd
            if params.timeout > 0 { job["timeout"] = Int(params.timeout) }
            if !params.user.isEmpty { job["user"] = params.user }
            if !params.group.isEmpty { job["group"] = params.group }
        case .getinfo(let params)?:
            if !params.args.isEmpty { job["args"] = params.args }
        case .schedules(let params)?:
            job["schedules"] = params.schedules.map(schedule)
        case .deployments(let params)?:
            job["deployments"] = params.deployments.map { "\($0.agent.name) \($0.agent.version) r\($0.revision)" }
        case .plugins(let params)?:
            if !params.name.isEmpty { job["name"] = params.name }
            if params.timeout > 0 { job["timeout"] = Int(params.timeout) }
            if !params.param.isEmpty { job["param"] = params.param }
            if params.disableSeconds > 0 { job["seconds"] = Int(params.disableSeconds) }
            if method == .plugin(.set) { job["plugins"] = params.plugins.map(plugin) }
        case nil:
            break
        }
        return job
    }

    /// A `google.protobuf.Struct` as a plain JSON object.
    static func structObject(_ value: Google_Protobuf_Struct) -> JSONValue {
        guard let data = try? value.jsonUTF8Data(), let object = try? JSONValue(parsing: data) else { return .object([:]) }
        return object
    }
}
