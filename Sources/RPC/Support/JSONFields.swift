public import SwiftProtobuf

/// Typed, checked access to the fields of a JSON object parsed from the network (a
/// `google.protobuf.Struct`): task parameters, REST bodies. Every error names the context and
/// the key, so the operator sees exactly what to fix.
public struct JSONFields: Sendable {
    /// Names the object in errors: a method or a route ("POST /api/v1/server/task").
    public var context: String
    public var fields: [String: Google_Protobuf_Value]
    /// The code of the errors (task parameters: 3021; REST bodies: bad request).
    public var code: ErrorCode
    /// Whether a number may be written as a string ("10"): the seeds' jobs do; the REST API's
    /// own bodies take numbers as numbers, as its document says.
    public var numbersAsText = true

    /// The largest whole number a JSON body carries exactly (2^53 - 1: beyond it a JSON number,
    /// a double, is not the whole number it writes).
    public static let maxWhole: Int64 = 9_007_199_254_740_991

    public init(_ fields: [String: Google_Protobuf_Value], context: String, code: ErrorCode) {
        self.fields = fields
        self.context = context
        self.code = code
    }

    func failure(_ text: String) -> AspireError {
        AspireError(self.code, "\(self.context): \(text)")
    }

    /// Refuses keys outside `keys` (typos must not pass silently).
    public func allow(_ keys: Set<String>) throws(AspireError) {
        if let unknown = self.fields.keys.sorted().first(where: { !keys.contains($0) }) {
            throw self.failure("unknown field '\(unknown)' (it takes \(keys.sorted().joined(separator: ", ")))")
        }
    }

    public func has(_ key: String) -> Bool {
        guard let value = self.fields[key] else { return false }
        return !Self.isNull(value)
    }

    public func string(_ key: String, required: Bool = false) throws(AspireError) -> String {
        guard let value = self.fields[key], !Self.isNull(value) else {
            if required { throw self.failure("'\(key)' is required") }
            return ""
        }
        guard case .stringValue(let text)? = value.kind else {
            throw self.failure("'\(key)' must be a string")
        }
        if required, text.isEmpty { throw self.failure("'\(key)' must not be empty") }
        return text
    }

    /// A whole number; "10" is taken as 10 where `numbersAsText` (seeds and shell users write
    /// both), as ``WholeText`` writes it.
    public func integer(_ key: String, range: ClosedRange<Int>) throws(AspireError) -> Int? {
        guard let value = self.fields[key], !Self.isNull(value) else { return nil }
        let number: Double
        switch value.kind {
        case .numberValue(let double)?: number = double
        case .stringValue(let text)? where self.numbersAsText:
            // Digits only ("10"; not "+10", "1e1" or "0x0A", which Double would take).
            guard let whole = WholeText.value(text) else { throw self.failure("'\(key)' must be a number") }
            number = Double(whole)
        default:
            throw self.failure("'\(key)' must be a number")
        }
        guard let whole = Int(exactly: number), range.contains(whole) else {
            throw self.failure("'\(key)' must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return whole
    }

    /// A whole number within an Int64 range (what the REST document declares).
    public func integer(_ key: String, range: ClosedRange<Int64>) throws(AspireError) -> Int64? {
        try self.integer(key, range: Int(range.lowerBound) ... Int(range.upperBound)).map(Int64.init)
    }

    public func bool(_ key: String) throws(AspireError) -> Bool? {
        guard let value = self.fields[key], !Self.isNull(value) else { return nil }
        guard case .boolValue(let flag)? = value.kind else { throw self.failure("'\(key)' must be true or false") }
        return flag
    }

    /// A number or a string, as text: `max_concurrency: 10` and `"25%"` alike.
    public func numberOrString(_ key: String) throws(AspireError) -> String {
        guard let value = self.fields[key], !Self.isNull(value) else { return "" }
        switch value.kind {
        case .stringValue(let text)?: return text
        case .numberValue(let number)?:
            if let whole = Int64(exactly: number), whole.magnitude <= Self.maxWhole { return String(whole) }
        default: break
        }
        throw self.failure("'\(key)' must be a whole number or a string like \"25%\"")
    }

    public func stringArray(_ key: String) throws(AspireError) -> [String] {
        guard let value = self.fields[key], !Self.isNull(value) else { return [] }
        guard case .listValue(let list)? = value.kind else { throw self.failure("'\(key)' must be an array of strings") }
        var result: [String] = []
        for (index, item) in list.values.enumerated() {
            guard case .stringValue(let text)? = item.kind else {
                throw self.failure("'\(key)[\(index)]' must be a string")
            }
            result.append(text)
        }
        return result
    }

    public func object(_ key: String) throws(AspireError) -> Google_Protobuf_Struct? {
        guard let value = self.fields[key], !Self.isNull(value) else { return nil }
        guard case .structValue(let object)? = value.kind else { throw self.failure("'\(key)' must be an object") }
        return object
    }

    /// An object of strings (numbers are taken as their text where `numbersAsText`).
    public func stringMap(_ key: String) throws(AspireError) -> [String: String] {
        guard let object = try self.object(key) else { return [:] }
        var result: [String: String] = [:]
        for (name, item) in object.fields {
            switch item.kind {
            case .stringValue(let text)?: result[name] = text
            case .numberValue(let number)? where self.numbersAsText:
                result[name] = Int(exactly: number).map(String.init) ?? String(number)
            default:
                throw self.failure("'\(key).\(name)' must be a string")
            }
        }
        return result
    }

    public static func isNull(_ value: Google_Protobuf_Value) -> Bool {
        if case .nullValue? = value.kind { return true }
        return value.kind == nil
    }
}
