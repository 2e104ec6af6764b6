import ArgumentParser
import Foundation
import GRPCCore
import RPC
import SwiftProtobuf

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Join tokens: what a new host enrolls with (boot --token-file) to get its own certificate.",
        subcommands: [TokenCreate.self, TokenList.self, TokenRevoke.self]
    )
}

struct TokenCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Make a join token; its secret is printed this once (the server keeps only a digest).",
        discussion: "Example: aspirectl token create --ttl 24h --uses 50 --tag env=staging > staging.token"
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "How long it works: 30m, 24h, 7d, or 'never'.")
    var ttl = "24h"

    @Option(help: "Enrollments it allows (0: any number).")
    var uses: Int32 = 0

    @Option(help: "A tag given to every host that enrolls with it, as name=value (repeatable).")
    var tag: [String] = []

    @Option(help: "A note shown by 'token list'.")
    var note = ""

    func run() async throws {
        var request = Aspire_V1_CreateJoinTokenRequest()
        request.ttlSeconds = try Self.seconds(self.ttl)
        request.maxUses = self.uses
        request.tags = try Run.parseTags(self.tag)
        request.note = self.note
        do {
            let created = try await self.connection.withAdmin { try await $0.createJoinToken(request) }
            print(created.secret)
            FileHandle.standardError.write("join token \(created.token.id): \(describe(created.token))\n")
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
    }

    /// Seconds of `30m`, `24h`, `7d` or `90s`; -1 for `never`.
    static func seconds(_ text: String) throws -> Int64 {
        if text == "never" { return -1 }
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        guard let unit = text.last.flatMap({ units[$0] }), let count = Int64(text.dropLast()), count > 0, count < Int64(Int32.max) else {
            throw ValidationError("--ttl '\(text)': expected a number with s, m, h or d (30m, 24h, 7d), or 'never'")
        }
        return count * unit
    }
}

struct TokenList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List join tokens (usable ones unless --all).")

    @OptionGroup var connection: ConnectionOptions

    @Flag(help: "Also revoked, expired and used-up tokens.")
    var all = false

    @Option(name: .shortAndLong, help: "table or json.")
    var output: OutputFormat = .table

    func run() async throws {
        var request = Aspire_V1_ListJoinTokensRequest()
        request.all = self.all
        let listing: Aspire_V1_ListJoinTokensResponse
        do {
            listing = try await self.connection.withAdmin { try await $0.listJoinTokens(request) }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        if self.output == .json {
            FileHandle.standardOutput.write(try listing.jsonUTF8Data() + Data("\n".utf8))
            return
        }
        var rows = [["ID", "STATE", "USES", "EXPIRES", "TAGS", "NOTE"]]
        for token in listing.tokens {
            rows.append([
                token.id, token.state, token.maxUses == 0 ? "\(token.uses)" : "\(token.uses)/\(token.maxUses)",
                token.expiresUnixMs == 0 ? "never" : Agents.iso(token.expiresUnixMs),
                token.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","), token.note,
            ])
        }
        printTable(rows)
    }
}

struct TokenRevoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke a join token: no host enrolls with it any more (hosts that did keep their certificates)."
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The token's id (from 'token list').")
    var id: String

    func run() async throws {
        var request = Aspire_V1_RevokeJoinTokenRequest()
        request.id = self.id
        do {
            let token = try await self.connection.withAdmin { try await $0.revokeJoinToken(request) }
            print("join token \(token.id): \(token.state)")
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
    }
}

private func describe(_ token: Aspire_V1_JoinToken) -> String {
    let expires = token.expiresUnixMs == 0 ? "never expires" : "expires \(Agents.iso(token.expiresUnixMs))"
    let uses = token.maxUses == 0 ? "any number of hosts" : "\(token.maxUses) host(s)"
    return "\(expires), for \(uses)"
}

struct OperatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "operator",
        abstract: "Operators: named tokens with a role (viewer, operator, admin, metrics) and, for operators, a scope of tags.",
        subcommands: [OperatorCreate.self, OperatorList.self, OperatorRevoke.self]
    )
}

