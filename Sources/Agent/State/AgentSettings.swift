#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RPC

/// What the server changed with `config` commands: the status step, extra servers and tags.
/// Kept in `<data>/config.json`, so a restarted agent keeps them; the command-line settings
/// stay underneath (extra servers are tried after the configured ones, tags add to and
/// override the `--tag` ones).
struct AgentSettings: Codable, Sendable, Equatable {
    /// Seconds between status reports; 0 leaves it to the server's Welcome.
    var step: Int32 = 0
    /// Extra servers, as `host:port`.
    var servers: [String] = []
    var tags: [String: String] = [:]

    static func path(in directory: String) -> String { "\(directory)/config.json" }

    /// The saved settings; none saved (or unreadable) is the empty set.
    static func load(from directory: String) -> AgentSettings {
        guard let data = FileManager.default.contents(atPath: self.path(in: directory)),
            let settings = try? JSONDecoder().decode(AgentSettings.self, from: data)
        else { return AgentSettings() }
        return settings
    }

    func save(in directory: String) throws {
        try AtomicFile.writeJSON(self, to: Self.path(in: directory))
    }

    /// These settings with a `config` command applied; refuses bad values before anything changes.
    func applying(_ config: Aspire_V1_ConfigParams) throws(AspireError) -> AgentSettings {
        var next = self
        if config.step != 0 {
            guard (10 ... 86400).contains(config.step) else {
                throw AspireError(.invalidParams, "config: step must be from 10 to 86400 seconds")
            }
            next.step = config.step
        }
        if !config.svrlist.isEmpty {
            let servers: [HostPort]
            do {
                servers = try HostPort.parseList(config.svrlist)
            } catch {
                throw AspireError(.invalidParams, "config: svrlist '\(config.svrlist)': \(error)")
            }
            next.servers = servers.map(\.description).uniqued()
        }
        for (name, value) in config.tags {
            guard !name.isEmpty, name.count <= 64, value.count <= 64 else {
                throw AspireError(.invalidParams, "config: tag names are 1-64 characters and values at most 64")
            }
            next.tags[name] = value
        }
        return next
    }
}
