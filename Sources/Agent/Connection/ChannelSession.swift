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

/// One `AgentChannel.Connect` stream: Hello, then commands down and results up, with the
/// agent's own watch on a silent server and its periodic status report.
struct ChannelSession {
    let runtime: AgentRuntime
    let client: GRPCClient<HTTP2ClientTransport.Posix>
    let logger: Logger

    private struct Silent: Error, CustomStringConvertible {
        var seconds: Int
        var description: String { "no message from the server for \(self.seconds) s" }
    }

    /// Runs until the stream ends; returns the server's Redirect when it sent one.
    func run() async throws -> Aspire_V1_Redirect? {
        let (outbound, continuation) = AsyncStream.makeStream(of: Aspire_V1_AgentMessage.self)
        var hello = Aspire_V1_AgentMessage()
        hello.hello = self.runtime.hello
        continuation.yield(hello)
        let runtime = self.runtime
        let logger = self.logger
        defer {
            runtime.uplink.detach()
            continuation.finish()
        }
        let channel = Aspire_V1_AgentChannel.Client(wrapping: self.client)
        return try await channel.connect(
            options: .failFast(timeout: nil),
            requestProducer: { writer in
                for await message in outbound {
                    try await writer.write(message)
                }
            },
            onResponse: { response in
                let messages = response.messages
                let lastHeard = LastHeard()
                let pingInterval = PingInterval()
                return try await withThrowingTaskGroup(of: Aspire_V1_Redirect?.self) { group in
                    group.addTask {
                        for try await message in messages {
                            lastHeard.touch()
                            switch message.body {
                            case .welcome(let welcome):
                                runtime.settings.welcomed(step: welcome.step)
                                if welcome.pingInterval > 0 { pingInterval.seconds = Int(welcome.pingInterval) }
                                logger.notice("connected", metadata: ["node": "\(welcome.node)", "agent.sn": "\(runtime.agentSN)"])
                                runtime.uplink.attach(continuation, client: self.client)
                                runtime.deployments.connected()
                            case .command(let command):
                                runtime.submit(command)
                            case .ack(let ack):
                                runtime.acknowledge(ack.ids)
                            case .ping(let ping):
                                var pong = Aspire_V1_AgentMessage()
                                pong.pong.nonce = ping.nonce
                                continuation.yield(pong)
                            case .redirect(let redirect):
                                return redirect
                            case .pong, nil:
                                break
                            }
                        }
                        logger.info("server closed the stream")
                        return nil
                    }
                    group.addTask {
                        while true {
                            let interval = pingInterval.seconds
                            try await Task.sleep(for: .seconds(interval))
                            if lastHeard.secondsAgo > Double(3 * interval) {
                                throw Silent(seconds: 3 * interval)
                            }
                        }
                    }
                    group.addTask {
                        // The first report comes after a random part of the step, so a fleet
                        // that reconnects at once does not report at once.
                        var delay = Duration.milliseconds(Int64.random(in: 0 ... Int64(runtime.settings.step.load(ordering: .relaxed)) * 1000))
                        while true {
                            try await Task.sleep(for: delay)
                            var report = Aspire_V1_AgentMessage()
                            report.status = runtime.statusReport
                            continuation.yield(report)
                            delay = .seconds(Int(runtime.settings.step.load(ordering: .relaxed)))
                        }
                    }
                    group.addTask {
                        // What the server could not store comes again, until it is stored.
                        let interval = runtime.configuration.resendInterval
                        while true {
                            try await Task.sleep(for: interval)
                            runtime.uplink.resendUnacknowledged(olderThan: interval)
                        }
                    }
                    if case .tls = try runtime.configuration.security {
                        group.addTask {
                            // Checked now and then every tenth of the certificate's life (at most an
                            // hour): a host up for weeks renews in time.
                            while true {
                                do {
                                    try await runtime.enrollment.renewIfDue(client: self.client)
                                } catch {
                                    logger.warning("cannot renew the certificate yet", metadata: ["error": "\(Connector.describe(error))"])
                                }
                                try await Task.sleep(for: runtime.enrollment.renewalCheckInterval)
                            }
                        }
                    }
                    defer { group.cancelAll() }
                    return try await group.next() ?? nil
                }
            }
        )
    }
}

/// When the server last said anything.
private final class LastHeard: Sendable {
    private let millis = Atomic<Int64>(Date().unixMilliseconds)

    func touch() { self.millis.store(Date().unixMilliseconds, ordering: .relaxed) }

    var secondsAgo: Double { Double(Date().unixMilliseconds - self.millis.load(ordering: .relaxed)) / 1000 }
}

/// The server's ping interval, from Welcome.
private final class PingInterval: Sendable {
    private let value = Atomic<Int>(15)

    var seconds: Int {
        get { self.value.load(ordering: .relaxed) }
        set { self.value.store(newValue, ordering: .relaxed) }
    }
}
