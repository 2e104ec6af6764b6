/// Every REST route of the gateway, in one table: the router registers these, and the OpenAPI
/// document is written from them, so the two cannot drift apart.
public enum Route: String, CaseIterable, Sendable {
    case listPackages, uploadPackage, deletePackages, downloadPackage
    case createTask, getTasks, cancelTask
    case getAgent, listHosts, listConnected
    case listTags, createTag, deleteTag, bindTag, unbindTag
    case listRegions, createRegion
    case listEvents, dashboard, runCommand
    case listSchedules, createSchedule, deleteSchedule, enableSchedule, importCrontab, listScheduleRuns
    case listPlugins, createPlugin, deletePlugin, queryMetrics, prometheus
    case agentStatus, agentJobResult
    case openAPI

    /// Who may call a route.
    public enum Access: Sendable {
        /// `Authorization: Bearer <admin token>`.
        case admin
        /// `Authorization: Bearer <admin token or enrollment token>`: agents fetch packages.
        case adminOrAgent
        /// The seed's plain-HTTP agents: no bearer token needed (an enrollment token, when sent,
        /// must be right). They can only touch their own host and the jobs given to them.
        case agent
    }

    public struct Parameter: Sendable {
        public var name: String
        public var schema: Schema
        public var summary: String
        public var required = false
    }

    public struct Spec: Sendable {
        public var method: String
        public var path: String
        public var summary: String
        public var access: Access = .admin
        public var query: [Parameter] = []
        /// Content types and the schema of the body, when the route takes one.
        public var body: [(contentType: String, schema: Schema)] = []
        /// Schema of the 200 answer.
        public var response: Schema
        /// Its content type, when not JSON or bytes.
        public var text: String?

        /// The content type of the 200 answer.
        public var responseType: String {
            if let text = self.text { return text }
            if case .binary = self.response { return "application/octet-stream" }
            return "application/json"
        }

        /// "POST /api/v1/server/task": how errors about the request name it.
        public var name: String { "\(self.method) \(self.path)" }
    }

    static func query(_ name: String, _ schema: Schema, _ summary: String, required: Bool = false) -> Parameter {
        Parameter(name: name, schema: schema, summary: summary, required: required)
    }

    static let paging: [Parameter] = [
        query("offset", .integer, "Rows to skip (default 0)."),
        query("limit", .integer, "Rows to answer, 1 to 1000 (default 50)."),
    ]

