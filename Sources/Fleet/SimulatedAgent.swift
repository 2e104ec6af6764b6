import Agent
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RPC
import Synchronization
import TestSupport

/// One simulated agent: its own HTTP/2 connection and TLS session, the real protocol (Init
/// with redirects, the Connect stream, Hello, status reports, pings, results until acked),
/// and the real agent's reconnect delays. Commands are answered at once with a canned success,
/// or run for real by the agent's own executors.
final class SimulatedAgent: Sendable {
    let agentSN: String
    /// Where this agent dials first (the fleet spreads these over 127.0.0.0/8).
    let address: HostPort
    let shared: Fleet.Shared
    /// The open stream's outbound queue, so the fleet can make every agent report at once.
    private let sink = Mutex<AsyncStream<Aspire_V1_AgentMessage>.Continuation?>(nil)
    private let startedAt = Date()
    /// Results sent and not acknowledged, by command id: sent again on the next stream, and
    /// instead of running a command again (the real agent's outbox, in memory).
    private let unacked = Mutex<[String: Aspire_V1_CommandResult]>([:])
    /// The certificate this agent enrolled for (in memory), on a node with TLS.
    private let identity = Mutex<ClientIdentity?>(nil)
    /// Commands running now: one sent again meanwhile is not run again (the real agent's
    /// record of what it runs).
    private let running = Mutex<Set<String>>([])
    /// Pings this agent sent on the open stream and not yet answered.
    let unansweredPings = Mutex<Set<UInt64>>([])
    /// What its deployment set says it runs, as if each sub-agent started the moment the set
    /// came (no package is fetched), and the set's digest.
    private let deployed = Mutex<(digest: String, running: [String: (revision: Int64, version: String, since: Date)])>(("", [:]))

    init(agentSN: String, address: HostPort, shared: Fleet.Shared) {
        self.agentSN = agentSN
        self.address = address
        self.shared = shared
    }

    private enum Outcome {
        case ended(Aspire_V1_Redirect?)
        case redirect([HostPort])
        case failed
    }

    /// Connects, holds the stream, reconnects; until cancelled. Like the real agent's
    /// connector: the servers in order (its own, then the fallbacks), each redirect followed
    /// through its whole list (with the servers visited named in Init), then a backoff.
    func run() async {
        var failures = 0
        var preferred: [HostPort] = []
        while !Task.isCancelled {
            var outcome = Outcome.failed
            var visited: Set<String> = []
            for server in preferred + [self.address] + self.shared.configuration.fallbacks where !visited.contains(server.description) {
                outcome = await self.tryServer(server, hops: 0, visited: &visited)
                if case .ended = outcome { break }
            }
            preferred = []
            do {
                if case .ended(let redirect) = outcome {
                    failures = 0
                    var maxDelay = Duration.seconds(1)
                    if let redirect {
                        preferred = redirect.servers.compactMap { try? HostPort(parsing: $0) }
                        maxDelay = .milliseconds(Int(max(redirect.maxDelayMs, 0)))
                    }
                    try await Task.sleep(for: Backoff.uniform(maxDelay))
                } else {
                    failures += 1
                    self.shared.counters.failures.add(1, ordering: .relaxed)
                    try await Task.sleep(for: Backoff.fullJitter(attempt: failures, base: .milliseconds(500), cap: .seconds(60)))
                }
            } catch {
                return
            }
        }
    }

    /// Init (and the stream) at `server`; a redirect is followed to each server it names not
    /// tried yet this round (`visited`, which gains each server tried), until one holds the stream.
    private func tryServer(_ server: HostPort, hops: Int, visited: inout Set<String>) async -> Outcome {
        visited.insert(server.description)
        let outcome = await self.attempt(server, visited: visited)
        guard case .redirect(let targets) = outcome else { return outcome }
        guard hops < 4 else { return .failed }
        for target in targets where !visited.contains(target.description) {
            let next = await self.tryServer(target, hops: hops + 1, visited: &visited)
            if case .ended = next { return next }
        }
        return .failed
    }

