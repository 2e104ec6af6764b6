
/// A plugin the agent runs itself instead of a plugin.sh: `builtin://port?ports=22,8080` (is
/// something listening on each port) or `builtin://process?names=sshd,nginx&pidfiles=/run/x.pid`
/// (how many processes of each name run; whether each pidfile names a live one). Seed 002's
/// port and process checks, with their metrics, through the plugin machinery (periods,
/// enable/disable, run on demand, metrics to the server).
public enum BuiltinCollector: Equatable, Sendable {
    case port([Int])
    case process(names: [String], pidfiles: [String])

    public static let scheme = "builtin"

    /// Reads a `builtin://` URL; nil for any other URL. The grammar is ``pattern``'s:
    /// `builtin://port?ports=P,P` or `builtin://process?names=N,N&pidfiles=/F,/F` (either list
    /// or both, in either order), nothing else — no percent-encoding, no other parameter.
    public init?(url: String) throws(AspireError) {
        let prefix = "\(Self.scheme)://"
        guard url.lowercased().hasPrefix(prefix) else { return nil }
        let rest = url.dropFirst(prefix.count)
        let (kind, query) = rest.firstIndex(of: "?").map { (rest[..<$0], rest[rest.index(after: $0)...]) } ?? (rest, "")
        var lists: [String: [String]] = [:]
        for pair in query.split(separator: "&", omittingEmptySubsequences: false) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, lists[String(parts[0])] == nil else {
                throw AspireError(.invalidParams, "'\(url)': each of ports, names and pidfiles once, as key=value")
            }
            lists[String(parts[0])] = parts[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        }
        switch kind {
        case "port":
            guard Set(lists.keys) == ["ports"], let ports = lists["ports"]?.map(WholeText.value), ports.allSatisfy({ $0.map { (1 ... 65535).contains($0) } ?? false }) else {
                throw AspireError(.invalidParams, "builtin://port needs ports=N,N (1 to 65535) and nothing else, got '\(query)'")
            }
            self = .port(ports.map { Int($0!) })
        case "process":
            let names = lists["names"] ?? []
            let pidfiles = lists["pidfiles"] ?? []
            guard !lists.isEmpty, Set(lists.keys).isSubset(of: ["names", "pidfiles"]) else {
                throw AspireError(.invalidParams, "builtin://process needs names=... or pidfiles=... (or both), and nothing else")
            }
            for name in names where !PatternText.matches(name, "^\(Self.processName)$") {
                throw AspireError(.invalidParams, "builtin://process: '\(name)' is not a process name (1 to 64 of letters, digits and . _ : @ + -)")
            }
            for pidfile in pidfiles where !PatternText.matches(pidfile, "^\(Self.pidfile)$") {
                throw AspireError(.invalidParams, "builtin://process: pidfile '\(pidfile)' is not an absolute path (of letters, digits and . _ / : @ + -)")
            }
            self = .process(names: names, pidfiles: pidfiles)
        default:
            throw AspireError(.invalidParams, "builtin://\(kind): the built-in collectors are port and process")
        }
    }

    static let processName = "[A-Za-z0-9._:@+-]{1,64}"
    static let pidfile = "/[A-Za-z0-9._/:@+-]*"

    /// What ``init(url:)`` takes, as a JSON Schema pattern.
    public static let pattern: String = {
        func list(_ item: String) -> String { "\(item)(?:,\(item))*" }
        let names = "names=\(list(Self.processName))"
        let pidfiles = "pidfiles=\(list(Self.pidfile))"
        let port = "port\\?ports=\(list("(?:\(WholeText.alternatives(1 ... 65535)))"))"
        let process = "process\\?(?:\(names)(?:&\(pidfiles))?|\(pidfiles)(?:&\(names))?)"
        return "^\(PatternText.anyCase(Self.scheme))://(?:\(port)|\(process))$"
    }()
}
