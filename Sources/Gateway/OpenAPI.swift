import Foundation
public import RPC
import GRPCCore

extension Schema {
    /// The success envelope `{"status": 0, "message": "success", ...}` around a payload.
    static func envelope(_ payload: [String: Schema], required: [String] = []) -> Schema {
        var properties = payload
        properties["status"] = .integer
        properties["message"] = .string
        properties["cause"] = .string
        return .object(properties, required: ["status", "message"] + required)
    }
}

/// The OpenAPI 3 document of the gateway, written from its routes: each controller says what its
/// routes accept and answer; the shared schemas are here.
public enum OpenAPI {
    /// RFC 3339, or null when not set (a token that never expires, an operator never revoked).
    static let time = Schema.nullable(.string)
    /// The largest whole number a JSON body carries exactly (2^53 - 1: bodies' numbers are doubles).
    static let maxWhole = JSONFields.maxWhole
    /// Tags (and tag selectors, and an operator's scope): names of 1 to 64 characters, values of
    /// at most 64, as `SQLStore.validateTag` takes them.
    static func tags(minimum: Int = 0) -> Schema { .map(names: .length(1 ... 64), values: .length(0 ... 64), minimum: minimum) }
    /// Whom a schedule or plugin is for (`checkTargets`): AgentSNs, tags, or both, not neither.
    /// (Open objects: the shape beside this rule names the fields.)
    static var targets: Schema { .anyOf(Self.targetChoices) }
    /// Whom a task is for: AgentSNs or tags, one of them (`TaskEngine.create`).
    static var oneTarget: Schema { .oneOf(Self.targetChoices) }
    private static var targetChoices: [Schema] {
        [
            .object(["agents": .nonEmptyArray(Self.agentSN)], required: ["agents"], additional: .any),
            .object(["tags": Self.tags(minimum: 1)], required: ["tags"], additional: .any),
        ]
    }
    /// An AgentSN, as `AgentIdentity.validate(agentSN:)` takes it.
    static let agentSN = Schema.matching("^\(agentSNText)$")
    /// The AgentSN rule without its anchors (a query may quote the AgentSN).
    static let agentSNText = "[A-Za-z0-9._:-]{1,64}"
    /// A SHA256 in hex.
    static let sha256 = Schema.matching("^[0-9a-fA-F]{64}$")
    /// A SHA256 in hex, or empty for none (as a form sends a field left blank).
    static let sha256OrEmpty = Schema.matching("^([0-9a-fA-F]{64})?$")
    /// Base64 as RFC 4648 writes it: padded, no line breaks. `decodeBase64` reads exactly these
    /// (Foundation alone also takes "====").
    static let base64 = Schema.matching("^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")

    /// The bytes of `text` if it is what ``base64`` matches.
    static func decodeBase64(_ text: String) -> Data? {
        let utf8 = text.utf8
        let padding = utf8.reversed().prefix { $0 == UInt8(ascii: "=") }.count
        func isAlphabet(_ byte: UInt8) -> Bool {
            switch byte {
            case UInt8(ascii: "A") ... UInt8(ascii: "Z"), UInt8(ascii: "a") ... UInt8(ascii: "z"), UInt8(ascii: "0") ... UInt8(ascii: "9"),
                UInt8(ascii: "+"), UInt8(ascii: "/"): true
            default: false
            }
        }
        guard utf8.count % 4 == 0, padding <= 2, utf8.dropLast(padding).allSatisfy(isAlphabet) else { return nil }
        return Data(base64Encoded: text)
    }
    /// Names, versions, os and arch of packages, as `PackageFiles` takes them.
    static func packageField(maxLength: Int) -> Schema {
        // Dot-separated runs of the allowed characters: no leading dot, no "..".
        .matching("^[A-Za-z0-9_+~@:-]+(\\.[A-Za-z0-9_+~@:-]+)*\\.?$", maxLength: maxLength)
    }

    /// The schemas every resource shares; each controller adds its own.
    static let shared: [String: Schema] = [
        "Error": .object(["status": .integer, "message": .string, "cause": .string], required: ["status", "message"]),
        // The seed's agent routes answer failures in the seed's own shape.
        "SeedError": .object(["errcode": .integer, "message": .string], required: ["errcode", "message"]),
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
                        "content": ["application/json": ["schema": (spec.access == .agent ? Schema.ref("SeedError") : Schema.ref("Error")).json]],
                    ],
                ],
                "security": spec.access == .agent ? [[String: [String]]]() : [["bearer": [String]()]],
            ]
            if !spec.query.isEmpty {
                operation["parameters"] = spec.query.map { parameter in
                    // A required parameter given empty is not given.
                    var schema = parameter.schema
                    if parameter.required, case .string = schema { schema = .nonEmpty }
                    return [
                        "name": parameter.name, "in": "query", "required": parameter.required,
                        "description": parameter.summary, "schema": schema.json,
                    ] as [String: Any]
                }
            }
            if !spec.body.isEmpty {
                var content: [String: Any] = [:]
                for (type, schema) in spec.body { content[type] = ["schema": schema.asRequest.json] }
                operation["requestBody"] = ["required": true, "content": content]
            }
            paths[spec.path, default: [:]][spec.method.lowercased()] = operation
        }
        // The components request bodies name are checked as requests (see `asRequest`).
        var components = schemas.merging(Self.shared) { $1 }
        var requests = Set(routes.flatMap { $0.body.flatMap(\.schema.references) })
        var done: Set<String> = []
        while let name = requests.popFirst() {
            guard done.insert(name).inserted, let schema = components[name] else { continue }
            components[name] = schema.asRequest
            requests.formUnion(schema.references)
        }
        return [
            "openapi": "3.1.0",
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
                "schemas": components.mapValues(\.json),
                "securitySchemes": ["bearer": ["type": "http", "scheme": "bearer"]],
            ],
        ]
    }
}

/// The document itself, at `/api/v1/openapi.json`.
struct OpenAPIController: GatewayController {
    let gateway: Gateway

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
                    untyped: OpenAPI.document(routes: self.gateway.routes, schemas: self.gateway.schemas, version: self.gateway.configuration.version),
                    status: 200
                )
            }
        ]
    }
}
