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
    func handleDownload(_ request: Request, metadata: Metadata) async throws -> Response {
        let query = Query(request)
        var message = Aspire_V1_DownloadRequest()
        var parts: [String] = []
        for field in ["os", "arch", "file"] {
            let value = query.string(field)
            guard !value.isEmpty else { throw AspireError(.badRequest, "GET /api/v1/server/package/download needs os, arch and file") }
            parts.append(value)
        }
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
