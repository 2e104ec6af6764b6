import Foundation
import RPC
import GRPCCore

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

/// The OpenAPI 3 document of the gateway, written from its routes: each controller says what its
/// routes accept and answer; the shared schemas are here.
public enum OpenAPI {
    static let time = Schema.string

    /// The schemas every resource shares; each controller adds its own.
    static let shared: [String: Schema] = [
        "Error": .object(["status": .integer, "message": .string, "cause": .string], required: ["status", "message"]),
    ]

    /// The whole document.
    public static func document(routes: [Route], schemas: [String: Schema], version: String) -> [String: Any] {
        var paths: [String: [String: Any]] = [:]
        for spec in routes {
            var operation: [String: Any] = [
                "operationId": spec.id,
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
                "schemas": schemas.merging(Self.shared) { $1 }.mapValues(\.json),
                "securitySchemes": ["bearer": ["type": "http", "scheme": "bearer"]],
            ],
        ]
    }
}

/// The document itself, at `/api/v1/openapi.json`.
struct OpenAPIController<Transport: ClientTransport>: GatewayController {
    let gateway: Gateway<Transport>

    var endpoints: [Endpoint] {
        [
            Endpoint(
                Route(
                    id: "openAPI", rpc: "WhoAmI", method: "GET", path: "/api/v1/openapi.json", summary: "This document.",
                    response: .object(["openapi": .string, "info": .object([:]), "paths": .object([:])], required: ["openapi", "paths"])
                )
            ) { _, _, _, metadata in
                // The document is for operators: the call proves the caller is one.
                _ = try await self.gateway.admin.whoAmI(Aspire_V1_WhoAmIRequest(), metadata: metadata)
                return Answer.json(
                    OpenAPI.document(routes: self.gateway.routes, schemas: self.gateway.schemas, version: self.gateway.configuration.version),
                    status: 200
                )
            }
        ]
    }
}
