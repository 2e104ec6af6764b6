public import ArgumentParser
#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// A command's options from three places: its configuration file (`/etc/aspire/boot.conf`),
/// then the environment (`ASPIRE_BOOT_SERVER=...`), then the command line, each overriding the
/// one before for the options it gives.
///
/// The command's own declaration (argument-parser's description of it, `--experimental-dump-help`)
/// is the one list of options: the file and the environment are turned into the options the
/// command line does not give, and argument-parser parses and validates them all as it does
/// flags, with the same help, defaults and errors. So a new option is at once a key of the file
/// and an environment variable, and nothing is read twice or by a second parser.
///
/// The file holds one option a line, as `--help` names it without its dashes, then its value
/// (`name value` or `name = value`); a flag is its name alone, or `name true|false`; `#` starts
/// a comment line; a repeatable option takes one line per value:
///
///     # /etc/aspire/boot.conf
///     server config.cargo.com:8443
///     ca /etc/aspire/ca.pem
///     tag region=bj
///     tag rack=r12
///
/// The environment names an option `PREFIX` + its name in capitals with `_` for `-`
/// (`ASPIRE_BOOT_TOKEN_FILE`); a flag takes `1|true|yes|on` or `0|false|no|off`.
public struct OptionSources: Sendable {
    /// What one option is, read from the command's description.
    struct Declared: Sendable, Equatable {
        var isFlag: Bool
        var isRepeating: Bool
    }

    /// The file read when neither `--config` nor the environment names one; a missing default
    /// file is no error.
    public var defaultFile: String
    /// `ASPIRE_BOOT_`: the environment variables' prefix.
    public var environmentPrefix: String
    /// The options by long name, and the long name of each short one.
    let options: [String: Declared]
    let shortNames: [Character: String]

    /// Options that the file and the environment never set: argument-parser's own, and the one
    /// that names the file.
    static let reserved: Set = ["help", "version", "config", "experimental-dump-help", "generate-completion-script"]

    public init<Command: ParsableArguments>(for command: Command.Type, defaultFile: String, environmentPrefix: String) {
        var options: [String: Declared] = [:]
        var shortNames: [Character: String] = [:]
        for argument in Self.describe(command) where argument.kind != "positional" {
            guard let long = argument.names?.first(where: { $0.kind == "long" })?.name, !Self.reserved.contains(long) else { continue }
            options[long] = Declared(isFlag: argument.kind == "flag", isRepeating: argument.isRepeating)
            for short in argument.names ?? [] where short.kind == "short" {
                if let character = short.name.first { shortNames[character] = long }
            }
        }
        self.options = options
        self.shortNames = shortNames
        self.defaultFile = defaultFile
        self.environmentPrefix = environmentPrefix
    }

    /// The arguments to parse: the options from the file and the environment that `commandLine`
    /// does not give, followed by `commandLine` itself (so its own values, and anything after a
    /// `--`, stay as they were).
    public func arguments(
        commandLine: [String],
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(OptionSourceError) -> [String] {
        var given = self.given(in: commandLine)
        // --help and --version answer from the command line alone, whatever the file says.
        if !given.isDisjoint(with: Self.reserved.subtracting(["config"])) || commandLine.contains("-h") { return commandLine }
        var added: [String] = []

        // The environment, over the file.
        for (name, declared) in self.options.sorted(by: { $0.key < $1.key }) where !given.contains(name) {
            let variable = self.environmentVariable(for: name)
            guard let value = environment[variable] else { continue }
            added += try Self.arguments(name: name, declared: declared, value: value, origin: variable)
            given.insert(name)
        }

        guard let (file, required) = self.file(commandLine: commandLine, environment: environment) else { return added + commandLine }
        guard FileManager.default.fileExists(atPath: file) else {
            if !required { return added + commandLine }
            throw OptionSourceError("the configuration file \(file) does not exist")
        }
        guard let contents = FileManager.default.contents(atPath: file) else {
            throw OptionSourceError("cannot read the configuration file \(file): not a file this user may read")
        }
        guard let text = String(data: contents, encoding: .utf8) else {
            throw OptionSourceError("the configuration file \(file) is not UTF-8 text")
        }
        var seen: Set<String> = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let origin = "\(file):\(index + 1)"
            guard let (name, value) = try Self.entry(String(line), origin: origin) else { continue }
            guard let declared = self.options[name] else {
                throw OptionSourceError("\(origin): unknown option '\(name)' (the file takes the long options --help lists, without their dashes)")
            }
            if !declared.isRepeating && !seen.insert(name).inserted {
                throw OptionSourceError("\(origin): '\(name)' is given twice and takes one value")
            }
            guard !given.contains(name) else { continue }
            added += try Self.arguments(name: name, declared: declared, value: value, origin: origin)
        }
        return added + commandLine
    }

    /// The help of a command's `--config` option.
    public static func help(defaultFile: String, environmentPrefix: String) -> ArgumentHelp {
        ArgumentHelp(
            """
            Configuration file: one option a line, its long name without dashes then its value \
            ('server host:8443', 'tag k=v' once per value, a flag's name alone); '#' comments. \
            Default \(defaultFile) when it exists; 'none' for none (env \(environmentPrefix)CONFIG). \
            Every option can also be set as \(environmentPrefix)NAME (e.g. \(environmentPrefix)LOG_LEVEL=debug); \
            the command line overrides the environment, which overrides the file.
            """,
            valueName: "file"
        )
    }

