#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
public import GRPCCore
import Crypto
import SwiftASN1
public import X509

/// Who an agent is: its AgentSN, carried in its client certificate as the SAN URI
/// `aspire://agent/<AgentSN>`. The node's CA signs that certificate at enrollment; from then on
/// the node takes the AgentSN from the verified certificate and never from a message.
public enum AgentIdentity {
    /// An AgentSN is 1 to 64 characters of letters, digits and `.-_:`; it names the host in
    /// the store, in logs and in its certificate, so nothing else is let through.
    public static func validate(agentSN: String) throws(AspireError) {
        guard !agentSN.isEmpty else {
            throw AspireError(.badRequest, "agent_sn is empty")
        }
        guard agentSN.utf8.count <= 64,
            agentSN.utf8.allSatisfy({ byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || byte == 0x2E || byte == 0x2D || byte == 0x5F || byte == 0x3A
            })
        else {
            throw AspireError(.badRequest, "agent_sn must be 1-64 characters of letters, digits and . - _ :")
        }
    }

    static let uriPrefix = "aspire://agent/"

    /// The SAN URI that names `agentSN`.
    public static func uri(_ agentSN: String) -> String {
        Self.uriPrefix + agentSN
    }

    /// The AgentSN a certificate names, or nil when it names none (or more than one, or an
    /// invalid one).
    public static func agentSN(of certificate: Certificate) -> String? {
        Self.name(in: certificate, prefix: Self.uriPrefix)
    }

    /// The one name a certificate's SAN URIs give after `prefix`, when it is a valid one.
    static func name(in certificate: Certificate, prefix: String) -> String? {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return nil }
        let named = names.compactMap { name -> String? in
            guard case .uniformResourceIdentifier(let uri) = name, uri.hasPrefix(prefix) else { return nil }
            return String(uri.dropFirst(prefix.count))
        }
        guard named.count == 1, let name = named.first, (try? Self.validate(agentSN: name)) != nil else { return nil }
        return name
    }

    /// The certificate's serial number in lowercase hex: what the store records to tell the
    /// host's current certificate from earlier ones.
    public static func serial(of certificate: Certificate) -> String {
        Array(certificate.serialNumber.bytes).hexString
    }
}

/// Who a server node is to the other nodes of its cluster: its certificate (the node's TLS
/// certificate, signed by the CA the nodes share) carries the SAN URI `aspire://node/<name>`, and
/// node-to-node calls (``Aspire_V1_NodeLink``) are made with it as the client certificate.
public enum NodeIdentity {
    static let uriPrefix = "aspire://node/"

    /// A node name is what an AgentSN may be: 1 to 64 letters, digits and `.-_:`.
    public static func validate(name: String) throws(AspireError) {
        do {
            try AgentIdentity.validate(agentSN: name)
        } catch {
            throw AspireError(.badRequest, "node name '\(name)' must be 1-64 characters of letters, digits and . - _ :")
        }
    }

    public static func uri(_ name: String) -> String {
        Self.uriPrefix + name
    }

    /// The node a certificate names, or nil.
    public static func name(of certificate: Certificate) -> String? {
        AgentIdentity.name(in: certificate, prefix: Self.uriPrefix)
    }
}

/// The host's own key and certificate, in the agent's data directory: `agent.key` (P-256, 0600,
/// never leaves the host) and `agent.pem` (signed by the node's CA at enrollment, renewed over the
/// authenticated connection before it expires).
public struct AgentCredentials: Sendable {
    public let keyPath: String
    public let certificatePath: String

    public init(directory: String) {
        self.keyPath = "\(directory)/agent.key"
        self.certificatePath = "\(directory)/agent.pem"
    }

    /// The host's key, made on first use.
    public func loadOrCreateKey() throws -> Certificate.PrivateKey {
        if let text = try? String(contentsOfFile: self.keyPath, encoding: .utf8) {
            return try Certificate.PrivateKey(pemEncoded: text)
        }
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        try AtomicFile.write(Array(try key.serializeAsPEM().pemString.utf8), to: self.keyPath, mode: 0o600)
        return key
    }

    /// The certificate kept with the key, when there is one and it belongs to the key.
    public func certificate() -> Certificate? {
        guard let text = try? String(contentsOfFile: self.certificatePath, encoding: .utf8),
            let certificate = try? Certificate(pemEncoded: text),
            let keyText = try? String(contentsOfFile: self.keyPath, encoding: .utf8),
            let key = try? Certificate.PrivateKey(pemEncoded: keyText),
            certificate.publicKey == key.publicKey
        else { return nil }
        return certificate
    }

    /// Keeps a certificate the node issued.
    public func store(certificatePEM: String) throws {
        try AtomicFile.write(Array(certificatePEM.utf8), to: self.certificatePath, mode: 0o644)
    }

