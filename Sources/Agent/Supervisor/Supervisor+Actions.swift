#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
public import RPC
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The operator's actions: install, upgrade, uninstall, start, stop, restart.
extension Supervisor {

    /// Carries out one sub-agent action; the result says what happened in words.
    public func perform(_ action: CommandMethod.SubAgentAction, _ params: Aspire_V1_SubAgentParams, id: String) async -> Aspire_V1_CommandResult {
        let started = Date()
        let method = CommandMethod.subAgent(action)
        do {
            try SubAgentRecord.checkPathComponent(params.name, field: "name")
        } catch {
            return .failed(id: id, error.code, error.cause, started: started)
        }
        guard params.name != SelfUpgrade.name else {
            return .failed(
                id: id, .invalidParams, "\(SelfUpgrade.name) is the agent itself, not a sub-agent: upgrade it with a deployment named \(SelfUpgrade.name)",
                started: started
            )
        }
        guard await self.claim(params.name) else {
            return .failed(id: id, .busy, "another action on \(params.name) is under way; try again when it ends", started: started)
        }
        defer { self.release(params.name) }
        do throws(AspireError) {
            let message: String
            switch action {
            case .install, .upgrade: message = try await self.deploy(params)
            case .daemonInit:
                guard params.hasDaemon else {
                    throw AspireError(.invalidParams, "daemon.init of \(params.name): no daemon spec (start, stop, check, ...)")
                }
                message = try await self.deploy(params)
            case .uninstall: message = try await self.uninstall(params.name)
            case .start: message = try await self.start(params, restart: false)
            case .restart: message = try await self.start(params, restart: true)
            case .stop: message = try await self.stop(params.name)
            }
            self.logger.notice("sub-agent action done", metadata: ["subagent": "\(params.name)", "command.method": "\(method)", "result": "\(message)"])
            return .success(id: id, message: message, started: started)
        } catch {
            self.logger.warning("sub-agent action failed", metadata: ["subagent": "\(params.name)", "command.method": "\(method)", "error": "\(error.cause)"])
            return .failed(id: id, error.code, error.cause, started: started)
        }
    }

    /// install and upgrade: make `version` the one installed and running.
    private func deploy(_ params: Aspire_V1_SubAgentParams) async throws(AspireError) -> String {
        let name = params.name
        try SubAgentRecord.checkPathComponent(params.version, field: "version")
        guard !params.url.isEmpty else { throw AspireError(.invalidParams, "\(name) \(params.version): no url to fetch the package from") }
        let source = try PackageSource(params.url)
        if case .command = source {
        } else if !CommandParameters.isSHA256(params.checksum) {
            throw AspireError(.invalidParams, "\(name) \(params.version): checksum must be SHA256:<64 hex digits>; packages are not installed unchecked")
        }
        if let unusable { throw AspireError(.toolMissing, unusable) }
        let current = self.record(name)
        var record = current ?? SubAgentRecord(name: name, version: params.version)
        record.version = params.version
        let settingsChanged = try self.apply(params, to: &record)

        if let current, current.version == params.version, FileManager.default.fileExists(atPath: self.versionDirectory(current)) {
            let alive = self.processes(of: current)
            if !settingsChanged, current.phase.runningSince != nil, let main = self.main(of: current, alive) {
                return "\(name) \(params.version) is already installed and running (pid \(main.pid)); nothing to do"
            }
            _ = await self.stopProcesses(current)
            record = try await self.startChecked(record, before: current)
            return "\(name) \(params.version) was already installed; \(settingsChanged ? "restarted with the new settings" : "started"): running (pid \(record.pid))\(self.limitsNote(record))"
        }

        record.package = try await self.unpack(source, checksum: params.checksum, name: name, version: params.version, daemon: record.daemon != nil)
        if let current {
            return try await self.upgrade(from: current, to: record)
        }
        do {
            if let package = record.package { try await self.install(package, for: record) }
            try self.switchVersion(name, to: params.version)
            record = try await self.startChecked(record, before: nil)
        } catch {
            _ = await self.stopProcesses(record)
            self.forget(name)
            if let package = record.package { try? await package.remove(log: self.logPath(name), timeout: self.configuration.commandTimeout) }
            try? FileManager.default.removeItem(atPath: self.directory(name))
            throw AspireError(error.code, "install of \(name) \(params.version) failed: \(error.cause); nothing is left installed")
        }
        return "installed \(name) \(params.version): running (pid \(record.pid))\(self.limitsNote(record))"
    }

