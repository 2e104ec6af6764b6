#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RPC
import SwiftProtobuf
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The agent's local control interface (the seed's agent HTTP interface): HTTP on a Unix socket
/// that only root may open (mode 0600 — the socket's permissions are its authentication), for
/// `BasicAgentCtl` and for `curl --unix-socket`, and with `--control-listen` on a loopback
/// address and port too (as the seed's agent served it; any local user reaches that one):
///
/// - `GET /me/status`: AgentSN, version, uptime, servers, whether a stream is open, plugin count.
/// - `GET /plugins/list`: each plugin with its state.
/// - `POST /plugins/run?name=N[&timeout=S][&param=P]`, `/plugins/enable?name=N`,
///   `/plugins/disable?name=N[&seconds=S]`, `/plugins/update?name=N` (GET works too, as in the seed).
/// - `POST /post?ns=NS`: local programs push metrics, a JSON list as plugins print it, checked
///   as plugin output is; they go to the server as `post.<ns>.<name>`.
/// - `GET /log/offset?fpath=PATH|name=NAME&offset=BYTES&num=LINES`: the agent's own log (`-L`,
///   name `boot`) or a sub-agent's (`<data>/subagents/<name>.log`), from a byte offset, at most
///   `num` lines and 1 MiB — for tailing. No other file: the path is resolved and must be one
///   of those.
///
/// Answers are the agent's command results in the seed's JSON (`resp`, `retcode`, `data`, ...),
/// with HTTP 200 on success, 400, 404 or 409 when refused.
struct LocalControl {
    let path: String
    let runtime: AgentRuntime
    let logger: Logger

    /// The same interface on a loopback TCP address.
    static func listen(on address: HostPort, runtime: AgentRuntime, logger: Logger) async throws {
        let control = LocalControl(path: "", runtime: runtime, logger: logger)
        let application = Application(
            router: control.router(),
            configuration: ApplicationConfiguration(address: .hostname(address.host, port: address.port), serverName: "aspire-boot"),
            onServerRunning: { _ in logger.notice("local control interface listening", metadata: ["control.listen": "\(address)"]) },
            logger: logger
        )
        try await application.run()
    }

