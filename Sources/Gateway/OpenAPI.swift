import Foundation

/// A JSON schema, as much of it as the gateway's documents need.
public indirect enum Schema: Sendable {
    case string
    case integer
    case number
    case boolean
    case binary
    /// Any JSON value.
    case any
    case enumeration([String])
    case array(Schema)
    case object([String: Schema], required: [String] = [], additional: Schema? = nil)
    /// A schema of `OpenAPI.components`.
    case ref(String)
    /// One of several shapes.
    case oneOf([Schema])

    /// The success envelope `{"status": 0, "message": "success", ...}` around a payload.
    static func envelope(_ payload: [String: Schema]) -> Schema {
        var properties = payload
        properties["status"] = .integer
        properties["message"] = .string
        properties["cause"] = .string
        return .object(properties, required: ["status", "message"])
    }

    /// The schema as a JSON object.
    public var json: [String: Any] {
        switch self {
        case .string: return ["type": "string"]
        case .integer: return ["type": "integer", "format": "int64"]
        case .number: return ["type": "number"]
        case .boolean: return ["type": "boolean"]
        case .binary: return ["type": "string", "format": "binary"]
        case .any: return [:]
        case .enumeration(let values): return ["type": "string", "enum": values]
        case .array(let items): return ["type": "array", "items": items.json]
        case .object(let properties, let required, let additional):
            var object: [String: Any] = ["type": "object", "properties": properties.mapValues(\.json)]
            if !required.isEmpty { object["required"] = required.sorted() }
            if let additional { object["additionalProperties"] = additional.json }
            return object
        case .ref(let name): return ["$ref": "#/components/schemas/\(name)"]
        case .oneOf(let choices): return ["oneOf": choices.map(\.json)]
        }
    }
}

/// The OpenAPI 3 document of the gateway, written from ``Route``.
public enum OpenAPI {
    static let time = Schema.string

