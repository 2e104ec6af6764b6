import Foundation
import RPC
import Testing

@testable import Agent

/// cgroup v2 cannot be exercised on these machines (the unified mount has no controllers), so
/// this checks what the agent writes and reads against the v2 interface files laid out in a
/// directory as the kernel lays them out: the files exist before anyone writes them (the kernel
/// makes them at mkdir), so the writer's no-create opens work as on cgroupfs.
@Suite("Resource control: the cgroup v2 interface files")
struct ResourceControlTests {
    static func layout(_ root: String, controllers: String, parent: String, group: String) throws {
        let files = [
            "\(root)/cgroup.controllers": controllers,
            "\(root)/cgroup.subtree_control": "",
            "\(root)/\(parent)/cgroup.subtree_control": "",
            "\(root)/\(parent)/\(group)/memory.max": "",
            "\(root)/\(parent)/\(group)/memory.swap.max": "",
            "\(root)/\(parent)/\(group)/cpu.max": "",
            "\(root)/\(parent)/\(group)/pids.max": "",
            "\(root)/\(parent)/\(group)/cgroup.procs": "",
            "\(root)/\(parent)/\(group)/memory.events": "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n",
        ]
        for (path, content) in files {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try content.write(toFile: path, atomically: false, encoding: .utf8)
        }
    }

    static func read(_ path: String) -> String {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("Limits become memory.max, memory.swap.max, cpu.max and pids.max; controllers are handed down; OOM kills come from memory.events")
    func cgroupV2Files() throws {
        let root = NSTemporaryDirectory() + "aspire-cg2-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Self.layout(root, controllers: "cpuset cpu io memory hugetlb pids rdma misc", parent: "aspire", group: "MiniAgent")
        let control = try ResourceControls.make(mode: .auto, root: root, parent: "aspire")
        #expect(control.name == "cgroup v2")
        #expect(control.unenforced(ResourceLimits(cpuPercent: 10, memoryBytes: 20 << 20, pids: 50)).isEmpty)

        var limits = Aspire_V1_ResourceLimits()
        limits.cpu = "10%"
        limits.memory = "20M"
        limits.pids = "50"
        try control.prepare("MiniAgent", limits: try ResourceLimits(limits))
        let group = "\(root)/aspire/MiniAgent"
        #expect(Self.read("\(group)/memory.max") == "20971520")
        #expect(Self.read("\(group)/memory.swap.max") == "0", "past its limit it is killed, not swapped")
        #expect(Self.read("\(group)/cpu.max") == "10000 100000", "10% of one CPU per 100 ms period")
        #expect(Self.read("\(group)/pids.max") == "50")
        #expect(Self.read("\(root)/cgroup.subtree_control") == "+memory +cpu +pids")
        #expect(Self.read("\(root)/aspire/cgroup.subtree_control") == "+memory +cpu +pids")

        try control.enter(4242, group: "MiniAgent")
        #expect(Self.read("\(group)/cgroup.procs") == "4242")
        #expect(control.processes(of: "MiniAgent") == [4242])
        #expect(control.oomKills(of: "MiniAgent") == 2)
    }

    @Test("No limits write the v2 'max' values; 150% is one and a half CPUs")
    func cgroupV2Unlimited() throws {
        let root = NSTemporaryDirectory() + "aspire-cg2-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Self.layout(root, controllers: "memory cpu pids", parent: "p", group: "g")
        let control = try CgroupV2(root: root, parent: "p")
        try control.prepare("g", limits: ResourceLimits())
        #expect(Self.read("\(root)/p/g/memory.max") == "max")
        #expect(Self.read("\(root)/p/g/memory.swap.max") == "max")
        #expect(Self.read("\(root)/p/g/cpu.max") == "max 100000")
        #expect(Self.read("\(root)/p/g/pids.max") == "max")
        try Self.layout(root, controllers: "memory cpu pids", parent: "p", group: "h")
        try control.prepare("h", limits: ResourceLimits(cpuPercent: 150))
        #expect(Self.read("\(root)/p/h/cpu.max") == "150000 100000")
    }

    @Test("A v2 hierarchy without the memory, cpu and pids controllers is not used: auto falls back")
    func cgroupV2WithoutControllers() throws {
        let root = NSTemporaryDirectory() + "aspire-cg2-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try Self.layout(root, controllers: "cpuset io", parent: "aspire", group: "g")
        #expect(throws: AspireError.self) { try CgroupV2(root: root, parent: "aspire") }
        let fallback = try ResourceControls.make(mode: .auto, root: root, parent: "aspire")
        #expect(fallback.name == "rlimits", "no v1 memory hierarchy under this root either")
    }
}
