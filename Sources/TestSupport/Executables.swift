public import Foundation

extension ChildProcess {
    /// Where the package's executables were built (beside the test bundle or the running
    /// executable), or ASPIRE_BIN_DIR.
    public static var binDirectory: String {
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
    public static func start(_ executable: String, _ arguments: [String], log: String, environment: [String: String] = [:]) throws -> ChildProcess {
        let path = executable.hasPrefix("/") ? executable : "\(self.binDirectory)/\(executable)"
        return try ChildProcess(path, arguments, log: log, environment: environment)
    }
}
