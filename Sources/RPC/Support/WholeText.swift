/// Whole numbers written as text ("10"), as task parameters and the seeds' bodies may carry them:
/// ASCII digits, no sign, no leading zero, no space — one grammar for the parsers and for the
/// REST document's patterns.
public enum WholeText {
    /// The number `text` writes, if it is written so (at most 18 digits).
    public static func value(_ text: String) -> Int64? {
        let digits = text.utf8
        guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            digits.count == 1 || digits.first != UInt8(ascii: "0")
        else { return nil }
        return Int64(text)
    }

    /// A JSON Schema pattern that matches exactly the texts of the numbers in `range`.
    public static func pattern(_ range: ClosedRange<Int64>) -> String {
        "^(?:\(self.alternatives(range)))$"
    }

    /// The same without anchors, as alternatives to put in a larger pattern's group.
    public static func alternatives(_ range: ClosedRange<Int64>) -> String {
        precondition(range.lowerBound >= 0 && range.upperBound < 1_000_000_000_000_000_000, "whole texts are 0 to 18 digits")
        var branches: [String] = []
        let low = String(range.lowerBound).count
        let high = String(range.upperBound).count
        for length in low ... high {
            let first = max(range.lowerBound, length == 1 ? 0 : Self.power(length - 1))
            let last = min(range.upperBound, Self.power(length) - 1)
            if first <= last { branches += Self.between(Array(String(first).utf8), Array(String(last).utf8)) }
        }
        return branches.joined(separator: "|")
    }

    private static func power(_ exponent: Int) -> Int64 {
        (0 ..< exponent).reduce(1) { value, _ in value * 10 }
    }

    /// Numbers of `a.count` digits from a to b (equal lengths, a ≤ b).
    private static func between(_ a: [UInt8], _ b: [UInt8]) -> [String] {
        guard a != b else { return [Self.text(a)] }
        let split = zip(a, b).prefix { $0 == $1 }.count
        let prefix = Self.text(Array(a[..<split]))
        let rest = a.count - split - 1
        if rest == 0 { return [prefix + Self.digits(a[split], b[split])] }
        var branches = Self.atLeast(Array(a[(split + 1)...])).map { prefix + Self.text([a[split]]) + $0 }
        if a[split] + 1 < b[split] { branches.append(prefix + Self.digits(a[split] + 1, b[split] - 1) + "[0-9]{\(rest)}") }
        branches += Self.atMost(Array(b[(split + 1)...])).map { prefix + Self.text([b[split]]) + $0 }
        return branches
    }

    /// Digit strings as long as `s` (leading zeros and all) that are at least `s`.
    private static func atLeast(_ s: [UInt8]) -> [String] {
        let zero = UInt8(ascii: "0")
        let nine = UInt8(ascii: "9")
        if s.allSatisfy({ $0 == zero }) { return ["[0-9]{\(s.count)}"] }
        if s.count == 1 { return [Self.digits(s[0], nine)] }
        var branches = Self.atLeast(Array(s.dropFirst())).map { Self.text([s[0]]) + $0 }
        if s[0] != nine { branches.append(Self.digits(s[0] + 1, nine) + "[0-9]{\(s.count - 1)}") }
        return branches
    }

    /// Digit strings as long as `s` that are at most `s`.
    private static func atMost(_ s: [UInt8]) -> [String] {
        let zero = UInt8(ascii: "0")
        let nine = UInt8(ascii: "9")
        if s.allSatisfy({ $0 == nine }) { return ["[0-9]{\(s.count)}"] }
        if s.count == 1 { return [Self.digits(zero, s[0])] }
        var branches = Self.atMost(Array(s.dropFirst())).map { Self.text([s[0]]) + $0 }
        if s[0] != zero { branches.append(Self.digits(zero, s[0] - 1) + "[0-9]{\(s.count - 1)}") }
        return branches
    }

    private static func digits(_ first: UInt8, _ last: UInt8) -> String {
        first == last ? Self.text([first]) : "[\(Self.text([first]))-\(Self.text([last]))]"
    }

    private static func text(_ bytes: [UInt8]) -> String {
        String(decoding: bytes, as: UTF8.self)
    }
}

/// `max_concurrency`, `max_errors`, a rollout's `canary` and `batch`: a count ("10", 0 or more)
/// or a share of the hosts from 1 % to 100 % ("25%", "2.5%"), as new tasks and deployments must
/// write them.
public enum RateLimitText {
    /// The largest count: the largest whole number a JSON body carries exactly.
    public static let maxCount = JSONFields.maxWhole

    static let share = "(?:100(?:\\.0+)?|[1-9][0-9]?(?:\\.[0-9]+)?)%"

    /// The same rule as a JSON Schema pattern; empty is no limit (or the default).
    public static let pattern = Self.pattern(minimumCount: 0)

    /// As a REST body takes it: a count as a number, or a count or share as text.
    public static func schema(minimumCount: Int64) -> Schema {
        .oneOf([.bounded(minimumCount ... Self.maxCount), .matching(Self.pattern(minimumCount: minimumCount))])
    }

    /// The rule with counts from `minimumCount` (a rollout's wave moves at least one host).
    public static func pattern(minimumCount: Int64) -> String {
        "^(?:\(WholeText.alternatives(minimumCount ... maxCount))|\(share))?$"
    }

    public static func check(_ text: String, field: String, minimumCount: Int64 = 0) throws(AspireError) {
        guard Self.isValid(text, minimumCount: minimumCount) else {
            throw AspireError(
                .badRequest, "\(field) '\(text.prefix(40))': expected a number from \(minimumCount) or a share from 1% to 100% like 25%"
            )
        }
    }

    static func isValid(_ text: String, minimumCount: Int64 = 0) -> Bool {
        if text.isEmpty { return true }
        guard text.hasSuffix("%") else { return WholeText.value(text).map { (minimumCount ... Self.maxCount).contains($0) } ?? false }
        let parts = text.dropLast().split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = WholeText.value(String(parts[0])), (1 ... 100).contains(whole) else { return false }
        guard parts.count == 2 else { return true }
        let fraction = parts[1].utf8
        return !fraction.isEmpty && fraction.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
            && (whole < 100 || fraction.allSatisfy { $0 == UInt8(ascii: "0") })
    }
}
