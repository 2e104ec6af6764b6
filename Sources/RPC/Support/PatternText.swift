/// Helpers for the JSON Schema patterns the parsers share with the REST document (ECMA 262 as
/// JSON Schema reads it, matched by Unicode scalars).
public enum PatternText {
    /// Whether the whole of `text` matches `pattern` (anchored or not).
    public static func matches(_ text: String, _ pattern: String) -> Bool {
        guard let regex = try? Regex(pattern).matchingSemantics(.unicodeScalar) else { return false }
        return (try? regex.wholeMatch(in: text)) != nil
    }

    /// Alternatives (no anchors) matching any text that does not start with one of `prefixes`,
    /// written without a lookahead (not every generator of examples takes one): the text ends,
    /// or leaves every prefix at some character, before any prefix is whole.
    public static func notStarting(with prefixes: [String]) -> String {
        func branch(_ prefixes: [[Character]]) -> String {
            // Here the text may end, or go on with a character no prefix has next...
            let heads = Set(prefixes.compactMap(\.first))
            let other = "[^" + heads.sorted().map { Self.escapeInClass($0) }.joined() + "][\\s\\S]*"
            var branches = ["", other]
            // ...or with a prefix's next character, unless that completes a prefix.
            for head in heads.sorted() {
                let rests = prefixes.filter { $0.first == head }.map { Array($0.dropFirst()) }
                if rests.contains(where: \.isEmpty) { continue }
                branches.append(Self.escape(head) + "(?:" + branch(rests) + ")")
            }
            return branches.joined(separator: "|")
        }
        return branch(prefixes.map(Array.init))
    }

    /// `word` in any ASCII case: "cpu" → "[cC][pP][uU]" (JSON Schema's patterns have no flags).
    public static func anyCase(_ word: String) -> String {
        word.map { $0.isASCII && $0.isLetter ? "[\($0.lowercased())\($0.uppercased())]" : Self.escape($0) }.joined()
    }

    /// `text` matched literally.
    public static func literal(_ text: String) -> String {
        text.map(Self.escape).joined()
    }

    static func escape(_ character: Character) -> String {
        "\\^$.|?*+()[]{}".contains(character) ? "\\\(character)" : String(character)
    }

    static func escapeInClass(_ character: Character) -> String {
        "\\]^-[".contains(character) ? "\\\(character)" : String(character)
    }
}
