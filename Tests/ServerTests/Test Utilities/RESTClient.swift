import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import RPC
import Testing
import TestSupport

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Calls a node's REST gateway: over real HTTP (URLSession, i.e. libcurl), or through
/// Hummingbird's test client straight into the router of a node built in-process.
struct RESTClient: Sendable {
    enum Target: Sendable {
        case http(base: String)
        case router(any TestClientProtocol)
    }

    let target: Target
    /// Sent as `Authorization: Bearer <token>` unless nil.
    var token: String?

    init(base: String, token: String?) {
        self.target = .http(base: base)
        self.token = token
    }

    init(_ node: TestNode, token: String? = nil) throws {
        self.target = .http(base: "http://\(node.httpAddress)")
        self.token = try token ?? node.adminToken
    }

    /// The base URL of a client over real HTTP.
    var base: String {
        guard case .http(let base) = self.target else { preconditionFailure("a router client has no base URL") }
        return base
    }

    /// The router of an in-process node, with its admin token.
    init(router client: any TestClientProtocol, token: String?) {
        self.target = .router(client)
        self.token = token
    }

    struct Answer {
        var status: Int
        var data: Data
        var json: Any?

        /// The body as a JSON object (fails the test otherwise).
        var object: [String: Any] {
            get throws {
                guard let object = self.json as? [String: Any] else {
                    throw HarnessError("not a JSON object (HTTP \(self.status)): \(String(decoding: self.data, as: UTF8.self))")
                }
                return object
            }
        }

        var text: String { String(decoding: self.data, as: UTF8.self) }

        /// The envelope's `status`.
        var code: Int? { (self.json as? [String: Any])?["status"] as? Int }
    }

    func call(
        _ method: String,
        _ path: String,
        json: Any? = nil,
        body: Data? = nil,
        contentType: String? = nil,
        headers: [String: String] = [:]
    ) async throws -> Answer {
        var payload = body
        var fields = headers
        if let token { fields["Authorization"] = "Bearer \(token)" }
        if let json {
            payload = try JSONSerialization.data(withJSONObject: json)
            fields["Content-Type"] = "application/json"
        }
        if let contentType { fields["Content-Type"] = contentType }
        let (status, data): (Int, Data)
        switch self.target {
        case .http(let base):
            (status, data) = try await Self.http(method, base + path, body: payload, headers: fields)
        case .router(let client):
            var httpFields = HTTPFields()
            for (name, value) in fields { httpFields[HTTPField.Name(name)!] = value }
            let response = try await client.executeRequest(
                uri: path, method: HTTPRequest.Method(method)!, headers: httpFields, body: payload.map { ByteBuffer(bytes: $0) }
            )
            (status, data) = (response.status.code, Data(Array(response.body.readableBytesView)))
        }
        return Answer(status: status, data: data, json: try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]))
    }

    private static func http(_ method: String, _ url: String, body: Data?, headers: [String: String]) async throws -> (Int, Data) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.timeoutInterval = 60
        request.httpBody = body
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }

    /// A call that must succeed with the envelope's status 0; answers the body.
    func ok(_ method: String, _ path: String, json: Any? = nil, body: Data? = nil, contentType: String? = nil) async throws -> [String: Any] {
        let answer = try await self.call(method, path, json: json, body: body, contentType: contentType)
        guard answer.status == 200, answer.code == 0 else {
            throw HarnessError("\(method) \(path) → HTTP \(answer.status): \(answer.text)")
        }
        return try answer.object
    }

    /// A call that must fail with this HTTP status and envelope code; answers the cause.
    @discardableResult
    func fails(
        _ method: String,
        _ path: String,
        json: Any? = nil,
        body: Data? = nil,
        contentType: String? = nil,
        http: Int,
        code: ErrorCode,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> String {
        let answer = try await self.call(method, path, json: json, body: body, contentType: contentType)
        #expect(answer.status == http, "\(method) \(path): \(answer.text)", sourceLocation: sourceLocation)
        #expect(answer.code == Int(code.rawValue), "\(method) \(path): \(answer.text)", sourceLocation: sourceLocation)
        let object = (answer.json as? [String: Any]) ?? [:]
        #expect(object["message"] as? String == code.message, "\(method) \(path): \(answer.text)", sourceLocation: sourceLocation)
        return object["cause"] as? String ?? ""
    }
}
