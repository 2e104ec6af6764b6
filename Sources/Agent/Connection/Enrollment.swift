#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RPC
import X509

/// The host's own certificate: made by enrolling with a join token on first start (the key is
/// made here and never leaves the host), presented on every connection after, renewed over the
/// authenticated connection once a third of its life has passed, and given up (then enrolled
/// again, with the join token) when it expired or the server took it back.
struct Enrollment: Sendable {
    let credentials: AgentCredentials
    let agentSN: String
    let joinToken: String
    let logger: Logger

    init(configuration: AgentConfiguration, agentSN: String, logger: Logger) {
        self.credentials = AgentCredentials(directory: configuration.dataDirectory)
        self.agentSN = agentSN
        self.joinToken = configuration.enrollmentToken
        self.logger = logger
    }

    /// The certificate to connect with, when the host holds a usable one.
    func currentCertificate(now: Date = Date()) -> Certificate? {
        guard let certificate = self.credentials.certificate(),
            AgentIdentity.agentSN(of: certificate) == self.agentSN,
            certificate.notValidAfter > now
        else { return nil }
        return certificate
    }

    /// The certificate and key to connect with.
    func identity() throws -> ClientIdentity? {
        guard self.currentCertificate() != nil else { return nil }
        return ClientIdentity(
            certificatePEM: try String(contentsOfFile: self.credentials.certificatePath, encoding: .utf8),
            keyPEM: try String(contentsOfFile: self.credentials.keyPath, encoding: .utf8)
        )
    }

    /// Enrolls through the node at `address` (TLS, no client certificate) and keeps the
    /// certificate it signs.
    func enroll(at address: HostPort, server: HostPort, caFile: String, timeout: Duration) async throws {
        guard !self.joinToken.isEmpty else {
            throw AspireError(
                .unauthenticated,
                "this host has no certificate yet: give it a join token (--token-file: the server's enroll.token, or one from 'aspirectl token create')"
            )
        }
        let key = try self.credentials.loadOrCreateKey()
        let transport = try Transports.client(address: address, authority: server.host, security: .tls(caFile: caFile))
        let response = try await withGRPCClient(transport: transport) { client in
            try await Aspire_V1_Bootstrap.Client(wrapping: client).enroll(
                agentSN: self.agentSN, hostname: ProcessInfo.processInfo.hostName, key: key, joinToken: self.joinToken, timeout: timeout
            )
        }
        try self.credentials.store(certificatePEM: response.certificate)
        self.logger.notice(
            "enrolled: this host has its own certificate",
            metadata: ["agent.sn": "\(self.agentSN)", "cert.path": "\(self.credentials.certificatePath)", "cert.not_after": "\(response.notAfter)"]
        )
    }

    /// Renews the certificate over `client` (connected with it) once a third of its life has
    /// passed; the next connection presents the new one.
    func renewIfDue(client: GRPCClient<HTTP2ClientTransport.Posix>, now: Date = Date()) async throws {
        guard let certificate = self.currentCertificate(now: now), Self.isRenewalDue(certificate, now: now) else { return }
        var request = Aspire_V1_RenewRequest()
        request.csr = Data(try AgentCredentials.request(agentSN: self.agentSN, key: try self.credentials.loadOrCreateKey()))
        let response = try await Aspire_V1_Bootstrap.Client(wrapping: client).renew(request, options: .failFast(timeout: .seconds(30)))
        try self.credentials.store(certificatePEM: response.certificate)
        self.logger.notice("certificate renewed", metadata: ["agent.sn": "\(self.agentSN)", "cert.not_after": "\(response.notAfter)"])
    }

    /// How long until the next look at the certificate: a tenth of its life, at most an hour.
    var renewalCheckInterval: Duration {
        guard let certificate = self.currentCertificate() else { return .seconds(60) }
        let life = certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore)
        return .seconds(max(1, min(3600, life / 10)))
    }

    /// Whether a third of the certificate's life has passed: renewing then leaves two thirds
    /// (20 days of 30) for a host that is down or cut off to come back in time.
    static func isRenewalDue(_ certificate: Certificate, now: Date) -> Bool {
        let life = certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore)
        return now >= certificate.notValidBefore.addingTimeInterval(life / 3)
    }

    /// Gives up the certificate the server refused (the host was deleted, or its certificate
    /// taken back): the next round enrolls again with the join token.
    func forget(because reason: String) {
        guard FileManager.default.fileExists(atPath: self.credentials.certificatePath) else { return }
        try? FileManager.default.removeItem(atPath: self.credentials.certificatePath)
        self.logger.warning(
            "the server refused this host's certificate; enrolling again with the join token",
            metadata: ["agent.sn": "\(self.agentSN)", "reason": "\(reason)"]
        )
    }
}
