#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RPC

#if canImport(Glibc)
import Glibc
#endif

extension BuiltinCollector {
    /// Measures now: `<prefix>.port.up{port}` 1 or 0; `<prefix>.process.count{process}` and
    /// `<prefix>.process.up{process}`; `<prefix>.pidfile.up{pidfile}`.
    func collect(prefix: String, host: String, now: Date) -> [PluginMetric] {
        let time = Int64(now.timeIntervalSince1970)
        func metric(_ name: String, _ tags: [String: String], _ value: Double) -> PluginMetric {
            PluginMetric(name: "\(prefix).\(name)", timestamp: time, tags: tags.merging(["host": host]) { $1 }, value: value)
        }
        switch self {
        case .port(let ports):
            let listening = Self.listeningPorts()
            return ports.map { metric("port.up", ["port": "\($0)"], listening.contains($0) ? 1 : 0) }
        case .process(let names, let pidfiles):
            var counts: [String: Int] = [:]
            for entry in ProcessTable.all() where entry.isAlive {
                if let command = Self.command(of: entry.pid), names.contains(command) { counts[command, default: 0] += 1 }
            }
            return names.flatMap { name in
                [metric("process.count", ["process": name], Double(counts[name] ?? 0)), metric("process.up", ["process": name], counts[name] ?? 0 > 0 ? 1 : 0)]
            }
                + pidfiles.map { path in metric("pidfile.up", ["pidfile": path], ProcessTable.named(byPidfile: path) != nil ? 1 : 0) }
        }
    }

    /// Ports something listens on (TCP, IPv4 and IPv6), from /proc/net/tcp{,6}.
    static func listeningPorts() -> Set<Int> {
        var ports: Set<Int> = []
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                // local_address is ADDR:PORT in hex; state 0A is LISTEN.
                guard fields.count > 3, fields[3] == "0A", let colon = fields[1].lastIndex(of: ":"),
                    let port = Int(fields[1][fields[1].index(after: colon)...], radix: 16)
                else { continue }
                ports.insert(port)
            }
        }
        return ports
    }

    /// A process's command name (`/proc/PID/comm`).
    static func command(of pid: pid_t) -> String? {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmed()
    }
}
