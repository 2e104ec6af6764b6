#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
public import Logging
public import RPC
import Synchronization

/// The agent's settings as they stand: the command line's, with what `config` commands changed
/// over them (saved in the data directory, so a restarted agent keeps them). Answers `config`.
public final class LiveSettings: Sendable {
    let configuration: AgentConfiguration
    private let saved: Mutex<AgentSettings>
    /// Seconds between status reports; the server's Welcome and `config` may change it.
    let step = Atomic<Int32>(600)
    private let uplink: Uplink
    private let logger: Logger

    init(configuration: AgentConfiguration, uplink: Uplink, logger: Logger) {
        self.configuration = configuration
        self.uplink = uplink
        self.logger = logger
        let saved = AgentSettings.load(from: configuration.dataDirectory)
        if saved.step > 0 { self.step.store(saved.step, ordering: .relaxed) }
        self.saved = Mutex(saved)
    }

    /// Servers to try: the configured ones, then those a `config` command added.
    var servers: [HostPort] {
        let extra = self.saved.withLock { $0.servers }.compactMap { try? HostPort(parsing: $0) }
        return (self.configuration.servers + extra).uniqued()
    }

    /// Tags: the configured ones, with those of `config` commands over them.
    var tags: [String: String] {
        self.configuration.tags.merging(self.saved.withLock { $0.tags }) { $1 }
    }

    /// The server's step from Welcome, unless a `config` command set this host's own.
    func welcomed(step: Int32) {
        guard step > 0, self.saved.withLock({ $0.step }) == 0 else { return }
        self.step.store(step, ordering: .relaxed)
    }

    private struct Applied: Encodable {
        var step: Int32
        var svrlist: String
        var tags: [String: String]
    }
}

extension LiveSettings: CommandHandler {
    /// `config`: saves the new settings, applies them, and reports at once.
    public func handle(_ command: Aspire_V1_Command, as method: CommandMethod, output: BashExecutor.OutputHandler?) async -> Aspire_V1_CommandResult {
        let started = Date()
        let directory = self.configuration.dataDirectory
        let applied: AgentSettings
        do {
            applied = try self.saved.withLock { settings throws(AspireError) in
                let next = try settings.applying(command.config)
                do {
                    try next.save(in: directory)
                } catch {
                    throw AspireError(.agentInternal, "cannot save \(AgentSettings.path(in: directory)): \(error)")
                }
                settings = next
                return next
            }
        } catch {
            return .failed(id: command.id, error.code, error.cause)
        }
        if applied.step > 0 { self.step.store(applied.step, ordering: .relaxed) }
        let step = self.step.load(ordering: .relaxed)
        self.logger.notice(
            "configuration changed",
            metadata: ["config.step": "\(applied.step)", "config.servers": "\(applied.servers)", "config.tags": "\(applied.tags)"]
        )
        self.uplink.event(
            Aspire_V1_Event(category: "config", message: "configuration changed: step \(step) s, extra servers \(applied.servers), tags \(self.tags)")
        )
        self.uplink.statusChanged()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(Applied(step: step, svrlist: applied.servers.joined(separator: ","), tags: self.tags))) ?? Data()
        return .success(id: command.id, data: data, message: "success", started: started)
    }
}
