#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RPC
import Synchronization

/// Finds a node and holds a stream to it, forever: each round resolves every configured server
/// to all its addresses and tries them in order, following Init redirects; between failed
/// rounds it waits with full-jitter exponential backoff.
struct Connector {
    let runtime: AgentRuntime

    private var configuration: AgentConfiguration { self.runtime.configuration }
    private var logger: Logger { self.runtime.logger }

    /// How a try ended.
    enum Outcome {
        /// A stream was held and has ended; the server may have named where to go next.
        case sessionEnded(redirect: Aspire_V1_Redirect?)
        case redirect([HostPort])
        case failed
    }

    func run() async throws {
        let ceiling = self.configuration.startDelay.ceiling(
            uptime: StartDelay.uptime(), step: .seconds(Int(self.runtime.settings.step.load(ordering: .relaxed)))
        )
        if ceiling > .zero {
            let delay = Backoff.uniform(ceiling)
            self.logger.notice(
                "waiting before the first connection", metadata: ["start.delay_ms": "\(delay.milliseconds)", "start.delay_max_ms": "\(ceiling.milliseconds)"]
            )
            try await Task.sleep(for: delay)
        }
        var failedRounds = 0
        var preferred: [HostPort] = []
        while !Task.isCancelled {
            let servers = (preferred + self.runtime.settings.servers).uniqued()
            preferred = []
            var outcome = Outcome.failed
            // Every server tried in this round, answering or not: Init names them, so no node
            // sends the agent back to one (a dead node its peers still count as alive included).
            var visited: Set<String> = []
            for server in servers {
                outcome = await self.tryServer(server, hops: 0, visited: &visited)
                if case .sessionEnded = outcome { break }
            }
            switch outcome {
            case .sessionEnded(let redirect):
                failedRounds = 0
                var maxDelay = Duration.seconds(1)
                if let redirect {
                    preferred = (try? redirect.servers.map { try HostPort(parsing: $0) }) ?? []
                    maxDelay = .milliseconds(Int(max(redirect.maxDelayMs, 0)))
                    self.logger.notice("server asked us to reconnect elsewhere", metadata: ["redirect.servers": "\(redirect.servers)"])
                }
                try await Task.sleep(for: Backoff.uniform(maxDelay))
            case .redirect, .failed:
                failedRounds += 1
                let delay = Backoff.fullJitter(attempt: failedRounds, base: self.configuration.backoffBase, cap: self.configuration.backoffCap)
                self.logger.warning(
                    "no server reachable; retrying",
                    metadata: ["retry.round": "\(failedRounds)", "retry.delay_ms": "\(delay.milliseconds)"]
                )
                try await Task.sleep(for: delay)
            }
        }
    }

    /// Tries every address of `server`; follows a redirect to the servers it names that were
    /// not tried yet this round (`visited`, which gains each server tried).
    func tryServer(_ server: HostPort, hops: Int, visited: inout Set<String>) async -> Outcome {
        let addresses: [HostPort]
        do {
            addresses = try await self.runtime.resolver.resolve(server)
        } catch {
            self.logger.warning("cannot resolve server", metadata: ["server": "\(server)", "error": "\(error)"])
            return .failed
        }
        visited.insert(server.description)
        for address in addresses {
            let outcome = await self.attempt(address, server: server, visited: visited)
            switch outcome {
            case .sessionEnded:
                return outcome
            case .failed:
                continue
            case .redirect(let targets):
                guard hops < self.configuration.maxRedirects else {
                    self.logger.warning("too many redirects; giving up this round", metadata: ["server": "\(server)", "redirect.hops": "\(hops + 1)"])
                    return .failed
                }
                let fresh = targets.filter { !visited.contains($0.description) }
                guard !fresh.isEmpty else {
                    self.logger.warning("redirect loop refused", metadata: ["server": "\(server)", "redirect.servers": "\(targets)"])
                    return .failed
                }
                self.logger.info("redirected", metadata: ["server": "\(server)", "redirect.servers": "\(fresh)"])
                for target in fresh where !visited.contains(target.description) {
                    let next = await self.tryServer(target, hops: hops + 1, visited: &visited)
                    if case .sessionEnded = next { return next }
                }
                return .failed
            }
        }
        return .failed
    }

