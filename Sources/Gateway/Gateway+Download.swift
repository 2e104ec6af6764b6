import AsyncAlgorithms
import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import NIOCore
import RPC

/// `GET /api/v1/server/package/download`: a package file of the store, streamed from the
/// PackageStore service chunk by chunk. The first chunk (or the service's error) is awaited
/// before anything is answered, so a missing package is a 404 envelope, not a truncated 200;
/// after that a channel with back-pressure carries the chunks, so a slow client holds the
/// service's reads back instead of filling memory.
extension Gateway {
    func download(_ request: Request, metadata: Metadata) async throws -> Response {
        let query = Query(request)
        var message = Aspire_V1_DownloadRequest()
        // The route requires all three (checked before this runs).
        let parts = ["os", "arch", "file"].map(query.string)
        message.path = parts.joined(separator: "/")
        let chunks = AsyncThrowingChannel<Aspire_V1_DownloadChunk, any Error>()
        let call = Task {
            do {
                try await self.packages.download(message, metadata: metadata) { response in
                    for try await chunk in response.messages {
                        await chunks.send(chunk)
                        try Task.checkCancellation()
                    }
                }
                chunks.finish()
            } catch {
                chunks.fail(error)
            }
        }
        let first: Aspire_V1_DownloadChunk?
        do {
            var iterator = chunks.makeAsyncIterator()
            first = try await iterator.next()
        } catch {
            call.cancel()
            throw error
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/octet-stream"
        headers[.contentDisposition] = "attachment; filename=\"\(parts[2])\""
        if let first, first.size > 0 { headers[.contentLength] = String(first.size) }
        let body = ResponseBody { writer in
            do {
                if let first { try await writer.write(ByteBuffer(bytes: first.data)) }
                for try await chunk in chunks {
                    try await writer.write(ByteBuffer(bytes: chunk.data))
                }
                try await writer.finish(nil)
            } catch {
                call.cancel()
                throw error
            }
        }
        return Response(status: .ok, headers: headers, body: body)
    }
}

/// Links for the seed's plain-HTTP agents: they cannot fetch `aspire://package/...`, so their
/// jobs name this gateway's download route instead, signed with the enrollment token when the
/// gateway holds it (see ``DownloadLink``).
extension Gateway {
    /// The http(s) url on the host and port the agent reached for a store url; nil for any
    /// other url, or when the request names no host.
    func downloadURL(for url: String, request: Request) -> String? {
        guard let file = StoreFile(url: url), let authority = request.head.authority, !authority.isEmpty else { return nil }
        let link = DownloadLink(file: file, expires: Int64(Date().timeIntervalSince1970) + DownloadLink.lifetime)
        let scheme = request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https" ? "https" : "http"
        var query = [("os", file.os), ("arch", file.arch), ("file", file.file)].map { "\($0)=\(Self.queryEncoded($1))" }
        if let key = self.configuration.agentToken {
            query += ["expires=\(link.expires)", "sig=\(link.signature(key: key))"]
        }
        return "\(scheme)://\(authority)/api/v1/server/package/download?\(query.joined(separator: "&"))"
    }

    /// The gateway's own credential for a download by a valid link; nil when the request
    /// carries no link (then it needs a bearer token).
    func downloadLinkMetadata(_ request: Request) throws -> Metadata? {
        let query = Query(request)
        let signature = query.string("sig")
        guard !signature.isEmpty else { return nil }
        guard let key = self.configuration.agentToken else {
            throw AspireError(.unauthenticated, "this gateway does not hand out download links; send 'Authorization: Bearer <enrollment token>'")
        }
        let file = StoreFile(os: query.string("os"), arch: query.string("arch"), file: query.string("file"))
        let link = DownloadLink(file: file, expires: try query.integer("expires") ?? 0)
        guard link.isValid(signature: signature, key: key) else {
            throw AspireError(.unauthenticated, "the download link is not valid or has expired; the agent's next status report brings a new one")
        }
        return try self.ownMetadata()
    }

    /// Percent-encodes all but RFC 3986's unreserved characters (a `+` would read as a space).
    private static func queryEncoded(_ value: String) -> String {
        let unreserved = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
        return value.addingPercentEncoding(withAllowedCharacters: unreserved) ?? value
    }
}
