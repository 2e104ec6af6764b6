import Foundation
public import GRPCCore
public import RPC
import Logging

/// Package versions: upload (streamed to disk and hashed), list, delete.
extension AdminService {
    public func uploadPackage(
        request: RPCAsyncSequence<Aspire_V1_UploadPackageRequest, any Error>,
        context: ServerContext
    ) async throws -> Aspire_V1_Package {
        var parts = request.makeAsyncIterator()
        guard case .info(let info)? = try await parts.next()?.part else {
            throw AspireError(.badRequest, "the first message of an upload must name the package (info)")
        }
        try PackageFiles.validate(info)
        let path = PackageFiles.relativePath(os: info.os, arch: info.arch, file: info.file)
        var byPath = PackageQuery()
        byPath.os = info.os
        byPath.arch = info.arch
        byPath.file = info.file
        if let owner = try await self.store.packages(byPath).items.first {
            throw AspireError(.conflict, "\(path) already belongs to \(owner.name) \(owner.version)")
        }

        let sha256: String
        let size: Int64
        var upload: PackageFiles.Incoming?
        if info.existingFile {
            if try await parts.next() != nil {
                throw AspireError(.badRequest, "existing_file uploads carry no bytes")
            }
            (sha256, size) = try self.packages.hashExisting(path)
        } else {
            let incoming = try self.packages.incoming()
            upload = incoming
            do {
                while let part = try await parts.next() {
                    guard case .chunk(let bytes)? = part.part else {
                        throw AspireError(.badRequest, "only the first message of an upload may name the package")
                    }
                    try incoming.append(bytes)
                }
                sha256 = try incoming.finish()
            } catch {
                incoming.discard()
                throw error
            }
            size = incoming.size
        }
        if !info.sha256.isEmpty, info.sha256.lowercased() != sha256 {
            upload?.discard()
            throw AspireError(.unprocessable, "the file's SHA256 is \(sha256), not \(info.sha256.lowercased())")
        }

        let record: PackageRecord
        do {
            record = try await self.store.addPackage(
                PackageRecord(
                    name: info.name, os: info.os, arch: info.arch, version: info.version, file: info.file, path: path,
                    sha256: sha256, size: size
                )
            )
        } catch {
            upload?.discard()
            throw error
        }
        do {
            if let upload { try self.packages.install(upload, at: path) }
            // Every node of a cluster serves it from here on.
            try await self.packages.share(record)
        } catch {
            upload?.discard()
            _ = try? await self.store.deletePackages(PackageQuery(), id: record.id)
            throw error
        }
        self.logger.notice(
            "package stored",
            metadata: ["package.name": "\(record.name)", "package.version": "\(record.version)", "package.path": "\(path)", "package.sha256": "\(sha256)", "package.size": "\(size)"]
        )
        return Aspire_V1_Package(record)
    }

    public func listPackages(request: Aspire_V1_ListPackagesRequest, context: ServerContext) async throws -> Aspire_V1_ListPackagesResponse {
        var query = PackageQuery(request.name, request.version, request.os, request.arch)
        query.sortBy = request.sortBy.isEmpty ? "id" : request.sortBy
        query.page = try Self.page(offset: request.offset, limit: request.limit, descending: request.descending)
        let listing = try await self.store.packages(query)
        var response = Aspire_V1_ListPackagesResponse()
        response.count = Int32(listing.count)
        response.offset = Int32(query.page.offset)
        response.limit = Int32(query.page.limit)
        response.packages = listing.items.map(Aspire_V1_Package.init(_:))
        return response
    }

    public func deletePackages(request: Aspire_V1_DeletePackagesRequest, context: ServerContext) async throws -> Aspire_V1_DeletePackagesResponse {
        guard request.id != 0 || !request.name.isEmpty else {
            throw AspireError(.badRequest, "say which package to delete: id, or name (with version, os, arch to narrow it)")
        }
        let deleted = try await self.store.deletePackages(
            PackageQuery(request.name, request.version, request.os, request.arch),
            id: request.id == 0 ? nil : Int(request.id)
        )
        guard !deleted.isEmpty else {
            throw AspireError(.notFound, "no agent package found")
        }
        for package in deleted {
            try await self.packages.forget(package)
            self.logger.notice("package deleted", metadata: ["package.name": "\(package.name)", "package.version": "\(package.version)", "package.path": "\(package.path)"])
        }
        var response = Aspire_V1_DeletePackagesResponse()
        response.packages = deleted.map(Aspire_V1_Package.init(_:))
        return response
    }
}

extension PackageQuery {
    /// A query from optional filters, where empty means any.
    init(_ name: String, _ version: String, _ os: String, _ arch: String) {
        self.init()
        self.name = name.isEmpty ? nil : name
        self.version = version.isEmpty ? nil : version
        self.os = os.isEmpty ? nil : os
        self.arch = arch.isEmpty ? nil : arch
    }
}

extension Aspire_V1_Package {
    init(_ record: PackageRecord) {
        self.init()
        self.id = Int64(record.id)
        self.name = record.name
        self.os = record.os
        self.arch = record.arch
        self.version = record.version
        self.file = record.file
        self.path = record.path
        self.sha256 = record.sha256
        self.size = record.size
        self.createdUnixMs = record.created
        self.modifiedUnixMs = record.modified
    }
}
