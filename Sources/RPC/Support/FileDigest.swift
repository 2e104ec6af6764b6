import Crypto
public import SystemPackage

/// SHA256 of a file read in 1 MiB pieces: package uploads hash what they send, the server what
/// it registers.
public enum FileDigest {
    /// The hex SHA256 and the size of what `file` has from its current offset to the end.
    public static func sha256(of file: FileDescriptor) throws -> (sha256: String, size: Int64) {
        var hasher = SHA256()
        var size: Int64 = 0
        try file.readToEnd { piece in
            hasher.update(data: piece)
            size += Int64(piece.count)
        }
        return (hasher.finalize().hexString, size)
    }

    /// The hex SHA256 and the size of the file at `path`.
    public static func sha256(atPath path: String) throws -> (sha256: String, size: Int64) {
        try FileDescriptor.reading(path) { try Self.sha256(of: $0) }
    }
}
