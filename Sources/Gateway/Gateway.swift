import Foundation
public import GRPCCore
public import Hummingbird
public import Logging
import NIOCore
public import RPC
import SwiftProtobuf

/// The request context of the gateway: Hummingbird's, plus the caller's address (the seed's
/// agents are recorded with it).
public struct GatewayContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: String

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress?.ipAddress ?? ""
    }
}

/// REST/JSON in front of the Admin and AgentPoll services. It holds no state and no logic of
/// its own: each route parses its request, calls the service through a client with the caller's
/// bearer token, and writes the answer in the seed's envelope. So REST and gRPC share one set of
/// handlers, one authentication and one error table. On a server node the clients are the
/// services' `DirectClient`s (the handlers called in-process, through the node's interceptors,
/// with no protobuf between); `aspire-server gateway` calls a remote node over HTTP/2.
public struct Gateway: Sendable {
    public struct Configuration: Sendable {
        /// Largest JSON body accepted (413 beyond it).
        public var maxBodyBytes = 1 << 20
        /// Largest package file a multipart upload may carry (the node's own limit: 413 beyond it).
        public var maxUploadBytes: Int64 = 1 << 30
        /// The node's admin token: the gateway serves the seed's plain-HTTP agents and download
        /// links with it. Callers' own tokens (the admin token or an operator's) are forwarded
        /// to the services, whose interceptor checks them.
        public var adminToken: String?
        /// The enrollment token presented for the seed's plain-HTTP agents, which send none.
        public var agentToken: String?
        /// The networks the seed's plain-HTTP agents may call from (`--seed-agents`); empty: their
        /// routes are off. Their bodies carry no credentials, so the address is all there is.
        public var seedAgents: [IPNetwork] = []
        /// Reported in the OpenAPI document.
        public var version = AspireVersion.current
        /// How long a console sign-in lasts.
        public var consoleSessionLifetime: Duration = .seconds(12 * 3600)

        public init() {}
    }

    let admin: any Aspire_V1_Admin.ClientProtocol
    let poll: any Aspire_V1_AgentPoll.ClientProtocol
    let packages: any Aspire_V1_PackageStore.ClientProtocol
    let configuration: Configuration
    let logger: Logger
    /// Signed-in browsers of the web console (in this gateway's memory).
    let consoleSessions: ConsoleSessions
    let consoleViews: ConsoleViews
    let consoleRuns = ConsoleRuns()

    public init(
        admin: some Aspire_V1_Admin.ClientProtocol, poll: some Aspire_V1_AgentPoll.ClientProtocol,
        packages: some Aspire_V1_PackageStore.ClientProtocol, configuration: Configuration, logger: Logger
    ) {
        self.admin = admin
        self.poll = poll
        self.packages = packages
        self.configuration = configuration
        self.logger = logger
        self.consoleSessions = ConsoleSessions(lifetime: configuration.consoleSessionLifetime)
        self.consoleViews = ConsoleViews()
    }

    /// A gateway in front of a node reached through `client`.
    public init(client: GRPCClient<some ClientTransport>, configuration: Configuration, logger: Logger) {
        self.init(
            admin: Aspire_V1_Admin.Client(wrapping: client), poll: Aspire_V1_AgentPoll.Client(wrapping: client),
            packages: Aspire_V1_PackageStore.Client(wrapping: client), configuration: configuration, logger: logger
        )
    }

    var console: Console { Console(gateway: self, views: self.consoleViews, sessions: self.consoleSessions, runs: self.consoleRuns) }

    /// Every route, grouped by the resource it belongs to.
    var controllers: [any GatewayController] {
        [
            HostsController(gateway: self), TasksController(gateway: self), PackagesController(gateway: self),
            TagsController(gateway: self), SchedulesController(gateway: self), PluginsController(gateway: self), DeploymentsController(gateway: self),
            MetricsController(gateway: self), AgentsController(gateway: self), IdentityController(gateway: self),
            OpenAPIController(gateway: self),
        ]
    }

