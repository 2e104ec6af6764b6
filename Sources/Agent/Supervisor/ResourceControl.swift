#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
public import RPC

#if canImport(Glibc)
import Glibc
#endif

/// A sub-agent's resource limits, parsed from the seed's strings (`CPU: "10%"`, `memory: "20M"`).
public struct ResourceLimits: Sendable, Hashable, Codable {
    /// Percent of one CPU (150 is one and a half).
    public var cpuPercent: Double?
    public var memoryBytes: UInt64?
    public var pids: Int?

    public init(cpuPercent: Double? = nil, memoryBytes: UInt64? = nil, pids: Int? = nil) {
        self.cpuPercent = cpuPercent
        self.memoryBytes = memoryBytes
        self.pids = pids
    }

    public var isEmpty: Bool { self.cpuPercent == nil && self.memoryBytes == nil && self.pids == nil }

    public init(_ limits: Aspire_V1_ResourceLimits) throws(AspireError) {
        let cpu = limits.cpu.trimmingBlanks()
        if !cpu.isEmpty {
            let number = cpu.hasSuffix("%") ? String(cpu.dropLast()) : cpu
            guard let value = Double(number), value.isFinite, value >= 1, value <= 100 * 1024 else {
                throw AspireError(.invalidParams, "limits.CPU '\(limits.cpu)': expected a percent of one CPU, e.g. \"10%\" or \"150%\"")
            }
            self.cpuPercent = value
        }
        let memory = limits.memory.trimmingBlanks()
        if !memory.isEmpty {
            guard let bytes = Self.bytes(memory), bytes >= 1 << 20 else {
                throw AspireError(.invalidParams, "limits.memory '\(limits.memory)': expected a size of at least 1M, e.g. \"20M\", \"512K\", \"1G\"")
            }
            self.memoryBytes = bytes
        }
        let pids = limits.pids.trimmingBlanks()
        if !pids.isEmpty {
            guard let value = Int(pids), value >= 1, value <= 1 << 22 else {
                throw AspireError(.invalidParams, "limits.pids '\(limits.pids)': expected a number of processes, e.g. \"64\"")
            }
            self.pids = value
        }
    }

    /// "20M", "512K", "1G", "20MiB", "20MB", "1048576": powers of 1024, as `free` and cgroups count.
    static func bytes(_ text: String) -> UInt64? {
        var digits = Substring(text)
        for suffix in ["iB", "B", "b"] where digits.hasSuffix(suffix) {
            digits = digits.dropLast(suffix.count)
            break
        }
        var multiplier: UInt64 = 1
        if let last = digits.last, last.isLetter {
            switch last.uppercased() {
            case "K": multiplier = 1 << 10
            case "M": multiplier = 1 << 20
            case "G": multiplier = 1 << 30
            case "T": multiplier = 1 << 40
            default: return nil
            }
            digits = digits.dropLast()
        }
        guard let value = Double(digits), value.isFinite, value > 0, value * Double(multiplier) < Double(UInt64.max / 2) else { return nil }
        return UInt64(value * Double(multiplier))
    }

    var summary: String {
        var parts: [String] = []
        if let cpuPercent {
            // At most one decimal: 50%, 12.5%.
            let tenths = (cpuPercent * 10).rounded()
            parts.append("CPU \(tenths.truncatingRemainder(dividingBy: 10) == 0 ? "\(Int(tenths / 10))" : "\(tenths / 10)")%")
        }
        if let memoryBytes { parts.append("memory \(memoryBytes >> 20) MiB") }
        if let pids { parts.append("pids \(pids)") }
        return parts.isEmpty ? "no limits" : parts.joined(separator: ", ")
    }
}

/// How sub-agents' processes are grouped and their limits enforced: cgroup v2, cgroup v1, or
/// rlimits where the host has no writable cgroup hierarchy. One small protocol, so the
/// supervisor does not care which.
protocol ResourceControl: Sendable {
    /// "cgroup v2", "cgroup v1" or "rlimits": said in results and logs.
    var name: String { get }
    /// True when `processes(of:)` lists the group's processes (cgroups); false when the
    /// supervisor must find them by session instead (rlimits).
    var tracksProcesses: Bool { get }
    /// Makes or updates the sub-agent's group with `limits`.
    func prepare(_ group: String, limits: ResourceLimits) throws(AspireError)
    /// Moves `pid` (not yet running the sub-agent: it waits for this) into the group.
    func enter(_ pid: pid_t, group: String) throws(AspireError)
    /// Shell commands the launcher runs before it execs `control` (rlimits).
    func shellPrologue(limits: ResourceLimits) -> [String]
    /// The group's processes.
    func processes(of group: String) -> [pid_t]
    /// Processes of the group the kernel's OOM killer killed so far.
    func oomKills(of group: String) -> Int
    /// Limits this control cannot enforce, to say so.
    func unenforced(_ limits: ResourceLimits) -> [String]
    func remove(_ group: String)
}

