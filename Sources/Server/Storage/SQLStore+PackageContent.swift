public import Foundation
import RPC
import SQLKit

/// Package files kept in the database, content-addressed by SHA256 and cut in chunks, so every
/// node of a cluster serves every package. Read and written a chunk at a time: a file is
/// never whole in memory.
extension SQLStore {
    /// Bytes per stored chunk.
    public static let contentChunk = 1 << 20

    /// Whether the content of `sha256` is stored whole.
    public func hasContent(_ sha256: String) async throws -> Bool {
        try await self.engine.withConnection { database in
            try await database.raw("SELECT sha256 FROM package_contents WHERE sha256 = \(bind: sha256)").first() != nil
        }
    }

    /// Stores the content of `sha256` read from `handle` (already hashed by the caller), unless
    /// it is stored already. One transaction: it is listed only once whole.
    public func putContent(_ sha256: String, size: Int64, from handle: FileHandle) async throws {
        guard try await !self.hasContent(sha256) else { return }
        try await self.transaction { database in
            try await database.raw("DELETE FROM package_blobs WHERE sha256 = \(bind: sha256)").run()
            var seq = 0
            while let data = try handle.read(upToCount: Self.contentChunk), !data.isEmpty {
                try await database.raw(
                    "INSERT INTO package_blobs (sha256, seq, data) VALUES (\(bind: sha256), \(bind: seq), \(bind: data))"
                ).run()
                seq += 1
            }
            try await database.raw(
                """
                INSERT INTO package_contents (sha256, size, chunks, gmt_create) VALUES (\(bind: sha256), \(bind: size), \(bind: seq), \(bind: Self.now))
                ON CONFLICT (sha256) DO NOTHING
                """
            ).run()
        }
    }

    /// Hands the content of `sha256` to `write`, a chunk at a time; false when it is not stored.
    public func readContent(_ sha256: String, into write: (Data) throws -> Void) async throws -> Bool {
        try await self.engine.withConnection { database in
            guard let row = try await database.raw("SELECT chunks FROM package_contents WHERE sha256 = \(bind: sha256)").first() else {
                return false
            }
            let chunks = try row.decode(column: "chunks", as: Int.self)
            for seq in 0 ..< chunks {
                guard let chunk = try await database.raw(
                    "SELECT data FROM package_blobs WHERE sha256 = \(bind: sha256) AND seq = \(bind: seq)"
                ).first() else {
                    throw AspireError(.internalError, "package content \(sha256) lacks its chunk \(seq)")
                }
                try write(try chunk.decode(column: "data", as: Data.self))
            }
            return true
        }
    }

    /// Forgets the content of `sha256` unless a package version still has it.
    public func dropContentIfUnused(_ sha256: String) async throws {
        try await self.transaction { database in
            guard try await database.raw("SELECT id FROM agents WHERE sha256 = \(bind: sha256) LIMIT 1").first() == nil else { return }
            try await database.raw("DELETE FROM package_contents WHERE sha256 = \(bind: sha256)").run()
            try await database.raw("DELETE FROM package_blobs WHERE sha256 = \(bind: sha256)").run()
        }
    }
}

extension SQLStore {
    /// Every build (os, arch) of `name` `version` in the store.
    public func builds(name: String, version: String) async throws -> [PackageRecord] {
        var query = PackageQuery()
        query.name = name
        query.version = version
        query.page = Page(offset: 0, limit: 1000)
        return try await self.packages(query).items
    }
}
