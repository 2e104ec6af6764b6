import Foundation
import Synchronization

/// A network partition between a node and a host on loopback, the way a node sees a host that
/// lost power: every packet either way dropped, no FIN, no RST.
///
/// Made with routes of the kernel's `local` table (root and iproute2): connections to `node`
/// leave from `host` (`local NODE/32 src HOST`), and a cut turns both addresses into blackholes,
/// so neither end hears the other while every other loopback address works on. The node listens
/// on `node` and the agent dials it; the agent cannot bind its source address itself.
public final class Partition: Sendable {
    public let node: String
    public let host: String

    /// Whether this process may change routes (root, or CAP_NET_ADMIN) with `ip`: tried once, with
    /// a blackhole route on an address nothing uses, added and taken away.
    public static let isPossible: Bool = {
        let probe = "127.0.250.255/32"
        func ip(_ arguments: [String]) -> Bool {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["ip", "route"] + arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            guard (try? process.run()) != nil else { return false }
            process.waitUntilExit()
            return process.terminationStatus == 0
        }
        guard ip(["replace", "blackhole", probe, "table", "local"]) else { return false }
        return ip(["del", probe, "table", "local"])
    }()

    private init(node: String, host: String) {
        self.node = node
        self.host = host
    }

    /// A node address and a host address no other partition of this process got, from
    /// 127.0.250.0/24, which nothing else hands out: a run killed mid-partition leaves its
    /// blackholes there, where the next run's partitions clear them first.
    public static func addresses() -> (node: String, host: String) {
        let n = (self.next.add(1, ordering: .relaxed).newValue - 1) % 126
        return ("127.0.250.\(2 * n + 1)", "127.0.250.\(2 * n + 2)")
    }

    private static let next = Atomic<Int>(0)

    /// Routes connections to `node` from `host` while `body` runs, and takes the routes away
    /// after, however it ends.
    public static func with<Result>(
        _ addresses: (node: String, host: String) = Partition.addresses(), _ body: (Partition) async throws -> Result
    ) async throws -> Result {
        let partition = Partition(node: addresses.node, host: addresses.host)
        await partition.remove()
        try await partition.ip("add", "local", "\(partition.node)/32", "dev", "lo", "table", "local", "src", partition.host)
        do {
            let result = try await body(partition)
            await partition.remove()
            return result
        } catch {
            await partition.remove()
            throw error
        }
    }

    /// Drops every packet between the two addresses from now on.
    public func cut() async throws {
        try await self.ip("replace", "blackhole", "\(self.node)/32", "table", "local")
        try await self.ip("replace", "blackhole", "\(self.host)/32", "table", "local")
    }

    private func remove() async {
        for address in [self.node, self.host] {
            _ = try? await ChildProcess.run("ip", ["route", "del", "\(address)/32", "table", "local"])
        }
    }

    private func ip(_ arguments: String...) async throws {
        let (status, output) = try await ChildProcess.run("ip", ["route"] + arguments)
        guard status == 0 else {
            throw HarnessError("ip route \(arguments.joined(separator: " ")) failed (\(status)): \(output)")
        }
    }
}