    /// `ASPIRE_BOOT_TOKEN_FILE` for `token-file`.
    public func environmentVariable(for name: String) -> String {
        self.environmentPrefix + name.uppercased().replacing("-", with: "_")
    }

    /// The configuration file to read and whether it must exist: `--config FILE`, else the
    /// environment's, else the default; none for `none`.
    func file(commandLine: [String], environment: [String: String]) -> (path: String, required: Bool)? {
        var named: String?
        for (index, argument) in commandLine.enumerated() {
            if argument == "--" { break }
            if argument == "--config", index + 1 < commandLine.count {
                named = commandLine[index + 1]
            } else if argument.hasPrefix("--config=") {
                named = String(argument.dropFirst("--config=".count))
            }
        }
        let chosen = named ?? environment[self.environmentVariable(for: "config")].flatMap { $0.isEmpty ? nil : $0 }
        switch chosen {
        case "none": return nil
        case let path?: return (path, true)
        case nil: return (self.defaultFile, false)
        }
    }

    /// The long names of the options `commandLine` gives (`--name`, `--name=value`, `-L`, `-fL`).
    func given(in commandLine: [String]) -> Set<String> {
        var names: Set<String> = []
        for argument in commandLine {
            if argument == "--" { break }
            if argument.hasPrefix("--") {
                names.insert(String(argument.dropFirst(2).prefix { $0 != "=" }))
            } else if argument.hasPrefix("-"), argument.count > 1 {
                // A run of short flags, the last of which may take the next argument as value.
                for character in argument.dropFirst() {
                    guard let long = self.shortNames[character] else { break }
                    names.insert(long)
                }
            }
        }
        return names
    }

    /// One line of the file: nil for blank lines and comments.
    static func entry(_ line: String, origin: String) throws(OptionSourceError) -> (name: String, value: String?)? {
        var trimmed = Substring(line)
        while trimmed.first?.isWhitespace == true { trimmed.removeFirst() }
        while trimmed.last?.isWhitespace == true { trimmed.removeLast() }
        if trimmed.isEmpty || trimmed.hasPrefix("#") { return nil }
        var name = Substring(trimmed.prefix { !$0.isWhitespace && $0 != "=" })
        var rest = trimmed.dropFirst(name.count).drop { $0.isWhitespace }
        if rest.first == "=" { rest = rest.dropFirst().drop { $0.isWhitespace } }
        if name.hasPrefix("--") { name = name.dropFirst(2) }
        guard let first = name.first, first.isLetter || first.isNumber,
            name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" })
        else {
            throw OptionSourceError("\(origin): '\(trimmed)' is not 'name value' (an option's long name, then its value)")
        }
        return (String(name), rest.isEmpty ? nil : String(rest))
    }

    /// The command-line form of one value from the file or the environment.
    static func arguments(name: String, declared: Declared, value: String?, origin: String) throws(OptionSourceError) -> [String] {
        guard declared.isFlag else {
            guard let value else { throw OptionSourceError("\(origin): '\(name)' needs a value") }
            return ["--\(name)", value]
        }
        switch value?.lowercased() {
        case nil, "1", "true", "yes", "on": return ["--\(name)"]
        case "0", "false", "no", "off", "": return []
        case let other?: throw OptionSourceError("\(origin): '\(name)' is a flag: true or false, not '\(other)'")
        }
    }

    /// The command's arguments as argument-parser describes them (`--experimental-dump-help`).
    static func describe<Command: ParsableArguments>(_ command: Command.Type) -> [ArgumentDescription] {
        let dump: String
        do {
            _ = try command.parse(["--experimental-dump-help"])
            return []
        } catch {
            dump = command.fullMessage(for: error)
        }
        let description = try? JSONDecoder().decode(ToolDescription.self, from: Data(dump.utf8))
        return description?.command.arguments ?? []
    }

    /// The part of argument-parser's tool description this reads (its `ToolInfoV0`, which is
    /// not a product of the package).
    struct ToolDescription: Decodable {
        struct Command: Decodable { var arguments: [ArgumentDescription]? }
        var command: Command
    }

    struct ArgumentDescription: Decodable {
        struct Name: Decodable {
            var kind: String
            var name: String
        }
        var kind: String
        var isRepeating: Bool
        var names: [Name]?
    }
}

/// A configuration file or environment variable that cannot be used, with where and why.
public struct OptionSourceError: Error, CustomStringConvertible, Sendable {
    public var description: String

    init(_ description: String) { self.description = description }
}

extension AsyncParsableCommand {
    /// Runs the command as `main()` does, on the arguments `sources` make of the command line.
    public static func main(sources: OptionSources) async {
        do {
            let arguments = try sources.arguments(commandLine: Array(CommandLine.arguments.dropFirst()))
            await self.main(arguments)
        } catch {
            self.exit(withError: ValidationError(error.description))
        }
    }
}
