import Fleet
import Foundation

/// Child processes of tests are the Fleet library's, started by executable name from where the
/// package built them.
typealias TestProcess = ChildProcess

extension ChildProcess {
    /// Where the package's executables were built (next to the test bundle), or ASPIRE_BIN_DIR.
    static var binDirectory: String {
        if let dir = ProcessInfo.processInfo.environment["ASPIRE_BIN_DIR"] { return dir }
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" {
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("aspire-server").path) {
                return url.path
            }
            url.deleteLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath + "/.build/debug"
    }

    /// Starts one of the package's executables (by name) or any absolute path.
    static func start(_ executable: String, _ arguments: [String], log: String, environment: [String: String] = [:]) throws -> ChildProcess {
        let path = executable.hasPrefix("/") ? executable : "\(self.binDirectory)/\(executable)"
        return try ChildProcess(path, arguments, log: log, environment: environment)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A fresh directory under /tmp, removed by the caller's defer.
func makeTemporaryDirectory(_ name: String = "aspire-test") throws -> String {
    let path = "/tmp/\(name)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
