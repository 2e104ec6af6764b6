#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SystemPackage
import RPC
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Where a sub-agent's files live (`<root>/<name>/<version>/`, `.version`, kept packages), and
/// how a package becomes a version there.
extension Supervisor {

    func directory(_ name: String) -> String { "\(self.configuration.root)/\(name)" }

    func versionDirectory(_ record: SubAgentRecord) -> String { "\(self.directory(record.name))/\(record.version)" }

    func logPath(_ name: String) -> String { "\(self.records.directory)/\(name).log" }

    /// Where .deb and .rpm files are kept for rollback: `<root>/<name>/.packages/<version>.deb`.
    func packagesDirectory(_ name: String) -> String { "\(self.directory(name))/.packages" }

    /// Writes `<root>/<name>/.version` atomically (temp file, fsync, rename).
    func switchVersion(_ name: String, to version: String) throws(AspireError) {
        do {
            try AtomicFile.write(version + "\n", to: "\(self.directory(name))/.version", mode: 0o644)
        } catch {
            throw AspireError(.agentInternal, "cannot write \(self.directory(name))/.version: \(error)")
        }
    }

    /// Keeps the version in use and the previous one; removes the others.
    func pruneVersions(_ record: SubAgentRecord) {
        let keep = Set([record.version, record.previousVersion].compactMap(\.self))
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: self.directory(record.name))) ?? []
        for entry in entries where !entry.hasPrefix(".") && !keep.contains(entry) {
            try? FileManager.default.removeItem(atPath: "\(self.directory(record.name))/\(entry)")
        }
        let kept = self.packagesDirectory(record.name)
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: kept)) ?? [] {
            let version = FilePath(entry).stem ?? entry
            if !keep.contains(version) { try? FileManager.default.removeItem(atPath: "\(kept)/\(entry)") }
        }
    }

    /// Fetches, verifies and unpacks a package into `<root>/<name>/<version>/`; what was there
    /// under that version is replaced only once the new tree is complete. A .deb or .rpm is
    /// fetched, verified and kept, and answered to be installed by the package manager once the
    /// version in use has stopped.
    /// A daemon (`daemon`) needs no control script: its spec says how it runs.
    func unpack(_ source: PackageSource, checksum: String, name: String, version: String, daemon: Bool = false) async throws(AspireError) -> SystemPackage? {
        let directory = self.directory(name)
        do {
            try AtomicFile.makeDirectory(self.configuration.root, mode: 0o755)
            try AtomicFile.makeDirectory(directory, mode: 0o755)
        } catch {
            throw AspireError(.agentInternal, "cannot create \(directory): \(error)")
        }
        let target = "\(directory)/\(version)"
        if case .command(let command) = source {
            let log = self.logPath(name)
            let offset = Launcher.size(log)
            let termination = try await Launcher.run(
                Launcher.Request(
                    executable: "/bin/sh",
                    arguments: ["-c", command],
                    environment: Tools.rootEnvironment,
                    outputPath: log
                ),
                timeout: self.configuration.commandTimeout
            )
            guard termination.succeeded else {
                throw AspireError(.downloadFailed, "install command '\(command)' \(termination.description): \(Launcher.tail(log, from: offset))")
            }
            if daemon {
                try? AtomicFile.makeDirectory(target, mode: 0o755)
            } else {
                try self.checkControl(in: target, origin: "the install command ran but")
            }
            return nil
        }
        let staging = "\(directory)/.staging-\(UUID.random().uuidString.lowercased())"
        do {
            try AtomicFile.makeDirectory(staging, mode: 0o700)
        } catch {
            throw AspireError(.agentInternal, "cannot create \(staging): \(error)")
        }
        defer { try? FileManager.default.removeItem(atPath: staging) }
        let package = "\(staging)/package"
        try await self.fetcher.fetch(source, checksum: checksum, to: package)
        let format = try PackageFormat(path: package)
        switch format {
        case .tarball:
            let entries = try await Tarball.list(package, scratch: staging)
            try Tarball.validate(entries)
            let tree = "\(staging)/tree"
            do {
                try AtomicFile.makeDirectory(tree, mode: 0o755)
            } catch {
                throw AspireError(.agentInternal, "cannot create \(tree): \(error)")
            }
            try await Tarball.extract(package, into: tree, scratch: staging)
            let root = Tarball.root(of: tree, marker: "control")
            if !daemon { try self.checkControl(in: root, origin: "the package has") }
            if FileManager.default.fileExists(atPath: target) {
                try? FileManager.default.moveItem(atPath: target, toPath: "\(staging)/replaced")
            }
            guard rename(root, target) == 0 else {
                throw AspireError(.agentInternal, "cannot move the unpacked package to \(target): \(String(cString: strerror(errno)))")
            }
            chmod(target, 0o755)
            AtomicFile.sync(directory)
            return nil
        case .deb, .rpm:
            let manager: SystemPackage.Manager = format == .deb ? .dpkg : .rpm
            let packageName = try await SystemPackage.inspect(package, manager: manager, scratch: staging, timeout: self.configuration.controlTimeout)
            let kept = "\(self.packagesDirectory(name))/\(version).\(manager.fileExtension)"
            do {
                try AtomicFile.makeDirectory(self.packagesDirectory(name), mode: 0o700)
            } catch {
                throw AspireError(.agentInternal, "cannot create \(self.packagesDirectory(name)): \(error)")
            }
            guard rename(package, kept) == 0 else {
                throw AspireError(.agentInternal, "cannot keep the package as \(kept): \(String(cString: strerror(errno)))")
            }
            AtomicFile.sync(self.packagesDirectory(name))
            return SystemPackage(manager: manager, name: packageName, file: kept)
        }
    }

    /// Installs a .deb or .rpm with the package manager; it must leave the version's control script.
    func install(_ package: SystemPackage, for record: SubAgentRecord) async throws(AspireError) {
        try await package.install(log: self.logPath(record.name), timeout: self.configuration.commandTimeout)
        guard record.daemon == nil else {
            // A daemon's package installs its files where it likes; its commands run from here.
            try? AtomicFile.makeDirectory(self.versionDirectory(record), mode: 0o755)
            return
        }
        try self.checkControl(in: self.versionDirectory(record), origin: "\(package.manager.rawValue) installed \(package.name) but it has")
    }

    /// After a failed upgrade: what the package manager changed goes back to the old version —
    /// its package reinstalled, or the new package removed when the old version was a tarball.
    func restorePackages(from new: SubAgentRecord, to old: SubAgentRecord) async throws(AspireError) {
        let log = self.logPath(old.name)
        guard let package = new.package else { return }
        if old.package?.name != package.name {
            try await package.remove(log: log, timeout: self.configuration.commandTimeout)
        }
        if let previous = old.package {
            try await previous.install(log: log, timeout: self.configuration.commandTimeout)
        }
        try? FileManager.default.removeItem(atPath: package.file)
    }

    /// The directory holding `control`: the archive's root, or its one top directory when the
    /// archive wraps everything in one (`name-1.0/control`).
    func checkControl(in directory: String, origin: String) throws(AspireError) {
        let path = "\(directory)/control"
        guard let control = try? Stat(FilePath(path), followTargetSymlink: false) else {
            throw AspireError(.badPackage, "\(origin) no control script (\(path) is missing); a package needs an executable 'control' at its root")
        }
        guard control.type == .regular else {
            throw AspireError(.badPackage, "\(origin) a 'control' that is not a regular file")
        }
        guard control.permissions.rawValue & 0o111 != 0 else {
            throw AspireError(.badPackage, "\(origin) a 'control' script that is not executable (chmod +x control before packing)")
        }
    }
}
