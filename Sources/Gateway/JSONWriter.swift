import Foundation
import NIOCore
import RPC

/// Compact JSON with sorted keys, for the gateway's
/// answers: dictionaries and arrays of strings, numbers, booleans and nulls built from Admin
/// messages, and the JSON documents agents return (`JSONValue`).
///
/// Why not JSONSerialization: on Linux it bridges every value to an NS type and sorts keys
/// with a locale-aware compare through ICU; a page of 50 hosts spent 65 % of the gateway's
/// time there (P6 in bench/README.md). Anything this writer does not know is still handed
/// to JSONSerialization, so no value is lost.
struct JSONWriter {
    private var bytes: [UInt8] = []

    /// `value` as JSON; throws only for a value JSONSerialization cannot write either.
    static func encode(_ value: Any) throws -> ByteBuffer {
        var writer = JSONWriter()
        writer.bytes.reserveCapacity(4096)
        try writer.write(value)
        return ByteBuffer(bytes: writer.bytes)
    }

    private mutating func write(_ value: Any) throws {
        switch value {
        case let string as String:
            self.write(string: string)
        case let json as JSONValue:
            self.write(json: json)
        case let object as [String: Any]:
            try self.write(object: object) { try $0.write($1) }
        case let array as [Any]:
            try self.write(array: array) { try $0.write($1) }
        // Bool before the integers: a parsed JSON `true` is an NSNumber that also casts to Int.
        case let bool as Bool:
            self.append(text: bool ? "true" : "false")
        case let int as Int:
            self.append(text: String(int))
        case let int as Int64:
            self.append(text: String(int))
        case let int as Int32:
            self.append(text: String(int))
        case let double as Double:
            self.write(double: double)
        case is NSNull:
            self.append(text: "null")
        case Optional<Any>.none:
            self.append(text: "null")
        default:
            guard JSONSerialization.isValidJSONObject([value]) else {
                throw AspireError(.internalError, "\(type(of: value)) has no JSON form")
            }
            self.bytes.append(contentsOf: try JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]))
        }
    }

    /// A document read from JSON (a command's result, a plugin's output), as the values built here.
    private mutating func write(json: JSONValue) {
        switch json {
        case .null: self.append(text: "null")
        case .bool(let bool): self.append(text: bool ? "true" : "false")
        case .integer(let int): self.append(text: String(int))
        case .number(let double): self.write(double: double)
        case .string(let string): self.write(string: string)
        case .array(let array): self.write(array: array) { $0.write(json: $1) }
        case .object(let object): self.write(object: object) { $0.write(json: $1) }
        }
    }

    /// An object's members in the order of their keys.
    private mutating func write<Member>(object: [String: Member], member: (inout JSONWriter, Member) throws -> Void) rethrows {
        self.bytes.append(UInt8(ascii: "{"))
        for (index, (key, value)) in object.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { self.bytes.append(UInt8(ascii: ",")) }
            self.write(string: key)
            self.bytes.append(UInt8(ascii: ":"))
            try member(&self, value)
        }
        self.bytes.append(UInt8(ascii: "}"))
    }

    private mutating func write<Element>(array: [Element], element: (inout JSONWriter, Element) throws -> Void) rethrows {
        self.bytes.append(UInt8(ascii: "["))
        for (index, value) in array.enumerated() {
            if index > 0 { self.bytes.append(UInt8(ascii: ",")) }
            try element(&self, value)
        }
        self.bytes.append(UInt8(ascii: "]"))
    }

    /// Integral values without a fraction (as JSONSerialization writes them); the shortest
    /// text that reads back the same otherwise; null for NaN and infinities, which JSON lacks.
    private mutating func write(double: Double) {
        if !double.isFinite {
            self.append(text: "null")
        } else if double == double.rounded(), abs(double) < 1e15 {
            self.append(text: String(Int64(double)))
        } else {
            self.append(text: "\(double)")
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped, everything else
    /// (slashes, non-ASCII) as its UTF-8 bytes.
    private mutating func write(string: String) {
        self.bytes.append(UInt8(ascii: "\""))
        let utf8 = string.utf8
        if !utf8.contains(where: Self.needsEscape) {
            self.bytes.append(contentsOf: utf8)
        } else {
            for byte in utf8 {
                guard Self.needsEscape(byte) else {
                    self.bytes.append(byte)
                    continue
                }
                switch byte {
                case UInt8(ascii: "\""): self.bytes.append(contentsOf: #"\""#.utf8)
                case UInt8(ascii: "\\"): self.bytes.append(contentsOf: #"\\"#.utf8)
                case UInt8(ascii: "\n"): self.bytes.append(contentsOf: #"\n"#.utf8)
                case UInt8(ascii: "\r"): self.bytes.append(contentsOf: #"\r"#.utf8)
                case UInt8(ascii: "\t"): self.bytes.append(contentsOf: #"\t"#.utf8)
                default:
                    self.bytes.append(contentsOf: #"\u00"#.utf8)
                    self.bytes.append(contentsOf: [Self.hex[Int(byte >> 4)], Self.hex[Int(byte & 0xF)]])
                }
            }
        }
        self.bytes.append(UInt8(ascii: "\""))
    }

    private static let hex = Array("0123456789abcdef".utf8)

    private mutating func append(text: String) {
        self.bytes.append(contentsOf: text.utf8)
    }

    private static func needsEscape(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }
}
