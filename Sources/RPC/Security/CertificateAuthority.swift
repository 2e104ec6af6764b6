#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
import SystemPackage
public import Logging
import Crypto
import SwiftASN1
import X509

/// The server's own certificate authority: made on first start in the data directory, it signs
/// the node's TLS certificate. Agents trust the node by being given `ca.pem`.
public struct CertificateAuthority: Sendable {
    /// Where the PEM files live.
    public struct Paths: Sendable, Hashable {
        public var caCertificate: String
        public var caKey: String
        public var serverCertificate: String
        public var serverKey: String

        public init(directory: String) {
            self.caCertificate = "\(directory)/ca.pem"
            self.caKey = "\(directory)/ca.key"
            self.serverCertificate = "\(directory)/server.pem"
            self.serverKey = "\(directory)/server.key"
        }
    }

    public let paths: Paths

    public init(directory: String) {
        self.paths = Paths(directory: directory)
    }

    /// Makes the CA when missing, and (re)issues the server certificate when missing, expiring
    /// within 30 days, or not valid for every name in `names` (DNS names or IP addresses) and
    /// for `node` (``NodeIdentity``: the certificate is also the node's client certificate
    /// when it calls the other nodes of its cluster).
    public func prepare(names: [String], node: String? = nil, logger: Logger) throws {
        let directory = FilePath(self.paths.caCertificate).removingLastComponent().string
        try AtomicFile.makePrivateDirectory(directory)

        let (caCertificate, caKey) = try self.loadOrCreateCA(logger: logger)
        var sans = try names.map(Self.generalName(for:))
        if let node { sans.append(.uniformResourceIdentifier(NodeIdentity.uri(node))) }
        if try self.serverCertificateIsCurrent(sans: sans, ca: caCertificate) { return }

        let key = P256.Signing.PrivateKey()
        let now = Date()
        let subject = try DistinguishedName {
            OrganizationName("Aspire")
            CommonName(names.first ?? "aspire-server")
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(825 * 86400),
            issuer: caCertificate.subject,
            subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(sans)
                SubjectKeyIdentifier(hash: .init(key.publicKey))
                AuthorityKeyIdentifier(keyIdentifier: try caCertificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            },
            issuerPrivateKey: caKey
        )
        try AtomicFile.write(try Certificate.PrivateKey(key).serializeAsPEM().pemString, to: self.paths.serverKey, mode: 0o600)
        try AtomicFile.write(try certificate.serializeAsPEM().pemString, to: self.paths.serverCertificate)
        logger.info(
            "issued server certificate",
            metadata: ["tls.names": "\(names.joined(separator: ","))", "tls.certificate": "\(self.paths.serverCertificate)"]
        )
    }

    private func loadOrCreateCA(logger: Logger) throws -> (Certificate, Certificate.PrivateKey) {
        let manager = FileManager.default
        if manager.fileExists(atPath: self.paths.caCertificate), manager.fileExists(atPath: self.paths.caKey) {
            let certificate = try Certificate(pemEncoded: String(contentsOfFile: self.paths.caCertificate, encoding: .utf8))
            let key = try Certificate.PrivateKey(pemEncoded: String(contentsOfFile: self.paths.caKey, encoding: .utf8))
            return (certificate, key)
        }
        let key = P256.Signing.PrivateKey()
        let now = Date()
        let name = try DistinguishedName {
            OrganizationName("Aspire")
            CommonName("Aspire CA \(UInt32.random(in: 0 ... .max))")
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(10 * 365 * 86400),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(key.publicKey))
            },
            issuerPrivateKey: .init(key)
        )
        let privateKey = Certificate.PrivateKey(key)
        try AtomicFile.write(try privateKey.serializeAsPEM().pemString, to: self.paths.caKey, mode: 0o600)
        try AtomicFile.write(try certificate.serializeAsPEM().pemString, to: self.paths.caCertificate)
        logger.notice("created certificate authority", metadata: ["tls.ca": "\(self.paths.caCertificate)"])
        return (certificate, privateKey)
    }

    private func serverCertificateIsCurrent(sans wanted: [GeneralName], ca: Certificate) throws -> Bool {
        guard let text = try? String(contentsOfFile: self.paths.serverCertificate, encoding: .utf8),
            FileManager.default.fileExists(atPath: self.paths.serverKey),
            let certificate = try? Certificate(pemEncoded: text)
        else { return false }
        guard certificate.issuer == ca.subject,
            certificate.notValidAfter > Date().addingTimeInterval(30 * 86400),
            let sans = try certificate.extensions.subjectAlternativeNames
        else { return false }
        // Exactly the names wanted: a node renamed must not keep proving its old name.
        return Set(sans) == Set(wanted)
    }

    /// A SAN entry for a DNS name or an IPv4/IPv6 literal.
    static func generalName(for name: String) throws -> GeneralName {
        if let bytes = IPAddress.bytes(name) { return .ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))) }
        return .dnsName(name)
    }
}