    var endpoints: [Endpoint] { self.controllers.flatMap(\.endpoints) }

    /// Every route the gateway serves.
    public var routes: [Route] { self.endpoints.map(\.route) }

    /// The named schemas of every resource.
    var schemas: [String: Schema] {
        self.controllers.reduce(into: [:]) { all, controller in
            for (name, schema) in controller.schemas {
                // Two resources naming one schema: one would describe the other's answers.
                precondition(all.updateValue(schema, forKey: name) == nil, "two gateway controllers name the schema \(name)")
            }
        }
    }

    /// A router with every route and the web console; unknown paths and methods answer the
    /// error envelope too.
    public func router() -> Router<GatewayContext> {
        let router = Router(context: GatewayContext.self)
        let endpoints = self.endpoints
        router.add(middleware: ErrorMiddleware(routes: endpoints.map(\.route), logger: self.logger))
        for endpoint in endpoints {
            router.on(RouterPath(endpoint.route.path), method: HTTPRequest.Method(rawValue: endpoint.route.method)!) { request, context in
                try await self.respond(endpoint, to: request, context: context)
            }
        }
        self.console.add(to: router)
        return router
    }

    /// Checks the caller for the route's access and the query parameters the route requires, then
    /// runs its handler.
    func respond(_ endpoint: Endpoint, to request: Request, context: GatewayContext) async throws -> Response {
        let route = endpoint.route
        let handle = { (metadata: Metadata) async throws -> Response in
            let query = Query(request)
            // The parameters as the document declares them: required ones given, each of its type.
            for parameter in route.query {
                let values = query.all(parameter.name)
                if parameter.required && values.allSatisfy(\.isEmpty) {
                    throw AspireError(.badRequest, "\(route.name): query parameter '\(parameter.name)' is required (\(parameter.summary))")
                }
                for value in values {
                    if let refusal = parameter.schema.refusal(ofQueryValue: value) {
                        throw AspireError(.badRequest, "\(route.name): query parameter '\(parameter.name)' \(refusal)")
                    }
                }
            }
            return try await endpoint.handle(route, request, context, metadata)
        }
        switch route.access {
        case .admin:
            let metadata = try self.adminMetadata(request)
            try await self.requirePermission(for: route, metadata: metadata)
            return try await handle(metadata)
        case .adminOrAgent:
            if let metadata = try self.downloadLinkMetadata(request) {
                return try await handle(metadata)
            }
            guard let header = request.headers[.authorization], let token = Secret.bearerToken(header) else {
                throw AspireError(.unauthenticated, "send 'Authorization: Bearer <enrollment token or admin token>'")
            }
            // Agents fetching over https with the enrollment token: the gateway fetches for them.
            if let agentToken = self.configuration.agentToken, Secret.matches(token, agentToken) {
                return try await handle(try self.ownMetadata())
            }
            let metadata: Metadata = ["authorization": .string(header)]
            try await self.requirePermission(for: route, metadata: metadata)
            return try await handle(metadata)
        case .agent:
            do {
                try self.requireSeedAgent(from: context.remoteAddress)
                return try await handle(try self.agentMetadata(request))
            } catch {
                // The seed's agents read `errcode`; anything but 0 makes them send again.
                let failure = ErrorMiddleware.aspireError(error)
                return Answer.json(["errcode": Int(failure.code.rawValue), "message": failure.cause], status: failure.code.httpStatus)
            }
        }
    }

