import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RPC
import Server
import Testing
import TestSupport
import SwiftASN1
import X509

/// Hosts' certificates on in-process nodes: renewal, and revocation across a cluster.
@Suite("Host identity")
struct IdentityTests {
    @Test("Renew gives the host a new certificate; the replaced one is refused from then on, the new one is taken")
    func renewal() async throws {
        try await withLocalNode { node in
            let first = try await ScriptedAgent.identity("renewing", node: node)
            let renewed = try await self.withAgentClient(first, node: node) { client in
                var request = Aspire_V1_RenewRequest()
                let key = try Certificate.PrivateKey(pemEncoded: first.keyPEM)
                request.csr = Data(try AgentCredentials.request(agentSN: "renewing", key: key))
                return try await Aspire_V1_Bootstrap.Client(wrapping: client).renew(request)
            }
            let second = ClientIdentity(certificatePEM: renewed.certificate, keyPEM: first.keyPEM)
            #expect(try Certificate(pemEncoded: second.certificatePEM).serialNumber != Certificate(pemEncoded: first.certificatePEM).serialNumber)
            let refused = await #expect(throws: RPCError.self) { try await self.sayInit("renewing", as: first, node: node) }
            #expect(refused?.code == .permissionDenied)
            #expect(try await self.sayInit("renewing", as: second, node: node).action == .accept)
            // A certificate renews only itself: the replaced one cannot renew again.
            let again = await #expect(throws: RPCError.self) {
                try await self.withAgentClient(first, node: node) { client in
                    var request = Aspire_V1_RenewRequest()
                    request.csr = Data(try AgentCredentials.request(agentSN: "renewing", key: try Certificate.PrivateKey(pemEncoded: first.keyPEM)))
                    return try await Aspire_V1_Bootstrap.Client(wrapping: client).renew(request)
                }
            }
            #expect(again?.code == .permissionDenied)
        }
    }

    @Test("A host that lost its enrollment's answer asks again with the same key and gets a certificate; another key is refused; the token is used once")
    func enrollAgain() async throws {
        try await withLocalNode { node in
            let token = node.node.enrollmentToken
            let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
            let enroll = { (key: Certificate.PrivateKey) in
                try await node.withClient(token: token) { client in
                    try await Aspire_V1_Bootstrap.Client(wrapping: client).enroll(agentSN: "lost-answer", hostname: "h", key: key, joinToken: token, timeout: .seconds(30))
                }
            }
            let first = try await enroll(key)
            let again = try await enroll(key)
            let keyPEM = try key.serializeAsPEM().pemString
            let (lost, kept) = (ClientIdentity(certificatePEM: first.certificate, keyPEM: keyPEM), ClientIdentity(certificatePEM: again.certificate, keyPEM: keyPEM))
            #expect(try Certificate(pemEncoded: kept.certificatePEM).serialNumber != Certificate(pemEncoded: lost.certificatePEM).serialNumber)
            #expect(try await self.sayInit("lost-answer", as: kept, node: node).action == .accept, "the certificate asked for again is the host's")
            let replaced = await #expect(throws: RPCError.self) { try await self.sayInit("lost-answer", as: lost, node: node) }
            #expect(replaced?.code == .permissionDenied, "only one certificate of a host is current")
            // Someone else with the join token, under the host's name, with a key of their own.
            let other = await #expect(throws: RPCError.self) { try await enroll(Certificate.PrivateKey(P256.Signing.PrivateKey())) }
            #expect(other?.code == .failedPrecondition && other?.message.contains("already enrolled") == true)
            let identity = try #require(try await node.node.store.identity(agentSN: "lost-answer"))
            let uses = try await node.node.store.joinTokens(all: true).first { $0.id == identity.token }?.uses
            #expect(uses == 1, "asking again takes no second use of the token")
        }
    }

    @Test(
        "A host banned on one node has its stream closed by the node that holds it, and every node refuses it; deleted, it may enroll again",
        .enabled(if: ClusterTests.postgres != nil, "needs ASPIRE_TEST_POSTGRES_URL (scripts/postgres-for-tests.sh)")
    )
    func revocationAcrossNodes() async throws {
        try await withLocalCluster(nodes: 2, postgres: try #require(ClusterTests.postgres)) { nodes in
            let identity = try await ScriptedAgent.identity("revoked", node: nodes[1])
            var ban = Aspire_V1_BanHostRequest()
            ban.agentSn = "revoked"
            ban.reason = "test"
            try await ScriptedAgent.connect("revoked", to: nodes[1]) { agent in
                let banned = try await nodes[0].admin { try await $0.banHost(ban) }
                #expect(banned.identity == "banned")
                try await eventually(timeout: .seconds(10), "node2 to close the banned host's stream") { agent.ended }
            }
            for node in nodes {
                let refused = await #expect(throws: RPCError.self) { try await self.sayInit("revoked", as: identity, node: node) }
                #expect(refused?.code == .permissionDenied)
                #expect(refused?.message.contains("banned") == true)
            }
            // Lifted, then deleted: the old certificate stays refused, and the host enrolls anew.
            ban.lift = true
            _ = try await nodes[0].admin { try await $0.banHost(ban) }
            var delete = Aspire_V1_DeleteHostRequest()
            delete.agentSn = "revoked"
            let deleted = try await nodes[1].admin { try await $0.deleteHost(delete) }
            #expect(deleted.status == "deleted" && deleted.identity == "none")
            let stale = await #expect(throws: RPCError.self) { try await self.sayInit("revoked", as: identity, node: nodes[0]) }
            #expect(stale?.code == .permissionDenied)
            let fresh = try await nodes[0].withClient(token: nodes[0].node.enrollmentToken) { client in
                try await ClientIdentity.enroll(agentSN: "revoked", joinToken: nodes[0].node.enrollmentToken, client: client)
            }
            // Not refused: accepted, or sent to the node the cluster's hashing picks.
            #expect([.accept, .redirect].contains(try await self.sayInit("revoked", as: fresh, node: nodes[1]).action))
        }
    }

    private func withAgentClient<Result: Sendable>(
        _ identity: ClientIdentity,
        node: LocalNode,
        _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws -> Result {
        let transport = try Transports.client(address: node.address, security: .tls(caFile: node.caFile, identity: identity))
        return try await withGRPCClient(transport: transport, handleClient: body)
    }

    private func sayInit(_ agentSN: String, as identity: ClientIdentity, node: LocalNode) async throws -> Aspire_V1_InitResponse {
        try await self.withAgentClient(identity, node: node) { client in
            var request = Aspire_V1_InitRequest()
            request.agentSn = agentSN
            return try await Aspire_V1_Bootstrap.Client(wrapping: client).`init`(request)
        }
    }
}

