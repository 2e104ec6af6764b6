import Foundation
import RPC
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Disks fill up on real hosts: the node's data directory and the agent's spool on small tmpfs
/// mounts, filled to the last byte with a file, then given their space back.
@Suite("Disk full", .serialized)
struct DiskFullTests {
    static let canMount = getuid() == 0

    /// A 24 MiB tmpfs at `path`, unmounted by the returned closure.
    static func smallDisk(at path: String) throws -> () -> Void {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let status = Glibc.mount("tmpfs", path, "tmpfs", 0, "size=24m")
        guard status == 0 else { throw HarnessError("mount tmpfs at \(path): \(String(cString: strerror(errno)))") }
        return { _ = umount2(path, Int32(MNT_DETACH)) }
    }

    /// Fills the file system holding `directory` with one file; answers its path.
    static func fill(_ directory: String) -> String {
        let path = "\(directory)/filler"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        defer { close(fd) }
        let block = [UInt8](repeating: 0, count: 1 << 16)
        while block.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        return path
    }

    @Test(
        "A node whose data directory is full answers 'unavailable' with why and keeps serving; a result that came meanwhile stays with the agent and is stored once when space returns",
        .enabled(if: Self.canMount, "needs root to mount a small tmpfs")
    )
    func nodeDiskFull() async throws {
        let directory = try makeTemporaryDirectory("disk-full-node")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let unmount = try Self.smallDisk(at: "\(directory)/node")
        defer { unmount() }
        let node = try await TestNode.start(in: directory, host: Loopback.address(), arguments: ["--log-level", "info"])
        defer { Task { await node.process.stop() } }
        let agent = try TestAgent.start(in: directory, connectingTo: node, arguments: ["--resend-interval", "2"])
        defer { Task { await agent.process.stop() } }
        try await node.waitForAgent(agent)
        let rest = try RESTClient(node)

        // A command that ends while the disk is full.
        let accepted = try await rest.ok("POST", "/api/v1/server/command", json: ["agentsn": agent.agentSN, "method": "sync.bash", "cmd": "sleep 3; echo late", "async": true])
        let task = try #require(accepted["task"] as? Int)
        let filler = Self.fill(node.dataDirectory)

        // New work is refused with the reason, and the node answers what needs no writing.
        let refused = try await rest.call("POST", "/api/v1/server/command", json: ["agentsn": agent.agentSN, "method": "sync.bash", "cmd": "echo now"])
        #expect(refused.status == 503, "\(refused.text)")
        #expect(refused.text.contains("the store cannot write") && refused.text.contains("full"), "\(refused.text)")
        _ = try await rest.ok("GET", "/api/v1/server/agents")

        // The late result reaches the node, which cannot store it, so does not acknowledge it.
        try await eventually(timeout: .seconds(30), "the late result refused by the full store\n\(node.process.log.suffix(3000))") {
            node.process.log.contains("the store cannot write")
                && FileManager.default.fileExists(atPath: "\(agent.dataDirectory)/outbox")
                && ((try? FileManager.default.contentsOfDirectory(atPath: "\(agent.dataDirectory)/outbox")) ?? []).contains { $0.hasSuffix(".result") }
        }
        try await Task.sleep(for: .seconds(3))
        #expect(node.process.isRunning)

        // Space again: the agent's next resend is stored, once; new commands run.
        try FileManager.default.removeItem(atPath: filler)
        var detail = try await node.task(Int64(task))
        try await eventually(timeout: .seconds(60), "the late result stored after space returned: \(detail)") {
            detail = try await node.task(Int64(task))
            return detail.task.complete >= 1
        }
        #expect(detail.subtasks.count == 1)
        #expect(detail.subtasks.first?.status == "succeeded")
        #expect(String(decoding: detail.subtasks.first?.result.data ?? Data(), as: UTF8.self) == "late\n")
        let now = try await node.run("echo again", on: agent.agentSN)
        #expect(String(decoding: now.data, as: UTF8.self) == "again\n")
        try await eventually(timeout: .seconds(30), "the agent's outbox to empty") {
            ((try? FileManager.default.contentsOfDirectory(atPath: "\(agent.dataDirectory)/outbox")) ?? []).allSatisfy { !$0.hasSuffix(".result") }
        }
    }

    @Test(
        "An agent whose spool is full refuses new commands with why (it cannot mark them running, and a command it cannot track could run twice), still delivers a result that finished meanwhile (held in memory until acknowledged), and runs again when space returns",
        .enabled(if: Self.canMount, "needs root to mount a small tmpfs")
    )
    func agentDiskFull() async throws {
        let directory = try makeTemporaryDirectory("disk-full-agent")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address(), arguments: ["--log-level", "info"])
        defer { Task { await node.process.stop() } }
        let unmount = try Self.smallDisk(at: "\(directory)/agent")
        defer { unmount() }
        let agent = try TestAgent.start(in: directory, connectingTo: node, arguments: ["--resend-interval", "2"])
        defer { Task { await agent.process.stop() } }
        try await node.waitForAgent(agent)

        // Started with space; it finishes once the spool is full.
        let late = Task { try await node.run("sleep 3; echo late", on: agent.agentSN) }
        try await eventually(timeout: .seconds(30), "the command to be marked running") {
            !((try? FileManager.default.contentsOfDirectory(atPath: "\(agent.dataDirectory)/running")) ?? []).isEmpty
        }
        let filler = Self.fill(agent.dataDirectory)

        let refused = try await node.run("echo now", on: agent.agentSN)
        #expect(refused.resp == .failed && refused.retcode == ErrorCode.agentInternal.rawValue, "\(refused.message)")
        #expect(refused.message.contains("No space left on device"), "\(refused.message)")

        let result = try await late.value
        #expect(String(decoding: result.data, as: UTF8.self) == "late\n", "\(result.resp) \(result.message)")
        #expect(agent.process.log.contains("kept in memory until acknowledged"), "\(agent.process.log.suffix(3000))")
        #expect(agent.process.isRunning)

        try FileManager.default.removeItem(atPath: filler)
        let again = try await node.run("echo space", on: agent.agentSN)
        #expect(String(decoding: again.data, as: UTF8.self) == "space\n", "\(again.message)")
    }
}
