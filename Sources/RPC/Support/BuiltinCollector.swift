public import Foundation

/// A plugin the agent runs itself instead of a plugin.sh: `builtin://port?ports=22,8080` (is
/// something listening on each port) or `builtin://process?names=sshd,nginx&pidfiles=/run/x.pid`
/// (how many processes of each name run; whether each pidfile names a live one). Seed 002's
/// port and process checks, with their metrics, through the plugin machinery (periods,
/// enable/disable, run on demand, metrics to the server).
public enum BuiltinCollector: Equatable, Sendable {
    case port([Int])
    case process(names: [String], pidfiles: [String])

    public static let scheme = "builtin"

    /// Reads a `builtin://` URL; nil for any other URL.
    public init?(url: String) throws(AspireError) {
        guard url.lowercased().hasPrefix("\(Self.scheme)://") else { return nil }
        guard let components = URLComponents(string: url), let kind = components.host else {
            throw AspireError(.invalidParams, "'\(url)' is not builtin://port?ports=... or builtin://process?names=...")
        }
        func list(_ key: String) -> [String] {
            (components.queryItems ?? []).filter { $0.name == key }.flatMap { ($0.value ?? "").split(separator: ",").map(String.init) }
        }
        switch kind {
        case "port":
            let ports = list("ports")
            let numbers = ports.compactMap(Int.init).filter { (1 ... 65535).contains($0) }
            guard !ports.isEmpty, numbers.count == ports.count else {
                throw AspireError(.invalidParams, "builtin://port needs ports=N,N (1 to 65535), got '\(ports.joined(separator: ","))'")
            }
            self = .port(numbers)
        case "process":
            let names = list("names")
            let pidfiles = list("pidfiles")
            guard !names.isEmpty || !pidfiles.isEmpty else { throw AspireError(.invalidParams, "builtin://process needs names=... or pidfiles=...") }
            for name in names where name.isEmpty || name.utf8.count > 64 || name.contains("/") {
                throw AspireError(.invalidParams, "builtin://process: '\(name)' is not a process name")
            }
            for pidfile in pidfiles where !pidfile.hasPrefix("/") {
                throw AspireError(.invalidParams, "builtin://process: pidfile '\(pidfile)' is not an absolute path")
            }
            self = .process(names: names, pidfiles: pidfiles)
        default:
            throw AspireError(.invalidParams, "builtin://\(kind): the built-in collectors are port and process")
        }
    }
}
