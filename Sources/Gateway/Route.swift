public import RPC
import Hummingbird
import GRPCCore

/// One REST route: its method and path, who may call it, and what it accepts and answers. The
/// router registers it and the OpenAPI document describes it from this one value, so the two
/// cannot drift apart.
public struct Route: Sendable {
    /// Who may call a route.
    public enum Access: Sendable {
        /// `Authorization: Bearer <admin token>`.
        case admin
        /// `Authorization: Bearer <admin token or enrollment token>`: agents fetch packages.
        case adminOrAgent
        /// The seed's plain-HTTP agents: no bearer token needed (an enrollment token, when sent,
        /// must be right). They can only touch their own host and the jobs given to them.
        case agent
    }

    public struct Parameter: Sendable {
        public var name: String
        public var schema: Schema
        public var summary: String
        public var required = false
    }

    /// The OpenAPI operationId.
    public var id: String
    /// The service method it calls (an Admin method, or `Service.Method` of another service):
    /// who may call the route is who may call that method (`AccessTable`). Nil for the OpenAPI
    /// document, which anyone may read.
    public var rpc: String?
    public var method: String
    public var path: String
    public var summary: String
    public var access: Access = .admin
    public var query: [Parameter] = []
    /// Content types and the schema of the body, when the route takes one.
    public var body: [(contentType: String, schema: Schema)] = []
    /// Schema of the 200 answer.
    public var response: Schema
    /// Its content type, when not JSON or bytes.
    public var text: String?

    /// The content type of the 200 answer.
    public var responseType: String {
        if let text = self.text { return text }
        if case .binary = self.response { return "application/octet-stream" }
        return "application/json"
    }

    /// "POST /api/v1/server/task": how errors about the request name it.
    public var name: String { "\(self.method) \(self.path)" }

    static let json = "application/json"

    static func query(_ name: String, _ schema: Schema, _ summary: String, required: Bool = false) -> Parameter {
        Parameter(name: name, schema: schema, summary: summary, required: required)
    }

    /// offset and limit of a page: the document's and the query's (``Query/page()``).
    static let offsets: ClosedRange<Int64> = 0 ... Int64(Int32.max)
    static let limits: ClosedRange<Int64> = 1 ... 1000

    static let paging: [Parameter] = [
        query("offset", .bounded(offsets), "Rows to skip (default 0)."),
        query("limit", .bounded(limits), "Rows to answer, 1 to 1000 (default 50)."),
    ]
}

/// A route with its handler, which gets the caller's credentials (checked for the route's
/// access) as the metadata to call the service with.
struct Endpoint: Sendable {
    typealias Handler = @Sendable (_ route: Route, _ request: Request, _ context: GatewayContext, _ metadata: Metadata) async throws -> Response

    let route: Route
    let handle: Handler

    init(_ route: Route, handle: @escaping Handler) {
        self.route = route
        self.handle = handle
    }
}

/// One resource of the REST API (hosts, tasks, packages, ...): its routes, how each maps its
/// request onto the Admin service and the answer back, and what the OpenAPI document says of
/// each. A new route is one ``Endpoint`` in its controller.
protocol GatewayController: Sendable {
    var endpoints: [Endpoint] { get }
    /// The named schemas its routes refer to, for the OpenAPI document.
    var schemas: [String: Schema] { get }
}

extension GatewayController {
    var schemas: [String: Schema] { [:] }
}
