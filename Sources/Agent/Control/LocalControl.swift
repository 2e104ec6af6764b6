import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RPC
import SwiftProtobuf

#if canImport(Glibc)
import Glibc
#endif

/// The agent's local control interface (the seed's agent HTTP interface): HTTP on a Unix socket
/// that only root may open (mode 0600 — the socket's permissions are its authentication), for
/// `BasicAgentCtl` and for `curl --unix-socket`:
///
/// - `GET /me/status`: AgentSN, version, uptime, servers, whether a stream is open, plugin count.
/// - `GET /plugins/list`: each plugin with its state.
/// - `POST /plugins/run?name=N[&timeout=S][&param=P]`, `/plugins/enable?name=N`,
///   `/plugins/disable?name=N[&seconds=S]`, `/plugins/update?name=N` (GET works too, as in the seed).
///
/// Answers are the agent's command results in the seed's JSON (`resp`, `retcode`, `data`, ...),
/// with HTTP 200 on success, 400, 404 or 409 when refused.
struct LocalControl {
    let path: String
    let runtime: AgentRuntime
    let logger: Logger

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
            Self.json(self.runtime.plugins.list(), status: .ok)
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
        let id = "local:\(UUID().uuidString.lowercased())"
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

    static func json(_ object: Any, status: HTTPResponse.Status) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data + Data("\n".utf8)))
        )
    }
}
