#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RPC

#if canImport(Glibc)
import Glibc
#endif

/// A sub-agent run by the seed's `daemon.init` spec instead of a control script: commands to
/// check, start and stop it, and how to tell it is alive.
struct DaemonProgram: Codable, Equatable, Sendable {
    var precheck: String
    var precheckRetries: Int
    var start: String
    /// Seconds after start before it must be found up.
    var startDelay: Int
    var stop: DaemonStop
    /// Seconds the stop may take before SIGKILL.
    var stopTimeout: Int
    var check: DaemonCheck
    /// Seconds between checks; 0 is the supervisor's interval.
    var checkInterval: Int
    var pidfile: String
    var socket: String
    /// More abnormal exits in a row than this make it fatal; 0 is the supervisor's.
    var hits: Int

    init(_ spec: Aspire_V1_DaemonSpec, owner: String) throws(AspireError) {
        try spec.check(owner: owner)
        self.precheck = spec.precheck
        self.precheckRetries = Int(spec.precheckRetries)
        self.start = spec.start
        self.startDelay = Int(spec.startDelay)
        self.stop = try DaemonStop(parsing: spec.stop, owner: owner)
        self.stopTimeout = spec.stopTimeout == 0 ? 10 : Int(spec.stopTimeout)
        self.check = DaemonCheck(rawValue: spec.check) ?? .process
        self.checkInterval = Int(spec.checkInterval)
        self.pidfile = spec.pidfile
        self.socket = spec.socket
        self.hits = Int(spec.hits)
    }

    /// The process named by the pidfile, while it runs.
    var pidfileProcess: ProcessTable.Entry? {
        self.pidfile.isEmpty ? nil : ProcessTable.named(byPidfile: self.pidfile)
    }

    /// Whether the socket accepts a connection (a Unix socket path, or HOST:PORT within 2 s).
    var socketAccepts: Bool {
        if self.socket.hasPrefix("/") {
            let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { return false }
            defer { close(fd) }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let path = Array(self.socket.utf8.prefix(MemoryLayout.size(ofValue: address.sun_path) - 1))
            withUnsafeMutableBytes(of: &address.sun_path) { buffer in
                for (index, byte) in path.enumerated() { buffer[index] = byte }
            }
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
            }
        }
        guard let target = try? HostPort(parsing: self.socket) else { return false }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(target.host, String(target.port), &hints, &list) == 0, let first = list else { return false }
        defer { freeaddrinfo(list) }
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let info = node {
            let fd = Glibc.socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd >= 0 {
                var timeout = timeval(tv_sec: 2, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                let connected = connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0
                close(fd)
                if connected { return true }
            }
            node = info.pointee.ai_next
        }
        return false
    }

    /// The seed's words for how it is checked.
    var checkDescription: String {
        switch self.check {
        case .process: "no process of it runs"
        case .pidfile: "no process runs with the pid in \(self.pidfile)"
        case .socket: "\(self.socket) accepts no connection"
        }
    }
}