    /// A certificate request (DER) for the host's key naming `agentSN`.
    public static func request(agentSN: String, key: Certificate.PrivateKey) throws -> [UInt8] {
        let request = try CertificateSigningRequest(
            version: .v1,
            subject: try DistinguishedName { CommonName(agentSN) },
            privateKey: key,
            attributes: CertificateSigningRequest.Attributes()
        )
        var serializer = DER.Serializer()
        try serializer.serialize(request)
        return serializer.serializedBytes
    }
}

extension CertificateAuthority {
    /// The CA loaded once, to sign agents' certificates.
    public struct Signer: Sendable {
        public let certificate: Certificate
        let key: Certificate.PrivateKey

        /// How long an agent's certificate is valid; agents renew after a third of it.
        public static let agentLifetime: TimeInterval = 30 * 86400

        /// Signs a certificate for the key of `requestDER` naming `agentSN`, valid for
        /// `lifetime` seconds from now (and from a tenth of that, at most an hour, earlier, for
        /// clocks behind). The request must be
        /// well formed, signed by its own key, and for a P-256 key.
        public func issueAgentCertificate(
            requestDER: [UInt8],
            agentSN: String,
            lifetime: TimeInterval = Self.agentLifetime,
            now: Date = Date()
        ) throws -> Certificate {
            try AgentIdentity.validate(agentSN: agentSN)
            let request: CertificateSigningRequest
            do {
                request = try CertificateSigningRequest(derEncoded: requestDER)
            } catch {
                throw AspireError(.badRequest, "csr is not a DER certificate request (PKCS#10): \(error)")
            }
            guard request.publicKey.isValidSignature(request.signature, for: request) else {
                throw AspireError(.badRequest, "csr is not signed by the key it names")
            }
            guard P256.Signing.PublicKey(request.publicKey) != nil else {
                throw AspireError(.badRequest, "csr must be for a P-256 key")
            }
            return try Certificate(
                version: .v3,
                serialNumber: Certificate.SerialNumber(),
                publicKey: request.publicKey,
                notValidBefore: now.addingTimeInterval(-min(3600, lifetime / 10)),
                notValidAfter: now.addingTimeInterval(lifetime),
                issuer: self.certificate.subject,
                subject: try DistinguishedName {
                    OrganizationName("Aspire agents")
                    CommonName(agentSN)
                },
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    try ExtendedKeyUsage([.clientAuth])
                    SubjectAlternativeNames([.uniformResourceIdentifier(AgentIdentity.uri(agentSN))])
                    AuthorityKeyIdentifier(keyIdentifier: try self.certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
                },
                issuerPrivateKey: self.key
            )
        }
    }

    /// The CA, loaded to sign agents' certificates; ``prepare(names:logger:)`` makes it first.
    public func signer() throws -> Signer {
        let certificate = try Certificate(pemEncoded: String(contentsOfFile: self.paths.caCertificate, encoding: .utf8))
        let key = try Certificate.PrivateKey(pemEncoded: String(contentsOfFile: self.paths.caKey, encoding: .utf8))
        return Signer(certificate: certificate, key: key)
    }
}

extension Certificate {
    /// PEM text of the certificate.
    public var pemText: String {
        get throws { try self.serializeAsPEM().pemString }
    }
}

extension Aspire_V1_Bootstrap.Client {
    /// Enrolls `key` as `agentSN` with a join token; returns the certificate (PEM) the node
    /// signed. The one enrollment call of the agent, the fleet simulator and the tests.
    public func enroll(
        agentSN: String,
        hostname: String,
        key: Certificate.PrivateKey,
        joinToken: String,
        timeout: Duration?
    ) async throws -> Aspire_V1_EnrollResponse {
        var request = Aspire_V1_EnrollRequest()
        request.agentSn = agentSN
        request.hostname = hostname
        request.csr = Data(try AgentCredentials.request(agentSN: agentSN, key: key))
        return try await self.enroll(request, metadata: ["authorization": "Bearer \(joinToken)"], options: .failFast(timeout: timeout))
    }
}

extension ClientIdentity {
    /// A new key enrolled as `agentSN` over `client` (TLS, no client certificate), held in
    /// memory: simulated agents and tests.
    public static func enroll(
        agentSN: String,
        joinToken: String,
        client: GRPCClient<some ClientTransport>,
        timeout: Duration? = .seconds(30)
    ) async throws -> ClientIdentity {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let response = try await Aspire_V1_Bootstrap.Client(wrapping: client).enroll(
            agentSN: agentSN, hostname: agentSN, key: key, joinToken: joinToken, timeout: timeout
        )
        return ClientIdentity(certificatePEM: response.certificate, keyPEM: try key.serializeAsPEM().pemString)
    }
}