struct OperatorCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Make an operator; its token is printed this once (the server keeps only a digest).",
        discussion: """
            viewer reads; operator also runs commands, tasks, deploys, schedules and plugins (only on hosts carrying \\
            every --scope tag, when given); admin also manages operators, join tokens, bans, packages and tags; \\
            metrics only reads metrics (Prometheus). Example: aspirectl operator create alice --role operator --scope env=staging
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "Its name, as the audit trail will show it.")
    var name: String

    @Option(help: "viewer, operator, admin or metrics.")
    var role: String

    @Option(help: "For --role operator: a tag every host it acts on must carry, as name=value (repeatable).")
    var scope: [String] = []

    func run() async throws {
        var request = Aspire_V1_CreateOperatorRequest()
        request.name = self.name
        request.role = self.role
        request.scope = try Run.parseTags(self.scope)
        do {
            let created = try await self.connection.withAdmin { try await $0.createOperator(request) }
            print(created.secret)
            FileHandle.standardError.write("operator \(created.operator.name): \(created.operator.role)\(scopeText(created.operator.scope))\n")
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
    }
}

struct OperatorList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List operators (never their tokens).")

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let listing: Aspire_V1_ListOperatorsResponse
        do {
            listing = try await self.connection.withAdmin { try await $0.listOperators(Aspire_V1_ListOperatorsRequest()) }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        var rows = [["NAME", "ROLE", "SCOPE", "CREATED", "REVOKED"]]
        for entry in listing.operators {
            rows.append([
                entry.name, entry.role, entry.scope.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","),
                Agents.iso(entry.createdUnixMs), entry.revokedUnixMs == 0 ? "" : Agents.iso(entry.revokedUnixMs),
            ])
        }
        printTable(rows)
    }
}

struct OperatorRevoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke an operator's token.")

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The operator's name.")
    var name: String

    func run() async throws {
        var request = Aspire_V1_RevokeOperatorRequest()
        request.name = self.name
        do {
            let revoked = try await self.connection.withAdmin { try await $0.revokeOperator(request) }
            print("operator \(revoked.name): revoked")
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
    }
}

private func scopeText(_ scope: [String: String]) -> String {
    scope.isEmpty ? "" : ", scoped to " + scope.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "The audit trail, newest first: every mutating call (who, from where, what, on which hosts, how it ended) and every dispatch.",
        discussion: "Example: aspirectl audit --operator alice --since 24h"
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "Only this operator's rows (a host's own: host:<AgentSN>).")
    var `operator`: String?

    @Option(help: "Only rows this recent (30m, 24h, 7d) or since an ISO 8601 time.")
    var since: String?

    @Option(help: "Only this method (CreateTask, BanHost, dispatch, ...).")
    var method: String?

    @Option(help: "How many (at most 1000).")
    var limit: Int32 = 100

    @Option(name: .shortAndLong, help: "table or json.")
    var output: OutputFormat = .table

    func run() async throws {
        var request = Aspire_V1_ListAuditRequest()
        request.operator = self.operator ?? ""
        request.method = self.method ?? ""
        request.limit = self.limit
        if let since {
            if let date = ISO8601DateFormatter().date(from: since) {
                request.sinceUnixMs = Int64(date.timeIntervalSince1970 * 1000)
            } else {
                let seconds = try TokenCreate.seconds(since)
                guard seconds > 0 else { throw ValidationError("--since '\(since)': a duration (24h) or an ISO 8601 time") }
                request.sinceUnixMs = Int64((Date().timeIntervalSince1970 - Double(seconds)) * 1000)
            }
        }
        let listing: Aspire_V1_ListAuditResponse
        do {
            listing = try await self.connection.withAdmin { try await $0.listAudit(request) }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        if self.output == .json {
            FileHandle.standardOutput.write(try listing.jsonUTF8Data() + Data("\n".utf8))
            return
        }
        var rows = [["TIME", "ACTOR", "ADDRESS", "METHOD", "TARGETS", "TASK", "OUTCOME", "COMMAND"]]
        for entry in listing.entries {
            rows.append([
                Agents.iso(entry.timeUnixMs), entry.actor, entry.address, entry.method,
                entry.resolved.isEmpty ? entry.targets : entry.resolved, entry.task == 0 ? "" : "\(entry.task)", entry.outcome,
                String(entry.command.prefix(80)),
            ])
        }
        printTable(rows)
        FileHandle.standardError.write("\(listing.entries.count) of \(listing.count) rows\n")
    }
}