    /// Init on one address, then the stream when the node accepts. A host without a
    /// certificate says Init with its join token and enrolls at the node that accepts it.
    func attempt(_ address: HostPort, server: HostPort, visited: Set<String>) async -> Outcome {
        var logger = self.logger
        logger[metadataKey: "server"] = "\(server)"
        logger[metadataKey: "server.address"] = "\(address)"
        do {
            let security = try self.security()
            return try await self.withClient(address, server: server, security: security) { client in
                var request = Aspire_V1_InitRequest()
                let hello = self.runtime.hello
                request.agentSn = hello.agentSn
                request.hostname = hello.hostname
                request.version = hello.version
                request.os = hello.os
                request.arch = hello.arch
                request.tags = hello.tags
                request.visited = visited.sorted()
                let bootstrap = Aspire_V1_Bootstrap.Client(wrapping: client)
                let answer = try await bootstrap.initAdmitted(request, options: .failFast(timeout: self.configuration.connectTimeout)) { wait in
                    logger.info("node at its connect rate; asking again at the slot it gave", metadata: ["admission.wait_ms": "\(wait.milliseconds)"])
                }
                switch answer.action {
                case .accept:
                    logger.info("accepted by node", metadata: ["node": "\(answer.node)"])
                    guard case .tls(let caFile, nil) = security else {
                        return .sessionEnded(redirect: try await ChannelSession(runtime: self.runtime, client: client, logger: logger).run())
                    }
                    try await self.runtime.enrollment.enroll(at: address, server: server, caFile: caFile, timeout: self.configuration.connectTimeout)
                    return try await self.withClient(address, server: server, security: try self.security()) { client in
                        .sessionEnded(redirect: try await ChannelSession(runtime: self.runtime, client: client, logger: logger).run())
                    }
                case .redirect:
                    let targets = try answer.servers.map { try HostPort(parsing: $0) }
                    return .redirect(targets)
                case .unspecified, .UNRECOGNIZED:
                    logger.warning("node answered Init with no action")
                    return .failed
                }
            }
        } catch let error as RPCError where error.code == .permissionDenied && !self.configuration.insecure {
            // The certificate was taken back (deleted) or the host banned: enroll again, which
            // the server refuses while a ban lasts.
            self.runtime.enrollment.forget(because: error.message)
            return .failed
        } catch {
            logger.warning("cannot connect", metadata: ["error": "\(Self.describe(error))"])
            return .failed
        }
    }

    /// TLS with the host's certificate when it holds one; plaintext only behind `--insecure`.
    private func security() throws -> ClientSecurity {
        let security = try self.configuration.security
        guard case .tls(let caFile, _) = security else { return security }
        return .tls(caFile: caFile, identity: try self.runtime.enrollment.identity())
    }

    /// A client to `address`: with the certificate when `security` has one, with the join token
    /// when it has none (a host not enrolled yet, or a node without TLS).
    private func withClient<Result: Sendable>(
        _ address: HostPort,
        server: HostPort,
        security: ClientSecurity,
        _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws -> Result {
        let transport = try Transports.client(
            address: address, authority: server.host, security: security,
            silentPeer: self.configuration.silentPeer, keepalive: self.configuration.keepalive
        )
        var interceptors: [any ClientInterceptor] = []
        if case .tls(_, .some) = security {} else if !self.configuration.enrollmentToken.isEmpty {
            interceptors.append(BearerTokenInterceptor(token: self.configuration.enrollmentToken))
        }
        return try await withGRPCClient(transport: transport, interceptors: interceptors, handleClient: body)
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? RPCError {
            var text = "\(error.code): \(error.message)"
            if let cause = error.cause { text += " (\(cause))" }
            return text
        }
        return "\(error)"
    }
}

/// Delays between tries (the fleet simulator uses the same, so its storms have the agent's shape).
public enum Backoff {
    /// Full jitter: a uniform delay in [0, min(cap, base·2^attempt)].
    public static func fullJitter(attempt: Int, base: Duration, cap: Duration) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let ceiling = min(cap.milliseconds, base.milliseconds * (1 << exponent))
        return .milliseconds(Int64.random(in: 0 ... max(ceiling, 1)))
    }

    public static func uniform(_ maximum: Duration) -> Duration {
        .milliseconds(Int64.random(in: 0 ... max(maximum.milliseconds, 0)))
    }
}
