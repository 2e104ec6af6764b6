#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RPC

/// A `.deb` or `.rpm` sub-agent package, installed by the host's package manager.
///
/// Such a package puts its files where it says and runs its maintainer scripts as root, like any
/// system package: the SHA256 the command carries is what makes it trusted. The agent asks one
/// thing of it, the same as of `command://yum install ...`: that it installs an executable
/// `<root>/<name>/<version>/control`. The package file is kept in `<root>/<name>/.packages/`, so
/// a failed upgrade can put the previous version back with the package manager.
struct SystemPackage: Codable, Sendable, Equatable {
    enum Manager: String, Codable, Sendable {
        case dpkg, rpm

        /// The tools it needs on the host.
        var tools: [String] { self == .dpkg ? ["dpkg", "dpkg-deb"] : ["rpm"] }
        var fileExtension: String { self == .dpkg ? "deb" : "rpm" }
    }

    var manager: Manager
    /// The package manager's name for it (`Package:` of a .deb, `%{NAME}` of an .rpm).
    var name: String
    /// The kept package file.
    var file: String

    static let environment = Tools.rootEnvironment.merging(["DEBIAN_FRONTEND": "noninteractive"]) { $1 }

    /// Checks that the host has the manager's tools, then reads the package's name from the file.
    static func inspect(_ path: String, manager: Manager, scratch: String, timeout: Duration) async throws(AspireError) -> String {
        for tool in manager.tools where Tools.find(tool) == nil {
            throw AspireError(
                .toolMissing,
                "this host has no \(tool), which .\(manager.fileExtension) packages need; install it or ship the sub-agent as a .tar.gz"
            )
        }
        let output = "\(scratch)/name"
        let errors = "\(scratch)/name.err"
        let request: Launcher.Request
        switch manager {
        case .dpkg:
            request = Launcher.Request(
                executable: "dpkg-deb", arguments: ["--field", path, "Package"],
                environment: Self.environment, outputPath: output, errorPath: errors
            )
        case .rpm:
            request = Launcher.Request(
                executable: "rpm", arguments: ["-qp", "--nosignature", "--queryformat", "%{NAME}", path],
                environment: Self.environment, outputPath: output, errorPath: errors
            )
        }
        let termination = try await Launcher.run(request, timeout: timeout)
        guard termination.succeeded else {
            throw Launcher.failed(.badPackage, "\(request.executable) cannot read the package:", termination, log: errors, directory: scratch)
        }
        let name = ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").trimmed()
        // The name goes on the package manager's command line: nothing that reads as an option.
        func isAlphanumeric(_ byte: UInt8) -> Bool {
            (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "z"))
        }
        guard let first = name.utf8.first, isAlphanumeric(first),
            name.utf8.count <= 200,
            name.utf8.allSatisfy({ isAlphanumeric($0) || "+-._".utf8.contains($0) })
        else {
            throw AspireError(.badPackage, "the package names itself '\(name.prefix(200))', which is not a package name")
        }
        return name
    }

    /// Installs (or upgrades, or downgrades to) this package file.
    func install(log: String, timeout: Duration) async throws(AspireError) {
        let arguments: [String]
        switch self.manager {
        case .dpkg: arguments = ["--install", "--force-confdef", "--force-confold", self.file]
        case .rpm: arguments = ["-U", "--replacepkgs", "--oldpackage", self.file]
        }
        try await self.run(arguments, log: log, timeout: timeout, doing: "install")
    }

    /// Removes the package and its files.
    func remove(log: String, timeout: Duration) async throws(AspireError) {
        let arguments: [String]
        switch self.manager {
        case .dpkg: arguments = ["--purge", self.name]
        case .rpm: arguments = ["-e", self.name]
        }
        try await self.run(arguments, log: log, timeout: timeout, doing: "remove")
    }

    private func run(_ arguments: [String], log: String, timeout: Duration, doing: String) async throws(AspireError) {
        let offset = Launcher.size(log)
        let termination = try await Launcher.run(
            Launcher.Request(executable: self.manager.rawValue, arguments: arguments, environment: Self.environment, outputPath: log),
            timeout: timeout
        )
        guard termination.succeeded else {
            throw AspireError(
                .badPackage,
                "\(self.manager.rawValue) could not \(doing) \(self.name) (\(termination.description)): \(Launcher.tail(log, from: offset))"
            )
        }
    }
}