    public var spec: Spec {
        let json = "application/json"
        switch self {
        case .listPackages:
            return Spec(
                method: "GET", path: "/api/v1/server/package", summary: "Package versions, filtered and paged.",
                query: [
                    Self.query("name", .string, "Only this package name."),
                    Self.query("version", .string, "Only this version."),
                    Self.query("os", .string, "Only this OS."),
                    Self.query("arch", .string, "Only this architecture."),
                ] + Self.paging + [
                    Self.query("order", .enumeration(["asc", "desc"]), "Sort direction (default asc)."),
                    Self.query("sortby", .enumeration(["id", "name", "version", "os", "arch", "gmt_create", "gmt_modify"]), "Sort key (default id)."),
                ],
                response: .envelope(["count": .integer, "offset": .integer, "limit": .integer, "packages": .array(.ref("Package"))])
            )
        case .uploadPackage:
            return Spec(
                method: "POST", path: "/api/v1/server/package",
                summary: """
                    Stores a package version under packages/{os}/{arch}/{file} and computes its SHA256. The bytes come \
                    as the raw body (names in the query), as multipart/form-data (text fields first, then the file \
                    part), or base64 in the JSON body's "content"; the seed's JSON without content registers a file \
                    already in the package store.
                    """,
                query: [
                    Self.query("name", .string, "Package name (raw-body uploads)."),
                    Self.query("version", .string, "Version (raw-body uploads)."),
                    Self.query("os", .string, "OS, e.g. linux (raw-body uploads)."),
                    Self.query("arch", .string, "Architecture, e.g. x86_64 (raw-body uploads)."),
                    Self.query("file", .string, "File name: no separators, no '..' (raw-body uploads)."),
                    Self.query("sha256", .string, "Expected SHA256 in hex; the upload is refused when it differs."),
                ],
                body: [
                    (json, .ref("PackageUpload")),
                    ("application/octet-stream", .binary),
                    ("multipart/form-data", .ref("PackageForm")),
                ],
                response: .envelope(["package": .ref("Package")])
            )
        case .deletePackages:
            return Spec(
                method: "DELETE", path: "/api/v1/server/package",
                summary: "Deletes package versions and their files: by id, or by name (version, os, arch narrow it).",
                query: [
                    Self.query("id", .integer, "Package id."),
                    Self.query("name", .string, "Package name."),
                    Self.query("version", .string, "Version."),
                    Self.query("os", .string, "OS."),
                    Self.query("arch", .string, "Architecture."),
                ],
                response: .envelope(["count": .integer, "packages": .array(.ref("Package"))])
            )
        case .downloadPackage:
            return Spec(
                method: "GET", path: "/api/v1/server/package/download",
                summary: """
                    The file of a stored package version, as application/octet-stream with its length. Agents give this \
                    URL as a sub-agent's http(s) url and send their enrollment token; operators may use the admin token. \
                    The seed's plain-HTTP agents, which send no token, get this URL in their install and upgrade jobs \
                    with expires and sig: such a link opens that one file for a day without a token.
                    """,
                access: .adminOrAgent,
                query: [
                    Self.query("os", .string, "OS, e.g. linux.", required: true),
                    Self.query("arch", .string, "Architecture, e.g. x86_64.", required: true),
                    Self.query("file", .string, "File name in the store.", required: true),
                    Self.query("expires", .integer, "A job's link: when it stops working (seconds since 1970)."),
                    Self.query("sig", .string, "A job's link: its signature (no bearer token needed with it)."),
                ],
                response: .binary
            )
        case .createTask:
            return Spec(
                method: "POST", path: "/api/v1/server/task",
                summary: "Creates a task for a list of AgentSNs (one subtask each) or for the hosts carrying tags within a window.",
                body: [(json, .ref("TaskRequest"))],
                response: .envelope([
                    "id": .integer, "results": .array(.object(["AgentSN": .string], required: ["AgentSN"])),
                    "task": .ref("Task"), "subtasks": .array(.ref("Subtask")),
                ])
            )
        case .getTasks:
            return Spec(
                method: "GET", path: "/api/v1/server/task",
                summary: "With id: one task, its counts and every subtask with its result. Without: tasks, newest first.",
                query: [Self.query("id", .integer, "Task id.")] + Self.paging,
                response: .envelope([
                    "task": .ref("Task"), "subtasks": .array(.ref("Subtask")),
                    "count": .integer, "offset": .integer, "limit": .integer, "tasks": .array(.ref("Task")),
                ])
            )
        case .cancelTask:
            return Spec(
                method: "DELETE", path: "/api/v1/server/task", summary: "Cancels a task's undelivered subtasks.",
                query: [Self.query("id", .integer, "Task id.", required: true)],
                response: .envelope(["task": .ref("Task"), "subtasks": .array(.ref("Subtask"))])
            )
        case .getAgent:
            return Spec(
                method: "GET", path: "/api/v1/server/agent", summary: "One host by AgentSN, with tags and sub-agents.",
                query: [Self.query("agentsn", .string, "The host's AgentSN (quotes around it are ignored).", required: true)],
                response: .envelope(["host": .ref("Host")])
            )
        case .listHosts:
            return Spec(
                method: "GET", path: "/api/v1/server/hosts", summary: "Hosts, filtered and paged.",
                query: [
                    Self.query("status", .enumeration(["unknown", "register", "online", "offline"]), "Only hosts in this state."),
                    Self.query("region", .integer, "Only this region id."),
                    Self.query("tag", .string, "name=value; repeat for hosts carrying every one."),
                    Self.query("hostname", .string, "Host name prefix."),
                ] + Self.paging + [Self.query("order", .enumeration(["asc", "desc"]), "By id (default asc).")],
                response: .envelope(["count": .integer, "offset": .integer, "limit": .integer, "hosts": .array(.ref("Host"))])
            )
        case .listConnected:
            return Spec(
                method: "GET", path: "/api/v1/server/agents", summary: "Agents holding a stream to the node that answers.",
                response: .envelope(["agents": .array(.ref("ConnectedAgent"))])
            )
        case .listTags:
            return Spec(
                method: "GET", path: "/api/v1/server/tags", summary: "Tags with the number of hosts bound to each.",
                response: .envelope(["tags": .array(.ref("Tag"))])
            )
        case .createTag:
            return Spec(
                method: "POST", path: "/api/v1/server/tags", summary: "Creates a tag.",
                body: [(json, .object(["name": .string, "value": .string], required: ["name", "value"]))],
                response: .envelope(["tag": .ref("Tag")])
            )
        case .deleteTag:
            return Spec(
                method: "DELETE", path: "/api/v1/server/tags", summary: "Deletes a tag and its bindings.",
                query: [Self.query("id", .integer, "Tag id.", required: true)],
                response: .envelope([:])
            )
        case .bindTag, .unbindTag:
            let bind = self == .bindTag
            return Spec(
                method: "POST", path: bind ? "/api/v1/server/tags/bind" : "/api/v1/server/tags/unbind",
                summary: bind ? "Binds a tag (created when missing) to hosts." : "Unbinds a tag from hosts.",
                body: [(json, .object(["name": .string, "value": .string, "agents": .array(.string)], required: ["name", "value", "agents"]))],
                response: .envelope(["changed": .integer])
            )
        case .listRegions:
            return Spec(
                method: "GET", path: "/api/v1/server/regions", summary: "Regions (0 is global).",
                response: .envelope(["regions": .array(.ref("Region"))])
            )
        case .createRegion:
            return Spec(
                method: "POST", path: "/api/v1/server/regions", summary: "Creates a region.",
                body: [(json, .object(["name": .string], required: ["name"]))],
                response: .envelope(["region": .ref("Region")])
            )
        case .listEvents:
            return Spec(
                method: "GET", path: "/api/v1/server/events", summary: "Events, newest first.",
                query: [Self.query("agentsn", .string, "Only this host's events.")] + Self.paging,
                response: .envelope(["count": .integer, "events": .array(.ref("Event"))])
            )
        case .dashboard:
            return Spec(
                method: "GET", path: "/api/v1/server/dashboard", summary: "Host counts and sub-agent deployments per name and version.",
                response: .envelope([
                    "hosts": .object(["total": .integer, "online": .integer, "offline": .integer]),
                    "connected_here": .integer,
                    "deployments": .array(.ref("Deployment")),
                ])
            )
        case .runCommand:
            return Spec(
                method: "POST", path: "/api/v1/server/command",
                summary: "Runs one command on one connected agent and answers the seed's result form once it answers.",
                body: [(json, .ref("CommandRequest"))],
                response: .ref("CommandResult")
            )
        case .listSchedules:
            return Spec(
                method: "GET", path: "/api/v1/server/schedule",
                summary: "Scheduled commands by name, each with its next fire times; with name, that one (404 when none).",
                query: [
                    Self.query("name", .string, "Only this schedule."),
                    Self.query("agentsn", .string, "Only the schedules that target this host (by AgentSN or its tags)."),
                    Self.query("next", .integer, "Next fire times per schedule, 1 to 100 (default 1)."),
                ],
                response: .envelope(["schedules": .array(.ref("Schedule"))])
            )
        case .createSchedule:
            return Spec(
                method: "POST", path: "/api/v1/server/schedule",
                summary: """
                    Stores a scheduled command for agents (by AgentSN) and/or the hosts carrying tags. They get it at once \
                    if connected, otherwise when they connect, keep it on disk and run it connected or not. 409 when the \
                    name is taken, unless replace is true.
                    """,
                body: [(json, .ref("ScheduleRequest"))],
                response: .envelope(["schedule": .ref("Schedule")])
            )
        case .deleteSchedule:
            return Spec(
                method: "DELETE", path: "/api/v1/server/schedule", summary: "Deletes a schedule; the agents drop it.",
                query: [Self.query("name", .string, "The schedule.", required: true)],
                response: .envelope(["schedule": .ref("Schedule")])
            )
        case .enableSchedule:
            return Spec(
                method: "POST", path: "/api/v1/server/schedule/enable",
                summary: "Enables or disables a schedule (a disabled one stays on the agents and does not run).",
                body: [(json, .object(["name": .string, "enabled": .boolean], required: ["name", "enabled"]))],
                response: .envelope(["schedule": .ref("Schedule")])
            )
        case .importCrontab:
            return Spec(
                method: "POST", path: "/api/v1/server/schedule/import",
                summary: """
                    One schedule per crontab line (6 or 5 time fields, an optional user with with_user, the command), named \
                    <prefix>-<line number>; nothing is stored when a line is wrong, and the error names it.
                    """,
                body: [(json, .ref("CrontabImport"))],
                response: .envelope(["schedules": .array(.ref("Schedule"))])
            )
        case .listPlugins:
            return Spec(
                method: "GET", path: "/api/v1/server/plugin",
                summary: "Plugins by name; with name, that one (404 when none). Their state on hosts: a plugin.list task.",
                query: [
                    Self.query("name", .string, "Only this plugin."),
                    Self.query("agentsn", .string, "Only the plugins that target this host (by AgentSN or its tags)."),
                ],
                response: .envelope(["plugins": .array(.ref("Plugin"))])
            )
        case .createPlugin:
            return Spec(
                method: "POST", path: "/api/v1/server/plugin",
                summary: """
                    Stores a plugin for agents (by AgentSN) and/or the hosts carrying tags: a tar archive with plugin.sh                     (url and checksum, or a package and version of the store) or a git repository (git, ref). The agents                     fetch it and run it every period seconds (0: only on demand), as user (nobody by default). Run, enable,                     disable, update and list it on hosts with tasks: command plugin.run {name, timeout, param},                     plugin.enable {name}, plugin.disable {name, seconds}, plugin.update {name}, plugin.list.
                    """,
                body: [(json, .ref("PluginRequest"))],
                response: .envelope(["plugin": .ref("Plugin")])
            )
        case .deletePlugin:
            return Spec(
                method: "DELETE", path: "/api/v1/server/plugin", summary: "Deletes a plugin; the agents stop it and remove its files.",
                query: [Self.query("name", .string, "The plugin.", required: true)],
                response: .envelope(["plugin": .ref("Plugin")])
            )
        case .queryMetrics:
            return Spec(
                method: "GET", path: "/api/v1/server/metric",
                summary: "The latest value of each metric of each host (one per tag set), by name.",
                query: [
                    Self.query("agentsn", .string, "Only this host's metrics."),
                    Self.query("prefix", .string, "Only metrics whose name starts with this, e.g. plugin.load."),
                    Self.query("offset", .integer, "Rows to skip (default 0)."),
                    Self.query("limit", .integer, "Rows to answer, 1 to 10000 (default 1000)."),
                ],
                response: .envelope(["count": .integer, "metrics": .array(.ref("Metric"))])
            )
        case .prometheus:
            return Spec(
                method: "GET", path: "/metrics",
                summary: """
                    Prometheus text format: each host's latest plugin metrics (gauges named as the metric with '.' as '_',                     labelled agentsn and the metric's tags; values no agent sent within the node's --metrics-max-age are                     left out), then the node's own metrics. Scrape it with the admin token as bearer token.
                    """,
                response: .string,
                text: "text/plain; version=0.0.4; charset=utf-8"
            )
        case .listScheduleRuns:
            return Spec(
                method: "GET", path: "/api/v1/server/schedule/runs", summary: "Runs the agents reported, newest first.",
                query: [
                    Self.query("name", .string, "Only this schedule's runs."),
                    Self.query("agentsn", .string, "Only this host's runs."),
                ] + Self.paging,
                response: .envelope(["count": .integer, "runs": .array(.ref("ScheduleRun"))])
            )
        case .agentStatus:
            return Spec(
                method: "POST", path: "/agent/status",
                summary: "The seed's plain-HTTP status report; the answer carries the jobs due for the host.",
                access: .agent,
                body: [(json, .ref("AgentStatus"))],
                response: .object(["errcode": .integer, "jobs": .array(.ref("Job"))], required: ["errcode", "jobs"])
            )
        case .agentJobResult:
            return Spec(
                method: "POST", path: "/agent/job/result",
                summary: "The seed's plain-HTTP job results; a non-zero errcode makes the agent send them again.",
                access: .agent,
                query: [Self.query("agentsn", .string, "The reporting host (also taken from X-Agent-SN).")],
                body: [(json, .array(.ref("JobResult")))],
                response: .object(["errcode": .integer, "stored": .array(.string)], required: ["errcode"])
            )
        case .openAPI:
            return Spec(
                method: "GET", path: "/api/v1/openapi.json", summary: "This document.",
                response: .object(["openapi": .string, "info": .object([:]), "paths": .object([:])], required: ["openapi", "paths"])
            )
        }
    }
}