    /// Refuses (403) a caller whose role lacks the permission of the route's service method,
    /// before its body is read or checked; the service checks again, and checks scopes.
    func requirePermission(for route: Route, metadata: Metadata) async throws {
        guard let rpc = route.rpc, let permission = AccessTable.permission(route: rpc) else {
            throw AspireError(.permissionDenied, "\(route.name) has no entry in the access table")
        }
        // The node's own admin token may call everything: no need to ask who it is.
        if let admin = self.configuration.adminToken, case .string(let header)? = metadata["authorization"].first(where: { _ in true }),
            let token = Secret.bearerToken(header), Secret.matches(token, admin)
        {
            return
        }
        let caller = try await self.admin.whoAmI(Aspire_V1_WhoAmIRequest(), metadata: metadata)
        guard let role = Role(rawValue: caller.role), role.permissions.contains(permission) else {
            throw AspireError(
                .permissionDenied, "\(caller.name) (\(caller.role)) may not call \(route.name): it needs the \(permission.rawValue) permission"
            )
        }
    }

    /// The caller's bearer token, forwarded to the service.
    func adminMetadata(_ request: Request) throws -> Metadata {
        guard let header = request.headers[.authorization], Secret.bearerToken(header) != nil else {
            throw AspireError(.unauthenticated, "send 'Authorization: Bearer <admin token>' (the token is in the server's data directory)")
        }
        return ["authorization": .string(header)]
    }

    // MARK: Bodies and queries

    /// The body parsed as JSON, at most `maxBodyBytes`.
    func jsonBody(_ request: Request, route: Route) async throws -> Google_Protobuf_Value {
        let context = route.name
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: self.configuration.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw AspireError(.payloadTooLarge, "\(context): the body is larger than \(self.configuration.maxBodyBytes) bytes")
        }
        guard buffer.readableBytes > 0 else {
            throw AspireError(.badRequest, "\(context): a JSON body is required")
        }
        do {
            return try Google_Protobuf_Value(jsonUTF8Bytes: Array(buffer.readableBytesView))
        } catch {
            throw AspireError(.badRequest, "\(context): malformed JSON (\(error))")
        }
    }

    /// The body as a JSON object, with checked access to its fields.
    func objectBody(_ request: Request, route: Route) async throws -> JSONFields {
        let value = try await self.jsonBody(request, route: route)
        let context = route.name
        guard case .structValue(let object)? = value.kind else {
            throw AspireError(.badRequest, "\(context): the body must be a JSON object")
        }
        var fields = JSONFields(object.fields, context: context, code: .badRequest)
        // The seed's agent routes take the seed's bodies as its agents write them.
        fields.numbersAsText = route.access == .agent
        return fields
    }
}

/// JSON answers.
enum Answer {
    /// The success envelope with a payload beside it.
    static func success(_ payload: JSONObject = [:]) -> Response {
        var object = payload
        object["status"] = 0
        object["message"] = "success"
        return Self.json(object, status: 200)
    }

    /// The failure envelope, with the HTTP status of its code unless `status` says otherwise.
    static func failure(_ error: AspireError, status: Int? = nil) -> Response {
        let envelope = ErrorEnvelope(error)
        return Self.json(
            ["status": Int(envelope.status), "message": envelope.message, "cause": envelope.cause ?? ""],
            status: status ?? envelope.httpStatus
        )
    }

    static func json(_ value: some JSONWritable, status: Int) -> Response {
        Self.json(body: JSONWriter.encode(value), status: status)
    }

    /// An object written out as a literal.
    static func json(_ object: JSONObject, status: Int) -> Response {
        Self.json(body: JSONWriter.encode(object), status: status)
    }

    /// An untyped tree (the OpenAPI document).
    static func json(untyped value: Any, status: Int) -> Response {
        let body =
            (try? JSONWriter.encode(untyped: value))
            ?? ByteBuffer(string: #"{"status":130000,"message":"internal error","cause":"the answer could not be encoded"}"#)
        return Self.json(body: body, status: status)
    }

    private static func json(body: ByteBuffer, status: Int) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(
            status: HTTPResponse.Status(code: status),
            headers: headers,
            body: ResponseBody(byteBuffer: body)
        )
    }
}

/// Typed access to query parameters, with errors naming the parameter.
struct Query {
    let parameters: [String: [String]]

    init(_ request: Request) {
        var parameters: [String: [String]] = [:]
        for (key, value) in request.uri.queryParameters {
            parameters[String(key), default: []].append(String(value))
        }
        self.parameters = parameters
    }

