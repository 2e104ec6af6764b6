#if canImport(Glibc)
import Glibc
#endif

/// How a daemon is stopped: a command, or a signal to its processes.
public enum DaemonStop: Equatable, Sendable, Codable {
    case command(String)
    case signal(Int32)

    /// Reads the seed's `stop`: `process:COMMAND`, `kill:SIGNAL` (a name, with or without SIG,
    /// or a number), a bare command, or nothing (SIGTERM).
    public init(parsing text: String, owner: String) throws(AspireError) {
        if text.isEmpty {
            self = .signal(SIGTERM)
        } else if text.hasPrefix("kill:") {
            // ASCII case only: a Unicode upper-casing would take "ſigterm" for SIGTERM.
            let name = String(decoding: text.utf8.dropFirst("kill:".count).map { (0x61 ... 0x7A).contains($0) ? $0 - 0x20 : $0 }, as: UTF8.self)
            let bare = name.hasPrefix("SIG") ? String(name.dropFirst(3)) : name
            if let number = WholeText.value(bare), (1 ... 64).contains(number) {
                self = .signal(Int32(number))
            } else if let signal = Self.signals[bare] {
                self = .signal(signal)
            } else {
                throw AspireError(.invalidParams, "\(owner): stop '\(text)' names no signal (TERM, INT, HUP, QUIT, USR1, USR2, KILL or 1 to 64)")
            }
        } else if text.hasPrefix("process:") {
            let command = String(text.dropFirst("process:".count))
            guard !command.isEmpty else { throw AspireError(.invalidParams, "\(owner): stop 'process:' names no command") }
            self = .command(command)
        } else {
            self = .command(text)
        }
    }

    static let signals: [String: Int32] = [
        "TERM": SIGTERM, "INT": SIGINT, "HUP": SIGHUP, "QUIT": SIGQUIT, "USR1": SIGUSR1, "USR2": SIGUSR2, "KILL": SIGKILL,
    ]

    /// What ``init(parsing:owner:)`` takes, as a JSON Schema pattern (written without a lookahead).
    public static let pattern: String = {
        let names = Self.signals.keys.sorted().map(PatternText.anyCase).joined(separator: "|")
        let kill = "kill:(?:\(PatternText.anyCase("SIG")))?(?:\(names)|\(WholeText.alternatives(1 ... 64)))"
        return "^(?:\(kill)|process:[\\s\\S]+|\(PatternText.notStarting(with: ["kill:", "process:"])))$"
    }()
}

/// How a daemon is known to be alive.
public enum DaemonCheck: String, Equatable, Sendable, Codable, CaseIterable {
    case process, pidfile, socket
}

extension Aspire_V1_DaemonSpec {
    /// The seed's daemon.init fields, read from a JSON object (a task's parameters, a REST
    /// body's `daemon`): `hits`, which daemon.init gives in `limits`, is its caller's.
    public static let fieldNames: Set<String> = [
        "precheck", "precheck_retries", "start", "start_delay", "stop", "stop_timeout", "check", "check_interval", "pidfile", "socket",
    ]

    /// The numeric fields' ranges: read by the parsers, checked by `check`, declared by the REST
    /// document.
    public static let ranges: KeyValuePairs<String, ClosedRange<Int64>> = [
        "precheck_retries": 0 ... 100, "start_delay": 0 ... 3600, "stop_timeout": 0 ... 3600, "check_interval": 0 ... 86_400, "hits": 0 ... 1000,
    ]

    /// The longest precheck, start and stop command (characters: Unicode scalars, as JSON
    /// Schema counts them).
    public static let maxCommandLength = 512

    /// The spec's fields as the REST document declares them (`check` above), their numbers as
    /// numbers or also as text (a task's parameters take "10"), with `hits` or without (daemon.init
    /// gives it in `limits`).
    public static func schemaFields(numbersAsText: Bool, hits: Bool) -> [String: Schema] {
        let command = Schema.length(0 ... Self.maxCommandLength)
        return [
            "precheck": command, "start": .length(1 ... Self.maxCommandLength),
            "stop": .matching(DaemonStop.pattern, maxLength: Self.maxCommandLength),
            "check": .enumeration([""] + DaemonCheck.allCases.map(\.rawValue)), "pidfile": .matching("^(?:/[\\s\\S]*)?$"),
            "socket": .matching(Self.socketPattern),
        ].merging(Self.ranges.filter { hits || $0.key != "hits" }.map { ($0.key, numbersAsText ? .wholeOrText($0.value) : .bounded($0.value)) }) { $1 }
    }

