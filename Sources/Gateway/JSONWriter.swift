import Foundation
import NIOCore
import RPC

/// A value the gateway writes as JSON. Each type writes itself, so an answer is written
/// without asking any value its type at run time.
protocol JSONWritable {
    func write(to writer: inout JSONWriter)
}

/// Compact JSON with sorted keys, for the gateway's answers.
///
/// Why not JSONSerialization: on Linux it bridges every value to an NS type and sorts keys
/// with a locale-aware compare through ICU; a page of 50 hosts spent 65 % of the gateway's
/// time there. Why not `[String: Any]` either: a page of 50 hosts then spent a third of the
/// node's time building dictionaries of existentials and casting each value back to its
/// type to write it (P6 in bench/README.md). Answers are ``JSONObject``s of ``JSONWritable``
/// values; untyped trees (the OpenAPI document, the console's events) still can be written.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []

    static func encode(_ value: some JSONWritable) -> ByteBuffer {
        var writer = JSONWriter()
        writer.bytes.reserveCapacity(4096)
        value.write(to: &writer)
        return ByteBuffer(bytes: writer.bytes)
    }

    /// An untyped tree (dictionaries and arrays of `Any`, as Mustache's data or JSONSerialization's
    /// output); throws only for a value JSONSerialization cannot write either.
    static func encode(untyped value: Any) throws -> ByteBuffer {
        var writer = JSONWriter()
        writer.bytes.reserveCapacity(4096)
        try writer.write(untyped: value)
        return ByteBuffer(bytes: writer.bytes)
    }

    private mutating func write(untyped value: Any) throws {
        switch value {
        case let object as [String: Any]:
            try self.write(members: object.sorted { $0.key < $1.key }) { try $0.write(untyped: $1) }
        case let array as [Any]:
            try self.write(elements: array) { try $0.write(untyped: $1) }
        // Bool before the integers: a parsed JSON `true` is an NSNumber that also casts to Int.
        case let bool as Bool:
            bool.write(to: &self)
        case let int as Int64:
            int.write(to: &self)
        case is NSNull, Optional<Any>.none:
            self.writeNull()
        case let writable as any JSONWritable:
            writable.write(to: &self)
        default:
            guard JSONSerialization.isValidJSONObject([value]) else {
                throw AspireError(.internalError, "\(type(of: value)) has no JSON form")
            }
            self.bytes.append(contentsOf: try JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]))
        }
    }

    /// An object of `members`, already in the order of their keys.
    mutating func write<Members: Sequence<(key: String, value: Value)>, Value>(
        members: Members, member: (inout JSONWriter, Value) throws -> Void
    ) rethrows {
        self.bytes.append(UInt8(ascii: "{"))
        var first = true
        for (key, value) in members {
            if !first { self.bytes.append(UInt8(ascii: ",")) }
            first = false
            self.write(string: key)
            self.bytes.append(UInt8(ascii: ":"))
            try member(&self, value)
        }
        self.bytes.append(UInt8(ascii: "}"))
    }

    mutating func write<Elements: Sequence>(elements: Elements, element: (inout JSONWriter, Elements.Element) throws -> Void) rethrows {
        self.bytes.append(UInt8(ascii: "["))
        var first = true
        for value in elements {
            if !first { self.bytes.append(UInt8(ascii: ",")) }
            first = false
            try element(&self, value)
        }
        self.bytes.append(UInt8(ascii: "]"))
    }

    mutating func write(_ value: any JSONWritable) {
        value.write(to: &self)
    }

    mutating func writeNull() {
        self.bytes.append(contentsOf: "null".utf8)
    }

    mutating func write(integer: Int64) {
        self.append(text: String(integer))
    }

    /// Integral values without a fraction (as JSONSerialization writes them); the shortest
    /// text that reads back the same otherwise; null for NaN and infinities, which JSON lacks.
    mutating func write(double: Double) {
        if !double.isFinite {
            self.writeNull()
        } else if double == double.rounded(), abs(double) < 1e15 {
            self.write(integer: Int64(double))
        } else {
            self.append(text: "\(double)")
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped, everything else
    /// (slashes, non-ASCII) as its UTF-8 bytes.
    mutating func write(string: String) {
        self.bytes.append(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { utf8 in
            var start = 0
            for (index, byte) in utf8.enumerated() where Self.needsEscape(byte) {
                self.bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start ..< index]))
                start = index + 1
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
            self.bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...]))
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

/// A JSON object as the gateway builds its answers, written in the order of its keys. A
/// dictionary literal of any ``JSONWritable`` values makes one, so an answer reads as the JSON it
/// becomes.
///
/// A literal written in key order stays in order (a member set later goes to its place), and is
/// written without a sort: sorting a host's two dozen keys at every write was 6 % of a REST host
/// list (P6). The shapes a page repeats (`RESTJSON.host`, `.subtask`, ...) are written so; any
/// other literal is sorted as it is written.
struct JSONObject: JSONWritable, ExpressibleByDictionaryLiteral {
    // Keys apart from values: finding and ordering members compares keys without copying
    // members out (a copied member was a fifth of a host list's time).
    private var keys: [String] = []
    private var values: [any JSONWritable] = []

