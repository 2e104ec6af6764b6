import Foundation
import RPC
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Real HTTP against a node's REST gateway (URLSession, i.e. libcurl).
struct RESTClient {
    let base: String
    /// Sent as `Authorization: Bearer <token>` unless nil.
    var token: String?

    init(base: String, token: String?) {
        self.base = base
        self.token = token
    }

    init(_ node: TestNode, token: String? = nil) throws {
        self.base = "http://\(node.httpAddress)"
        self.token = try token ?? node.adminToken
    }

    struct Answer {
        var status: Int
        var data: Data
        var json: Any?

        /// The body as a JSON object (fails the test otherwise).
        var object: [String: Any] {
            get throws {
                guard let object = self.json as? [String: Any] else {
                    throw TestFailure("not a JSON object (HTTP \(self.status)): \(String(decoding: self.data, as: UTF8.self))")
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
        var request = URLRequest(url: URL(string: self.base + path)!)
        request.httpMethod = method
        request.timeoutInterval = 60
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let json {
            request.httpBody = try JSONSerialization.data(withJSONObject: json)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let body { request.httpBody = body }
        if let contentType { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        return Answer(status: status, data: data, json: try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]))
    }

    /// A call that must succeed with the envelope's status 0; answers the body.
    func ok(_ method: String, _ path: String, json: Any? = nil, body: Data? = nil, contentType: String? = nil) async throws -> [String: Any] {
        let answer = try await self.call(method, path, json: json, body: body, contentType: contentType)
        guard answer.status == 200, answer.code == 0 else {
            throw TestFailure("\(method) \(path) → HTTP \(answer.status): \(answer.text)")
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
