#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RPC

#if canImport(Glibc)
import Glibc
#endif

extension GetInfo {
    struct Disk: Encodable {
        var device: String
        var mountpoint: String
        var fstype: String
        var options: String
        var totalBytes: UInt64
        var usedBytes: UInt64
        var freeBytes: UInt64
        var availableBytes: UInt64
        var usedPercent: Double
        var inodesTotal: UInt64
        var inodesFree: UInt64
    }

    /// File systems backed by storage (pseudo file systems are left out), as `df` shows them.
    func disks() throws -> [Disk] {
        let pseudo: Set<String> = [
            "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "pstore", "debugfs",
            "tracefs", "configfs", "fusectl", "mqueue", "hugetlbfs", "bpf", "autofs", "binfmt_misc",
            "rpc_pipefs", "nsfs", "efivarfs", "ramfs", "selinuxfs",
        ]
        var disks: [Disk] = []
        var seen = Set<String>()
        for line in try self.read("/proc/self/mounts").split(separator: "\n") {
            let fields = line.split(separator: " ").map { Self.unescapeMount(String($0)) }
            guard fields.count >= 4, !pseudo.contains(fields[2]), seen.insert(fields[1]).inserted else { continue }
            var stats = statvfs()
            guard statvfs(self.root + fields[1], &stats) == 0, stats.f_blocks > 0 else { continue }
            let unit = UInt64(stats.f_frsize)
            let total = UInt64(stats.f_blocks) * unit
            let free = UInt64(stats.f_bfree) * unit
            let available = UInt64(stats.f_bavail) * unit
            let used = total - free
            disks.append(
                Disk(
                    device: fields[0],
                    mountpoint: fields[1],
                    fstype: fields[2],
                    options: fields[3],
                    totalBytes: total,
                    usedBytes: used,
                    freeBytes: free,
                    availableBytes: available,
                    usedPercent: used + available == 0 ? 0 : (Double(used) / Double(used + available) * 1000).rounded() / 10,
                    inodesTotal: UInt64(stats.f_files),
                    inodesFree: UInt64(stats.f_ffree)
                )
            )
        }
        return disks
    }

    /// /proc/mounts writes space, tab, newline and backslash as octal escapes.
    static func unescapeMount(_ text: String) -> String {
        guard text.contains("\\") else { return text }
        var bytes: [UInt8] = []
        let utf8 = Array(text.utf8)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "\\"), index + 3 < utf8.count,
                let value = UInt8(String(decoding: utf8[(index + 1) ... (index + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    struct Interface: Encodable {
        var name: String
        var mac: String?
        var mtu: Int?
        var state: String?
        var addresses: [String]
        var rxBytes: UInt64?
        var txBytes: UInt64?
        var rxPackets: UInt64?
        var txPackets: UInt64?
        var rxErrors: UInt64?
        var txErrors: UInt64?
    }

    /// Interfaces from /sys/class/net with their addresses (getifaddrs) and counters.
    func network() throws -> [Interface] {
        var addresses: [String: [String]] = [:]
        var list: UnsafeMutablePointer<ifaddrs>?
        if getifaddrs(&list) == 0, let first = list {
            defer { freeifaddrs(list) }
            var cursor: UnsafeMutablePointer<ifaddrs>? = first
            while let entry = cursor?.pointee {
                defer { cursor = entry.ifa_next }
                guard let address = entry.ifa_addr else { continue }
                let family = Int32(address.pointee.sa_family)
                guard family == AF_INET || family == AF_INET6 else { continue }
                var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                let length = socklen_t(family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
                guard getnameinfo(address, length, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 else { continue }
                var text = String(cString: host)
                if let netmask = entry.ifa_netmask {
                    text += "/\(Self.prefixLength(netmask, family: family))"
                }
                addresses[String(cString: entry.ifa_name), default: []].append(text)
            }
        }
        let base = self.root + "/sys/class/net"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: base))?.sorted() ?? addresses.keys.sorted()
        return names.map { name in
            func value(_ file: String) -> String? {
                (try? String(contentsOfFile: "\(base)/\(name)/\(file)", encoding: .utf8))?
                    .trimmed()
            }
            func counter(_ file: String) -> UInt64? { value("statistics/\(file)").flatMap { UInt64($0) } }
            return Interface(
                name: name,
                mac: value("address"),
                mtu: value("mtu").flatMap { Int($0) },
                state: value("operstate"),
                addresses: addresses[name] ?? [],
                rxBytes: counter("rx_bytes"),
                txBytes: counter("tx_bytes"),
                rxPackets: counter("rx_packets"),
                txPackets: counter("tx_packets"),
                rxErrors: counter("rx_errors"),
                txErrors: counter("tx_errors")
            )
        }
    }

    static func prefixLength(_ netmask: UnsafeMutablePointer<sockaddr>, family: Int32) -> Int {
        let count = family == AF_INET ? 4 : 16
        let offset = family == AF_INET ? 4 : 8
        return UnsafeRawPointer(netmask).advanced(by: offset).withMemoryRebound(to: UInt8.self, capacity: count) { bytes in
            (0 ..< count).reduce(0) { $0 + bytes[$1].nonzeroBitCount }
        }
    }

    struct Process: Encodable {
        var pid: Int32
        var ppid: Int32
        var user: String
        var state: String
        var command: String
        var cmdline: String
        var threads: Int
        var rssBytes: UInt64
        /// Seconds since 1970.
        var startTime: Int64
    }

    /// Every process, from /proc/[pid]; `-n N` keeps the N largest by memory.
    func processes(_ arguments: Arguments) throws -> [Process] {
        var limit: Int?
        var iterator = arguments.tokens.makeIterator()
        while let token = iterator.next() {
            guard token == "-n", let value = iterator.next().flatMap({ Int($0) }), value > 0 else {
                throw AspireError(.invalidParams, "getinfo.processes: unknown argument '\(token)' (use -n COUNT)")
            }
            limit = value
        }
        let ticks = Int64(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        let bootTime = (try? self.kernel().bootTime) ?? 0
        var users: [UInt32: String] = [:]
        var result: [Process] = []
        let entries = try FileManager.default.contentsOfDirectory(atPath: self.root + "/proc")
        for entry in entries {
            guard let pid = Int32(entry), let stat = self.readIfPresent("/proc/\(entry)/stat"),
                let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")")
            else { continue }
            let command = String(stat[stat.index(after: open) ..< close])
            let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
            guard fields.count > 21 else { continue }
            let status = self.readIfPresent("/proc/\(entry)/status") ?? ""
            let uid = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }
                .flatMap { UInt32($0.split(whereSeparator: { $0 == "\t" || $0 == " " })[1]) } ?? 0
            if users[uid] == nil { users[uid] = Account.user(named: "\(uid)")?.name ?? "\(uid)" }
            let cmdline = (try? Data(contentsOf: URL(fileURLWithPath: self.root + "/proc/\(entry)/cmdline")))
                .map { String(decoding: $0.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).trimmingBlanks() } ?? ""
            result.append(
                Process(
                    pid: pid,
                    ppid: Int32(fields[1]) ?? 0,
                    user: users[uid]!,
                    state: String(fields[0]),
                    command: command,
                    cmdline: cmdline,
                    threads: Int(fields[17]) ?? 0,
                    rssBytes: (UInt64(fields[21]) ?? 0) * pageSize,
                    startTime: bootTime + (Int64(fields[19]) ?? 0) / max(ticks, 1)
                )
            )
        }
        if let limit {
            return Array(result.sorted { $0.rssBytes > $1.rssBytes }.prefix(limit))
        }
        return result.sorted { $0.pid < $1.pid }
    }
}
