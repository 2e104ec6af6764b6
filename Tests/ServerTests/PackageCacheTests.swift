import Foundation
@testable import Server
import Testing
import TestSupport

@Suite("Package cache of a cluster node")
struct PackageCacheTests {
    @Test("Past its size the node removes the files served longest ago, never the one it just fetched")
    func eviction() throws {
        let directory = try makeTemporaryDirectory("package-cache")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var files = PackageFiles(dataDirectory: directory, maxBytes: 1 << 20)
        files.cacheBytes = 2500
        let names = ["a", "b", "c", "d"]
        for (age, name) in names.enumerated() {
            let relative = PackageFiles.relativePath(os: "linux", arch: "x86_64", file: "\(name).tar.gz")
            let path = files.absolute(relative)
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(repeating: 1, count: 1000).write(to: URL(fileURLWithPath: path))
            // a was served longest ago, d last.
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: Double(age - 100))], ofItemAtPath: path)
        }
        let kept = files.absolute(PackageFiles.relativePath(os: "linux", arch: "x86_64", file: "a.tar.gz"))
        files.evict(keeping: kept)
        let left = names.filter { FileManager.default.fileExists(atPath: files.absolute(PackageFiles.relativePath(os: "linux", arch: "x86_64", file: "\($0).tar.gz"))) }
        #expect(left == ["a", "d"])
    }
}
