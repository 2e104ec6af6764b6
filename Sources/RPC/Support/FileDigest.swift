import Crypto
public import Foundation

/// SHA256 of a file read in 1 MiB pieces: package uploads hash what they send, the server what
/// it registers.
public enum FileDigest {
    /// The hex SHA256 and the size of what `handle` has from its current offset to the end.
    public static func sha256(of handle: FileHandle) throws -> (sha256: String, size: Int64) {
        var hasher = SHA256()
        var size: Int64 = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
            size += Int64(chunk.count)
        }
        return (hasher.finalize().hexString, size)
    }
}
