import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RPC

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
        var failedRounds = 0
        var preferred: [HostPort] = []
        while !Task.isCancelled {
            let servers = (preferred + self.runtime.settings.servers).uniqued()
            preferred = []
            var outcome = Outcome.failed
            for server in servers {
                outcome = await self.tryServer(server, hops: 0, visited: [])
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

    /// Tries every address of `server`; follows a redirect to the servers it names.
    func tryServer(_ server: HostPort, hops: Int, visited: Set<String>) async -> Outcome {
        let addresses: [HostPort]
        do {
            addresses = try await self.runtime.resolver.resolve(server)
        } catch {
            self.logger.warning("cannot resolve server", metadata: ["server": "\(server)", "error": "\(error)"])
            return .failed
        }
        let visited = visited.union([server.description])
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
                for target in fresh {
                    let next = await self.tryServer(target, hops: hops + 1, visited: visited)
                    if case .sessionEnded = next { return next }
                }
                return .failed
            }
        }
        return .failed
    }

    /// Init on one address, then the stream when the node accepts.
    func attempt(_ address: HostPort, server: HostPort, visited: Set<String>) async -> Outcome {
        var logger = self.logger
        logger[metadataKey: "server"] = "\(server)"
        logger[metadataKey: "server.address"] = "\(address)"
        do {
            let transport = try Transports.client(
                address: address,
                authority: server.host,
                security: try self.configuration.security,
                keepalive: self.configuration.keepalive
            )
            return try await withGRPCClient(
                transport: transport,
                interceptors: [BearerTokenInterceptor(token: self.configuration.enrollmentToken)]
            ) { client in
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
                let answer = try await bootstrap.`init`(request, options: .failFast(timeout: self.configuration.connectTimeout))
                switch answer.action {
                case .accept:
                    logger.info("accepted by node", metadata: ["node": "\(answer.node)"])
                    let redirect = try await ChannelSession(runtime: self.runtime, client: client, logger: logger).run()
                    return .sessionEnded(redirect: redirect)
                case .redirect:
                    let targets = try answer.servers.map { try HostPort(parsing: $0) }
                    return .redirect(targets)
                case .unspecified, .UNRECOGNIZED:
                    logger.warning("node answered Init with no action")
                    return .failed
                }
            }
        } catch {
            logger.warning("cannot connect", metadata: ["error": "\(Self.describe(error))"])
            return .failed
        }
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
