import Foundation
import RPC

/// Installs and upgrades of a store package with builds for several platforms: the task names
/// the package by name and version only, and each host gets the build for its own os and arch
/// when its command is sent (a fleet of x86_64 and aarch64 hosts takes one deploy).
extension TaskEngine {
    /// The builds of one package version, fetched once per task and delivery pass.
    struct Builds {
        private var known: [String: [PackageRecord]] = [:]

        mutating func of(name: String, version: String, in engine: TaskEngine) async throws -> [PackageRecord] {
            let key = "\(name)\u{0}\(version)"
            if let builds = self.known[key] { return builds }
            let builds = try await engine.store.builds(name: name, version: version)
            self.known[key] = builds
            return builds
        }
    }

    /// What a host is sent: its command, or, when nothing can be sent, the result to record.
    enum Delivery {
        case send(Aspire_V1_Command)
        case refuse(Aspire_V1_CommandResult)
    }

    /// `command` as `agentSN` gets it: unchanged unless it waits for a build, else with the url
    /// and checksum of the build for the host's platform — or the failed result that says there
    /// is none.
    func command(
        _ command: Aspire_V1_Command,
        for agentSN: String,
        builds: inout Builds
    ) async throws -> Delivery {
        let method = CommandMethod(name: command.method)
        guard case .subagent(let params)? = command.params, params.url.isEmpty, case .subAgent(let action)? = method, action.installs
        else { return .send(command) }
        let platform: (os: String, arch: String)
        if let hello = self.registry.session(for: agentSN)?.hello {
            platform = (hello.os, hello.arch)
        } else if let host = try await self.store.host(agentSN: agentSN) {
            platform = (host.os, host.arch)
        } else {
            platform = ("", "")
        }
        let available = try await builds.of(name: params.name, version: params.version, in: self)
        guard let build = available.first(where: { $0.os == platform.os && $0.arch == platform.arch }) else {
            let have = available.map { "\($0.os)/\($0.arch)" }.sorted().joined(separator: ", ")
            let host = platform.arch.isEmpty ? "this host has not reported its os and arch" : "none for \(platform.os)/\(platform.arch)"
            return .refuse(
                Aspire_V1_CommandResult.failed(
                    id: command.id, .unprocessable,
                    "the store has \(params.name) \(params.version) for \(have.isEmpty ? "no platform" : have) but \(host); give this host a url (aspire://package/OS/ARCH/FILE)"
                )
            )
        }
        var resolved = command
        resolved.subagent.url = build.url
        resolved.subagent.checksum = "SHA256:\(build.sha256)"
        return .send(resolved)
    }
}
