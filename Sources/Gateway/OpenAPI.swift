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
    /// A string of at least one character.
    case nonEmpty
    /// A whole number within bounds.
    case bounded(ClosedRange<Int64>)
    /// The schema, or null (a time not set, say).
    case nullable(Schema)
    /// As `additionalProperties: false`: no field beyond those named.
    case never
    /// A string matching a regular expression (ECMA 262, as JSON Schema's `pattern`), at most
    /// `maxLength` characters long.
    case matching(String, maxLength: Int? = nil)
    /// An array of at least one item.
    case nonEmptyArray(Schema)
    /// A string of `length` characters (Unicode scalars, as JSON Schema counts them).
    case length(ClosedRange<Int>)
    /// An object used as a map: at least `minimum` fields, each name of `names` and each value
    /// of `values` (tags).
    case map(names: Schema, values: Schema, minimum: Int = 0)
    case array(Schema)
    case object([String: Schema], required: [String] = [], additional: Schema? = nil)
    /// A schema of `OpenAPI.components`.
    case ref(String)
    /// One of several shapes.
    case oneOf([Schema])
    /// Every one of these (a shape, and a rule over its fields).
    case allOf([Schema])
    /// At least one of these.
    case anyOf([Schema])

    /// The schema as a request body is checked: a required string is never empty, a field
    /// that is not required may be null (taken as absent), and an object with named fields
    /// takes no others (the gateway refuses unknown fields).
    var asRequest: Schema {
        switch self {
        case .object(let properties, let required, let additional):
            var fields = properties.mapValues(\.asRequest)
            for (name, schema) in fields {
                if required.contains(name) {
                    if case .string = schema { fields[name] = .nonEmpty }
                } else if case .nullable = schema {
                } else {
                    fields[name] = .nullable(schema)
                }
            }
            return .object(fields, required: required, additional: additional ?? (properties.isEmpty ? nil : .never))
        case .array(let items): return .array(items.asRequest)
        case .nonEmptyArray(let items): return .nonEmptyArray(items.asRequest)
        case .oneOf(let choices): return .oneOf(choices.map(\.asRequest))
        case .allOf(let parts): return .allOf(parts.map(\.asRequest))
        case .anyOf(let choices): return .anyOf(choices.map(\.asRequest))
        case .nullable(let schema): return .nullable(schema.asRequest)
        default: return self
        }
    }

    /// Checks a query parameter's text against this schema; answers why not, or nil.
    func refusal(ofQueryValue text: String) -> String? {
        switch self {
        case .integer:
            return Int64(text) == nil ? "must be a whole number" : nil
        case .bounded(let range):
            guard let value = Int64(text), range.contains(value) else {
                return "must be a whole number from \(range.lowerBound) to \(range.upperBound)"
            }
            return nil
        case .boolean:
            return ["true", "false", "1", "0"].contains(text.lowercased()) ? nil : "must be true or false"
        case .enumeration(let values):
            return values.contains(text) ? nil : "must be one of \(values.joined(separator: ", "))"
        case .nonEmpty:
            return text.isEmpty ? "must not be empty" : nil
        case .matching(let pattern, let maxLength):
            if let maxLength, text.unicodeScalars.count > maxLength { return "must be at most \(maxLength) characters" }
            // By Unicode scalars, as JSON Schema's ECMA 262 patterns match (not by Swift's characters).
            guard let regex = try? Regex(pattern).matchingSemantics(.unicodeScalar), (try? regex.wholeMatch(in: text)) != nil else {
                return "must match \(pattern)"
            }
            return nil
        case .length(let range):
            return range.contains(text.unicodeScalars.count) ? nil : "must be \(range.lowerBound) to \(range.upperBound) characters"
        case .nullable(let schema):
            return schema.refusal(ofQueryValue: text)
        default:
            return nil
        }
    }

    /// The components this schema names.
    var references: [String] {
        switch self {
        case .ref(let name): return [name]
        case .array(let items), .nonEmptyArray(let items), .nullable(let items): return items.references
        case .map(let names, let values, _): return names.references + values.references
        case .oneOf(let choices), .allOf(let choices), .anyOf(let choices): return choices.flatMap(\.references)
        case .object(let properties, _, let additional): return properties.values.flatMap(\.references) + (additional?.references ?? [])
        default: return []
        }
    }

    /// The success envelope `{"status": 0, "message": "success", ...}` around a payload.
    static func envelope(_ payload: [String: Schema], required: [String] = []) -> Schema {
        var properties = payload
        properties["status"] = .integer
        properties["message"] = .string
        properties["cause"] = .string
        return .object(properties, required: ["status", "message"] + required)
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
        case .nonEmpty: return ["type": "string", "minLength": 1]
        case .bounded(let range): return ["type": "integer", "format": "int64", "minimum": range.lowerBound, "maximum": range.upperBound]
        case .length(let range): return ["type": "string", "minLength": range.lowerBound, "maxLength": range.upperBound]
        case .nullable(let schema):
            // OpenAPI 3.1 (JSON Schema 2020-12): null is a type, and a value of an enum.
            var json = schema.json
            if let type = json["type"] as? String, json["$ref"] == nil {
                json["type"] = [type, "null"]
                if let values = json["enum"] as? [Any] { json["enum"] = values + [NSNull()] }
                return json
            }
            return ["anyOf": [json, ["type": "null"]]]
        case .never: return ["not": [String: Any]()]
        case .matching(let pattern, let maxLength):
            var json: [String: Any] = ["type": "string", "pattern": pattern]
            if let maxLength { json["maxLength"] = maxLength }
            return json
        case .nonEmptyArray(let items): return ["type": "array", "items": items.json, "minItems": 1]
        case .map(let names, let values, let minimum):
            var json: [String: Any] = ["type": "object", "propertyNames": names.json, "additionalProperties": values.json]
            if minimum > 0 { json["minProperties"] = minimum }
            return json
        case .array(let items): return ["type": "array", "items": items.json]
        case .object(let properties, let required, let additional):
            var object: [String: Any] = ["type": "object", "properties": properties.mapValues(\.json)]
            if !required.isEmpty { object["required"] = required.sorted() }
            if case .never? = additional {
                object["additionalProperties"] = false
            } else if case .any? = additional {
                object["additionalProperties"] = true
            } else if let additional {
                object["additionalProperties"] = additional.json
            }
            return object
        case .ref(let name): return ["$ref": "#/components/schemas/\(name)"]
        case .oneOf(let choices): return ["oneOf": choices.map(\.json)]
        case .allOf(let parts): return ["allOf": parts.map(\.json)]
        case .anyOf(let choices): return ["anyOf": choices.map(\.json)]
        }
    }
}

/// The OpenAPI 3 document of the gateway, written from its routes: each controller says what its
/// routes accept and answer; the shared schemas are here.
public enum OpenAPI {
    /// RFC 3339, or null when not set (a token that never expires, an operator never revoked).
    static let time = Schema.nullable(.string)
    /// The largest whole number a JSON body carries exactly (2^53 - 1: bodies' numbers are doubles).
    static let maxWhole: Int64 = 9_007_199_254_740_991
    /// Tags (and tag selectors, and an operator's scope): names of 1 to 64 characters, values of
    /// at most 64, as `SQLStore.validateTag` takes them.
    static func tags(minimum: Int = 0) -> Schema { .map(names: .length(1 ... 64), values: .length(0 ... 64), minimum: minimum) }
    /// Whom a schedule or plugin is for (`checkTargets`): AgentSNs, tags, or both, not neither.
    /// (Open objects: the shape beside this rule names the fields.)
    static var targets: Schema {
        .anyOf([
            .object(["agents": .nonEmptyArray(Self.agentSN)], required: ["agents"], additional: .any),
            .object(["tags": Self.tags(minimum: 1)], required: ["tags"], additional: .any),
        ])
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
