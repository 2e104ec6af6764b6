import Foundation
import Logging
import RPC
import Testing
import TestSupport

@testable import Agent

#if canImport(Glibc)
import Glibc
#endif

/// A web server for packages: Python's http.server on a loopback address, HTTPS when given a
/// certificate, and answering 401 without the bearer token when given one.
final class PackageWebServer {
    let process: ChildProcess
    let port: Int
    let scheme: String
    let host: String

    static let script = """
        import functools, http.server, ssl, sys
        host, directory, token, cert, key = sys.argv[1:6]
        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                if token and self.headers.get("Authorization") != "Bearer " + token:
                    self.send_error(401, "token required")
                    return
                super().do_GET()
            def log_message(self, *args):
                pass
        server = http.server.ThreadingHTTPServer((host, 0), functools.partial(Handler, directory=directory))
        if cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        print(server.server_address[1], flush=True)
        server.serve_forever()
        """

    /// Starts the server and reads the port it prints (waiting without blocking a thread).
    init(host: String, directory: String, token: String = "", certificate: (cert: String, key: String)? = nil) async throws {
        let log = "\(directory)/../web-\(host).log"
        self.process = try ChildProcess(
            "/usr/bin/env",
            ["python3", "-c", Self.script, host, directory, token, certificate?.cert ?? "", certificate?.key ?? ""],
            log: log
        )
        let deadline = ContinuousClock.now.advanced(by: .seconds(20))
        var port: Int?
        while port == nil, self.process.isRunning, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            let text = self.process.log
            if let newline = text.firstIndex(of: "\n") { port = Int(text[..<newline]) }
        }
        guard let port else {
            throw AspireError(.agentInternal, "the package web server did not start: \(self.process.log)")
        }
        self.port = port
        self.host = host
        self.scheme = certificate == nil ? "http" : "https"
    }

    func url(_ file: String) -> String { "\(self.scheme)://\(self.host):\(self.port)/\(file)" }
}

@Suite("Sub-agent packages: http(s) and the host's package manager", .serialized)
struct SupervisorPackageTests {
    static func web(ca: String? = nil, token: String = "", servers: Set<String> = []) -> WebDownload {
        WebDownload(caFile: ca, enrollmentToken: token, serverHosts: { servers }, logger: Logger(label: "test.web"))
    }

    static func install(
        _ supervisor: Supervisor,
        _ name: String,
        _ version: String,
        url: String,
        checksum: String,
        method: String = "agent.install"
    ) async -> Aspire_V1_CommandResult {
        await supervisor.perform(SupervisorWorld.command(method, name: name, version: version, url: url, checksum: checksum))
    }

