public import Foundation

/// A fresh directory under /tmp; the caller removes it.
public func makeTemporaryDirectory(_ name: String = "aspire-test") throws -> String {
    let path = "/tmp/\(name)-\(UUID().uuidString.prefix(8).lowercased())"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Runs `body` with a fresh directory under /tmp, removed afterwards however `body` ends.
public func withTemporaryDirectory<Result>(
    _ name: String = "aspire-test",
    _ body: (String) async throws -> Result
) async throws -> Result {
    let path = try makeTemporaryDirectory(name)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}