    /// A literal's keys are distinct, as a dictionary literal's must be.
    init(dictionaryLiteral elements: (String, any JSONWritable)...) {
        self.keys.reserveCapacity(elements.count)
        self.values.reserveCapacity(elements.count)
        for (key, value) in elements {
            self.keys.append(key)
            self.values.append(value)
        }
    }

    /// Setting nil removes the member, as in a dictionary.
    subscript(key: String) -> (any JSONWritable)? {
        get { self.keys.firstIndex(of: key).map { self.values[$0] } }
        set {
            switch (self.keys.firstIndex(of: key), newValue) {
            case (let index?, let value?):
                self.values[index] = value
            case (let index?, nil):
                self.keys.remove(at: index)
                self.values.remove(at: index)
            case (nil, let value?):
                // After the last key before it: in place when the keys are in order.
                var index = self.keys.endIndex
                while index > 0, key < self.keys[index - 1] { index -= 1 }
                self.keys.insert(key, at: index)
                self.values.insert(value, at: index)
            case (nil, nil):
                break
            }
        }
    }

    var inKeyOrder: Bool {
        self.keys.indices.dropFirst().allSatisfy { self.keys[$0 - 1] < self.keys[$0] }
    }

    func write(to writer: inout JSONWriter) {
        if self.inKeyOrder {
            self.write(self.keys.indices, to: &writer)
        } else {
            self.write(self.keys.indices.sorted { self.keys[$0] < self.keys[$1] }, to: &writer)
        }
    }

    /// The members by their positions (a value copied out of the array, boxed, costs more).
    private func write(_ order: some Sequence<Int>, to writer: inout JSONWriter) {
        writer.write(members: order.lazy.map { (key: self.keys[$0], value: $0) }) { $0.write(self.values[$1]) }
    }
}

extension String: JSONWritable {
    func write(to writer: inout JSONWriter) { writer.write(string: self) }
}

extension Bool: JSONWritable {
    func write(to writer: inout JSONWriter) { writer.write(raw: self ? "true" : "false") }
}

extension Int: JSONWritable {
    func write(to writer: inout JSONWriter) { writer.write(integer: Int64(self)) }
}

extension Int64: JSONWritable {
    func write(to writer: inout JSONWriter) { writer.write(integer: self) }
}

extension Int32: JSONWritable {
    func write(to writer: inout JSONWriter) { writer.write(integer: Int64(self)) }
}

extension UInt32: JSONWritable {
    func write(to writer: inout JSONWriter) { writer.write(integer: Int64(self)) }
}

extension Double: JSONWritable {
    func write(to writer: inout JSONWriter) { writer.write(double: self) }
}

/// None is null.
extension Optional: JSONWritable where Wrapped: JSONWritable {
    func write(to writer: inout JSONWriter) {
        if let value = self { value.write(to: &writer) } else { writer.writeNull() }
    }
}

extension Array: JSONWritable where Element: JSONWritable {
    func write(to writer: inout JSONWriter) { writer.write(elements: self) { $1.write(to: &$0) } }
}

extension Dictionary: JSONWritable where Key == String, Value: JSONWritable {
    /// The members taken out once, as concrete pairs, and those sorted: this runs unspecialized
    /// when reached through `any JSONWritable`, where looking each sorted key up again asked the
    /// runtime for `Value?`'s metadata at every member, and a generic sort of the dictionary's own
    /// pairs was most of a task page's time (when a command's result was a dictionary).
    func write(to writer: inout JSONWriter) {
        var members: [(key: String, value: any JSONWritable)] = []
        members.reserveCapacity(self.count)
        for (key, value) in self {
            members.append((key, value))
        }
        members.sort { $0.key < $1.key }
        writer.write(members: members) { $0.write($1) }
    }
}

/// A document read from JSON (a command's result, a plugin's output).
extension JSONValue: JSONWritable {
    func write(to writer: inout JSONWriter) {
        switch self {
        case .null: writer.writeNull()
        case .bool(let bool): bool.write(to: &writer)
        case .integer(let int): writer.write(integer: int)
        case .number(let double): writer.write(double: double)
        case .string(let string): writer.write(string: string)
        case .array(let array): array.write(to: &writer)
        // Sorted here, of its concrete type, rather than through the generic dictionary's
        // conformance.
        case .object(let object): writer.write(members: object.sorted { $0.key < $1.key }) { $1.write(to: &$0) }
        }
    }
}

/// A command's result in the seed's form.
extension Aspire_V1_CommandResult: JSONWritable {
    func write(to writer: inout JSONWriter) {
        writer.write(members: self.seedJSONMembers()) { $1.write(to: &$0) }
    }
}

extension JSONWriter {
    /// `text` as it is: a literal the caller knows to be JSON.
    fileprivate mutating func write(raw text: StaticString) {
        text.withUTF8Buffer { self.bytes.append(contentsOf: $0) }
    }
}