extension IdentityTests {
    @Test("A real boot agent renews its certificate over its connection when a third of its life has passed, and stays connected")
    func agentRenews() async throws {
        let directory = try makeTemporaryDirectory("identity-renew")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address(), arguments: ["--agent-certificate-lifetime", "60"])
        let agent = try TestAgent.start(in: directory, connectingTo: node)
        // The certificate as enrolled, read as soon as it is written (it is due for renewal 20 s
        // later: reading it after the connection, on a loaded machine, could read the renewed one).
        let path = "\(agent.dataDirectory)/agent.pem"
        var enrolled: Certificate?
        try await eventually(timeout: .seconds(30), interval: .milliseconds(10), "the agent to enroll\n\(agent.process.log)") {
            enrolled = try? Certificate(pemEncoded: String(contentsOfFile: path, encoding: .utf8))
            return enrolled != nil
        }
        let first = try #require(enrolled)
        try await node.waitForAgent(agent)
        try await eventually(timeout: .seconds(60), "the agent to renew its certificate\n\(agent.process.log)") {
            agent.process.log.contains("certificate renewed")
        }
        let renewed = try Certificate(pemEncoded: String(contentsOfFile: "\(agent.dataDirectory)/agent.pem", encoding: .utf8))
        #expect(renewed.serialNumber != first.serialNumber && renewed.publicKey == first.publicKey)
        #expect(renewed.notValidAfter > first.notValidAfter)
        // Still held, and commands still run.
        let result = try await node.run("echo renewed", on: agent.agentSN)
        #expect(String(decoding: result.data, as: UTF8.self) == "renewed\n")
    }
}
