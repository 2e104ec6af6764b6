import Fleet
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RPC
import Server
import Synchronization
import Testing
import TestSupport

@testable import Agent

@Suite("Redirects", .stopsChildProcesses)
struct RedirectTests {
    @Test("A redirect-to policy sends agents to its servers, skipping visited ones")
    func redirectAll() {
        let a = HostPort(host: "10.0.0.1", port: 8443)
        let b = HostPort(host: "10.0.0.2", port: 8443)
        let policy = RedirectPolicy.redirectAll([a, b])
        #expect(policy.decide(agentSN: "x", visited: []) == .redirect([a, b]))
        #expect(policy.decide(agentSN: "x", visited: [a.description]) == .redirect([b]))
        #expect(policy.decide(agentSN: "x", visited: [a.description, b.description]) == .accept)
    }

    @Test("Rendezvous hashing: every node agrees where an agent belongs, and spreads agents")
    func rendezvous() {
        let peers = (1 ... 3).map { HostPort(host: "127.0.0.\($0)", port: 8443) }
        var holders: [HostPort: Int] = [:]
        for index in 0 ..< 3000 {
            let sn = "agent-\(index)"
            var accepted: [HostPort] = []
            var redirectTargets: Set<HostPort> = []
            for node in peers {
                switch RedirectPolicy.rendezvous(current: node, peers: peers).decide(agentSN: sn, visited: []) {
                case .accept: accepted.append(node)
                case .redirect(let targets): redirectTargets.insert(targets[0])
                }
            }
            #expect(accepted.count == 1, "\(sn) accepted by \(accepted)")
            #expect(redirectTargets == Set(accepted), "\(sn) redirected to \(redirectTargets), held by \(accepted)")
            holders[accepted[0], default: 0] += 1
        }
        #expect(holders.values.allSatisfy { $0 > 800 }, "uneven spread: \(holders)")
    }

    /// A peer that is not ours and misbehaves: it always redirects to `target`, ignoring `visited`.
    struct LoopingBootstrap: Aspire_V1_Bootstrap.SimpleServiceProtocol {
        let own: Box
        let target: Box

        func `init`(request: Aspire_V1_InitRequest, context: ServerContext) async throws -> Aspire_V1_InitResponse {
            self.own.calls.add(1, ordering: .relaxed)
            var response = Aspire_V1_InitResponse()
            response.action = .redirect
            response.servers = [self.target.value.withLock { $0 }]
            return response
        }

        func enroll(request: Aspire_V1_EnrollRequest, context: ServerContext) async throws -> Aspire_V1_EnrollResponse {
            throw RPCError(code: .unimplemented, message: "not enrolling")
        }

        func renew(request: Aspire_V1_RenewRequest, context: ServerContext) async throws -> Aspire_V1_EnrollResponse {
            throw RPCError(code: .unimplemented, message: "not renewing")
        }
    }

    final class Box: Sendable {
        let value = Mutex<String>("")
        let calls = Atomic<Int>(0)
    }

    @Test("A full node (--max-agents) refuses new agents with RESOURCE_EXHAUSTED, keeps the ones it holds, and takes the waiting one when a place frees")
    func fullNodeRefuses() async throws {
        let directory = try makeTemporaryDirectory("aspire-full")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await TestNode.start(in: directory, host: Loopback.address(), arguments: ["--max-agents", "1"])
        let first = try TestAgent.start(in: directory, name: "first", connectingTo: node)
        try await node.waitForAgent(first)

        let second = try TestAgent.start(in: directory, name: "second", connectingTo: node)
        try await eventually("the node to refuse the second agent\n\(node.process.log)") {
            node.process.log.contains("node full, agent refused") && node.process.log.contains(second.agentSN)
        }
        let refused = await #expect(throws: RPCError.self) {
            try await node.withClient(token: try node.enrollToken) { client in
                var request = Aspire_V1_InitRequest()
                request.agentSn = "third"
                return try await Aspire_V1_Bootstrap.Client(wrapping: client).`init`(request)
            }
        }
        #expect(refused?.code == .resourceExhausted)
        #expect(refused?.message.contains("maximum of 1 agents") == true, "says why: \(String(describing: refused))")
        // The agent it holds may come back (a reconnect is not a newcomer).
        let again = try await node.withClient(token: try node.enrollToken) { client in
            var request = Aspire_V1_InitRequest()
            request.agentSn = first.agentSN
            return try await Aspire_V1_Bootstrap.Client(wrapping: client).`init`(request)
        }
        #expect(again.action == .accept)
        #expect(try await node.connectedAgents().map(\.agentSn) == [first.agentSN])

        await first.process.stop()
        try await node.waitForAgent(second)
        await second.process.stop()
    }

    @Test("The agent refuses a redirect loop between two nodes instead of bouncing forever")
    func loopRefused() async throws {
        let a = Box()
        let b = Box()
        let serverA = GRPCServer(
            transport: try AgentListener(address: HostPort(host: "127.0.0.10", port: 0), tls: nil, config: Transports.serverConfig()),
            services: [LoopingBootstrap(own: a, target: b)]
        )
        let serverB = GRPCServer(
            transport: try AgentListener(address: HostPort(host: "127.0.0.11", port: 0), tls: nil, config: Transports.serverConfig()),
            services: [LoopingBootstrap(own: b, target: a)]
        )
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await serverA.serve() }
            group.addTask { try await serverB.serve() }
            defer {
                serverA.beginGracefulShutdown()
                serverB.beginGracefulShutdown()
            }
            let addressA = try await serverA.listeningAddress!.ipv4!
            let addressB = try await serverB.listeningAddress!.ipv4!
            a.value.withLock { $0 = "127.0.0.10:\(addressA.port)" }
            b.value.withLock { $0 = "127.0.0.11:\(addressB.port)" }

            let directory = "/tmp/aspire-loop-\(UUID().uuidString.prefix(8))"
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var configuration = AgentConfiguration()
            configuration.insecure = true
            configuration.dataDirectory = directory
            configuration.servers = [HostPort(host: "127.0.0.10", port: addressA.port)]
            // A loaded machine (the whole suite runs in parallel) can take seconds to answer an
            // Init: the loop, not a timeout, must end this round.
            configuration.connectTimeout = .seconds(60)
            let runtime = try AgentRuntime(configuration: configuration, logger: Logger(label: "test"))
            var visited: Set<String> = []
            let outcome = await Connector(runtime: runtime).tryServer(configuration.servers[0], hops: 0, visited: &visited)
            guard case .failed = outcome else {
                Issue.record("a redirect loop must fail the round, got \(outcome)")
                return
            }
            #expect(a.calls.load(ordering: .relaxed) == 1)
            #expect(b.calls.load(ordering: .relaxed) == 1)
            #expect(visited == [a.value.withLock { $0 }, b.value.withLock { $0 }])
        }
    }
}
