import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RPC
import SwiftProtobuf

#if canImport(Glibc)
import Glibc
#endif

/// `deploy NAME VERSION`: puts a sub-agent version on hosts (installing or upgrading it, with
/// rollback on the agents), and follows the task until every host answered.
struct Deploy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Install or upgrade a sub-agent version on hosts and follow the task.",
        discussion: """
            The package comes from the server's store (upload it here with --file, or beforehand \
            with 'aspirectl packages upload'), or from --url with --checksum. Each agent fetches it, \
            checks its SHA256, unpacks it under its agents root, starts it with its control script \
            and holds it to a health window; an upgrade that fails is rolled back on that host.

            Examples:
              aspirectl deploy MiniAgent 1.2.0 --file ./MiniAgent-1.2.0.tar.gz --tag role=web
              aspirectl deploy MiniAgent 1.2.0 --agent 9b62aabb-... --memory 20M --cpu 10% --env LOG=info

            Exit codes: 0 every host succeeded; 2 a host failed (refused, rolled back); 3 a host \
            did not answer in time or was offline; 4 nothing matched the target; 1 usage or connection error.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "Sub-agent name.")
    var name: String

    @Argument(help: "Version to put in place.")
    var version: String

    @OptionGroup var hosts: HostTaskOptions

    @Option(help: "Upload this package file to the store first (skipped when the store already has it).")
    var file: String?

    @Option(help: "Fetch from this URL (http(s)://, file://, aspire://package/..., command://...) instead of the store.")
    var url: String?

    @Option(help: "SHA256:<hex> of the file at --url.")
    var checksum: String?

    @Option(name: .customLong("env"), help: "KEY=VALUE in the sub-agent's environment (repeatable).")
    var envs: [String] = []

    @Option(help: "CPU limit, a percent of one CPU, e.g. 10%.")
    var cpu: String?

    @Option(help: "Memory limit, e.g. 20M.")
    var memory: String?

    @Option(help: "Most processes at once, e.g. 64 (enforced where cgroups are).")
    var pids: String?

    @Option(help: "Run it as this user (default root).")
    var user: String?

    @Option(help: "Run it with this group (default: the user's primary group).")
    var group: String?

    @Option(help: "Architecture of --file (default: this machine's).")
    var arch: String = Packages.machine

    func validate() throws {
        guard self.file == nil || self.url == nil else { throw ValidationError("--file and --url exclude each other") }
        if self.url != nil, self.checksum == nil, self.url?.hasPrefix("command://") == false, self.url?.hasPrefix("aspire://") == false {
            throw ValidationError("--url needs --checksum SHA256:<hex>: agents do not install unchecked packages")
        }
    }

    func run() async throws {
        var parameters = Google_Protobuf_Struct()
        parameters.fields["name"] = Google_Protobuf_Value(stringValue: self.name)
        parameters.fields["version"] = Google_Protobuf_Value(stringValue: self.version)
        if let url { parameters.fields["url"] = Google_Protobuf_Value(stringValue: url) }
        if let checksum { parameters.fields["checksum"] = Google_Protobuf_Value(stringValue: checksum) }
        if !self.envs.isEmpty {
            var envs = Google_Protobuf_Struct()
            for (key, value) in try Run.parsePairs(self.envs, option: "--env") { envs.fields[key] = Google_Protobuf_Value(stringValue: value) }
            parameters.fields["envs"] = Google_Protobuf_Value(structValue: envs)
        }
        var limits = Google_Protobuf_Struct()
        if let cpu { limits.fields["CPU"] = Google_Protobuf_Value(stringValue: cpu) }
        if let memory { limits.fields["memory"] = Google_Protobuf_Value(stringValue: memory) }
        if let pids { limits.fields["pids"] = Google_Protobuf_Value(stringValue: pids) }
        if !limits.fields.isEmpty { parameters.fields["limits"] = Google_Protobuf_Value(structValue: limits) }
        if let user { parameters.fields["user"] = Google_Protobuf_Value(stringValue: user) }
        if let group { parameters.fields["group"] = Google_Protobuf_Value(stringValue: group) }

        let request = try self.hosts.request(CommandMethod.subAgent(.install).taskName, parameters)
        let file = self.file
        try await self.hosts.run(request, connection: self.connection) { admin in
            if let file { try await self.upload(file, admin: admin) }
        }
    }

    /// Uploads `path` as NAME VERSION unless the store already has it with the same bytes.
    private func upload(_ path: String, admin: Aspire_V1_Admin.Client<HTTP2ClientTransport.Posix>) async throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw ValidationError("cannot read \(path)") }
        defer { try? handle.close() }
        let digest = try FileDigest.sha256(atPath: path)
        var list = Aspire_V1_ListPackagesRequest()
        list.name = self.name
        list.version = self.version
        for package in try await admin.listPackages(list).packages where package.arch == self.arch {
            guard package.sha256 == digest.sha256 else {
                throw ValidationError(
                    "the store already has \(self.name) \(self.version) for \(package.arch) with other bytes (sha256 \(package.sha256.prefix(16))…); delete it or pick another version"
                )
            }
            FileHandle.standardError.write("\(self.name) \(self.version) is already in the store (\(package.path))\n")
            return
        }
        var info = Aspire_V1_PackageInfo()
        info.name = self.name
        info.version = self.version
        info.os = "linux"
        info.arch = self.arch
        info.file = URL(fileURLWithPath: path).lastPathComponent
        info.sha256 = digest.sha256
        let first = Aspire_V1_UploadPackageRequest.with { $0.info = info }
        let stored = try await admin.uploadPackage { writer in
            try await writer.write(first)
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.chunk = chunk })
            }
        }
        FileHandle.standardError.write("uploaded \(stored.name) \(stored.version) as \(stored.path) (\(stored.size) bytes)\n")
    }
}

/// `subagents --agent SN`: the sub-agents a host last reported.
struct SubAgents: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subagents",
        abstract: "The sub-agents of a host, as its agent last reported them."
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(name: .customLong("agent"), help: "The host's AgentSN.")
    var agent: String

    @Option(name: .shortAndLong, help: "table or json.")
    var output: OutputFormat = .table

    func run() async throws {
        var request = Aspire_V1_GetHostRequest()
        request.agentSn = self.agent
        let host: Aspire_V1_Host
        do {
            host = try await self.connection.withAdmin { try await $0.getHost(request) }
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
        if self.output == .json {
            let items = try host.agents.map { try $0.jsonString() }
            FileHandle.standardOutput.write(Data("[\(items.joined(separator: ","))]\n".utf8))
            return
        }
        var rows = [["NAME", "VERSION", "STATUS", "PID", "UPTIME", "RESTARTS", "PREVIOUS", "MESSAGE"]]
        for agent in host.agents {
            rows.append([
                agent.name, agent.version, agent.status, agent.pid > 0 ? "\(agent.pid)" : "-", "\(agent.uptime)s", "\(agent.restarts)",
                agent.previousVersion.isEmpty ? "-" : agent.previousVersion, agent.message,
            ])
        }
        printTable(rows)
        FileHandle.standardError.write("\(host.agents.count) sub-agents on \(host.hostname.isEmpty ? self.agent : host.hostname)\n")
    }
}
