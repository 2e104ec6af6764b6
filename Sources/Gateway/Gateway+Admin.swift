import Foundation
import GRPCCore
import Hummingbird
import NIOCore
import RPC
import SwiftProtobuf

/// The operator routes: each parses its request into an Admin message, calls the service and
/// writes the answer in REST form.
extension Gateway {
    func handleAdmin(_ route: Route, request: Request, context: GatewayContext, metadata: Metadata) async throws -> Response {
        let query = Query(request)
        switch route {
        case .listPackages:
            var message = Aspire_V1_ListPackagesRequest()
            message.name = query.string("name")
            message.version = query.string("version")
            message.os = query.string("os")
            message.arch = query.string("arch")
            (message.offset, message.limit) = try query.page()
            message.descending = try query.descending()
            message.sortBy = query.string("sortby")
            let answer = try await self.admin.listPackages(message, metadata: metadata)
            return Answer.success([
                "count": Int(answer.count), "offset": Int(answer.offset), "limit": Int(answer.limit),
                "packages": answer.packages.map(RESTJSON.package),
            ])

        case .uploadPackage:
            let package = try await self.upload(request, query: query, metadata: metadata)
            return Answer.success(["package": RESTJSON.package(package)])

        case .deletePackages:
            var message = Aspire_V1_DeletePackagesRequest()
            message.id = try query.integer("id", range: 1 ... Int64.max) ?? 0
            message.name = query.string("name")
            message.version = query.string("version")
            message.os = query.string("os")
            message.arch = query.string("arch")
            let answer = try await self.admin.deletePackages(message, metadata: metadata)
            return Answer.success(["count": answer.packages.count, "packages": answer.packages.map(RESTJSON.package)])

        case .createTask:
            let message = try await self.taskRequest(request, route: route)
            let detail = try await self.admin.createTask(message, metadata: metadata)
            var payload = RESTJSON.taskDetail(detail)
            payload["id"] = Int(detail.task.id)
            payload["results"] = detail.subtasks.map { ["AgentSN": $0.agentSn] }
            return Answer.success(payload)

        case .getTasks:
            if let id = try query.integer("id", range: 1 ... Int64.max) {
                var message = Aspire_V1_GetTaskRequest()
                message.id = id
                return Answer.success(RESTJSON.taskDetail(try await self.admin.getTask(message, metadata: metadata)))
            }
            var message = Aspire_V1_ListTasksRequest()
            (message.offset, message.limit) = try query.page()
            let answer = try await self.admin.listTasks(message, metadata: metadata)
            return Answer.success([
                "count": Int(answer.count), "offset": Int(message.offset), "limit": Int(message.limit == 0 ? 50 : message.limit),
                "tasks": answer.tasks.map(RESTJSON.task),
            ])

        case .cancelTask:
            var message = Aspire_V1_CancelTaskRequest()
            guard let id = try query.integer("id", range: 1 ... Int64.max) else {
                throw AspireError(.badRequest, "query parameter 'id' (the task) is required")
            }
            message.id = id
            return Answer.success(RESTJSON.taskDetail(try await self.admin.cancelTask(message, metadata: metadata)))

        case .getAgent:
            var message = Aspire_V1_GetHostRequest()
            // The seed writes ?agentsn="845d..." with the quotes.
            message.agentSn = query.string("agentsn").trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            guard !message.agentSn.isEmpty else {
                throw AspireError(.badRequest, "query parameter 'agentsn' is required")
            }
            return Answer.success(["host": RESTJSON.host(try await self.admin.getHost(message, metadata: metadata))])

        case .listHosts:
            var message = Aspire_V1_ListHostsRequest()
            message.status = query.string("status")
            if let region = try query.integer("region") { message.region = region }
            for pair in query.all("tag") {
                guard let separator = pair.firstIndex(where: { $0 == "=" || $0 == ":" }) else {
                    throw AspireError(.badRequest, "query parameter 'tag' must be name=value, not '\(pair)'")
                }
                message.tags[String(pair[..<separator])] = String(pair[pair.index(after: separator)...])
            }
            message.hostnamePrefix = query.string("hostname")
            (message.offset, message.limit) = try query.page()
            message.descending = try query.descending()
            let answer = try await self.admin.listHosts(message, metadata: metadata)
            return Answer.success([
                "count": Int(answer.count), "offset": Int(answer.offset), "limit": Int(answer.limit),
                "hosts": answer.hosts.map(RESTJSON.host),
            ])

        case .listConnected:
            let answer = try await self.admin.listAgents(Aspire_V1_ListAgentsRequest(), metadata: metadata)
            return Answer.success(["agents": answer.agents.map(RESTJSON.connected)])

        case .listTags:
            let answer = try await self.admin.listTags(Aspire_V1_ListTagsRequest(), metadata: metadata)
            return Answer.success(["tags": answer.tags.map(RESTJSON.tag)])

        case .createTag:
            let body = try await self.objectBody(request, route: route)
            try body.allow(["name", "value"])
            var message = Aspire_V1_CreateTagRequest()
            message.name = try body.string("name", required: true)
            message.value = try body.string("value", required: true)
            return Answer.success(["tag": RESTJSON.tag(try await self.admin.createTag(message, metadata: metadata))])

        case .deleteTag:
            var message = Aspire_V1_DeleteTagRequest()
            guard let id = try query.integer("id", range: 1 ... Int64.max) else {
                throw AspireError(.badRequest, "query parameter 'id' (the tag) is required")
            }
            message.id = id
            _ = try await self.admin.deleteTag(message, metadata: metadata)
            return Answer.success()

        case .bindTag, .unbindTag:
            let body = try await self.objectBody(request, route: route)
            try body.allow(["name", "value", "agents"])
            var message = Aspire_V1_BindTagRequest()
            message.name = try body.string("name", required: true)
            message.value = try body.string("value", required: true)
            message.agentSns = try body.stringArray("agents")
            message.unbind = route == .unbindTag
            let answer = try await self.admin.bindTag(message, metadata: metadata)
            return Answer.success(["changed": Int(answer.changed)])

        case .listRegions:
            let answer = try await self.admin.listRegions(Aspire_V1_ListRegionsRequest(), metadata: metadata)
            return Answer.success(["regions": answer.regions.map(RESTJSON.region)])

        case .createRegion:
            let body = try await self.objectBody(request, route: route)
            try body.allow(["name"])
            var message = Aspire_V1_CreateRegionRequest()
            message.name = try body.string("name", required: true)
            return Answer.success(["region": RESTJSON.region(try await self.admin.createRegion(message, metadata: metadata))])

        case .listEvents:
            var message = Aspire_V1_ListEventsRequest()
            message.agentSn = query.string("agentsn")
            (message.offset, message.limit) = try query.page()
            let answer = try await self.admin.listEvents(message, metadata: metadata)
            return Answer.success(["count": Int(answer.count), "events": answer.events.map(RESTJSON.event)])

        case .dashboard:
            let answer = try await self.admin.dashboard(Aspire_V1_DashboardRequest(), metadata: metadata)
            return Answer.success([
                "hosts": ["total": Int(answer.hostsTotal), "online": Int(answer.hostsOnline), "offline": Int(answer.hostsOffline)],
                "connected_here": Int(answer.connectedHere),
                "deployments": answer.deployments.map { deployment in
                    [
                        "name": deployment.name, "version": deployment.version, "hosts": Int(deployment.hosts),
                        "running": Int(deployment.running), "stoped": Int(deployment.stopped), "fatal": Int(deployment.fatal),
                        "killed": Int(deployment.killed),
                    ]
                },
            ])

        case .runCommand:
            let message = try await self.commandRequest(request, route: route)
            let answer = try await self.admin.runCommand(message, metadata: metadata)
            return Answer.json(answer.result.seedJSONObject(), status: 200)

        case .listSchedules:
            var message = Aspire_V1_ListSchedulesRequest()
            message.name = query.string("name")
            message.agentSn = query.string("agentsn")
            message.next = Int32(try query.integer("next", range: 1 ... 100) ?? 1)
            let answer = try await self.admin.listSchedules(message, metadata: metadata)
            return Answer.success(["schedules": answer.schedules.map(RESTJSON.schedule)])

        case .createSchedule:
            let body = try await self.objectBody(request, route: route)
            try body.allow(["name", "expr", "tz", "user", "group", "command", "timeout", "agents", "tags", "enabled", "replace"])
            var message = Aspire_V1_CreateScheduleRequest()
            message.schedule.name = try body.string("name", required: true)
            message.schedule.expr = try body.string("expr", required: true)
            message.schedule.tz = try body.string("tz")
            message.schedule.user = try body.string("user")
            message.schedule.group = try body.string("group")
            message.schedule.command = try body.string("command", required: true)
            message.schedule.timeout = Int32(try body.integer("timeout", range: 0 ... 86400 * 7) ?? 0)
            message.schedule.disabled = !(try body.bool("enabled") ?? true)
            message.agents = try body.stringArray("agents")
            message.tags = try body.stringMap("tags")
            message.replace = try body.bool("replace") ?? false
            let answer = try await self.admin.createSchedule(message, metadata: metadata)
            return Answer.success(["schedule": RESTJSON.schedule(answer)])

        case .deleteSchedule:
            var message = Aspire_V1_DeleteScheduleRequest()
            message.name = query.string("name")
            guard !message.name.isEmpty else { throw AspireError(.badRequest, "query parameter 'name' (the schedule) is required") }
            let answer = try await self.admin.deleteSchedule(message, metadata: metadata)
            return Answer.success(["schedule": RESTJSON.schedule(answer)])

        case .enableSchedule:
            let body = try await self.objectBody(request, route: route)
            try body.allow(["name", "enabled"])
            var message = Aspire_V1_SetScheduleEnabledRequest()
            message.name = try body.string("name", required: true)
            guard let enabled = try body.bool("enabled") else { throw AspireError(.badRequest, "\(body.context): 'enabled' (true or false) is required") }
            message.enabled = enabled
            let answer = try await self.admin.setScheduleEnabled(message, metadata: metadata)
            return Answer.success(["schedule": RESTJSON.schedule(answer)])

        case .importCrontab:
            let body = try await self.objectBody(request, route: route)
            try body.allow(["crontab", "prefix", "agents", "tags", "tz", "user", "timeout", "fields", "with_user", "replace"])
            var message = Aspire_V1_ImportCrontabRequest()
            message.crontab = try body.string("crontab", required: true)
            message.prefix = try body.string("prefix")
            message.agents = try body.stringArray("agents")
            message.tags = try body.stringMap("tags")
            message.tz = try body.string("tz")
            message.user = try body.string("user")
            message.timeout = Int32(try body.integer("timeout", range: 0 ... 86400 * 7) ?? 0)
            message.fields = Int32(try body.integer("fields", range: 0 ... 6) ?? 0)
            message.withUser = try body.bool("with_user") ?? false
            message.replace = try body.bool("replace") ?? false
            let answer = try await self.admin.importCrontab(message, metadata: metadata)
            return Answer.success(["schedules": answer.schedules.map(RESTJSON.schedule)])

        case .listScheduleRuns:
            var message = Aspire_V1_ListScheduleRunsRequest()
            message.name = query.string("name")
            message.agentSn = query.string("agentsn")
            (message.offset, message.limit) = try query.page()
            let answer = try await self.admin.listScheduleRuns(message, metadata: metadata)
            return Answer.success(["count": Int(answer.count), "runs": answer.runs.map(RESTJSON.scheduleRun)])

        case .listPlugins:
            var message = Aspire_V1_ListPluginsRequest()
            message.name = query.string("name")
            message.agentSn = query.string("agentsn")
            let answer = try await self.admin.listPlugins(message, metadata: metadata)
            return Answer.success(["plugins": answer.plugins.map(RESTJSON.pluginInfo)])

        case .createPlugin:
            let body = try await self.objectBody(request, route: route)
            try body.allow(["name", "url", "checksum", "package", "version", "git", "ref", "period", "user", "timeout", "param", "agents", "tags", "replace"])
            var message = Aspire_V1_CreatePluginRequest()
            message.plugin.name = try body.string("name", required: true)
            message.plugin.url = try body.string("url")
            message.plugin.checksum = try body.string("checksum")
            message.package = try body.string("package")
            message.version = try body.string("version")
            message.plugin.git = try body.string("git")
            message.plugin.ref = try body.string("ref")
            message.plugin.period = Int32(try body.integer("period", range: 0 ... 86400 * 7) ?? 0)
            message.plugin.user = try body.string("user")
            message.plugin.timeout = Int32(try body.integer("timeout", range: 0 ... 86400) ?? 0)
            message.plugin.param = try body.string("param")
            message.agents = try body.stringArray("agents")
            message.tags = try body.stringMap("tags")
            message.replace = try body.bool("replace") ?? false
            let answer = try await self.admin.createPlugin(message, metadata: metadata)
            return Answer.success(["plugin": RESTJSON.pluginInfo(answer)])

        case .deletePlugin:
            var message = Aspire_V1_DeletePluginRequest()
            message.name = query.string("name")
            guard !message.name.isEmpty else { throw AspireError(.badRequest, "query parameter 'name' (the plugin) is required") }
            let answer = try await self.admin.deletePlugin(message, metadata: metadata)
            return Answer.success(["plugin": RESTJSON.pluginInfo(answer)])

        case .queryMetrics:
            var message = Aspire_V1_QueryMetricsRequest()
            message.agentSn = query.string("agentsn")
            message.prefix = query.string("prefix")
            message.offset = Int32(try query.integer("offset", range: 0 ... Int64(Int32.max)) ?? 0)
            message.limit = Int32(try query.integer("limit", range: 1 ... 10_000) ?? 0)
            let answer = try await self.admin.queryMetrics(message, metadata: metadata)
            return Answer.success(["count": Int(answer.count), "metrics": answer.metrics.map(RESTJSON.metric)])

        case .prometheus:
            let answer = try await self.admin.exportMetrics(Aspire_V1_ExportMetricsRequest(), metadata: metadata)
            var headers = HTTPFields()
            headers[.contentType] = route.spec.responseType
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: answer.text)))

        case .openAPI:
            return Answer.json(OpenAPI.document(version: self.configuration.version), status: 200)

        case .agentStatus, .agentJobResult, .downloadPackage:
            throw AspireError(.internalError, "\(route) is not an admin route")
        }
    }

    // MARK: Tasks and commands

    /// `{"command", "agents" | "tags", "window", "parameters", "max_concurrency", "max_errors", "user"}`.
    func taskRequest(_ request: Request, route: Route) async throws -> Aspire_V1_CreateTaskRequest {
        let body = try await self.objectBody(request, route: route)
        try body.allow(["command", "agents", "tags", "window", "parameters", "max_concurrency", "max_errors", "user"])
        var message = Aspire_V1_CreateTaskRequest()
        message.command = try body.string("command", required: true)
        message.agents = try body.stringArray("agents")
        message.tags = try body.stringMap("tags")
        if let window = try body.object("window") {
            let fields = JSONFields(window.fields, context: body.context + " window", code: .badRequest)
            try fields.allow(["start", "end"])
            message.window.startUnixMs = try Self.time(fields, "start")
            message.window.endUnixMs = try Self.time(fields, "end")
        }
        if let parameters = try body.object("parameters") {
            message.parameters = parameters
        }
        message.maxConcurrency = try body.numberOrString("max_concurrency")
        message.maxErrors = try body.numberOrString("max_errors")
        message.user = try body.string("user")
        return message
    }

    /// A time as Unix seconds or RFC 3339; 0 when absent.
    static func time(_ fields: JSONFields, _ key: String) throws(AspireError) -> Int64 {
        guard let value = fields.fields[key], !JSONFields.isNull(value) else { return 0 }
        switch value.kind {
        case .numberValue(let seconds)? where seconds >= 0 && seconds < 1e11:
            return Int64(seconds * 1000)
        case .stringValue(let text)?:
            if let date = try? Date(text, strategy: .iso8601) {
                return Int64(date.timeIntervalSince1970 * 1000)
            }
            if let seconds = Double(text), seconds >= 0, seconds < 1e11 {
                return Int64(seconds * 1000)
            }
        default:
            break
        }
        throw AspireError(.badRequest, "\(fields.context): '\(key)' must be Unix seconds or an RFC 3339 time")
    }

    /// The seed's sync form plus `agentsn` (and an optional `wait` in seconds).
    func commandRequest(_ request: Request, route: Route) async throws -> Aspire_V1_RunCommandRequest {
        let body = try await self.objectBody(request, route: route)
        try body.allow(["agentsn", "id", "method", "cmd", "timeout", "user", "group", "args", "wait"])
        var message = Aspire_V1_RunCommandRequest()
        message.agentSn = try body.string("agentsn", required: true)
        message.waitSeconds = Int32(try body.integer("wait", range: 0 ... 86400) ?? 0)
        let method = try body.string("method", required: true)
        var parameters = Google_Protobuf_Struct()
        for key in ["cmd", "timeout", "user", "group", "args"] {
            if let value = body.fields[key] { parameters.fields[key] = value }
        }
        message.command = try CommandParameters.command(method: method, parameters: parameters)
        message.command.id = try body.string("id")
        return message
    }

    // MARK: Packages

    /// Streams an upload to the service: the raw body with names in the query, or the seed's
    /// JSON (with base64 `content`, or naming a file already in the store).
    func upload(_ request: Request, query: Query, metadata: Metadata) async throws -> Aspire_V1_Package {
        let contentType = request.headers[.contentType]?.lowercased() ?? ""
        var info = Aspire_V1_PackageInfo()
        if contentType.hasPrefix("application/json") {
            let body = try await self.objectBody(request, route: .uploadPackage)
            try body.allow(["name", "version", "os", "arch", "file", "sha256", "content"])
            info.name = try body.string("name", required: true)
            info.version = try body.string("version", required: true)
            info.os = try body.string("os", required: true)
            info.arch = try body.string("arch", required: true)
            info.file = try body.string("file", required: true)
            info.sha256 = try body.string("sha256")
            let content = try body.string("content")
            if body.has("content") {
                guard let bytes = Data(base64Encoded: content) else {
                    throw AspireError(.badRequest, "\(body.context): 'content' must be base64")
                }
                return try await self.admin.uploadPackage(metadata: metadata) { [info] writer in
                    try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.info = info })
                    var offset = 0
                    repeat {
                        let end = min(offset + (1 << 20), bytes.count)
                        try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.chunk = bytes[offset ..< end] })
                        offset = end
                    } while offset < bytes.count
                }
            }
            info.existingFile = true
            return try await self.admin.uploadPackage(metadata: metadata) { [info] writer in
                try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.info = info })
            }
        }
        if contentType.hasPrefix("multipart/form-data") {
            // The boundary is case-sensitive: read it from the header as sent.
            let boundary = Self.dispositionParameters(request.headers[.contentType] ?? "")["boundary"] ?? ""
            guard !boundary.isEmpty else { throw AspireError(.badRequest, "multipart/form-data without a boundary") }
            return try await self.multipartUpload(request, boundary: boundary, query: query, metadata: metadata)
        }
        for (key, value) in [("name", query.string("name")), ("version", query.string("version")), ("os", query.string("os")), ("arch", query.string("arch")), ("file", query.string("file"))]
        where value.isEmpty {
            throw AspireError(
                .badRequest,
                "query parameter '\(key)' is required with a raw body (name, version, os, arch and file name the package)"
            )
        }
        info.name = query.string("name")
        info.version = query.string("version")
        info.os = query.string("os")
        info.arch = query.string("arch")
        info.file = query.string("file")
        info.sha256 = query.string("sha256")
        let body = request.body
        return try await self.admin.uploadPackage(metadata: metadata) { [info] writer in
            try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.info = info })
            for try await buffer in body {
                try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.chunk = Data(buffer.readableBytesView) })
            }
        }
    }
}
