#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// A JSON document of any shape — what a plugin or a command printed, a result's seed body —
/// read and written by FoundationEssentials' JSON coders. The agent has no `JSONSerialization`:
/// it is Foundation's, and would link all of Foundation and ICU's data into `boot`.
///
/// Whole numbers stay exact to 64 bits (`integer`); other numbers are doubles.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// `data` read as JSON (any value at the top, not only an object or a list).
    public init(parsing data: some DataProtocol) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: Data(data))
    }

    /// Compact JSON with sorted keys and unescaped slashes (a seed body's form); indented with `pretty`.
    public func encoded(pretty: Bool = false) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted] : [.sortedKeys, .withoutEscapingSlashes]
        // Every case has a JSON form; only a non-finite double could fail, and `number` is read
        // or built finite (`init(_ double:)`).
        return (try? encoder.encode(self)) ?? Data("null".utf8)
    }

    /// `double` as a number, or null when it is not finite (JSON has no NaN or infinity).
    public init(_ double: Double) {
        self = double.isFinite ? .number(double) : .null
    }

    public init(_ integer: some BinaryInteger) {
        self = .integer(Int64(clamping: integer))
    }

    public init(_ string: String) {
        self = .string(string)
    }

    public init(_ bool: Bool) {
        self = .bool(bool)
    }

    public init(_ strings: [String]) {
        self = .array(strings.map(JSONValue.string))
    }

    public init(_ strings: [String: String]) {
        self = .object(strings.mapValues(JSONValue.string))
    }

    /// The value as a number: integers and doubles, booleans as 1 and 0.
    public var double: Double? {
        switch self {
        case .integer(let value): Double(value)
        case .number(let value): value
        case .bool(let value): value ? 1 : 0
        default: nil
        }
    }

    public var string: String? {
        if case .string(let value) = self { value } else { nil }
    }

    public var object: [String: JSONValue]? {
        if case .object(let value) = self { value } else { nil }
    }

    public var array: [JSONValue]? {
        if case .array(let value) = self { value } else { nil }
    }
}

extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        // The likeliest shapes first: each wrong guess costs a thrown type mismatch.
        if container.decodeNil() {
            self = .null
        } else if let string = try? container.decode(String.self) {
            self = .string(string)
        } else if let integer = try? container.decode(Int64.self) {
            self = .integer(integer)
        } else if let double = try? container.decode(Double.self) {
            self = .number(double)
        } else if let bool = try? container.decode(Bool.self) {
            self = .bool(bool)
        } else if let object = try? container.decode([String: JSONValue].self) {
            self = .object(object)
        } else {
            self = .array(try container.decode([JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}
