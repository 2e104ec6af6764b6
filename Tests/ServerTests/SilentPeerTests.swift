import Foundation
import RPC
import Server
import Testing
import TestSupport

/// A host that loses power, or a network that goes between a node and a host, sends no FIN and
/// no RST: each end hears nothing. The kernel's probes (``SilentPeer``) find it on both.
@Suite("Silent peers", .stopsChildProcesses)
struct SilentPeerTests {
    @Test(
        "A partition (every packet dropped, no FIN or RST): the node drops the silent host, and the agent leaves the silent node for the next",
        .enabled(if: Partition.isPossible, "needs root and iproute2 to make blackhole routes"),
        // Without the kernel's watch nothing ends the dead connection, a node's shutdown included.
        .timeLimit(.minutes(4))
    )
    func partitionFoundByBothEnds() async throws {
        // Stream pings and HTTP/2 keepalives an hour apart: only the kernel can find the silence.
        let quiet: (inout ServerConfiguration) -> Void = { configuration in
            configuration.silentPeer = SilentPeer(timeout: .seconds(3))
            configuration.pingInterval = .seconds(3600)
            configuration.transportKeepalive = .seconds(3600)
        }
        try await Partition.with { partition in
            try await withLocalNode(name: "cut", configure: { quiet(&$0); $0.listen = HostPort(host: partition.node, port: 0) }) { cut in
                try await withLocalNode(name: "spare", sharingSecretsOf: cut, configure: quiet) { spare in
                    try await withTemporaryDirectory("silent-peer") { directory in
                        let agent = try TestAgent.start(
                            in: directory, servers: [cut.address.description, spare.address.description], caFile: cut.caFile,
                            tokenFile: "\(cut.node.configuration.dataDirectory)/enroll.token", arguments: ["--silent-peer-timeout", "3"]
                        )
                        try await eventually(timeout: .seconds(30), "the agent on the first node\n\(agent.process.log)") {
                            cut.node.registry.session(for: agent.agentSN) != nil
                        }
                        let session = try #require(cut.node.registry.session(for: agent.agentSN))
                        #expect(session.peer.contains(partition.host), "the connection comes from the host's address: \(session.peer)")

                        try await partition.cut()
                        try await eventually(timeout: .seconds(60), "the node to drop the silent host\n\(agent.process.log)") {
                            cut.node.registry.session(for: agent.agentSN) == nil
                        }
                        try await eventually(timeout: .seconds(10), "the host offline in the node's store") {
                            try await cut.store.host(agentSN: agent.agentSN)?.status == .offline
                        }
                        try await eventually(timeout: .seconds(60), "the agent on the other node\n\(agent.process.log)") {
                            spare.node.registry.session(for: agent.agentSN) != nil
                        }
                        await agent.process.stop()
                    }
                }
            }
        }
    }
}