    func string(_ name: String) -> String {
        self.parameters[name]?.last ?? ""
    }

    func all(_ name: String) -> [String] {
        self.parameters[name] ?? []
    }

    func integer(_ name: String, range: ClosedRange<Int64> = 0 ... Int64.max) throws(AspireError) -> Int64? {
        let text = self.string(name)
        guard !text.isEmpty else { return nil }
        guard let value = Int64(text), range.contains(value) else {
            throw AspireError(.badRequest, "query parameter '\(name)' must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// `order=asc|desc`; true for descending.
    func descending(default value: Bool = false) throws(AspireError) -> Bool {
        switch self.string("order").lowercased() {
        case "": return value
        case "asc": return false
        case "desc": return true
        default: throw AspireError(.badRequest, "query parameter 'order' must be asc or desc")
        }
    }

    /// offset and limit.
    func page() throws(AspireError) -> (offset: Int32, limit: Int32) {
        (
            Int32(try self.integer("offset", range: Route.offsets) ?? 0),
            Int32(try self.integer("limit", range: Route.limits) ?? 0)
        )
    }
}

/// Turns every failure into the seed's envelope with the HTTP status of its code; nothing
/// escapes as a bare 500.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = GatewayContext
    /// Every route, to name the methods a known path has.
    let routes: [Route]
    let logger: Logger

    func handle(_ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status.code == 404 {
            // No route: a known path with another method is 405, with the methods it has.
            let methods = self.routes.filter { $0.path == request.uri.path }.map(\.method)
            guard !methods.isEmpty else {
                return Answer.failure(AspireError(.notFound, "no route \(request.method) \(request.uri.path)"))
            }
            let allowed = methods.joined(separator: ", ")
            var response = Answer.failure(
                AspireError(.badRequest, "\(request.method) is not allowed on \(request.uri.path); use \(allowed)"),
                status: 405
            )
            response.headers[.allow] = allowed
            return response
        } catch let error as HTTPError {
            // Hummingbird's own: too large, bad request, ...
            let code: ErrorCode = error.status.code == 413 ? .payloadTooLarge : .badRequest
            return Answer.failure(AspireError(code, error.body ?? error.status.reasonPhrase), status: error.status.code)
        } catch {
            let failure = Self.aspireError(error)
            if failure.code == .internalError {
                self.logger.error("request failed", metadata: ["http.path": "\(request.uri.path)", "error": "\(String(reflecting: error))"])
            }
            return Answer.failure(failure)
        }
    }

    static func aspireError(_ error: any Error) -> AspireError {
        switch error {
        case let error as AspireError: return error
        case let error as RPCError: return AspireError(rpcError: error)
        case is NIOTooManyBytesError: return AspireError(.payloadTooLarge, "the body is too large")
        default: return AspireError(.internalError, "\(error)")
        }
    }
}

extension Gateway {
    /// The HTTP server of this gateway on `listen` (port 0 picks one). Once bound, it writes the
    /// address to `addressFile` (when given) and logs it.
    public func application(
        listen: HostPort,
        serverName: String,
        addressFile: String?
    ) -> Application<RouterResponder<GatewayContext>> {
        let logger = self.logger
        return Application(
            router: self.router(),
            configuration: ApplicationConfiguration(address: .hostname(listen.host, port: listen.port), serverName: serverName),
            services: [self.consoleSessions.driver],
            onServerRunning: { channel in
                let text = HostPort(host: listen.host, port: channel.localAddress?.port ?? listen.port).description
                if let addressFile {
                    do {
                        try AtomicFile.write(text + "\n", to: addressFile)
                    } catch {
                        logger.error("cannot write the gateway address", metadata: ["path": "\(addressFile)", "error": "\(error)"])
                    }
                }
                logger.notice("REST gateway listening", metadata: ["http.address": "\(text)"])
            },
            logger: logger
        )
    }
}