    func run() async throws {
        // A socket left by an agent that died is in the way; anything else at the path is not ours.
        // attributesOfItem does not follow a symbolic link.
        if let existing = try? FileManager.default.attributesOfItem(atPath: self.path) {
            guard existing[.type] as? FileAttributeType == .typeSocket else {
                throw AspireError(.agentInternal, "\(self.path) exists and is not a socket: not replacing it")
            }
            unlink(self.path)
        }
        let path = self.path
        let logger = self.logger
        let application = Application(
            router: self.router(),
            configuration: ApplicationConfiguration(address: .unixDomainSocket(path: self.path), serverName: "aspire-boot"),
            onServerRunning: { _ in
                chmod(path, 0o600)
                logger.notice("local control interface listening", metadata: ["control.socket": "\(path)"])
            },
            logger: self.logger
        )
        defer { unlink(path) }
        try await application.run()
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/me/status") { _, _ in
            Self.json(self.runtime.localStatus, status: .ok)
        }
        router.get("/plugins/list") { _, _ in
            Self.json(.array(self.runtime.plugins.list()), status: .ok)
        }
        router.post("/post") { request, _ in
            await self.post(request)
        }
        router.get("/log/offset") { request, _ in
            self.log(request.uri.queryParameters)
        }
        for action in [CommandMethod.PluginAction.run, .enable, .disable, .update] {
            let handler: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, _ in
                await self.plugin(action, request.uri.queryParameters)
            }
            router.post("/plugins/\(action.rawValue)", use: handler)
            router.get("/plugins/\(action.rawValue)", use: handler)
        }
        return router
    }

    private func plugin(_ action: CommandMethod.PluginAction, _ query: Parameters) async -> Response {
        let id = "local:\(UUID.random().uuidString.lowercased())"
        let method = CommandMethod.plugin(action).name
        // Read as a task's parameters are, by the same code: the keys the action takes (the
        // seed's callers also send ns and repo, which mean nothing here).
        let keys: [String] =
            switch action {
            case .run: ["name", "timeout", "param"]
            case .disable: ["name", "seconds"]
            default: ["name"]
            }
        var parameters = Google_Protobuf_Struct()
        for key in keys {
            if let value = query.get(key) { parameters.fields[key] = Google_Protobuf_Value(stringValue: value) }
        }
        let result: Aspire_V1_CommandResult
        do throws(AspireError) {
            var command = try CommandParameters.command(method: method, parameters: parameters)
            command.id = id
            result = await self.runtime.handlers.run(command)
        } catch {
            result = .failed(id: id, error.code, error.cause)
        }
        let name = query.get("name") ?? ""
        self.logger.info(
            "local control", metadata: ["control.action": "\(method)", "plugin": "\(name)", "command.retcode": "\(result.retcode)"]
        )
        let status: HTTPResponse.Status =
            switch (result.resp, ErrorCode(rawValue: result.retcode)) {
            case (.success, _): .ok
            case (_, .notFound): .notFound
            case (_, .busy): .conflict
            default: .badRequest
            }
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: result.seedJSON() + Data("\n".utf8)))
        )
    }

    /// Most bytes of metrics one post may carry.
    static let maxPostBytes = 4 << 20

    /// Metrics a local program pushes: checked as a plugin's output is, then queued for the server.
    private func post(_ request: Request) async -> Response {
        let namespace = request.uri.queryParameters.get("ns") ?? "local"
        guard PluginOutput.isMetricName(namespace) else {
            return Self.refusal(.invalidParams, "ns '\(namespace.prefix(80))': letters, digits and _ . : - only", status: .badRequest)
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.maxPostBytes)
        } catch {
            return Self.refusal(.invalidParams, "a post carries at most \(Self.maxPostBytes) bytes", status: .contentTooLarge)
        }
        do {
            let parsed = try PluginOutput.parse(
                Data(body.readableBytesView), plugin: "post", host: ProcessInfo.processInfo.hostName, now: Date(), prefix: "post.\(namespace)"
            )
            self.runtime.uplink.metrics.append(parsed.metrics)
            self.logger.info("local control", metadata: ["control.action": "post", "post.ns": "\(namespace)", "metrics": "\(parsed.metrics.count)"])
            return Self.json(["errcode": 0, "accepted": JSONValue(parsed.metrics.count), "problems": JSONValue(parsed.problems)], status: .ok)
        } catch {
            return Self.refusal(error.code, error.cause, status: .badRequest)
        }
    }

    /// Most lines and bytes one read of a log answers.
    static let maxLogLines = 10_000
    static let maxLogBytes = 1 << 20

    /// A slice of the agent's or a sub-agent's log, from a byte offset.
    private func log(_ query: Parameters) -> Response {
        guard let path = self.logFile(fpath: query.get("fpath"), name: query.get("name")) else {
            return Self.refusal(.permissionDenied, "only the agent's log (name=boot, its -L file) and sub-agents' logs (name=SUBAGENT) can be read here", status: .forbidden)
        }
        let offset = Int(query.get("offset") ?? "0") ?? -1
        let lines = Int(query.get("num") ?? "100") ?? -1
        guard offset >= 0, (1 ... Self.maxLogLines).contains(lines) else {
            return Self.refusal(.invalidParams, "offset is a byte offset from 0; num a line count from 1 to \(Self.maxLogLines)", status: .badRequest)
        }
        guard let file = try? FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec]) else {
            return Self.refusal(.notFound, "\(path) cannot be read", status: .notFound)
        }
        defer { try? file.close() }
        let size = Int((try? file.seek(offset: 0, from: .end)) ?? 0)
        guard offset <= size else { return Self.refusal(.invalidParams, "offset \(offset) is past the end of \(path) (\(size) bytes)", status: .badRequest) }
        let chunk = (try? file.seek(offset: Int64(offset), from: .start)).flatMap { _ in try? file.read(upTo: Self.maxLogBytes) } ?? []
        // Whole lines only, up to `num` of them (a line still being written waits for the next read).
        var end = 0
        var count = 0
        for (index, byte) in chunk.enumerated() where byte == UInt8(ascii: "\n") {
            end = index + 1
            count += 1
            if count == lines { break }
        }
        return Self.json(
            [
                "fpath": JSONValue(path), "offset": JSONValue(offset), "next": JSONValue(offset + end), "lines": JSONValue(count),
                "size": JSONValue(size), "data": JSONValue(String(decoding: chunk.prefix(end), as: UTF8.self)),
            ],
            status: .ok
        )
    }

    /// The log a request names, if it is one that may be read: the agent's own, or a sub-agent's.
    func logFile(fpath: String?, name: String?) -> String? {
        let subagents = URL(fileURLWithPath: self.runtime.supervisor.records.directory).resolvingSymlinksInPath().path
        var allowed: [String] = []
        if let own = self.runtime.configuration.logFile { allowed.append(URL(fileURLWithPath: own).resolvingSymlinksInPath().path) }
        if let name {
            if name == "boot" { return allowed.first }
            guard (try? PathName.check(name, field: "name")) != nil else { return nil }
            return "\(subagents)/\(name).log"
        }
        guard let fpath, fpath.hasPrefix("/") else { return nil }
        let resolved = URL(fileURLWithPath: fpath).resolvingSymlinksInPath().path
        if allowed.contains(resolved) { return resolved }
        let parent = URL(fileURLWithPath: resolved).deletingLastPathComponent().path
        return parent == subagents && resolved.hasSuffix(".log") ? resolved : nil
    }

    static func refusal(_ code: ErrorCode, _ message: String, status: HTTPResponse.Status) -> Response {
        Self.json(["errcode": JSONValue(code.rawValue), "message": JSONValue(message)], status: status)
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status) -> Response {
        let data = value.encoded()
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data + Data("\n".utf8)))
        )
    }
}
