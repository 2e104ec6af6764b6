import Foundation
import GRPCCore
import Hummingbird
import MultipartKit
import NIOCore
import RPC
import SwiftProtobuf
import Synchronization

/// `curl -F name=BasicAgent -F version=1.5.6 -F os=linux -F arch=x86_64 -F file=@BasicAgent.rpm`:
/// the form's text fields name the package (the query may too), the file part carries the bytes,
/// streamed to the service as they arrive. Text fields must come before the file part.
extension Gateway {
    /// `authorize` sees the text fields before the file's first byte goes anywhere (the
    /// console checks its CSRF token there); what it throws ends the upload.
    func multipartUpload(
        _ request: Request,
        boundary: String,
        query: Query,
        metadata: Metadata,
        authorize: (@Sendable ([String: String]) throws(AspireError) -> Void)? = nil
    ) async throws -> Aspire_V1_Package {
        let failure = Mutex<AspireError?>(nil)
        let body = request.body
        let defaults = ["name", "version", "os", "arch", "file", "sha256"].reduce(into: [String: String]()) { $0[$1] = query.string($1) }
        do {
            return try await self.admin.uploadPackage(metadata: metadata) { writer in
                do {
                    try await Self.streamForm(body, boundary: boundary, defaults: defaults, authorize: authorize, to: writer)
                } catch let error as AspireError {
                    // Ends the stream early; the service then refuses the upload, and this
                    // reason is the one reported.
                    failure.withLock { $0 = error }
                }
            }
        } catch {
            if let reason = failure.withLock({ $0 }) { throw reason }
            throw error
        }
    }

    private enum Event {
        case header(String, String)
        case body(ByteBuffer)
        case partEnd
    }

    private final class Events {
        var items: [Event] = []
    }

    private static func streamForm(
        _ body: RequestBody,
        boundary: String,
        defaults: [String: String],
        authorize: (@Sendable ([String: String]) throws(AspireError) -> Void)?,
        to writer: RPCWriter<Aspire_V1_UploadPackageRequest>
    ) async throws {
        let parser = MultipartParser(boundary: boundary)
        let events = Events()
        parser.onHeader = { events.items.append(.header($0, $1)) }
        parser.onBody = { events.items.append(.body($0)) }
        parser.onPartComplete = { events.items.append(.partEnd) }

        var fields = defaults
        var partName = ""
        // The part being read is the file (its bytes go to the service as they come).
        var inFile = false
        var fieldBytes: [UInt8] = []
        var sentInfo = false
        var fileDone = false
        for try await buffer in body {
            do {
                try parser.execute(buffer)
            } catch {
                throw AspireError(.badRequest, "malformed multipart body: \(error)")
            }
            let pending = events.items
            events.items.removeAll()
            for event in pending {
                switch event {
                case .header(let name, let value):
                    guard name.lowercased() == "content-disposition" else { continue }
                    let parameters = Self.dispositionParameters(value)
                    partName = parameters["name"] ?? ""
                    fieldBytes = []
                    inFile = false
                    if let file = parameters["filename"], partName == "file" || partName == "content" {
                        guard !sentInfo else { throw AspireError(.badRequest, "multipart upload carries more than one file part") }
                        // The text fields came first: the package is named before its bytes.
                        if (fields["file"] ?? "").isEmpty { fields["file"] = file }
                        try authorize?(fields)
                        try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.info = try Self.info(fields) })
                        sentInfo = true
                        inFile = true
                    }
                case .body(var chunk):
                    let bytes = chunk.readBytes(length: chunk.readableBytes) ?? []
                    if inFile {
                        try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.chunk = Data(bytes) })
                    } else {
                        fieldBytes += bytes
                        guard fieldBytes.count <= 4096 else { throw AspireError(.badRequest, "multipart field '\(partName)' is longer than 4096 bytes") }
                    }
                case .partEnd:
                    if inFile {
                        fileDone = true
                    } else if !partName.isEmpty {
                        guard !sentInfo else {
                            throw AspireError(.badRequest, "multipart field '\(partName)' comes after the file part; put the text fields first")
                        }
                        fields[partName] = String(decoding: fieldBytes, as: UTF8.self)
                    }
                    partName = ""
                    inFile = false
                }
            }
        }
        guard fileDone else { throw AspireError(.badRequest, "the multipart body has no file part (a part named 'file' with a filename)") }
    }

    private static func info(_ fields: [String: String]) throws -> Aspire_V1_PackageInfo {
        for key in ["name", "version", "os", "arch"] where (fields[key] ?? "").isEmpty {
            throw AspireError(.badRequest, "multipart upload: field '\(key)' is required (before the file part)")
        }
        var info = Aspire_V1_PackageInfo()
        info.name = fields["name"] ?? ""
        info.version = fields["version"] ?? ""
        info.os = fields["os"] ?? ""
        info.arch = fields["arch"] ?? ""
        info.file = fields["file"] ?? ""
        info.sha256 = fields["sha256"] ?? ""
        return info
    }

    /// `form-data; name="file"; filename="a.rpm"` → ["name": "file", "filename": "a.rpm"].
    static func dispositionParameters(_ value: String) -> [String: String] {
        var parameters: [String: String] = [:]
        for piece in value.split(separator: ";").dropFirst() {
            let pair = piece.split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { continue }
            var text = pair[1].trimmingCharacters(in: .whitespaces)
            if text.hasPrefix("\""), text.hasSuffix("\""), text.count >= 2 { text = String(text.dropFirst().dropLast()) }
            parameters[pair[0].trimmingCharacters(in: .whitespaces).lowercased()] = text
        }
        return parameters
    }
}
