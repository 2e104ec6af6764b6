#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A JSON schema, as much of it as the REST document needs: the gateway writes its document
/// from these, and the parsers of what the document describes (task parameters) declare theirs
/// beside their code.
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
    /// Exactly this value: a flag that must be set (or clear).
    case flag(Bool)
    /// A whole number among these.
    case integers([Int64])
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
    /// An object whose field names each match one of the patterns, its value that pattern's
    /// schema (`limits`, whose names any case may write).
    case patterned([String: Schema])
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
    public var asRequest: Schema {
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
        case .patterned(let fields): return .patterned(fields.mapValues(\.asRequest))
        default: return self
        }
    }

    /// Checks a query parameter's text against this schema; answers why not, or nil.
    public func refusal(ofQueryValue text: String) -> String? {
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
    public var references: [String] {
        switch self {
        case .ref(let name): return [name]
        case .array(let items), .nonEmptyArray(let items), .nullable(let items): return items.references
        case .map(let names, let values, _): return names.references + values.references
        case .patterned(let fields): return fields.values.flatMap(\.references)
        case .oneOf(let choices), .allOf(let choices), .anyOf(let choices): return choices.flatMap(\.references)
        case .object(let properties, _, let additional): return properties.values.flatMap(\.references) + (additional?.references ?? [])
        default: return []
        }
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
                if let values = json["enum"] as? [Any] { json["enum"] = values + [JSONValue.null] }
                return json
            }
            return ["anyOf": [json, ["type": "null"]]]
        case .never: return ["not": [String: Any]()]
        case .flag(let value): return ["const": value]
        case .integers(let values): return ["type": "integer", "format": "int64", "enum": values]
        case .matching(let pattern, let maxLength):
            var json: [String: Any] = ["type": "string", "pattern": pattern]
            if let maxLength { json["maxLength"] = maxLength }
            return json
        case .nonEmptyArray(let items): return ["type": "array", "items": items.json, "minItems": 1]
        case .map(let names, let values, let minimum):
            var json: [String: Any] = ["type": "object", "propertyNames": names.json, "additionalProperties": values.json]
            if minimum > 0 { json["minProperties"] = minimum }
            return json
        case .patterned(let fields):
            return ["type": "object", "patternProperties": fields.mapValues(\.json), "additionalProperties": false]
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

extension Schema {
    /// A whole number in `range`, as a number or (where the parser takes numbers as text) its
    /// digits (``WholeText``).
    public static func wholeOrText(_ range: ClosedRange<Int64>) -> Schema {
        .oneOf([.bounded(range), .matching(WholeText.pattern(range))])
    }

    /// A map value the parsers take as text: a string, or a number written out.
    public static let textOrNumber = Schema.oneOf([.string, .number])
}