    /// Enrolls with the fleet's join token unless this agent holds a certificate; what it will
    /// connect with.
    func security(at address: HostPort) async throws -> ClientSecurity {
        let settings = self.shared.configuration
        guard case .tls(let caFile, _) = settings.security else { return settings.security }
        if let identity = self.identity.withLock({ $0 }) { return .tls(caFile: caFile, identity: identity) }
        let transport = try Transports.client(address: address, authority: settings.authority, security: settings.security)
        let identity = try await withGRPCClient(transport: transport) { client in
            try await ClientIdentity.enroll(agentSN: self.agentSN, joinToken: settings.token, client: client)
        }
        self.identity.withLock { $0 = identity }
        return .tls(caFile: caFile, identity: identity)
    }

    private func attempt(_ address: HostPort, visited: Set<String>) async -> Outcome {
        let settings = self.shared.configuration
        do {
            let transport = try Transports.client(
                address: address,
                authority: settings.authority,
                security: try await self.security(at: address),
                silentPeer: AgentConfiguration().silentPeer,
                keepalive: AgentConfiguration().keepalive
            )
            // Without TLS the join token is the credential; with it, the certificate.
            let interceptors: [any ClientInterceptor] = settings.security == .plaintext ? [BearerTokenInterceptor(token: settings.token)] : []
            return try await withGRPCClient(transport: transport, interceptors: interceptors) { client in
                var request = Aspire_V1_InitRequest()
                request.agentSn = self.agentSN
                request.hostname = self.agentSN
                request.version = settings.version
                request.os = "linux"
                request.arch = "x86_64"
                request.tags = settings.tags
                request.visited = visited.sorted()
                let answer = try await Aspire_V1_Bootstrap.Client(wrapping: client).initAdmitted(request, options: .failFast(timeout: .seconds(30))) { _ in
                    self.shared.counters.slotsGiven.add(1, ordering: .relaxed)
                }
                switch answer.action {
                case .accept:
                    self.shared.admitted()
                    return .ended(try await self.stream(client))
                case .redirect:
                    return .redirect(try answer.servers.map { try HostPort(parsing: $0) })
                case .unspecified, .UNRECOGNIZED:
                    return .failed
                }
            }
        } catch {
            return .failed
        }
    }

