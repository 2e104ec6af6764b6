import Foundation
import Logging
import RPC
import Testing

@testable import Agent

@Suite("getinfo executors against this machine")
struct GetInfoTests {
    let handlers = CommandHandlers.local(bash: BashExecutor(logger: Logger(label: "test")))

    /// Runs a getinfo method as the agent would: through its handler table.
    func run(_ method: String, _ args: String) async -> Aspire_V1_CommandResult {
        var params = Aspire_V1_GetInfoParams()
        params.args = args
        var command = Aspire_V1_Command()
        command.id = "g"
        command.method = method
        command.getinfo = params
        return await self.handlers.run(command)
    }

    func document(_ method: String, _ args: String = "") async throws -> Any {
        let result = await self.run(method, args)
        try #require(result.resp == .success, "\(method) \(args): \(result.message)")
        return try JSONSerialization.jsonObject(with: result.data)
    }

    func users(_ args: String) async throws -> [[String: Any]] {
        let object = try #require(try await self.document("getinfo.users", args) as? [String: Any])
        return try #require(object["users"] as? [[String: Any]])
    }

    @Test("users -U root names root with uid 0, its groups, home and shell")
    func oneUser() async throws {
        let users = try await self.users("-U root")
        #expect(users.count == 1)
        let root = try #require(users.first)
        #expect(root["name"] as? String == "root")
        #expect(root["uid"] as? Int == 0)
        #expect(root["home"] as? String == "/root")
        #expect((root["groups"] as? [String])?.contains("root") == true)
        #expect(root["kind"] as? String == "system")
        if getuid() == 0 {
            #expect(root["locked"] != nil)
            #expect(root["password_status"] != nil)
        }
    }

    @Test("users -A lists every /etc/passwd entry; -u and -S split them by UID_MIN")
    func allUsers() async throws {
        let passwd = try String(contentsOfFile: "/etc/passwd", encoding: .utf8).split(separator: "\n")
            .filter { !$0.hasPrefix("#") && !$0.isEmpty }
        let all = try await self.users("-A")
        #expect(all.count == passwd.count)
        let normal = try await self.users("-u")
        let system = try await self.users("-S")
        #expect(normal.count + system.count == all.count)
        #expect(normal.allSatisfy { $0["kind"] as? String == "normal" })
        #expect(system.contains { $0["name"] as? String == "root" })
        #expect(system.contains { $0["name"] as? String == "nobody" })
    }

    @Test("users with an unknown user or flag is a clear failure")
    func badUsers() async {
        let unknown = await self.run("getinfo.users", "-U nobody-here-\(Int.random(in: 1 ... 9999))")
        #expect(unknown.resp == .failed)
        #expect(unknown.retcode == ErrorCode.unknownUser.rawValue)
        let flag = await self.run("getinfo.users", "-X")
        #expect(flag.retcode == ErrorCode.invalidParams.rawValue)
        #expect(flag.message.contains("-X"))
        let missing = await self.run("getinfo.users", "-U")
        #expect(missing.retcode == ErrorCode.invalidParams.rawValue)
    }

    @Test("kernel matches uname, /proc/stat and /proc/cmdline")
    func kernel() async throws {
        let kernel = try #require(try await self.document("getinfo.kernel") as? [String: Any])
        var names = utsname()
        uname(&names)
        let release = withUnsafeBytes(of: &names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        #expect(kernel["release"] as? String == release)
        #expect(kernel["machine"] as? String == GetInfo.uname().machine)
        #expect((kernel["boot_time"] as? Int ?? 0) > 1_000_000_000)
        let cmdline = try String(contentsOfFile: "/proc/cmdline", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(kernel["cmdline"] as? String == cmdline)
        #expect(kernel["modules"] is Int)
    }

    @Test("os reads /etc/os-release")
    func os() async throws {
        let os = try #require(try await self.document("getinfo.os") as? [String: Any])
        let release = GetInfo.parseEnvFile(try String(contentsOfFile: "/etc/os-release", encoding: .utf8))
        #expect(os["id"] as? String == release["ID"])
        #expect(os["pretty_name"] as? String == release["PRETTY_NAME"])
        #expect(os["hostname"] as? String == ProcessInfo.processInfo.hostName)
    }

    @Test("cpu counts the online processors")
    func cpu() async throws {
        let cpu = try #require(try await self.document("getinfo.cpu") as? [String: Any])
        #expect(cpu["logical_cpus"] as? Int == Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        #expect((cpu["times"] as? [String: Any])?["idle"] != nil)
    }

    @Test("memory matches MemTotal of /proc/meminfo, in bytes")
    func memory() async throws {
        let memory = try #require(try await self.document("getinfo.memory") as? [String: Any])
        let line = try String(contentsOfFile: "/proc/meminfo", encoding: .utf8).split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
        let kib = try #require(line?.split(separator: " ").dropFirst().first.flatMap { Int($0) })
        #expect(memory["total_bytes"] as? Int == kib * 1024)
        #expect((memory["available_bytes"] as? Int ?? 0) > 0)
    }

    @Test("disk lists the root file system with sizes from statvfs")
    func disk() async throws {
        let disks = try #require(try await self.document("getinfo.disk") as? [[String: Any]])
        let root = try #require(disks.first { $0["mountpoint"] as? String == "/" })
        var stats = statvfs()
        statvfs("/", &stats)
        #expect(root["total_bytes"] as? Int == Int(stats.f_blocks) * Int(stats.f_frsize))
        #expect(!disks.contains { $0["fstype"] as? String == "proc" })
    }

    @Test("network shows the loopback interface with 127.0.0.1/8")
    func network() async throws {
        let interfaces = try #require(try await self.document("getinfo.network") as? [[String: Any]])
        let lo = try #require(interfaces.first { $0["name"] as? String == "lo" })
        #expect((lo["addresses"] as? [String])?.contains("127.0.0.1/8") == true)
        #expect(lo["rx_bytes"] is Int)
    }

    @Test("processes includes this test process; -n limits the list")
    func processes() async throws {
        let processes = try #require(try await self.document("getinfo.processes") as? [[String: Any]])
        let me = try #require(processes.first { $0["pid"] as? Int == Int(getpid()) })
        #expect(me["ppid"] as? Int == Int(getppid()))
        #expect((me["rss_bytes"] as? Int ?? 0) > 0)
        let top = try #require(try await self.document("getinfo.processes", "-n 3") as? [[String: Any]])
        #expect(top.count == 3)
        let bad = await self.run("getinfo.processes", "-n zero")
        #expect(bad.retcode == ErrorCode.invalidParams.rawValue)
    }

    @Test("Unknown methods and arguments to argument-less methods fail with a clear message")
    func unknown() async {
        let method = await self.run("getinfo.bogus", "")
        #expect(method.resp == .failed)
        #expect(method.retcode == ErrorCode.unknownMethod.rawValue)
        #expect(method.message.contains("getinfo.users"))
        let args = await self.run("getinfo.kernel", "-A")
        #expect(args.retcode == ErrorCode.invalidParams.rawValue)
    }
}
