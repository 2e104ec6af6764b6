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
    public static func parse(_ text: String, fields: Int? = nil, isUser: (String) -> Bool) throws(CrontabError) -> [CrontabEntry] {
        var entries: [CrontabEntry] = []
        var environment: [String: String] = [:]
        // Lines end at each "\n" scalar: split by characters, "\r\n" is one character and a
        // CRLF file would be one long line. A line's own "\r" before it goes (CRLF).
        for (index, scalars) in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            let raw = Substring(scalars.last == "\r" ? scalars.dropLast() : scalars)
            let line = raw.drop { $0 == " " || $0 == "\t" }
            if line.isEmpty || line.hasPrefix("#") { continue }
            if let first = line.first, first.isLetter || first == "_", let equals = line.firstIndex(of: "=") {
                let name = line[..<equals].trimmingBlanks()
                // A shell variable's name: ASCII letters, digits and _.
                guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                    throw CrontabError(line: number, text: String(line), reason: "is neither a schedule nor NAME=value")
                }
                var value = line[line.index(after: equals)...].trimmingBlanks()
                if value.count >= 2, let quote = value.first, quote == "\"" || quote == "'", value.last == quote {
                    value = value.dropFirst().dropLast()
                }
                environment[String(name)] = String(value)
                continue
            }
            var entry = try self.entry(line, number: number, fields: fields, isUser: isUser)
            entry.environment = environment
            entries.append(entry)
        }
        return entries
    }

    /// The words of a line with where each ends.
    private static func words(_ line: Substring) -> [(word: Substring, end: Substring.Index)] {
        var words: [(Substring, Substring.Index)] = []
        var index = line.startIndex
        while index < line.endIndex {
            while index < line.endIndex, line[index] == " " || line[index] == "\t" { index = line.index(after: index) }
            let start = index
            while index < line.endIndex, line[index] != " " && line[index] != "\t" { index = line.index(after: index) }
            if start < index { words.append((line[start ..< index], index)) }
        }
        return words
    }

    private static func entry(_ line: Substring, number: Int, fields: Int?, isUser: (String) -> Bool) throws(CrontabError) -> CrontabEntry {
        let words = self.words(line)
        var expression: CronExpression?
        var used = 0
        var lastError: CronError?
        let counts = line.hasPrefix("@") ? [1] : fields.map { [$0] } ?? [6, 5]
        for count in counts where words.count > count {
            do {
                expression = try CronExpression(words.prefix(count).map { String($0.word) }.joined(separator: " "))
                used = count
                break
            } catch {
                // A five-field line's command fails as a sixth field: the five-field reading's
                // error is the one to show.
                lastError = error
            }
        }
        guard let expression else {
            let reason = words.count <= (counts.last ?? 5) ? "has no command after the time fields" : (lastError.map { "\($0)" } ?? "is not a schedule")
            throw CrontabError(line: number, text: String(line), reason: reason)
        }
        var user: String?
        var commandStart = words[used - 1].end
        if words.count > used + 1, isUser(String(words[used].word)) {
            user = String(words[used].word)
            commandStart = words[used].end
        }
        let command = line[commandStart...].trimmingBlanks()
        return CrontabEntry(line: number, expression: expression, user: user, command: String(command), environment: [:])
    }
}

extension Substring {
    func trimmingBlanks() -> Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return text
    }
}
