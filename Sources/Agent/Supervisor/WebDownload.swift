import AsyncHTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import RPC
import SystemPackage

/// Fetches `http(s)://` packages with AsyncHTTPClient: HTTPS verifies the server against the
/// system's roots plus the agent's own CA (so the gateway of an Aspire server behind a TLS
/// proxy and any public web server both work), redirects are followed a few times, a stalled
/// transfer ends after `idleTimeout`, and a body larger than `maxBytes` is cut off.
///
/// The enrollment token goes along only to hosts the agent is enrolled with (its servers), so
/// the gateway's `/api/v1/server/package/download` can check it; no other web server sees it,
/// and such requests follow no redirects.
struct WebDownload: Sendable {
    var caFile: String?
    var enrollmentToken: String
    /// Host names and addresses of the agent's servers, read at each download (a `config`
    /// command may add servers).
    var serverHosts: @Sendable () -> Set<String>
    var connectTimeout: Duration = .seconds(10)
    var idleTimeout: Duration = .seconds(60)
    var totalTimeout: Duration = .seconds(3600)
    var maxBytes: Int64 = 4 << 30
    var logger: Logger

    func callAsFunction(_ url: URL, into handle: PackageFetcher.Destination) async throws(AspireError) {
        let shown = Self.redacted(url)
        // The enrollment token goes to the agent's own servers, and only over TLS: never in clear.
        let ours = self.serverHosts().contains(url.host?.lowercased() ?? "")
        let credentials = ours && url.scheme?.lowercased() == "https"
        let client: HTTPClient
        do {
            client = try self.client(followRedirects: !credentials)
        } catch {
            throw AspireError(.downloadFailed, "cannot set up TLS to fetch \(shown): \(error)")
        }
        var failure: AspireError?
        do {
            try await self.fetch(url, shown: shown, credentials: credentials, withheld: ours && !credentials, with: client, into: handle)
        } catch {
            failure = error
        }
        try? await client.shutdown()
        if let failure { throw failure }
    }

    /// `withheld`: the URL is one of the agent's servers, but plain HTTP, so the token was not sent.
    private func fetch(
        _ url: URL,
        shown: String,
        credentials: Bool,
        withheld: Bool,
        with client: HTTPClient,
        into handle: PackageFetcher.Destination
    ) async throws(AspireError) {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.headers.add(name: "User-Agent", value: "aspire-boot/\(AspireVersion.current)")
        if credentials, !self.enrollmentToken.isEmpty {
            request.headers.add(name: "Authorization", value: "Bearer \(self.enrollmentToken)")
        }
        var received: Int64 = 0
        do {
            let response = try await client.execute(request, timeout: .seconds(self.totalTimeout.components.seconds))
            guard response.status == .ok else {
                // A short plain-text or JSON body says why (the gateway's error envelope); HTML pages do not.
                var reason = ""
                let type = response.headers.first(name: "content-type") ?? ""
                if type.hasPrefix("text/plain") || type.contains("json") {
                    for try await buffer in response.body {
                        reason += String(buffer: buffer)
                        if reason.utf8.count > 600 { break }
                    }
                }
                let detail = reason.trimmed().prefix(300)
                let hint =
                    withheld && response.status.code == 401
                    ? "; the agent sends its enrollment token only over https: use an https URL, or aspire://package/ for the server's store"
                    : ""
                throw AspireError(
                    .downloadFailed,
                    "cannot fetch \(shown): HTTP \(response.status.code) \(response.status.reasonPhrase)\(detail.isEmpty ? "" : ": \(detail)")\(hint)"
                )
            }
            if let length = response.headers.first(name: "content-length").flatMap(Int64.init), length > self.maxBytes {
                throw AspireError(.downloadFailed, "cannot fetch \(shown): it is \(length) bytes, more than the \(self.maxBytes) a package may have")
            }
            for try await buffer in response.body {
                received += Int64(buffer.readableBytes)
                guard received <= self.maxBytes else {
                    throw AspireError(.downloadFailed, "cannot fetch \(shown): more than the \(self.maxBytes) bytes a package may have")
                }
                _ = try handle.writeAll(buffer.readableBytesView)
            }
        } catch let error as AspireError {
            throw error
        } catch {
            throw AspireError(.downloadFailed, "cannot fetch \(shown) (after \(received) bytes): \(Self.describe(error))")
        }
        self.logger.info("package downloaded", metadata: ["url": "\(shown)", "bytes": "\(received)"])
    }

    private func client(followRedirects: Bool) throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile = self.caFile {
            tls.additionalTrustRoots = [.certificates(try NIOSSLCertificate.fromPEMFile(caFile))]
        }
        var configuration = HTTPClient.Configuration(
            tlsConfiguration: tls,
            redirectConfiguration: followRedirects ? .follow(max: 5, allowCycles: false) : .disallow,
            timeout: .init(
                connect: .seconds(self.connectTimeout.components.seconds),
                read: .seconds(self.idleTimeout.components.seconds)
            )
        )
        // A refused connection or certificate is the answer: fail now, not at the deadline.
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    /// The URL without user info or query, which may carry secrets, for messages and logs.
    static func redacted(_ url: URL) -> String {
        guard var components = URLComponents(url: url, resolvingAgainstBaseURL: false) else { return "the package URL" }
        components.user = nil
        components.password = nil
        if components.query != nil { components.query = "…" }
        return components.string ?? "the package URL"
    }

    /// AsyncHTTPClient's and NIO's errors in words an operator can act on.
    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "connection timed out"
            case .readTimeout: return "the server stopped sending (read timeout)"
            case .deadlineExceeded: return "the download took too long"
            case .redirectLimitReached: return "too many redirects"
            case .redirectCycleDetected: return "a redirect loop"
            case .remoteConnectionClosed: return "the server closed the connection"
            default: return "\(error)"
            }
        }
        if "\(error)".contains("CERTIFICATE_VERIFY_FAILED") {
            return "TLS: the server's certificate is not trusted (give the agent its CA with --ca, or use a certificate of a CA the system trusts)"
        }
        if let error = error as? NIOSSLError { return "TLS: \(error)" }
        if let error = error as? BoringSSLError { return "TLS: \(error)" }
        return "\(error)"
    }
}
