import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import HummingbirdAuth
import RPC

/// What a signed-in browser has on the node: the operator's token (never sent back to the
/// browser), who it is, and the CSRF token its forms carry. Each page forwards the token to the
/// Admin service, so a revoked token ends the session at its next page and a role sees only
/// what it may.
struct ConsoleSession: Codable, Sendable {
    var token: String
    var csrf: String
    var name: String
    var role: String

    var metadata: Metadata { ["authorization": .string("Bearer \(self.token)")] }

    /// Whether this operator's role may call the Admin method `rpc`: what the pages offer (the
    /// service decides, and checks scopes, whatever a page offers).
    func may(_ rpc: String) -> Bool {
        guard let role = Role(rawValue: self.role), let permission = AccessTable.permission(route: rpc) else { return false }
        return role.permissions.contains(permission)
    }

    /// True when `sent` (a form's `csrf` field) is this session's token.
    func accepts(csrf sent: String) -> Bool {
        !sent.isEmpty && Secret.matches(sent, self.csrf)
    }
}

/// Console sessions: a random id in an HttpOnly, SameSite=Strict cookie (Secure when the
/// browser came over TLS, here or at a proxy that says `X-Forwarded-Proto: https`), the session
/// itself in this node's memory (hummingbird-auth's session storage) for `lifetime`.
struct ConsoleSessions: Sendable {
    static let cookieName = "aspire_session"
    /// The double-submit cookie of the sign-in form (there is no session yet to hold its token).
    static let signInCookieName = "aspire_signin"

    let driver: MemoryPersistDriver<ContinuousClock>
    let lifetime: Duration
    private let plain: SessionStorage<ConsoleSession>
    private let secure: SessionStorage<ConsoleSession>

    init(lifetime: Duration = .seconds(12 * 3600)) {
        let driver = MemoryPersistDriver(configuration: .init(tidyFrequency: .seconds(60)))
        func storage(secure: Bool) -> SessionStorage<ConsoleSession> {
            SessionStorage(
                driver,
                configuration: SessionStorageConfiguration(
                    sessionCookieParameters: SessionCookieParameters(name: Self.cookieName, path: "/", secure: secure, sameSite: .strict),
                    keyPrefix: "console."
                )
            )
        }
        self.driver = driver
        self.lifetime = lifetime
        self.plain = storage(secure: false)
        self.secure = storage(secure: true)
    }

    static func overTLS(_ request: Request) -> Bool {
        request.uri.scheme == .https || request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
    }

    private func storage(_ request: Request) -> SessionStorage<ConsoleSession> {
        Self.overTLS(request) ? self.secure : self.plain
    }

    /// The session the request's cookie names, if it is still alive.
    func load(_ request: Request) async -> ConsoleSession? {
        try? await self.storage(request).load(request: request)
    }

    /// Starts a session; the answer must set the returned cookie.
    func start(_ session: ConsoleSession, for request: Request) async throws -> Cookie {
        try await self.storage(request).save(session: session, expiresIn: self.lifetime)
    }

    /// Ends the request's session; the cookie that clears it in the browser.
    func end(_ request: Request) async -> Cookie? {
        try? await self.storage(request).delete(request: request)
    }

    /// A fresh random token (CSRF, sign-in form): 256 bits from the system's generator.
    static func randomToken() -> String {
        Data((0 ..< 32).map { _ in UInt8.random(in: .min ... .max) }).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
