import Foundation
import GRPCCore
import Hummingbird
import MultipartKit
import NIOCore
import RPC
import SwiftProtobuf
import Synchronization

/// `curl -F name=BasicAgent -F version=1.5.6 -F os=linux -F arch=x86_64 -F file=@BasicAgent.rpm`:
/// the form's text fields name the package and the file part carries the
/// bytes. The parts may come in any order (a form lists its fields as it likes): the file is
/// spooled to a temporary file, never held in memory, and goes to the service once the form has
/// ended and named it.
extension Gateway {
    /// The form's text fields are `PackageForm`'s and `extraFields` (any other is refused);
    /// `authorize` sees them before the file's first byte goes to the service (the console checks
    /// its CSRF token there); what it throws ends the upload.
    func multipartUpload(
        _ request: Request,
        boundary: String,
        metadata: Metadata,
        extraFields: Set<String> = [],
        authorize: (@Sendable ([String: String]) throws(AspireError) -> Void)? = nil
    ) async throws -> Aspire_V1_Package {
        let spool = try UploadSpool(limit: self.configuration.maxUploadBytes)
        defer { spool.remove() }
        var fields = try await Self.readForm(request.body, boundary: boundary, into: spool)
        if let unknown = fields.keys.sorted().first(where: { !Self.formFields.union(extraFields).contains($0) }) {
            throw AspireError(.badRequest, "multipart upload: unknown field '\(unknown)' (it takes \(Self.formFields.sorted().joined(separator: ", ")))")
        }
        fields["file"] = spool.fileName
        try authorize?(fields)
        let info = try Self.info(fields)
        let failure = Mutex<AspireError?>(nil)
        do {
            return try await self.admin.uploadPackage(metadata: metadata) { writer in
                do {
                    try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.info = info })
                    try await spool.send { chunk in try await writer.write(Aspire_V1_UploadPackageRequest.with { $0.chunk = chunk }) }
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

    /// The form's text fields, its file part written to `spool`.
    private static func readForm(_ body: RequestBody, boundary: String, into spool: UploadSpool) async throws -> [String: String] {
        let parser = MultipartParser(boundary: boundary)
        let events = Events()
        parser.onHeader = { events.items.append(.header($0, $1)) }
        parser.onBody = { events.items.append(.body($0)) }
        parser.onPartComplete = { events.items.append(.partEnd) }

        var fields: [String: String] = [:]
        var partName = ""
        // The part being read is the file.
        var inFile = false
        var fieldBytes: [UInt8] = []
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
                        guard spool.fileName == nil else { throw AspireError(.badRequest, "multipart upload carries more than one file part") }
                        spool.fileName = file
                        inFile = true
                    }
                case .body(var chunk):
                    if inFile {
                        try spool.write(chunk)
                    } else {
                        fieldBytes += chunk.readBytes(length: chunk.readableBytes) ?? []
                        guard fieldBytes.count <= 4096 else { throw AspireError(.badRequest, "multipart field '\(partName)' is longer than 4096 bytes") }
                    }
                case .partEnd:
                    if inFile {
                        fileDone = true
                    } else if !partName.isEmpty {
                        fields[partName] = String(decoding: fieldBytes, as: UTF8.self)
                    }
                    partName = ""
                    inFile = false
                }
            }
        }
        guard fileDone else { throw AspireError(.badRequest, "the multipart body has no file part (a part named 'file' with a filename)") }
        return fields
    }

    /// The text fields of an upload form (the file part is `file`, or the seed's `content`).
    static var formFields: Set<String> { ["name", "version", "os", "arch", "sha256"] }

    private static func info(_ fields: [String: String]) throws -> Aspire_V1_PackageInfo {
        for key in ["name", "version", "os", "arch"] where (fields[key] ?? "").isEmpty {
            throw AspireError(.badRequest, "multipart upload: field '\(key)' is required")
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

/// The file part of an upload, on disk until the form has ended (owner-only, removed after).
/// One request's, used by one task at a time: the form is read into it, then it is sent.
private final class UploadSpool: @unchecked Sendable {
    let path = NSTemporaryDirectory() + "aspire-upload-\(UUID.random().uuidString)"
    let handle: FileHandle
    let limit: Int64
    var size: Int64 = 0
    /// The file part's filename, once it has begun.
    var fileName: String?

    init(limit: Int64) throws {
        guard FileManager.default.createFile(atPath: self.path, contents: nil, attributes: [.posixPermissions: 0o600]),
            let handle = FileHandle(forUpdatingAtPath: self.path)
        else { throw AspireError(.unavailable, "cannot make a temporary file for the upload in \(NSTemporaryDirectory())") }
        self.handle = handle
        self.limit = limit
    }

    func write(_ chunk: ByteBuffer) throws {
        self.size += Int64(chunk.readableBytes)
        guard self.size <= self.limit else { throw AspireError(.payloadTooLarge, "the package is larger than the limit of \(self.limit) bytes") }
        do {
            try self.handle.write(contentsOf: chunk.readableBytesView)
        } catch {
            throw AspireError(.unavailable, "cannot spool the upload to \(self.path): \(error)")
        }
    }

    /// The file, in chunks, from its start.
    func send(_ chunk: (Data) async throws -> Void) async throws {
        try self.handle.seek(toOffset: 0)
        while let data = try self.handle.read(upToCount: 256 << 10), !data.isEmpty {
            try await chunk(data)
        }
    }

    func remove() {
        try? self.handle.close()
        unlink(self.path)
    }
}