    private func upgrade(from old: SubAgentRecord, to new: SubAgentRecord) async throws(AspireError) -> String {
        let name = old.name
        let stopped = await self.stopProcesses(old)
        var record = new
        record.previousVersion = old.version
        do {
            if let package = new.package { try await self.install(package, for: new) }
            try self.switchVersion(name, to: new.version)
            record = try await self.startChecked(record, before: old)
        } catch {
            let reason = error.cause
            _ = await self.stopProcesses(record)
            var back = old
            back.life = self.policy(for: back).onCommandStart(back.life, at: self.clock.now)
            do {
                try await self.restorePackages(from: new, to: old)
            } catch {
                back.life = self.policy(for: back).onStartFailed(back.life, at: self.clock.now, killed: false)
                back.message = "upgrade to \(new.version) failed (\(reason)); \(old.version) could not be put back: \(error.cause)"
                self.commit(back, changedFrom: nil, event: back.message)
                throw AspireError(.rolledBack, "upgrade of \(name) to \(new.version) failed: \(reason); putting \(old.version) back failed too: \(error.cause)")
            }
            try? FileManager.default.removeItem(atPath: self.versionDirectory(new))
            do {
                try self.switchVersion(name, to: old.version)
                back = try await self.launch(back)
                back.message = "rolled back from \(new.version): \(reason)"
                self.commit(back, changedFrom: nil, event: "\(name): upgrade to \(new.version) failed; rolled back to \(old.version)")
            } catch {
                back.life = self.policy(for: back).onStartFailed(back.life, at: self.clock.now, killed: false)
                back.message = "upgrade to \(new.version) failed (\(reason)); \(old.version) did not start again: \(error.cause)"
                self.commit(back, changedFrom: nil, event: back.message)
                throw AspireError(.rolledBack, "upgrade of \(name) to \(new.version) failed: \(reason); rolled back to \(old.version), which did not start again: \(error.cause)")
            }
            throw AspireError(.rolledBack, "upgrade of \(name) from \(old.version) to \(new.version) failed: \(reason); rolled back to \(old.version): running (pid \(back.pid))")
        }
        if let previous = old.package, previous.name != new.package?.name {
            // Another package (or a tarball) replaced it: the package manager would keep it forever.
            try? await previous.remove(log: self.logPath(name), timeout: self.configuration.commandTimeout)
        }
        self.pruneVersions(record)
        let note = stopped.isEmpty ? "" : " (\(stopped))"
        return "upgraded \(name) from \(old.version) to \(new.version): running (pid \(record.pid))\(note)\(self.limitsNote(record))"
    }

    private func uninstall(_ name: String) async throws(AspireError) -> String {
        guard let record = self.record(name) else {
            if FileManager.default.fileExists(atPath: self.directory(name)) {
                try? FileManager.default.removeItem(atPath: self.directory(name))
                return "\(name) was not supervised; removed \(self.directory(name))"
            }
            return "\(name) is not installed; nothing to do"
        }
        let stopped = await self.stopProcesses(record)
        if let package = record.package {
            do {
                try await package.remove(log: self.logPath(name), timeout: self.configuration.commandTimeout)
            } catch {
                var kept = record
                kept.life = self.policy(for: kept).onCommandStop(kept.life)
                kept.message = "uninstall failed: \(error.cause)"
                self.commit(kept, changedFrom: record)
                throw AspireError(error.code, "stopped \(name), but \(error.cause); its files are still there")
            }
        }
        self.forget(name)
        do {
            try FileManager.default.removeItem(atPath: self.directory(name))
        } catch {
            throw AspireError(.agentInternal, "stopped \(name), but cannot remove \(self.directory(name)): \(AspireError.reason(error))")
        }
        self.onChange(self.event("uninstalled \(name) \(record.version)", record))
        return "uninstalled \(name) \(record.version)\(stopped.isEmpty ? "" : " (\(stopped))")"
    }

    private func start(_ params: Aspire_V1_SubAgentParams, restart: Bool) async throws(AspireError) -> String {
        guard var record = self.record(params.name) else {
            throw AspireError(.notInstalled, "\(params.name) is not installed on this host")
        }
        let before = record
        let changed = try self.apply(params, to: &record)
        if !restart, !changed, let main = self.main(of: record, self.processes(of: record)) {
            record.life = self.policy(for: record).onCommandStart(record.life, at: record.phase.since ?? self.clock.now)
            self.commit(record, changedFrom: before)
            return "\(params.name) \(record.version) is already running (pid \(main.pid))"
        }
        let stopped = await self.stopProcesses(record)
        record = try await self.startChecked(record, before: before)
        let verb = restart ? "restarted" : "started"
        return "\(verb) \(params.name) \(record.version): running (pid \(record.pid))\(stopped.isEmpty ? "" : " (\(stopped))")\(self.limitsNote(record))"
    }

    private func stop(_ name: String) async throws(AspireError) -> String {
        guard var record = self.record(name) else {
            throw AspireError(.notInstalled, "\(name) is not installed on this host")
        }
        let before = record
        record.life = self.policy(for: record).onCommandStop(record.life)
        let stopped = await self.stopProcesses(record)
        record.message = "stopped by an operator"
        self.commit(record, changedFrom: before)
        return "stopped \(name) \(record.version)\(stopped.isEmpty ? "" : " (\(stopped))")"
    }

    /// Takes envs, limits, user and group from the command when it gives them; true when the
    /// running sub-agent's settings change.
    private func apply(_ params: Aspire_V1_SubAgentParams, to record: inout SubAgentRecord) throws(AspireError) -> Bool {
        let before = record
        if !params.envs.isEmpty { record.envs = params.envs }
        if params.hasDaemon { record.daemon = try DaemonProgram(params.daemon, owner: "\(params.name) \(params.version)") }
        if params.hasLimits { record.limits = try ResourceLimits(params.limits) }
        if !params.user.isEmpty {
            record.user = params.user
            record.group = params.group
        } else if !params.group.isEmpty {
            // A group alone changes the group: the user stays (it never silently becomes root).
            record.group = params.group
        }
        if !params.user.isEmpty || !params.group.isEmpty {
            _ = try Identity.resolve(user: record.user, group: record.group)
        }
        return record.envs != before.envs || record.limits != before.limits || record.user != before.user || record.group != before.group
            || record.daemon != before.daemon
    }

    private func limitsNote(_ record: SubAgentRecord) -> String {
        guard !record.limits.isEmpty else { return "" }
        var note = "; limits \(record.limits.summary) via \(self.control.name)"
        let missing = self.control.unenforced(record.limits)
        if !missing.isEmpty { note += " (not enforced here: \(missing.joined(separator: ", ")))" }
        return note
    }
}
