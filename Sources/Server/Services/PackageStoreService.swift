import Foundation
public import GRPCCore
import Logging
public import RPC

/// `PackageStore`: agents fetch the packages of the server's store over their own TLS
/// connection, authenticated by the enrollment token like the rest of the agent calls. Only
/// files of registered package versions are served, by the names the store knows them by.
struct PackageStoreService: Aspire_V1_PackageStore.SimpleServiceProtocol {
    let store: SQLStore
    let packages: PackageFiles
    let logger: Logger

    static let chunkSize = 64 << 10

    func download(
        request: Aspire_V1_DownloadRequest,
        response: RPCWriter<Aspire_V1_DownloadChunk>,
        context: ServerContext
    ) async throws {
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3 else {
            throw AspireError(.badRequest, "path must be OS/ARCH/FILE, got '\(request.path.prefix(200))'")
        }
        for (part, field) in zip(parts, ["os", "arch", "file"]) {
            try PackageFiles.check(part, field: field, maxLength: 255)
        }
        var query = PackageQuery()
        query.os = parts[0]
        query.arch = parts[1]
        query.file = parts[2]
        query.page = Page(offset: 0, limit: 1)
        guard let package = try await self.store.packages(query).items.first else {
            throw AspireError(.notFound, "no package file \(request.path) in the store")
        }
        let path = try await self.packages.localFile(for: package)
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw AspireError(.notFound, "package \(package.name) \(package.version): cannot read \(package.path) on this node")
        }
        defer { try? handle.close() }
        var first = true
        while let data = try handle.read(upToCount: Self.chunkSize), !data.isEmpty {
            var chunk = Aspire_V1_DownloadChunk()
            chunk.data = data
            if first { chunk.size = package.size }
            first = false
            try await response.write(chunk)
        }
        self.logger.info("package served", metadata: ["package.path": "\(package.path)", "package.size": "\(package.size)"])
    }
}
