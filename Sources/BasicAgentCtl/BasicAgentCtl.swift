import Agent
import ArgumentParser
import AsyncHTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import NIOHTTP1
import Logging
import RPC
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

@main
struct BasicAgentCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "BasicAgentCtl",
        abstract: "Run one agent method on this host and print the JSON result the agent would send.",
        discussion: """
            Methods run here: \(Self.handlers.methods.map(\.name).joined(separator: ", ")).
            Methods the running agent answers, on its local control socket (--socket): \(Self.agentMethods.joined(separator: ", ")).

              BasicAgentCtl -c getinfo.users -a "-U root"     one user (-A all, -u normal, -S system)
              BasicAgentCtl -c getinfo.kernel --pretty
              BasicAgentCtl -c sync.bash -a "ls /" --user nobody --timeout 10
              BasicAgentCtl -c me.status
              BasicAgentCtl -c plugin.list
              BasicAgentCtl -c plugin.run -a load --param eth0 --timeout 20
              BasicAgentCtl -c plugin.disable -a load --seconds 3600   (until enabled, or a day by default)

            Exit status: 0 when the method succeeded (for sync.bash: the command's own exit status), \
            1 when it failed (bad arguments, unknown user, timeout, ...), 64 for usage errors.
            """,
        version: AspireVersion.current
    )

    @Option(name: .customShort("c"), help: "The method, e.g. getinfo.users or sync.bash.")
    var method: String

    @Option(name: .customShort("a"), parsing: .unconditional, help: "The method's arguments; for sync.bash, the command line.")
    var arguments = ""

    @Option(help: "sync.bash: run as this user (default root).")
    var user = ""

    @Option(help: "sync.bash: run with this group (default: the user's primary group).")
    var group = ""

    @Option(help: "sync.bash: seconds before the command's process group is killed (default 120).")
    var timeout: Int32 = 0

    @Option(help: "plugin.run: the plugin's argument (default: its own).")
    var param: String?

    @Option(help: "plugin.disable: seconds before it enables itself again (default a day).")
    var seconds: Int?

    @Option(help: "The running agent's control socket (boot --control-socket).")
    var socket = "/run/aspire-boot.sock"

    @Flag(help: "Indent the JSON.")
    var pretty = false

    /// Methods of the running agent, and the local interface's path of each.
    static let agentPaths = [
        "me.status": "/me/status", "plugin.list": "/plugins/list", "plugin.run": "/plugins/run", "plugin.enable": "/plugins/enable",
        "plugin.disable": "/plugins/disable", "plugin.update": "/plugins/update",
    ]
    static var agentMethods: [String] { self.agentPaths.keys.sorted() }

    /// The methods that run in this process, as the agent runs them.
    static var handlers: CommandHandlers {
        CommandHandlers.local(bash: BashExecutor(logger: Logger(label: "aspire.basicagentctl")))
    }

    func run() async throws {
        LogSetup.bootstrap(level: .warning)
        if let path = Self.agentPaths[self.method] {
            try await self.callAgent(path)
            return
        }
        var command = Aspire_V1_Command()
        command.id = UUID.random().uuidString.lowercased()
        command.method = self.method
        if CommandMethod(name: self.method) == .bash {
            var bash = Aspire_V1_BashParams()
            bash.cmd = self.arguments
            bash.user = self.user
            bash.group = self.group
            bash.timeout = self.timeout
            command.bash = bash
        } else {
            var params = Aspire_V1_GetInfoParams()
            params.args = self.arguments
            command.getinfo = params
        }
        let result = await Self.handlers.run(command)
        Self.write(result.seedJSON(pretty: self.pretty) + Data("\n".utf8), to: .standardOutput)
        if result.resp != .success {
            Self.write(Data("BasicAgentCtl: \(result.message)\n".utf8), to: .standardError)
            throw ExitCode(1)
        }
        if result.retcode != 0 {
            throw ExitCode(result.retcode & 0xFF == 0 ? 1 : result.retcode & 0xFF)
        }
    }
}

extension BasicAgentCtl {
    /// Calls the running agent's local interface and prints its answer; exit 1 when it refused.
    func callAgent(_ path: String) async throws {
        var query: [URLQueryItem] = []
        if self.method.hasPrefix("plugin."), self.method != "plugin.list" {
            guard !self.arguments.isEmpty else { throw ValidationError("\(self.method) needs the plugin's name: -a NAME") }
            query.append(URLQueryItem(name: "name", value: self.arguments))
        }
        if self.timeout > 0 { query.append(URLQueryItem(name: "timeout", value: "\(self.timeout)")) }
        if let param { query.append(URLQueryItem(name: "param", value: param)) }
        if let seconds { query.append(URLQueryItem(name: "seconds", value: "\(seconds)")) }
        var components = URLComponents()
        components.path = path
        components.queryItems = query.isEmpty ? nil : query
        let uri = components.string ?? path
        guard let url = URL(httpURLWithSocketPath: self.socket, uri: uri) else { throw ValidationError("bad socket path \(self.socket)") }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { _ = client.shutdown() }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = ["me.status", "plugin.list"].contains(self.method) ? .GET : .POST
        let status: UInt
        let body: ByteBuffer
        do {
            let response = try await client.execute(request, timeout: .seconds(Int64(max(self.timeout, 10)) + 30))
            status = response.status.code
            body = try await response.body.collect(upTo: 16 << 20)
        } catch {
            Self.write(Data("BasicAgentCtl: cannot reach the agent at \(self.socket): \(error) (is boot running, and are you root?)\n".utf8), to: .standardError)
            throw ExitCode(1)
        }
        let data = Data(body.readableBytesView)
        let document = try? JSONValue(parsing: data)
        if self.pretty, let document {
            Self.write(document.encoded(pretty: true) + Data("\n".utf8), to: .standardOutput)
        } else {
            Self.write(data, to: .standardOutput)
        }
        guard status == 200 else {
            let message = document?.object?["message"]?.string ?? "HTTP \(status)"
            Self.write(Data("BasicAgentCtl: \(message)\n".utf8), to: .standardError)
            throw ExitCode(1)
        }
    }

    static func write(_ data: Data, to output: SystemPackage.FileDescriptor) {
        _ = try? output.writeAll(data)
    }
}