    /// Named schemas the routes refer to.
    public static let components: [String: Schema] = [
        "Error": .object(["status": .integer, "message": .string, "cause": .string], required: ["status", "message"]),
        "Package": .object(
            [
                "id": .integer, "name": .string, "os": .string, "arch": .string, "version": .string, "file": .string,
                "path": .string, "sha256": .string, "size": .integer, "gmt_create": time, "gmt_modify": time,
            ],
            required: ["id", "name", "os", "arch", "version", "file", "path", "sha256", "size", "gmt_create", "gmt_modify"]
        ),
        "PackageUpload": .object(
            [
                "name": .string, "version": .string, "os": .string, "arch": .string, "file": .string, "sha256": .string,
                "content": .string,
            ],
            required: ["name", "version", "os", "arch", "file"]
        ),
        "PackageForm": .object(
            ["name": .string, "version": .string, "os": .string, "arch": .string, "sha256": .string, "file": .binary],
            required: ["name", "version", "os", "arch", "file"]
        ),
        "TaskRequest": .object(
            [
                "command": .string,
                "agents": .array(.string),
                "tags": .object([:], additional: .string),
                "window": .object(["start": .oneOf([.integer, .string]), "end": .oneOf([.integer, .string])]),
                "parameters": .object([:], additional: .any),
                "max_concurrency": .oneOf([.integer, .string]),
                "max_errors": .oneOf([.integer, .string]),
                "user": .string,
            ],
            required: ["command"]
        ),
        "ScheduleRequest": .object(
            [
                "name": .string, "expr": .string, "tz": .string, "user": .string, "group": .string, "command": .string,
                "timeout": .integer, "agents": .array(.string), "tags": .object([:], additional: .string), "enabled": .boolean,
                "replace": .boolean,
            ],
            required: ["name", "expr", "command"]
        ),
        "Schedule": .object(
            [
                "name": .string, "expr": .string, "tz": .string, "user": .string, "group": .string, "command": .string,
                "timeout": .integer, "agents": .array(.string), "tags": .object([:], additional: .string), "enabled": .boolean,
                "next": .array(time), "gmt_create": time, "gmt_modify": time,
            ],
            required: ["name", "expr", "user", "command", "enabled", "agents", "tags", "next"]
        ),
        "CrontabImport": .object(
            [
                "crontab": .string, "prefix": .string, "agents": .array(.string), "tags": .object([:], additional: .string),
                "tz": .string, "user": .string, "timeout": .integer, "fields": .integer, "with_user": .boolean, "replace": .boolean,
            ],
            required: ["crontab"]
        ),
        "PluginRequest": .object(
            [
                "name": .string, "url": .string, "checksum": .string, "package": .string, "version": .string, "git": .string,
                "ref": .string, "period": .integer, "user": .string, "timeout": .integer, "param": .string,
                "agents": .array(.string), "tags": .object([:], additional: .string), "replace": .boolean,
            ],
            required: ["name"]
        ),
        "Plugin": .object(
            [
                "name": .string, "url": .string, "checksum": .string, "git": .string, "ref": .string, "period": .integer,
                "user": .string, "timeout": .integer, "param": .string, "agents": .array(.string),
                "tags": .object([:], additional: .string), "gmt_create": time, "gmt_modify": time,
            ],
            required: ["name", "period", "user", "timeout", "agents", "tags"]
        ),
        "Metric": .object(
            [
                "agentsn": .string, "name": .string, "tags": .object([:], additional: .string), "value": .number,
                "timestamp": .integer, "received": time,
            ],
            required: ["agentsn", "name", "tags", "value", "timestamp"]
        ),
        "ScheduleRun": .object(
            ["name": .string, "agentsn": .string, "due": time, "result": .ref("CommandResult")],
            required: ["name", "agentsn", "due", "result"]
        ),
        "Task": .object(
            [
                "id": .integer, "status": .enumeration(["pending", "running", "done", "failed", "cancelled"]),
                "user": .string, "command": .string, "parameters": .object([:], additional: .any),
                "tags": .object([:], additional: .string),
                "window": .object(["start": time, "end": time]),
                "max_concurrency": .string, "max_errors": .string,
                "count": .integer, "complete": .integer, "failed": .integer, "gmt_create": time, "gmt_modify": time,
            ],
            required: ["id", "status", "command", "count", "complete", "failed", "gmt_create", "gmt_modify"]
        ),
        "Subtask": .object(
            [
                "id": .string, "agentsn": .string,
                "status": .enumeration(["pending", "dispatched", "succeeded", "failed", "undeliverable", "cancelled"]),
                "result": .ref("CommandResult"), "gmt_create": time, "gmt_modify": time,
            ],
            required: ["id", "agentsn", "status", "gmt_create", "gmt_modify"]
        ),
        "CommandRequest": .object(
            [
                "agentsn": .string, "id": .string, "method": .string, "cmd": .string, "timeout": .integer, "user": .string,
                "group": .string, "args": .string, "wait": .integer,
            ],
            required: ["agentsn", "method"]
        ),
        "CommandResult": .object(
            [
                "id": .string, "resp": .enumeration(["success", "failed"]), "retcode": .integer, "message": .string,
                "data": .any, "data_encoding": .string, "stderr": .string, "truncated": .boolean,
                "stdout_bytes": .integer, "stderr_bytes": .integer, "started": .integer, "finished": .integer,
            ],
            required: ["id", "resp", "retcode", "message"]
        ),
        "Host": .object(
            [
                "id": .integer, "agentsn": .string, "hostname": .string, "ipaddr": .string, "region": .integer,
                "status": .enumeration(["unknown", "register", "online", "offline"]), "feature": .integer,
                "step": .integer, "prevers": .string, "curvers": .string, "os": .string, "arch": .string, "node": .string,
                "last_seen": time, "gmt_create": time, "gmt_modify": time, "tags": .array(.ref("Tag")),
                "agents": .array(.ref("SubAgent")),
            ],
            required: ["id", "agentsn", "hostname", "status", "gmt_create", "gmt_modify"]
        ),
        "ConnectedAgent": .object(
            [
                "agentsn": .string, "hostname": .string, "version": .string, "os": .string, "arch": .string,
                "tags": .object([:], additional: .string), "peer": .string, "connected": time, "last_seen": time,
                "node": .string,
            ],
            required: ["agentsn", "hostname", "node"]
        ),
        "Tag": .object(
            ["id": .integer, "name": .string, "value": .string, "hosts": .integer, "gmt_create": time, "gmt_modify": time],
            required: ["id", "name", "value"]
        ),
        "SubAgent": .object(
            [
                "name": .string, "version": .string, "status": .enumeration(["stoped", "running", "fatal", "killed", ""]),
                "uptime": .integer, "pid": .integer, "restarts": .integer, "message": .string, "prevers": .string,
            ],
            required: ["name", "version", "status"]
        ),
        "Region": .object(["id": .integer, "name": .string], required: ["id", "name"]),
        "Event": .object(
            [
                "id": .integer, "agentsn": .string, "category": .string, "localid": .integer, "occured": time,
                "message": .string, "gmt_create": time,
            ],
            required: ["id", "agentsn", "localid", "occured"]
        ),
        "Deployment": .object(
            [
                "name": .string, "version": .string, "hosts": .integer, "running": .integer, "stoped": .integer, "fatal": .integer,
                "killed": .integer,
            ],
            required: ["name", "version", "hosts", "running", "stoped", "fatal", "killed"]
        ),
        "AgentStatus": .object(
            [
                "agentsn": .string, "hostname": .string, "version": .string, "uptime": .integer, "timestamp": .integer,
                "step": .integer, "tags": .object([:], additional: .string),
                "agents": .array(
                    .object(["name": .string, "version": .string, "status": .string, "uptime": .integer], required: ["name"])
                ),
            ],
            required: ["hostname"]
        ),
        "Job": .object(
            [
                "id": .string, "action": .string, "method": .string, "name": .string, "version": .string,
                "url": .string, "checksum": .string, "envs": .object([:], additional: .string),
                "limits": .object([:], additional: .string), "svrlist": .string, "step": .integer,
                "tags": .object([:], additional: .string), "cmd": .string, "timeout": .integer, "user": .string,
                "group": .string, "args": .string,
            ],
            required: ["id", "action"]
        ),
        "JobResult": .object(
            ["id": .string, "errcode": .integer, "message": .string, "data": .string],
            required: ["id", "errcode"]
        ),
    ]

