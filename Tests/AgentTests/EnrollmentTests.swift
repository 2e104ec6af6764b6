@testable import Agent
import Crypto
import Foundation
import Logging
import RPC
import Testing
import TestSupport
import X509

@Suite("Agent certificates")
struct EnrollmentTests {
    @Test("The CA signs a request for the host's own key, naming only its AgentSN; renewal falls due after a third of the life")
    func issueAndRenewalDue() async throws {
        try await withTemporaryDirectory("aspire-ca") { directory in
            let authority = CertificateAuthority(directory: "\(directory)/tls")
            try authority.prepare(names: ["localhost"], logger: Logger(label: "test"))
            let signer = try authority.signer()
            let credentials = AgentCredentials(directory: directory)
            let key = try credentials.loadOrCreateKey()
            // The key file is the host's alone, and the same key is read back.
            let mode = try FileManager.default.attributesOfItem(atPath: credentials.keyPath)[.posixPermissions] as? Int
            #expect(mode == 0o600)
            #expect(try credentials.loadOrCreateKey().publicKey == key.publicKey)

            let issued = Date(timeIntervalSince1970: 1_800_000_000)
            let certificate = try signer.issueAgentCertificate(
                requestDER: try AgentCredentials.request(agentSN: "host-1", key: key), agentSN: "host-1", lifetime: 30 * 86400, now: issued
            )
            #expect(AgentIdentity.agentSN(of: certificate) == "host-1")
            #expect(certificate.publicKey == key.publicKey)
            #expect(certificate.issuer == signer.certificate.subject)
            #expect(try certificate.extensions.basicConstraints == .notCertificateAuthority)

            // notValidBefore is an hour early for clocks behind: the life is 30 days and 1 hour.
            let third = certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore) / 3
            #expect(!Enrollment.isRenewalDue(certificate, now: issued.addingTimeInterval(9 * 86400)))
            #expect(Enrollment.isRenewalDue(certificate, now: certificate.notValidBefore.addingTimeInterval(third)))
            #expect(Enrollment.isRenewalDue(certificate, now: issued.addingTimeInterval(11 * 86400)))

            // A request for a key other than P-256, one that is not DER, and a bad AgentSN are refused.
            let other = Certificate.PrivateKey(P384.Signing.PrivateKey())
            #expect(throws: AspireError.self) {
                try signer.issueAgentCertificate(requestDER: try AgentCredentials.request(agentSN: "host-1", key: other), agentSN: "host-1")
            }
            #expect(throws: AspireError.self) {
                try signer.issueAgentCertificate(requestDER: [0x30, 0x03, 0x02, 0x01, 0x00], agentSN: "host-1")
            }
            #expect(throws: AspireError.self) {
                try signer.issueAgentCertificate(requestDER: try AgentCredentials.request(agentSN: "x", key: key), agentSN: "../etc")
            }
        }
    }
}
