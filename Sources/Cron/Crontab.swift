/// One line of a crontab: when, as whom, what.
public struct CrontabEntry: Sendable, Hashable {
    /// 1-based line number in the file.
    public var line: Int
    public var expression: CronExpression
    /// The user name the line gives, if it gives one.
    public var user: String?
    public var command: String
    /// `NAME=value` lines above this one.
    public var environment: [String: String]
}

/// A crontab line that cannot be read: its number, its text and why.
public struct CrontabError: Error, Sendable, Hashable, CustomStringConvertible {
    public var line: Int
    public var text: String
    public var reason: String

    public var description: String { "line \(self.line) ('\(self.text.prefix(80))'): \(self.reason)" }
}

/// Reads crontab files as the seed writes them: 6 time fields (seconds first) or 5, an optional
/// user name, then the command to the end of the line. Blank lines and `#` comments are
/// skipped; `NAME=value` lines set the environment of the lines below them. Six fields are read
/// when the first six words make a valid expression and more follow; the word after the fields
/// is a user when `isUser` says so (the agent asks the host's user database) and a command
/// follows it. `%` is kept as is (Vixie cron's stdin convention is not applied).
///
/// A five-field line whose command starts with a word that reads as a day of the week (`0 6 * *
/// * sun ...`) and a six-field line with a mistake in its sixth field are ambiguous: pass
/// `fields` (5 or 6) when the file's form is known.
public enum Crontab {
    /// `isUser` says whether the word after the time fields is a user column (the server: when
    /// the import says so); `acceptsUser` whether that word is a user name at all. A reading (six
    /// fields or five) whose user is not one, or whose command is white space alone, is not
    /// taken: the other is tried, else the line is refused.
    public static func parse(
        _ text: String, fields: Int? = nil, isUser: (String) -> Bool, acceptsUser: (String) -> Bool = { _ in true }
    ) throws(CrontabError) -> [CrontabEntry] {
        var entries: [CrontabEntry] = []
        var environment: [String: String] = [:]
        // Lines end at each "\n" scalar: split by characters, "\r\n" is one character and a
        // CRLF file would be one long line. A line's own "\r" before it goes (CRLF). Blanks and
        // words are read by scalars too, as the document's pattern reads them.
        for (index, scalars) in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            let raw = scalars.last == "\r" ? scalars.dropLast() : scalars[...]
            let line = raw.drop { $0 == " " || $0 == "\t" }
            if line.isEmpty || line.first == "#" { continue }
            if let first = line.first, first.properties.isAlphabetic || first == "_", let equals = line.firstIndex(of: "=") {
                let name = Self.trimmingBlanks(line[..<equals])
                // A shell variable's name: ASCII letters, digits and _.
                guard name.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0" ... "9").contains($0) || $0 == "_") }) else {
                    throw CrontabError(line: number, text: Self.text(line), reason: "is neither a schedule nor NAME=value")
                }
                var value = Self.trimmingBlanks(line[line.index(after: equals)...])
                if value.count >= 2, let quote = value.first, quote == "\"" || quote == "'", value.last == quote {
                    value = value.dropFirst().dropLast()
                }
                environment[Self.text(name)] = Self.text(value)
                continue
            }
            var entry = try self.entry(line, number: number, fields: fields, isUser: isUser, acceptsUser: acceptsUser)
            entry.environment = environment
            entries.append(entry)
        }
        return entries
    }

    /// ASCII white space, as a schedule's command counts it (`CommandText`).
    static let whiteSpace: Set<Unicode.Scalar> = [" ", "\t", "\n", "\u{0B}", "\u{0C}", "\r"]

    typealias Scalars = Substring.UnicodeScalarView.SubSequence

    static func text(_ scalars: Scalars) -> String {
        String(String.UnicodeScalarView(scalars))
    }

    static func trimmingBlanks(_ scalars: Scalars) -> Scalars {
        var text = scalars
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return text
    }

    /// The words of a line with where each ends.
    private static func words(_ line: Scalars) -> [(word: Scalars, end: Scalars.Index)] {
        var words: [(Scalars, Scalars.Index)] = []
        var index = line.startIndex
        while index < line.endIndex {
            while index < line.endIndex, line[index] == " " || line[index] == "\t" { index = line.index(after: index) }
            let start = index
            while index < line.endIndex, line[index] != " " && line[index] != "\t" { index = line.index(after: index) }
            if start < index { words.append((line[start ..< index], index)) }
        }
        return words
    }

    private static func entry(
        _ line: Scalars, number: Int, fields: Int?, isUser: (String) -> Bool, acceptsUser: (String) -> Bool
    ) throws(CrontabError) -> CrontabEntry {
        let words = self.words(line)
        var reason: String?
        let counts = line.first == "@" ? [1] : fields.map { [$0] } ?? [6, 5]
        for count in counts where words.count > count {
            let expression: CronExpression
            do {
                expression = try CronExpression(words.prefix(count).map { Self.text($0.word) }.joined(separator: " "))
            } catch {
                // A five-field line's command fails as a sixth field: the five-field reading's
                // error is the one to show.
                reason = "\(error)"
                continue
            }
            var user: String?
            var commandStart = words[count - 1].end
            if words.count > count + 1, isUser(Self.text(words[count].word)) {
                let name = Self.text(words[count].word)
                guard acceptsUser(name) else {
                    reason = "'\(name.prefix(80))' is not a user name"
                    continue
                }
                user = name
                commandStart = words[count].end
            }
            let command = Self.text(Self.trimmingBlanks(line[commandStart...]))
            // A command of white space alone says nothing (a schedule refuses it): not this reading.
            guard command.unicodeScalars.contains(where: { !Self.whiteSpace.contains($0) }) else {
                reason = "has no command after the time fields"
                continue
            }
            return CrontabEntry(line: number, expression: expression, user: user, command: command, environment: [:])
        }
        throw CrontabError(
            line: number, text: Self.text(line),
            reason: words.count <= (counts.last ?? 5) ? "has no command after the time fields" : (reason ?? "is not a schedule")
        )
    }
}
