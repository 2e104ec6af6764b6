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
    struct Kernel: Encodable {
        var sysname: String
        var release: String
        var version: String
        var machine: String
        var hostname: String
        /// Boot time, seconds since 1970 (btime of /proc/stat).
        var bootTime: Int64
        var uptimeSeconds: Double
        var cmdline: String
        var modules: Int
    }

    func kernel() throws -> Kernel {
        let names = Self.uname()
        let stat = try self.read("/proc/stat")
        let bootTime = stat.split(separator: "\n").first { $0.hasPrefix("btime ") }
            .flatMap { Int64($0.split(separator: " ")[1]) } ?? 0
        let uptime = self.readIfPresent("/proc/uptime")?.split(separator: " ").first.flatMap { Double($0) } ?? 0
        let modules = self.readIfPresent("/proc/modules")?.split(separator: "\n").count ?? 0
        return Kernel(
            sysname: names.sysname,
            release: names.release,
            version: names.version,
            machine: names.machine,
            hostname: names.nodename,
            bootTime: bootTime,
            uptimeSeconds: uptime,
            cmdline: (self.readIfPresent("/proc/cmdline") ?? "").trimmed(),
            modules: modules
        )
    }

    struct OS: Encodable {
        var id: String
        var name: String
        var version: String
        var versionId: String
        var prettyName: String
        var idLike: String?
        var hostname: String
        var arch: String
        var kernel: String
    }

    func os() throws -> OS {
        let text = self.readIfPresent("/etc/os-release") ?? self.readIfPresent("/usr/lib/os-release") ?? ""
        let release = Self.parseEnvFile(text)
        let names = Self.uname()
        return OS(
            id: release["ID"] ?? "linux",
            name: release["NAME"] ?? "Linux",
            version: release["VERSION"] ?? "",
            versionId: release["VERSION_ID"] ?? "",
            prettyName: release["PRETTY_NAME"] ?? "Linux",
            idLike: release["ID_LIKE"],
            hostname: names.nodename,
            arch: names.machine,
            kernel: names.release
        )
    }

    struct CPU: Encodable {
        var model: String
        var vendor: String
        var logicalCpus: Int
        var physicalCores: Int
        var sockets: Int
        var mhz: Double?
        var load1: Double
        var load5: Double
        var load15: Double
        /// Jiffies since boot, from the `cpu` line of /proc/stat.
        var times: [String: UInt64]
    }

    func cpu() throws -> CPU {
        let info = try self.read("/proc/cpuinfo")
        var model = ""
        var vendor = ""
        var mhz: Double?
        var logical = 0
        var cores = Set<String>()
        var sockets = Set<String>()
        var physicalID = "0"
        for line in info.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingBlanks() }
            guard parts.count == 2 else { continue }
            switch parts[0] {
            case "processor": logical += 1
            case "model name": if model.isEmpty { model = parts[1] }
            case "vendor_id": if vendor.isEmpty { vendor = parts[1] }
            case "cpu MHz": if mhz == nil { mhz = Double(parts[1]) }
            case "physical id": physicalID = parts[1]; sockets.insert(parts[1])
            case "core id": cores.insert("\(physicalID)/\(parts[1])")
            default: break
            }
        }
        let load = (self.readIfPresent("/proc/loadavg") ?? "0 0 0").split(separator: " ").compactMap { Double($0) }
        var times: [String: UInt64] = [:]
        if let line = try self.read("/proc/stat").split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) {
            let keys = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]
            for (key, value) in zip(keys, line.split(separator: " ").dropFirst()) { times[key] = UInt64(value) }
        }
        return CPU(
            model: model,
            vendor: vendor,
            logicalCpus: max(logical, 1),
            physicalCores: cores.isEmpty ? max(logical, 1) : cores.count,
            sockets: max(sockets.count, 1),
            mhz: mhz,
            load1: load.count > 0 ? load[0] : 0,
            load5: load.count > 1 ? load[1] : 0,
            load15: load.count > 2 ? load[2] : 0,
            times: times
        )
    }

    struct Memory: Encodable {
        var totalBytes: UInt64
        var freeBytes: UInt64
        var availableBytes: UInt64
        var buffersBytes: UInt64
        var cachedBytes: UInt64
        var swapTotalBytes: UInt64
        var swapFreeBytes: UInt64
        var usedPercent: Double
    }

    func memory() throws -> Memory {
        var values: [String: UInt64] = [:]
        for line in try self.read("/proc/meminfo").split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " })
            if parts.count >= 2, let value = UInt64(parts[1]) {
                values[String(parts[0])] = parts.count >= 3 && parts[2] == "kB" ? value * 1024 : value
            }
        }
        let total = values["MemTotal"] ?? 0
        let available = values["MemAvailable"] ?? values["MemFree"] ?? 0
        return Memory(
            totalBytes: total,
            freeBytes: values["MemFree"] ?? 0,
            availableBytes: available,
            buffersBytes: values["Buffers"] ?? 0,
            cachedBytes: values["Cached"] ?? 0,
            swapTotalBytes: values["SwapTotal"] ?? 0,
            swapFreeBytes: values["SwapFree"] ?? 0,
            usedPercent: total == 0 ? 0 : (Double(total - min(available, total)) / Double(total) * 1000).rounded() / 10
        )
    }

    static func uname() -> (sysname: String, nodename: String, release: String, version: String, machine: String) {
        var names = utsname()
        Glibc.uname(&names)
        func field<T>(_ value: inout T) -> String {
            withUnsafeBytes(of: &value) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        return (field(&names.sysname), field(&names.nodename), field(&names.release), field(&names.version), field(&names.machine))
    }

    /// KEY=value lines with optional quotes (os-release).
    static func parseEnvFile(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "="), !line.hasPrefix("#") else { continue }
            var value = line[line.index(after: equals)...].trimmingBlanks()
            if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                value = String(value.dropFirst().dropLast())
            }
            result[String(line[..<equals])] = value
        }
        return result
    }
}
