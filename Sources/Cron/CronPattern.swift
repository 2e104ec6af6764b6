/// The grammar ``CronExpression`` reads, as one regular expression (ECMA 262, the dialect of
/// JSON Schema's `pattern`; Python's `re` and Swift's `Regex` read it alike): the REST
/// document's pattern for a schedule's `expr`, so a client knows before sending what the node
/// will take. It is written from the same tables as the parser (each field's range, names and
/// step span), and a test holds the two to agreeing on generated and mutated expressions.
///
/// It can be exact because ranges wrap (`23-7` is valid): which values a field takes never
/// depends on another value.
extension CronExpression {
    public static let pattern = "^[ \\t]*(?:\(macroPattern)|\(fieldsPattern(seconds: nil)))[ \\t]*$"

    /// The time fields alone, without anchors: six (seconds first), five, or either (nil).
    public static func fieldsPattern(seconds: Bool?) -> String {
        let blank = "[ \\t]"
        let second = "\(Field.second.list)\(blank)+"
        let rest = "\(Field.minute.list)\(blank)+\(Field.hour.list)\(blank)+"
            + "\(DaysOfMonth.pattern)\(blank)+\(Field.month.list)\(blank)+\(DaysOfWeek.pattern)"
        switch seconds {
        case true?: return second + rest
        case false?: return rest
        case nil: return "(?:\(second))?\(rest)"
        }
    }

    /// The macros (`@daily`, ...), without anchors.
    public static let macroPattern = "(?:" + macros.keys.sorted().map { "@" + caseless(String($0.dropFirst())) }.joined(separator: "|") + ")"

    /// `text` in either case, letter by letter (ECMA 262 has no inline case-insensitive flag).
    static func caseless(_ text: String) -> String {
        text.map { character in
            let upper = character.uppercased(), lower = character.lowercased()
            return upper == lower ? String(character) : "[\(upper)\(lower)]"
        }.joined()
    }

    /// A whole number from `range` as `Int` reads it: an optional `+`, any leading zeros.
    static func number(_ range: ClosedRange<Int>) -> String {
        "\\+?0*(?:" + range.reversed().map { $0 == 0 ? "0" : String($0) }.joined(separator: "|") + ")"
    }
}

extension Field {
    /// One value: a number in range, or a name.
    var value: String {
        let names = self.names.keys.sorted().map(CronExpression.caseless)
        return "(?:" + ([CronExpression.number(self.range)] + names).joined(separator: "|") + ")"
    }

    /// `*`, `N` or `A-B`, each with an optional `/STEP`.
    var item: String {
        "(?:\\*|\(self.value)(?:-\(self.value))?)(?:/\(CronExpression.number(1 ... self.cycle.count)))?"
    }

    /// Items, comma-separated.
    var list: String { Self.list(of: self.item) }

    static func list(of item: String) -> String { "(?:\(item))(?:,(?:\(item)))*" }
}

extension DaysOfMonth {
    /// `?`, or a list of plain items, `L`, `LW`, `L-N` and `NW`.
    static var pattern: String {
        let field = Field.dayOfMonth
        let special = [
            CronExpression.caseless("l"), CronExpression.caseless("lw"), CronExpression.caseless("wl"),
            CronExpression.caseless("l") + "-" + CronExpression.number(1 ... 30), CronExpression.number(field.range) + CronExpression.caseless("w"),
        ]
        return "(?:\\?|" + Field.list(of: ([field.item] + special).joined(separator: "|")) + ")"
    }
}

extension DaysOfWeek {
    /// `?`, or a list of plain items, `L`, `DAY#K` and `DAYL`.
    static var pattern: String {
        let field = Field.dayOfWeek
        let special = [CronExpression.caseless("l"), field.value + "#" + CronExpression.number(1 ... 5), field.value + CronExpression.caseless("l")]
        return "(?:\\?|" + Field.list(of: ([field.item] + special).joined(separator: "|")) + ")"
    }
}

extension Crontab {
    /// What ``parse(_:fields:isUser:acceptsUser:)`` takes as a whole file, as one JSON Schema
    /// pattern: lines of blanks, comments, `NAME=value` and schedules, at least one schedule.
    /// `fields` as the parser's (nil: a line is read with six fields or five, whichever reads);
    /// `user` the pattern of a user name when the word after the fields is a user column (the
    /// parser's `isUser` always true and `acceptsUser` this pattern), nil when there is none.
    /// The parser's readings are a union (each tried until one reads whole), so no lookahead is
    /// needed.
    public static func pattern(fields: Int?, user: String?) -> String {
        let blank = "[ \\t]"
        let other = "\(blank)*\\r?|\(blank)*#[^\\n]*|\(blank)*[A-Za-z_][A-Za-z0-9_]*\(blank)*=[^\\n]*"
        // The command: the rest of the line, with something that is not blank (a final "\r",
        // which the parser drops, included among blanks).
        let command = "[^\\n]*[^ \\t\\n\\v\\f\\r][^\\n]*"
        let times = "(?:\(CronExpression.macroPattern)|\(CronExpression.fieldsPattern(seconds: fields.map { $0 == 6 })))"
        let rest: String
        if let user {
            // One word is the command; two or more, a user and the command.
            let word = "[^ \\t\\n]*[^ \\t\\n\\v\\f\\r][^ \\t\\n]*"
            rest = "(?:\(word)\(blank)*\\r?|(?:\(user))\(blank)+\(command))"
        } else {
            rest = command
        }
        let schedule = "\(blank)*\(times)\(blank)+\(rest)"
        return "^(?:(?:\(other))\\n)*(?:\(schedule))(?:\\n(?:\(other)|\(schedule)))*$"
    }
}