extension ResourceControl {
    func shellPrologue(limits: ResourceLimits) -> [String] { [] }
    func unenforced(_ limits: ResourceLimits) -> [String] { [] }
}

/// Which resource control to use.
public enum ResourceControlMode: String, Sendable, CaseIterable {
    case auto, cgroup2, cgroup1, rlimits
}

enum ResourceControls {
    /// The control `mode` asks for, or with `auto` the best this host allows: cgroup v2 when
    /// its hierarchy has the memory, cpu and pids controllers and is writable, else cgroup v1's
    /// memory and cpu hierarchies, else rlimits. `parent` names the directory under which each
    /// sub-agent gets its group.
    static func make(mode: ResourceControlMode, root: String = "/sys/fs/cgroup", parent: String) throws(AspireError) -> any ResourceControl {
        switch mode {
        case .cgroup2:
            return try CgroupV2(root: root, parent: parent)
        case .cgroup1:
            return try CgroupV1(root: root, parent: parent)
        case .rlimits:
            return RLimits()
        case .auto:
            if let control = try? CgroupV2(root: root, parent: parent) { return control }
            if let control = try? CgroupV1(root: root, parent: parent) { return control }
            return RLimits()
        }
    }
}

/// Small file helpers for cgroup files.
enum ControlFile {
    static func write(_ value: String, to path: String) throws(AspireError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw AspireError(.agentInternal, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let written = value.withCString { Glibc.write(fd, $0, strlen($0)) }
        guard written >= 0 else { throw AspireError(.agentInternal, "cannot write '\(value)' to \(path): \(String(cString: strerror(errno)))") }
    }

    static func read(_ path: String) -> String? {
        try? String(contentsOfFile: path, encoding: .utf8)
    }

    /// `key value` lines (memory.events, memory.oom_control).
    static func keyed(_ path: String, _ key: String) -> Int {
        guard let text = self.read(path) else { return 0 }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == key { return Int(parts[1]) ?? 0 }
        }
        return 0
    }

    static func pids(_ path: String) -> [pid_t] {
        (self.read(path) ?? "").split(separator: "\n").compactMap { pid_t($0) }
    }