    /// The Connect stream, until it ends; returns the server's Redirect when it sent one.
    private func stream(_ client: GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Aspire_V1_Redirect? {
        let (outbound, continuation) = AsyncStream.makeStream(of: Aspire_V1_AgentMessage.self)
        var hello = Aspire_V1_AgentMessage()
        hello.hello.agentSn = self.agentSN
        hello.hello.hostname = self.agentSN
        hello.hello.version = self.shared.configuration.version
        hello.hello.os = "linux"
        hello.hello.arch = "x86_64"
        hello.hello.tags = self.shared.configuration.tags
        hello.hello.deploymentsDigest = self.deployed.withLock { $0.digest }
        continuation.yield(hello)
        let online = Atomic<Bool>(false)
        defer {
            self.sink.withLock { $0 = nil }
            continuation.finish()
            for nonce in self.unansweredPings.withLock({ pending in defer { pending.removeAll() }; return pending }) {
                self.shared.pongArrived(nonce, answered: false)
            }
            if online.load(ordering: .relaxed) { self.shared.counters.online.subtract(1, ordering: .relaxed) }
        }
        return try await Aspire_V1_AgentChannel.Client(wrapping: client).connect(
            options: .failFast(timeout: nil),
            requestProducer: { writer in
                for await message in outbound {
                    try await writer.write(message)
                }
            },
            onResponse: { response in
                // The reader runs in the group's body, so it can start a task per command;
                // the children never throw, so cancelling them at the end returns cleanly.
                try await withThrowingDiscardingTaskGroup(returning: Aspire_V1_Redirect?.self) { group in
                    defer { group.cancelAll() }
                    for try await message in response.messages {
                        switch message.body {
                        case .welcome(let welcome):
                            online.store(true, ordering: .relaxed)
                            self.sink.withLock { $0 = continuation }
                            self.shared.welcomed()
                            for result in self.unacked.withLock({ Array($0.values) }) {
                                var answer = Aspire_V1_AgentMessage()
                                answer.result = result
                                continuation.yield(answer)
                            }
                            let step = Int64(max(welcome.step, 1))
                            group.addTask { await self.report(every: step, into: continuation) }
                        case .command(let command):
                            self.shared.counters.commands.add(1, ordering: .relaxed)
                            if let stored = self.unacked.withLock({ $0[command.id] }) {
                                var answer = Aspire_V1_AgentMessage()
                                answer.result = stored
                                continuation.yield(answer)
                                break
                            }
                            guard self.running.withLock({ $0.insert(command.id).inserted }) else { break }
                            if case .deployments(let set)? = command.params {
                                // A real agent reports at once when its sub-agents change.
                                self.deploy(set)
                                continuation.yield(self.statusReport)
                            }
                            let shared = self.shared
                            group.addTask {
                                defer { _ = self.running.withLock { $0.remove(command.id) } }
                                guard let result = await shared.answer(command) else { return }
                                var answer = Aspire_V1_AgentMessage()
                                answer.result = result
                                self.unacked.withLock { $0[command.id] = answer.result }
                                continuation.yield(answer)
                                shared.counters.results.add(1, ordering: .relaxed)
                            }
                        case .ack(let ack):
                            self.unacked.withLock { unacked in
                                for id in ack.ids { unacked[id] = nil }
                            }
                            self.shared.counters.acks.add(ack.ids.count, ordering: .relaxed)
                        case .ping(let ping):
                            var pong = Aspire_V1_AgentMessage()
                            pong.pong.nonce = ping.nonce
                            continuation.yield(pong)
                        case .redirect(let redirect):
                            return redirect
                        case .pong(let pong):
                            self.unansweredPings.withLock { _ = $0.remove(pong.nonce) }
                            self.shared.pongArrived(pong.nonce, answered: true)
                        case nil:
                            break
                        }
                    }
                    return nil
                }
            }
        )
    }

    /// Status reports like the real agent's: the first after a random part of the step.
    private func report(every step: Int64, into continuation: AsyncStream<Aspire_V1_AgentMessage>.Continuation) async {
        var delay = Duration.milliseconds(Int64.random(in: 0 ... step * 1000))
        while (try? await Task.sleep(for: delay)) != nil {
            continuation.yield(self.statusReport)
            delay = .seconds(step)
        }
    }

    var statusReport: Aspire_V1_AgentMessage {
        var message = Aspire_V1_AgentMessage()
        message.status.hostname = self.agentSN
        message.status.version = self.shared.configuration.version
        message.status.uptime = Int64(Date().timeIntervalSince(self.startedAt))
        message.status.timestamp = Int64(Date().timeIntervalSince1970)
        message.status.tags = self.shared.configuration.tags
        let now = Date()
        for (name, running) in self.deployed.withLock({ $0.running }).sorted(by: { $0.key < $1.key }) {
            var agent = Aspire_V1_SubAgentStatus()
            agent.name = name
            agent.version = running.version
            agent.status = "running"
            agent.uptime = Int64(now.timeIntervalSince(running.since))
            message.status.agents.append(agent)
            var state = Aspire_V1_DeploymentState()
            state.name = name
            state.revision = running.revision
            state.version = running.version
            message.status.deployments.append(state)
        }
        return message
    }

    /// Takes a deployment set: what it names runs (restarted when its version changes), what
    /// left it is gone.
    private func deploy(_ set: Aspire_V1_DeploymentParams) {
        let now = Date()
        self.deployed.withLock { deployed in
            var running: [String: (revision: Int64, version: String, since: Date)] = [:]
            for entry in set.deployments {
                let before = deployed.running[entry.agent.name]
                let since = before?.version == entry.agent.version ? before?.since ?? now : now
                running[entry.agent.name] = (entry.revision, entry.agent.version, since)
            }
            deployed = (set.digest, running)
        }
    }

    /// Queues `message` on the open stream; false when none is open.
    @discardableResult
    func send(_ message: Aspire_V1_AgentMessage) -> Bool {
        self.sink.withLock { sink in
            guard let sink else { return false }
            if case .enqueued = sink.yield(message) { return true }
            return false
        }
    }
}