    @Test("http:// and https:// packages install; 404, an untrusted certificate and a missing token fail with the reason; the token goes only to the agent's servers, and only over TLS")
    func webDownloads() async throws {
        let world = try SupervisorWorld("web")
        var supervisor = try world.supervisor()
        let served = "\(world.base)/served"
        try FileManager.default.createDirectory(atPath: served, withIntermediateDirectories: true)
        let one = try await world.standardPackage("Web", "1.0")
        let two = try await world.standardPackage("Web", "2.0")
        try FileManager.default.copyItem(atPath: one.path, toPath: "\(served)/Web-1.0.tar.gz")
        try FileManager.default.copyItem(atPath: two.path, toPath: "\(served)/Web-2.0.tar.gz")

        // Plain HTTP serves a package (its checksum is what makes it trusted).
        let open = try await PackageWebServer(host: "127.0.0.42", directory: served)
        supervisor = try world.supervisor(downloads: PackageFetcher(web: Self.web().callAsFunction))
        let installed = await Self.install(supervisor, "Web", "1.0", url: open.url("Web-1.0.tar.gz"), checksum: one.checksum)
        #expect(installed.resp == .success, "\(installed.message)")
        #expect(world.status(supervisor, "Web")?.status == "running")
        let missing = await Self.install(supervisor, "Web2", "1.0", url: open.url("Nothing-1.0.tar.gz"), checksum: one.checksum)
        #expect(missing.retcode == ErrorCode.downloadFailed.rawValue)
        #expect(missing.message.contains("HTTP 404"), "\(missing.message)")
        #expect(!FileManager.default.fileExists(atPath: "\(world.root)/Web2/1.0"))

        // Our own server over plain HTTP, demanding the token: it is not sent in clear, so 401,
        // and the failure says why.
        let plain = try await PackageWebServer(host: "127.0.0.40", directory: served, token: "enroll-secret")
        supervisor = try world.supervisor(downloads: PackageFetcher(web: Self.web(token: "enroll-secret", servers: ["127.0.0.40"]).callAsFunction))
        let clear = await Self.install(supervisor, "Web", "2.0", url: plain.url("Web-2.0.tar.gz"), checksum: two.checksum, method: "agent.upgrade")
        #expect(clear.retcode == ErrorCode.downloadFailed.rawValue)
        #expect(clear.message.contains("HTTP 401") && clear.message.contains("only over https"), "\(clear.message)")
        #expect(world.currentVersion("Web") == "1.0")

        // HTTPS with a certificate of our own CA, demanding the token: refused without the agent's
        // --ca; with it, the token goes to our server and the upgrade succeeds; a server that is
        // not ours does not get it.
        let authority = CertificateAuthority(directory: "\(world.base)/tls")
        try authority.prepare(names: ["127.0.0.41"], logger: Logger(label: "test.ca"))
        let secure = try await PackageWebServer(
            host: "127.0.0.41",
            directory: served,
            token: "enroll-secret",
            certificate: (authority.paths.serverCertificate, authority.paths.serverKey)
        )
        supervisor = try world.supervisor(downloads: PackageFetcher(web: Self.web(token: "enroll-secret", servers: ["127.0.0.41"]).callAsFunction))
        let untrusted = await Self.install(supervisor, "Web", "2.0", url: secure.url("Web-2.0.tar.gz"), checksum: two.checksum, method: "agent.upgrade")
        #expect(untrusted.retcode == ErrorCode.downloadFailed.rawValue)
        #expect(untrusted.message.contains("TLS"), "\(untrusted.message)")
        #expect(world.currentVersion("Web") == "1.0")

        let ca = authority.paths.caCertificate
        supervisor = try world.supervisor(downloads: PackageFetcher(web: Self.web(ca: ca, token: "enroll-secret", servers: ["127.0.0.99"]).callAsFunction))
        let stranger = await Self.install(supervisor, "Web", "2.0", url: secure.url("Web-2.0.tar.gz"), checksum: two.checksum, method: "agent.upgrade")
        #expect(stranger.message.contains("HTTP 401"), "\(stranger.message)")

        supervisor = try world.supervisor(downloads: PackageFetcher(web: Self.web(ca: ca, token: "enroll-secret", servers: ["127.0.0.41"]).callAsFunction))
        let upgraded = await Self.install(supervisor, "Web", "2.0", url: secure.url("Web-2.0.tar.gz"), checksum: two.checksum, method: "agent.upgrade")
        #expect(upgraded.resp == .success, "\(upgraded.message)")
        #expect(world.currentVersion("Web") == "2.0")
        #expect(world.status(supervisor, "Web")?.status == "running")
    }