    static func makeDirectory(_ path: String) throws(AspireError) {
        if mkdir(path, 0o755) != 0, errno != EEXIST {
            throw AspireError(.agentInternal, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func isWritableDirectory(_ path: String) -> Bool {
        access(path, W_OK) == 0
    }
}

/// cgroup v2: `<root>/<parent>/<name>` with `memory.max`, `cpu.max`, `pids.max`; OOM kills from
/// `memory.events`.
struct CgroupV2: ResourceControl {
    let name = "cgroup v2"
    let tracksProcesses = true
    let root: String
    let base: String

    /// Only looks: nothing of the host's hierarchy changes until a sub-agent is started.
    init(root: String, parent: String) throws(AspireError) {
        let controllers = ControlFile.read("\(root)/cgroup.controllers")?.split(whereSeparator: \.isWhitespace).map(String.init) ?? []
        guard Set(["memory", "cpu", "pids"]).isSubset(of: Set(controllers)), ControlFile.isWritableDirectory(root) else {
            throw AspireError(.agentInternal, "no writable cgroup v2 hierarchy with memory, cpu and pids controllers at \(root)")
        }
        self.root = root
        self.base = "\(root)/\(parent)"
    }

    private func path(_ group: String) -> String { "\(self.base)/\(group)" }

    func prepare(_ group: String, limits: ResourceLimits) throws(AspireError) {
        try ControlFile.makeDirectory(self.base)
        // A child group gets controllers only when its parent hands them down.
        try ControlFile.write("+memory +cpu +pids", to: "\(self.root)/cgroup.subtree_control")
        try ControlFile.write("+memory +cpu +pids", to: "\(self.base)/cgroup.subtree_control")
        let path = self.path(group)
        try ControlFile.makeDirectory(path)
        try ControlFile.write(limits.memoryBytes.map { "\($0)" } ?? "max", to: "\(path)/memory.max")
        if FileManager.default.fileExists(atPath: "\(path)/memory.swap.max") {
            // Past its limit a sub-agent is killed, not pushed to swap.
            try ControlFile.write(limits.memoryBytes == nil ? "max" : "0", to: "\(path)/memory.swap.max")
        }
        let period = 100_000
        try ControlFile.write(limits.cpuPercent.map { "\(Int($0 * Double(period) / 100)) \(period)" } ?? "max \(period)", to: "\(path)/cpu.max")
        try ControlFile.write(limits.pids.map { "\($0)" } ?? "max", to: "\(path)/pids.max")
    }

    func enter(_ pid: pid_t, group: String) throws(AspireError) {
        try ControlFile.write("\(pid)", to: "\(self.path(group))/cgroup.procs")
    }

    func processes(of group: String) -> [pid_t] {
        ControlFile.pids("\(self.path(group))/cgroup.procs")
    }

    func oomKills(of group: String) -> Int {
        ControlFile.keyed("\(self.path(group))/memory.events", "oom_kill")
    }

    func remove(_ group: String) {
        rmdir(self.path(group))
    }
}

/// cgroup v1: one group per hierarchy — `memory/<parent>/<name>` (`memory.limit_in_bytes`, OOM
/// kills from `memory.oom_control`), `cpu/...` (`cpu.cfs_quota_us`), `pids/...` (`pids.max`).
/// The memory hierarchy is required and lists the processes; cpu and pids are used when present.
struct CgroupV1: ResourceControl {
    let name = "cgroup v1"
    let tracksProcesses = true
    let memory: String
    let cpu: String?
    let pids: String?

    /// Only looks: the parent groups are made when a sub-agent is first started.
    init(root: String, parent: String) throws(AspireError) {
        func writable(_ controller: String) -> String? {
            let base = "\(root)/\(controller)"
            guard FileManager.default.fileExists(atPath: "\(base)/cgroup.procs"), ControlFile.isWritableDirectory(base) else { return nil }
            return "\(base)/\(parent)"
        }
        guard let memory = writable("memory") else {
            throw AspireError(.agentInternal, "no writable cgroup v1 memory hierarchy at \(root)/memory")
        }
        self.memory = memory
        self.cpu = writable("cpu")
        self.pids = writable("pids")
    }

    private var hierarchies: [String] { [self.memory] + [self.cpu, self.pids].compactMap(\.self) }

    func prepare(_ group: String, limits: ResourceLimits) throws(AspireError) {
        for hierarchy in self.hierarchies {
            try ControlFile.makeDirectory(hierarchy)
            try ControlFile.makeDirectory("\(hierarchy)/\(group)")
        }
        let memory = "\(self.memory)/\(group)"
        let memsw = FileManager.default.fileExists(atPath: "\(memory)/memory.memsw.limit_in_bytes")
        let bytes = limits.memoryBytes.map { "\($0)" } ?? "-1"
        // memsw (memory plus swap) must stay at or above the memory limit: lower it after the
        // memory limit when limiting, raise it first when lifting the limit.
        if memsw, limits.memoryBytes == nil { try ControlFile.write("-1", to: "\(memory)/memory.memsw.limit_in_bytes") }
        try ControlFile.write(bytes, to: "\(memory)/memory.limit_in_bytes")
        if memsw, limits.memoryBytes != nil { try ControlFile.write(bytes, to: "\(memory)/memory.memsw.limit_in_bytes") }
        if let cpu {
            let period = 100_000
            try ControlFile.write("\(period)", to: "\(cpu)/\(group)/cpu.cfs_period_us")
            try ControlFile.write(limits.cpuPercent.map { "\(Int($0 * Double(period) / 100))" } ?? "-1", to: "\(cpu)/\(group)/cpu.cfs_quota_us")
        }
        if let pids {
            try ControlFile.write(limits.pids.map { "\($0)" } ?? "max", to: "\(pids)/\(group)/pids.max")
        }
    }

    func enter(_ pid: pid_t, group: String) throws(AspireError) {
        for hierarchy in self.hierarchies { try ControlFile.write("\(pid)", to: "\(hierarchy)/\(group)/cgroup.procs") }
    }

    func processes(of group: String) -> [pid_t] {
        ControlFile.pids("\(self.memory)/\(group)/cgroup.procs")
    }

    func oomKills(of group: String) -> Int {
        ControlFile.keyed("\(self.memory)/\(group)/memory.oom_control", "oom_kill")
    }

    func unenforced(_ limits: ResourceLimits) -> [String] {
        var missing: [String] = []
        if limits.cpuPercent != nil, self.cpu == nil { missing.append("CPU (no cgroup v1 cpu hierarchy)") }
        if limits.pids != nil, self.pids == nil { missing.append("pids (no cgroup v1 pids hierarchy)") }
        return missing
    }

    func remove(_ group: String) {
        for hierarchy in self.hierarchies { rmdir("\(hierarchy)/\(group)") }
    }
}

/// The last resort: memory as RLIMIT_DATA set by the launcher before it execs `control`
/// (inherited by what it starts); CPU share and process count cannot be enforced this way.
/// Processes are found by session.
struct RLimits: ResourceControl {
    let name = "rlimits"
    let tracksProcesses = false

    func prepare(_ group: String, limits: ResourceLimits) throws(AspireError) {}
    func enter(_ pid: pid_t, group: String) throws(AspireError) {}

    func shellPrologue(limits: ResourceLimits) -> [String] {
        guard let bytes = limits.memoryBytes else { return [] }
        return ["ulimit -d \(bytes / 1024)"]
    }

    func processes(of group: String) -> [pid_t] { [] }
    func oomKills(of group: String) -> Int { 0 }

    func unenforced(_ limits: ResourceLimits) -> [String] {
        var missing: [String] = []
        if limits.cpuPercent != nil { missing.append("CPU (needs cgroups)") }
        if limits.pids != nil { missing.append("pids (needs cgroups)") }
        return missing
    }

    func remove(_ group: String) {}
}