    /// The whole document.
    public static func document(version: String) -> [String: Any] {
        var paths: [String: [String: Any]] = [:]
        for route in Route.allCases {
            let spec = route.spec
            var operation: [String: Any] = [
                "operationId": route.rawValue,
                "summary": spec.summary,
                "responses": [
                    "200": ["description": "Success.", "content": [spec.responseType: ["schema": spec.response.json]]],
                    "default": [
                        "description": "The error envelope, with the HTTP status of its code (400, 401, 404, 409, 413, 422, 500, ...).",
                        "content": ["application/json": ["schema": Schema.ref("Error").json]],
                    ],
                ],
                "security": spec.access == .agent ? [[String: [String]]]() : [["bearer": [String]()]],
            ]
            if !spec.query.isEmpty {
                operation["parameters"] = spec.query.map { parameter in
                    [
                        "name": parameter.name, "in": "query", "required": parameter.required,
                        "description": parameter.summary, "schema": parameter.schema.json,
                    ] as [String: Any]
                }
            }
            if !spec.body.isEmpty {
                var content: [String: Any] = [:]
                for (type, schema) in spec.body { content[type] = ["schema": schema.json] }
                operation["requestBody"] = ["required": true, "content": content]
            }
            paths[spec.path, default: [:]][spec.method.lowercased()] = operation
        }
        return [
            "openapi": "3.0.3",
            "info": [
                "title": "Aspire server REST API",
                "version": version,
                "description": """
                    REST/JSON gateway of the Aspire control plane. Success answers carry {"status": 0, "message": \
                    "success"} beside their payload; failures carry {"status": <code>, "message", "cause"} with the \
                    HTTP status of the code. Times are RFC 3339.
                    """,
            ],
            "paths": paths,
            "components": [
                "schemas": Self.components.mapValues(\.json),
                "securitySchemes": ["bearer": ["type": "http", "scheme": "bearer"]],
            ],
        ]
    }
}