    /// Builds a .deb with dpkg-deb whose files are `<root>/<name>/<version>/{control,agent.sh}`.
    static func debian(_ world: SupervisorWorld, package: String, name: String, version: String, control: String) async throws -> (path: String, checksum: String) {
        let tree = "\(world.base)/deb-\(version)"
        let directory = "\(tree)\(world.root)/\(name)/\(version)"
        try FileManager.default.createDirectory(atPath: "\(tree)/DEBIAN", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try """
            Package: \(package)
            Version: \(version)
            Architecture: all
            Maintainer: Aspire tests <tests@aspire.invalid>
            Description: a sub-agent built by the tests

            """.write(toFile: "\(tree)/DEBIAN/control", atomically: true, encoding: .utf8)
        try control.write(toFile: "\(directory)/control", atomically: true, encoding: .utf8)
        try SupervisorWorld.sleeper.write(toFile: "\(directory)/agent.sh", atomically: true, encoding: .utf8)
        chmod("\(directory)/control", 0o755)
        chmod("\(directory)/agent.sh", 0o755)
        let file = "\(world.base)/\(package)_\(version)_all.deb"
        try await SupervisorWorld.shell("dpkg-deb", ["--root-owner-group", "--build", tree, file])
        return (file, try SupervisorWorld.checksum(of: file))
    }

    /// The version dpkg has installed, or nil.
    static func installedVersion(_ package: String) async throws -> String? {
        let (status, text) = try await ChildProcess.run("dpkg-query", ["--show", "--showformat=${db:Status-Status} ${Version}", package])
        guard status == 0, text.hasPrefix("installed ") else { return nil }
        return String(text.dropFirst("installed ".count))
    }

    @Test(
        "A .deb installs with dpkg, upgrades, rolls back to the previous package when the new one fails, and uninstalls with dpkg --purge",
        .enabled(if: Tools.find("dpkg") != nil && Tools.find("dpkg-deb") != nil && geteuid() == 0, "needs dpkg and root")
    )
    func debianPackages() async throws {
        let world = try SupervisorWorld("deb")
        let supervisor = try world.supervisor()
        let package = "aspire-test-\(UUID().uuidString.prefix(8).lowercased())"
        // However the test ends, the host's package database does not keep the test package.
        do {
            try await Self.debianSteps(world, supervisor, package)
        } catch {
            _ = try? await ChildProcess.run("dpkg", ["--purge", package])
            throw error
        }
        _ = try? await ChildProcess.run("dpkg", ["--purge", package])
    }

    static func debianSteps(_ world: SupervisorWorld, _ supervisor: Supervisor, _ package: String) async throws {
        let failing = SupervisorWorld.control.replacingOccurrences(of: "start)\n", with: "start)\n    echo cannot start >&2; exit 3\n")
        let one = try await Self.debian(world, package: package, name: "Deb", version: "1.0", control: SupervisorWorld.control)
        let two = try await Self.debian(world, package: package, name: "Deb", version: "2.0", control: SupervisorWorld.control)
        let three = try await Self.debian(world, package: package, name: "Deb", version: "3.0", control: failing)

        let installed = await world.install(supervisor, "Deb", "1.0", package: one)
        #expect(installed.resp == .success, "\(installed.message)")
        #expect(try await Self.installedVersion(package) == "1.0")
        #expect(world.status(supervisor, "Deb")?.status == "running")

        let upgraded = await world.install(supervisor, "Deb", "2.0", package: two, method: "agent.upgrade")
        #expect(upgraded.resp == .success, "\(upgraded.message)")
        #expect(try await Self.installedVersion(package) == "2.0")
        #expect(world.currentVersion("Deb") == "2.0")
        #expect(!FileManager.default.fileExists(atPath: "\(world.root)/Deb/1.0/control"), "dpkg replaced 1.0's files")
        let pid = try #require(world.status(supervisor, "Deb")).pid

        let rolledBack = await world.install(supervisor, "Deb", "3.0", package: three, method: "agent.upgrade")
        #expect(rolledBack.retcode == ErrorCode.rolledBack.rawValue, "\(rolledBack.message)")
        #expect(rolledBack.message.contains("rolled back to 2.0"), "\(rolledBack.message)")
        #expect(try await Self.installedVersion(package) == "2.0", "dpkg put the kept 2.0 package back")
        #expect(world.currentVersion("Deb") == "2.0")
        let back = try #require(world.status(supervisor, "Deb"))
        #expect(back.status == "running")
        #expect(back.pid != pid && SupervisorWorld.alive(back.pid))

        let removed = await supervisor.perform(SupervisorWorld.command("agent.uninstall", name: "Deb"))
        #expect(removed.resp == .success, "\(removed.message)")
        #expect(try await Self.installedVersion(package) == nil)
        #expect(!FileManager.default.fileExists(atPath: "\(world.root)/Deb"))
        #expect(!SupervisorWorld.alive(back.pid))
    }

    @Test(
        "An .rpm on a host without rpm is refused with a message naming the missing tool",
        .enabled(if: Tools.find("rpm") == nil, "this host has rpm")
    )
    func rpmWithoutTool() async throws {
        let world = try SupervisorWorld("rpm")
        let supervisor = try world.supervisor()
        let file = "\(world.base)/Fake-1.0.x86_64.rpm"
        var bytes: [UInt8] = [0xED, 0xAB, 0xEE, 0xDB, 0x03, 0x00]
        bytes += Array(repeating: 0, count: 200)
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let result = await world.install(supervisor, "Fake", "1.0", package: (file, try SupervisorWorld.checksum(of: file)))
        #expect(result.retcode == ErrorCode.toolMissing.rawValue, "\(result.message)")
        #expect(result.message.contains("no rpm"), "\(result.message)")
        #expect(world.status(supervisor, "Fake") == nil)
    }
}
