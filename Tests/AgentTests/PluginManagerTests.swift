import Crypto
import Foundation
import Logging
import RPC
import SwiftProtobuf
import Testing
import TestSupport

@testable import Agent

#if canImport(Glibc)
import Glibc
#endif

/// The agent's plugin set across a failed update and a restart.
@Suite("Plugin manager")
struct PluginManagerTests {
    static func manager(_ directory: String) -> PluginManager {
        PluginManager(
            directory: "\(directory)/plugins", dataDirectory: "\(directory)/data", host: "web-1",
            bash: BashExecutor(logger: Logger(label: "test")), logger: Logger(label: "test.plugins")
        )
    }

    static func set(_ plugins: [Aspire_V1_Plugin]) -> Aspire_V1_Command {
        var command = Aspire_V1_Command()
        command.id = UUID().uuidString
        command.method = "plugin.set"
        command.plugins.plugins = plugins
        return command
    }

    @Test("A source that cannot be fetched keeps the old files running, before and after a restart; disabled stays disabled")
    func failedUpdateAndRestart() async throws {
        let directory = NSTemporaryDirectory() + "aspire-plugin-manager-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: "\(directory)/data", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(directory)/src", withIntermediateDirectories: true)
        try "#!/bin/sh\necho '[]'\n".write(toFile: "\(directory)/src/plugin.sh", atomically: true, encoding: .utf8)
        chmod("\(directory)/src/plugin.sh", 0o755)
        let archive = "\(directory)/load.tar.gz"
        #expect(try await ChildProcess.run("tar", ["-czf", archive, "-C", "\(directory)/src", "plugin.sh"]).status == 0)
        let sha256 = SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: archive))).map { String(format: "%02x", $0) }.joined()

        var plugin = Aspire_V1_Plugin()
        plugin.name = "load"
        plugin.url = "file://\(archive)"
        plugin.checksum = "SHA256:\(sha256)"
        plugin.period = 0
        let first = Self.manager(directory)
        #expect(await first.perform(Self.set([plugin])).resp == .success)
        var disable = Aspire_V1_Command()
        disable.id = UUID().uuidString
        disable.method = "plugin.disable"
        disable.plugins.name = "load"
        #expect(await first.perform(disable).resp == .success)

        // The server changes the source to one that is not there: refused, the old files stay.
        var moved = plugin
        moved.url = "file://\(directory)/missing.tar.gz"
        let update = await first.perform(Self.set([moved]))
        #expect(update.resp == .failed && update.message.contains("load"), "\(update)")
        #expect(first.runner.states.map(\.config.name) == ["load"])
        #expect(first.runner.states.first?.config.source.url == plugin.url, "it runs from the files it has")

        // A restarted agent runs what it ran, from the same files, still disabled.
        let second = Self.manager(directory)
        let state = try #require(second.runner.states.first)
        #expect(state.config.name == "load" && state.config.source.url == plugin.url)
        #expect(!state.enabled && state.disabledUntil != nil)
        #expect(second.digest == Aspire_V1_PluginParams.with { $0.plugins = [moved] }.digest)
    }
}
