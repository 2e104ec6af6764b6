#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
public import RPC

/// The `getinfo.*` methods: facts about the host read from /proc, /sys and /etc, as JSON.
public struct GetInfo: Sendable {
    /// The methods it answers: `getinfo.users`, `getinfo.kernel`, ...
    public static var methods: [CommandMethod] { CommandMethod.GetInfoTopic.allCases.map(CommandMethod.getInfo) }

    /// Root of the file system the facts are read from (tests may point it elsewhere).
    public var root: String

    public init(root: String = "") {
        self.root = root
    }

    public func run(id: String, topic: CommandMethod.GetInfoTopic, args: String) -> Aspire_V1_CommandResult {
        let started = Date()
        let method = CommandMethod.getInfo(topic)
        do {
            let arguments = try Arguments(args)
            let document: any Encodable
            switch topic {
            case .users: document = try self.users(arguments)
            case .kernel: try arguments.expectNone(for: method.name); document = try self.kernel()
            case .os: try arguments.expectNone(for: method.name); document = try self.os()
            case .cpu: try arguments.expectNone(for: method.name); document = try self.cpu()
            case .memory: try arguments.expectNone(for: method.name); document = try self.memory()
            case .disk: try arguments.expectNone(for: method.name); document = try self.disks()
            case .network: try arguments.expectNone(for: method.name); document = try self.network()
            case .processes: document = try self.processes(arguments)
            }
            return .success(id: id, data: try Self.encode(document), started: started)
        } catch let error as AspireError {
            return .failed(id: id, error.code, error.cause, started: started)
        } catch {
            return .failed(id: id, .agentInternal, "\(method): \(error)", started: started)
        }
    }

    static func encode(_ value: any Encodable) throws -> Data {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }

    /// Reads a file under `root`.
    func read(_ path: String) throws -> String {
        do {
            return try String(contentsOfFile: self.root + path, encoding: .utf8)
        } catch {
            throw AspireError(.agentInternal, "cannot read \(path): \(AspireError.reason(error))")
        }
    }

    func readIfPresent(_ path: String) -> String? {
        try? String(contentsOfFile: self.root + path, encoding: .utf8)
    }
}

/// The seed's argument string of a getinfo method, e.g. "-U root" or "-A".
struct Arguments {
    var tokens: [String]

    init(_ text: String) throws(AspireError) {
        self.tokens = try Self.split(text)
    }

    func expectNone(for method: String) throws(AspireError) {
        if let first = self.tokens.first {
            throw AspireError(.invalidParams, "\(method) takes no arguments (got '\(first)')")
        }
    }

    /// Splits on white space, honouring single and double quotes.
    static func split(_ text: String) throws(AspireError) -> [String] {
        var tokens: [String] = []
        var current = ""
        var inToken = false
        var quote: Character?
        for character in text {
            if let open = quote {
                if character == open { quote = nil } else { current.append(character) }
            } else if character == "'" || character == "\"" {
                quote = character
                inToken = true
            } else if character.isWhitespace {
                if inToken { tokens.append(current) }
                current = ""
                inToken = false
            } else {
                current.append(character)
                inToken = true
            }
        }
        if quote != nil { throw AspireError(.invalidParams, "unterminated quote in arguments '\(text)'") }
        if inToken { tokens.append(current) }
        return tokens
    }
}

extension GetInfo: CommandHandler {
    public func handle(_ command: Aspire_V1_Command, as method: CommandMethod, output: BashExecutor.OutputHandler?) async -> Aspire_V1_CommandResult {
        guard case .getInfo(let topic) = method else { return CommandHandlers.misrouted(command, to: "getinfo executor") }
        return self.run(id: command.id, topic: topic, args: command.getinfo.args)
    }
}
