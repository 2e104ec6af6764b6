public import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// How long a connection may hear nothing from its peer — a host that lost power, a cable
/// pulled, a partition: no FIN, no RST, just silence — before it is closed.
///
/// The kernel keeps the watch, not the process: TCP keepalive probes after 2/5 of the timeout
/// without a packet, then every 1/5 of it, and `TCP_USER_TIMEOUT`, which fails the connection
/// once the timeout has passed with nothing heard while probes or data wait for an answer.
/// An idle connection costs no wake-up of the process and no timer of the event loop (HTTP/2
/// keepalive pings cost both, on every connection); a healthy peer's kernel answers the probes
/// even while its process is busy. Both ends set it: the node finds a dead host, the agent a
/// dead node (and goes to another).
public struct SilentPeer: Sendable, Hashable, CustomStringConvertible {
    /// Nothing heard for this long closes the connection (give or take a probe interval).
    public var timeout: Duration

    public init(timeout: Duration) {
        self.timeout = timeout
    }

    /// The default of both binaries: a silent host is offline, and a silent node left, in under 30 s.
    public static let standard = SilentPeer(timeout: .seconds(25))

    /// Whole seconds, as the binaries' `--silent-peer-timeout` gives it: from 2 (a probe a
    /// second) to a day.
    public init(seconds: Int, option: String = "the silent-peer timeout") throws(AspireError) {
        guard (2 ... 86_400).contains(seconds) else {
            throw AspireError(.badRequest, "\(option) must be from 2 to 86400 seconds, not \(seconds)")
        }
        self.timeout = .seconds(seconds)
    }

    /// The socket options, in the order they are set.
    var socketOptions: [(ChannelOptions.Types.SocketOption, SocketOptionValue)] {
        let seconds = Int(self.timeout.components.seconds)
        let interval = max(1, seconds / 5)
        let idle = max(1, seconds - 3 * interval)
        return [
            (ChannelOptions.socketOption(.so_keepalive), 1),
            (ChannelOptions.tcpOption(.init(rawValue: TCP_KEEPIDLE)), SocketOptionValue(idle)),
            (ChannelOptions.tcpOption(.init(rawValue: TCP_KEEPINTVL)), SocketOptionValue(interval)),
            // Without TCP_USER_TIMEOUT (old kernels) the probes alone give up after these.
            (ChannelOptions.tcpOption(.init(rawValue: TCP_KEEPCNT)), 3),
            (ChannelOptions.tcpOption(.init(rawValue: CInt(TCP_USER_TIMEOUT))), SocketOptionValue(clamping: self.timeout.milliseconds)),
        ]
    }

    /// Sets the options on a connection's channel, from its event loop.
    public func configure(_ channel: any Channel) throws {
        guard let options = channel.syncOptions else { return }
        for (option, value) in self.socketOptions {
            try options.setOption(option, value: value)
        }
    }

    /// Sets the options on a connection's channel, from anywhere.
    public func configureAsync(_ channel: any Channel) -> EventLoopFuture<Void> {
        if channel.eventLoop.inEventLoop {
            return channel.eventLoop.makeCompletedFuture { try self.configure(channel) }
        }
        return channel.eventLoop.submit { try self.configure(channel) }
    }

    public var description: String { "\(self.timeout.components.seconds) s" }
}