    /// `check`'s rules between fields: a pidfile check names its pidfile, a socket check its socket.
    public static var schemaRules: [Schema] {
        [("pidfile", "pidfile"), ("socket", "socket")].map { check, field in
            .anyOf([
                .object(["check": .enumeration([""] + DaemonCheck.allCases.map(\.rawValue).filter { $0 != check })], additional: .any),
                .object(["check": .enumeration([check]), field: .nonEmpty], required: ["check", field], additional: .any),
            ])
        }
    }

    /// `socket`: a Unix socket's absolute path or HOST:PORT, as a JSON Schema pattern.
    public static let socketPattern = "^(?:/[\\s\\S]*|\(HostPort.addressPattern))?$"

    /// The range of the numeric field `name`.
    public static func range(_ name: String) -> ClosedRange<Int64> {
        Self.ranges.first { $0.key == name }!.value
    }

    public init(fields: JSONFields) throws(AspireError) {
        self.init()
        func number(_ name: String) throws(AspireError) -> Int32 {
            Int32(try fields.integer(name, range: Self.range(name)) ?? 0)
        }
        self.precheck = try fields.string("precheck")
        self.precheckRetries = try number("precheck_retries")
        self.start = try fields.string("start", required: true)
        self.startDelay = try number("start_delay")
        self.stop = try fields.string("stop")
        self.stopTimeout = try number("stop_timeout")
        self.check = try fields.string("check")
        self.checkInterval = try number("check_interval")
        self.pidfile = try fields.string("pidfile")
        self.socket = try fields.string("socket")
    }

    /// Checks a spec as the agent will run it: a start command, a known check with what it
    /// needs, a stop it can carry out, values in range.
    public func check(owner: String, code: ErrorCode = .invalidParams) throws(AspireError) {
        func refuse(_ why: String) -> AspireError { AspireError(code, "\(owner): \(why)") }
        guard !self.start.isEmpty else { throw refuse("a daemon needs a start command") }
        for (field, command) in [("precheck", self.precheck), ("start", self.start), ("stop", self.stop)] where command.unicodeScalars.count > Self.maxCommandLength {
            throw refuse("\(field) is longer than \(Self.maxCommandLength) characters")
        }
        guard DaemonCheck(rawValue: self.check.isEmpty ? "process" : self.check) != nil else {
            throw refuse("check '\(self.check)' is not process, pidfile or socket")
        }
        if self.check == "pidfile", !self.pidfile.hasPrefix("/") { throw refuse("check pidfile needs an absolute pidfile path") }
        if self.check == "socket", self.socket.isEmpty { throw refuse("check socket needs a socket (a Unix socket path or HOST:PORT)") }
        if !self.pidfile.isEmpty, !self.pidfile.hasPrefix("/") { throw refuse("pidfile must be an absolute path") }
        if !self.socket.isEmpty, !self.socket.hasPrefix("/"), !HostPort.isAddress(self.socket) {
            throw refuse("socket '\(self.socket)' is neither an absolute path nor HOST:PORT")
        }
        do {
            _ = try DaemonStop(parsing: self.stop, owner: owner)
        } catch {
            throw AspireError(code, error.cause)
        }
        let values: [String: Int32] = [
            "precheck_retries": self.precheckRetries, "start_delay": self.startDelay, "stop_timeout": self.stopTimeout,
            "check_interval": self.checkInterval, "hits": self.hits,
        ]
        for (field, range) in Self.ranges {
            let value = values[field] ?? 0
            if !range.contains(Int64(value)) { throw refuse("\(field) \(value) is not from \(range.lowerBound) to \(range.upperBound)") }
        }
    }
}
