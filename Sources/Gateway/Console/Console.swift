import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RPC

/// The web console at `/`: server-rendered pages over the same Admin handlers as REST and gRPC,
/// called with the signed-in operator's own token, so a page shows only what its role may see
/// and does only what it may do. Pages read without JavaScript; small scripts make some live.
struct Console: Sendable {
    let gateway: Gateway
    let views: ConsoleViews
    let sessions: ConsoleSessions
    let runs: ConsoleRuns
    /// How often a live page reads what it shows again.
    var liveInterval: Duration { .seconds(2) }

    var admin: any Aspire_V1_Admin.ClientProtocol { self.gateway.admin }
    var logger: Logger { self.gateway.logger }

    /// A page being answered for a signed-in operator.
    struct Visit: Sendable {
        let request: Request
        let session: ConsoleSession
        var metadata: Metadata { self.session.metadata }
        var query: Query { Query(self.request) }

        /// Refuses, before anything is read or sent, a page whose Admin method `rpc` this
        /// operator's role may not call (the service refuses it too).
        func require(_ rpc: String, to what: String) throws(AspireError) {
            guard self.session.may(rpc) else {
                throw AspireError(.permissionDenied, "\(self.session.name) (\(self.session.role)) may not \(what)")
            }
        }
    }

    func add(to router: Router<GatewayContext>) {
        router.get("/console/:asset") { request, context in
            self.views.asset(context.parameters.get("asset") ?? "")
        }
        router.get("/signin") { request, _ in self.signInPage(request) }
        router.post("/signin") { request, _ in await self.signIn(request) }
        router.post("/signout") { request, _ in await self.signOut(request) }
        router.get("/") { request, _ in await self.page(request) { try await self.dashboard($0) } }
        router.get("/hosts") { request, _ in await self.page(request) { try await self.hosts($0) } }
        router.get("/hosts/live") { request, _ in await self.page(request) { try await self.hostsLive($0) } }
        router.get("/hosts/:sn") { request, context in
            let sn = context.parameters.get("sn") ?? ""
            return await self.page(request) { try await self.host($0, sn: sn) }
        }
        router.post("/hosts/:sn/facts") { request, context in
            let sn = context.parameters.get("sn") ?? ""
            return await self.form(request) { try await self.readFacts($0, form: $1, sn: sn) }
        }
        router.post("/hosts/:sn/region") { request, context in
            let sn = context.parameters.get("sn") ?? ""
            return await self.form(request) { try await self.setRegion($0, form: $1, sn: sn) }
        }
        router.post("/hosts/:sn/tags") { request, context in
            let sn = context.parameters.get("sn") ?? ""
            return await self.form(request) { try await self.bindTag($0, form: $1, sn: sn) }
        }
        router.get("/run") { request, _ in await self.page(request) { try await self.runPage($0) } }
        router.post("/run/preview") { request, _ in await self.form(request) { try await self.previewRun($0, form: $1) } }
        router.post("/run") { request, _ in await self.form(request) { try await self.startRun($0, form: $1) } }
        router.get("/runs/:id") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await self.page(request) { try await self.runStatusPage($0, id: id) }
        }
        router.get("/runs/:id/events") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await self.page(request) { try await self.runEvents($0, id: id) }
        }
        router.get("/tasks") { request, _ in await self.page(request) { try await self.tasks($0) } }
        router.get("/tasks/:id") { request, context in
            let id = context.parameters.get("id") ?? ""
            return await self.page(request) { try await self.task($0, id: id) }
        }
        router.post("/tasks/cancel") { request, _ in await self.form(request) { try await self.cancelTask($0, form: $1) } }
        router.get("/schedules") { request, _ in await self.page(request) { try await self.schedules($0) } }
        router.get("/schedules/runs") { request, _ in await self.page(request) { try await self.scheduleRuns($0) } }
        router.get("/plugins") { request, _ in await self.page(request) { try await self.plugins($0) } }
        router.get("/audit") { request, _ in await self.page(request) { try await self.audit($0) } }
        router.get("/versions") { request, _ in await self.page(request) { try await self.versions($0) } }
        router.post("/versions/upload") { request, _ in await self.upload(request) }
        router.post("/versions/delete") { request, _ in await self.form(request) { try await self.deletePackage($0, form: $1) } }
        router.get("/versions/deploy") { request, _ in await self.page(request) { try await self.deployPage($0) } }
        router.post("/versions/deploy") { request, _ in await self.form(request) { try await self.deploy($0, form: $1) } }
        router.get("/deployments") { request, _ in await self.page(request) { try await self.deployments($0) } }
        router.get("/deployments/:name") { request, context in
            let name = context.parameters.get("name") ?? ""
            return await self.page(request) { try await self.deployment($0, name: name) }
        }
        router.post("/deployments/control") { request, _ in await self.form(request) { try await self.controlDeployment($0, form: $1) } }
        router.get("/tags") { request, _ in await self.page(request) { try await self.tags($0) } }
        router.post("/tags") { request, _ in await self.form(request) { try await self.createTag($0, form: $1) } }
        router.post("/tags/delete") { request, _ in await self.form(request) { try await self.deleteTag($0, form: $1) } }
    }

    // MARK: Signing in and out

    func signInPage(_ request: Request, error: String? = nil, status: HTTPResponse.Status = .ok) -> Response {
        let token = ConsoleSessions.randomToken()
        var response = self.views.render(
            "signin",
            ["title": "Sign in", "next": Self.localPath(Query(request).string("next")), "csrf": token, "error": error as Any],
            status: status
        )
        response.setCookie(
            Cookie(name: ConsoleSessions.signInCookieName, value: token, maxAge: 600, path: "/signin", secure: ConsoleSessions.overTLS(request), sameSite: .strict)
        )
        return response
    }

    /// Exchanges an operator token (or the admin token) for a session: the token is checked by
    /// the Admin service itself (WhoAmI), and never appears in a URL or a page.
    func signIn(_ request: Request) async -> Response {
        let form: FormFields
        do {
            form = try await self.views.fields(of: request)
        } catch {
            return self.signInPage(request, error: ErrorMiddleware.aspireError(error).cause, status: .badRequest)
        }
        guard let expected = request.cookies[ConsoleSessions.signInCookieName]?.value, !form["csrf"].isEmpty,
            Secret.matches(form["csrf"], String(expected))
        else {
            return self.signInPage(request, error: "The sign-in form expired or was not sent from this page; try again.", status: .forbidden)
        }
        let token = form["token"].trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { return self.signInPage(request, error: "Enter a token.", status: .badRequest) }
        do {
            let caller = try await self.admin.whoAmI(Aspire_V1_WhoAmIRequest(), metadata: ["authorization": .string("Bearer \(token)")])
            let session = ConsoleSession(token: token, csrf: ConsoleSessions.randomToken(), name: caller.name, role: caller.role)
            let cookie = try await self.sessions.start(session, for: request)
            var response = Response.redirect(to: Self.localPath(form["next"]), type: .normal)
            response.setCookie(cookie)
            response.setCookie(Cookie(name: ConsoleSessions.signInCookieName, value: "", maxAge: 0, path: "/signin"))
            self.logger.notice("console: signed in", metadata: ["operator": "\(caller.name)", "role": "\(caller.role)"])
            return response
        } catch let error as RPCError where error.code == .unauthenticated || error.code == .permissionDenied {
            return self.signInPage(request, error: "That token is not valid here.", status: .unauthorized)
        } catch {
            return self.signInPage(request, error: "Cannot sign in now: \(ErrorMiddleware.aspireError(error).cause)", status: .serviceUnavailable)
        }
    }

    func signOut(_ request: Request) async -> Response {
        guard let session = await self.sessions.load(request) else { return Response.redirect(to: "/signin", type: .found) }
        guard let form = try? await self.views.fields(of: request), session.accepts(csrf: form["csrf"]) else {
            return self.views.forbidden()
        }
        var response = Response.redirect(to: "/signin", type: .normal)
        if let cookie = await self.sessions.end(request) { response.setCookie(cookie) }
        return response
    }

    /// `next` when it is a path of this site, else the dashboard (no open redirect).
    static func localPath(_ next: String) -> String {
        guard next.hasPrefix("/"), !next.hasPrefix("//"), !next.contains("\\"), !next.contains("\n"), !next.contains("\r") else { return "/" }
        return next
    }

    // MARK: Running pages and forms

    /// A page for a signed-in operator: without a session, the sign-in page (back here after);
    /// a token that stopped working ends the session; any other failure is an error page.
    func page(_ request: Request, _ body: (Visit) async throws -> Response) async -> Response {
        guard let session = await self.sessions.load(request) else {
            return Self.toSignIn(request)
        }
        do {
            return try await body(Visit(request: request, session: session))
        } catch {
            return await self.failure(error, request: request, session: session)
        }
    }

    /// A form post: a session and its CSRF token first, then `body` with the decoded fields.
    func form(_ request: Request, _ body: (Visit, FormFields) async throws -> Response) async -> Response {
        guard let session = await self.sessions.load(request) else {
            return Self.toSignIn(request)
        }
        do {
            let fields = try await self.views.fields(of: request)
            guard session.accepts(csrf: fields["csrf"]) else { return self.views.forbidden() }
            return try await body(Visit(request: request, session: session), fields)
        } catch {
            return await self.failure(error, request: request, session: session)
        }
    }

    static func toSignIn(_ request: Request) -> Response {
        let here = request.uri.query.map { "\(request.uri.path)?\($0)" } ?? request.uri.path
        return Response.redirect(to: "/signin?next=\(ConsoleText.encoded(here))", type: .found)
    }

    func failure(_ error: any Error, request: Request, session: ConsoleSession) async -> Response {
        let failure = ErrorMiddleware.aspireError(error)
        if failure.code == .unauthenticated {
            var response = Self.toSignIn(request)
            if let cookie = await self.sessions.end(request) { response.setCookie(cookie) }
            return response
        }
        if failure.code == .internalError {
            self.logger.error("console: page failed", metadata: ["http.path": "\(request.uri.path)", "error": "\(String(reflecting: error))"])
        }
        return self.views.page(
            "error", tab: nil, session: session,
            ["title": "Error", "message": failure.cause, "code": "\(failure.code)"],
            status: HTTPResponse.Status(code: failure.code.httpStatus)
        )
    }

    /// After a form: back to `path` with a note shown once (in the query, never a secret).
    static func back(to path: String, note: String) -> Response {
        let separator = path.contains("?") ? "&" : "?"
        return Response.redirect(to: "\(path)\(separator)note=\(ConsoleText.encoded(note))", type: .normal)
    }
}

/// The sections of the navigation, in order.
enum ConsoleTab: String, CaseIterable, Sendable {
    case dashboard = "Dashboard"
    case hosts = "Hosts"
    case run = "Run"
    case tasks = "Tasks"
    case versions = "Agent versions"
    case deployments = "Deployments"
    case tags = "Tags"
    case schedules = "Schedules"
    case plugins = "Plugins"
    case audit = "Audit"

    /// The Admin method the tab reads: shown to the roles that may call it.
    var rpc: String {
        switch self {
        case .dashboard: "Dashboard"
        case .hosts: "ListHosts"
        case .run: "RunCommandStream"
        case .tasks: "ListTasks"
        case .versions: "ListPackages"
        case .deployments: "ListDeployments"
        case .tags: "ListTags"
        case .schedules: "ListSchedules"
        case .plugins: "QueryMetrics"
        case .audit: "ListAudit"
        }
    }

    var path: String {
        switch self {
        case .dashboard: "/"
        case .hosts: "/hosts"
        case .run: "/run"
        case .tasks: "/tasks"
        case .versions: "/versions"
        case .deployments: "/deployments"
        case .tags: "/tags"
        case .schedules: "/schedules"
        case .plugins: "/plugins"
        case .audit: "/audit"
        }
    }
}
