public import GRPCCore

/// One Aspire error code, shared by agent results (`retcode`), Admin RPC errors and the REST
/// envelope (`status`). Codes are stable numbers: operators and scripts match on them.
public struct ErrorCode: Hashable, Sendable, CustomStringConvertible {
    /// The number sent on the wire.
    public let rawValue: Int32

    public init(rawValue: Int32) {
        self.rawValue = rawValue
    }

    public var description: String {
        "\(self.rawValue) (\(self.entry?.message ?? "unknown code"))"
    }

    // MARK: Agent command errors (30xx), carried in CommandResult.retcode.

    /// Parameters of a command are missing or malformed (the seed's 3021).
    public static let invalidParams = Self(rawValue: 3021)
    /// The command names a method the agent does not have.
    public static let unknownMethod = Self(rawValue: 3022)
    /// The user or group a command should run as does not exist on the host.
    public static let unknownUser = Self(rawValue: 3023)
    /// The command ran past its timeout and its process group was killed.
    public static let timeout = Self(rawValue: 3024)
    /// The command could not be started.
    public static let spawnFailed = Self(rawValue: 3025)
    /// The agent was restarted while the command was running; it is not run again.
    public static let interrupted = Self(rawValue: 3026)
    /// The agent failed for a reason of its own.
    public static let agentInternal = Self(rawValue: 3029)

    // MARK: Sub-agent errors (303x), carried in CommandResult.retcode.

    /// The package could not be fetched (download failed, file missing, install command failed).
    public static let downloadFailed = Self(rawValue: 3031)
    /// The package's SHA256 is not the one the command names; nothing was unpacked.
    public static let checksumMismatch = Self(rawValue: 3032)
    /// The package is unusable: unsafe entries, no `control` script, unknown format.
    public static let badPackage = Self(rawValue: 3033)
    /// `control start` failed, or no process of the sub-agent was running after it.
    public static let startFailed = Self(rawValue: 3034)
    /// The new version failed; the previous one was put back and is running.
    public static let rolledBack = Self(rawValue: 3035)
    /// The sub-agent is not installed on this host.
    public static let notInstalled = Self(rawValue: 3036)
    /// Another action on the same sub-agent is under way.
    public static let busy = Self(rawValue: 3037)
    /// A tool the action needs (tar, dpkg, rpm) is not on this host.
    public static let toolMissing = Self(rawValue: 3038)
    /// A scheduled run was skipped: the schedule's previous run was still going.
    public static let skipped = Self(rawValue: 3039)

    // MARK: Server errors (130xxx), carried in RPC errors and the REST envelope.

    /// The server failed for a reason of its own.
    public static let internalError = Self(rawValue: 130_000)
    /// No credentials, or wrong ones.
    public static let unauthenticated = Self(rawValue: 130_001)
    /// The credentials are good but do not allow this call.
    public static let permissionDenied = Self(rawValue: 130_002)
    /// The request is malformed.
    public static let badRequest = Self(rawValue: 130_003)
    /// The request body is larger than the configured limit.
    public static let payloadTooLarge = Self(rawValue: 130_004)
    /// The request is well formed but its values are not acceptable.
    public static let unprocessable = Self(rawValue: 130_005)
    /// The request body is of a media type the route does not take.
    public static let unsupportedMediaType = Self(rawValue: 130_006)
    /// The request conflicts with the current state.
    public static let conflict = Self(rawValue: 130_009)
    /// The thing asked for does not exist (the seed's 130010).
    public static let notFound = Self(rawValue: 130_010)
    /// The agent is not connected to this node.
    public static let agentOffline = Self(rawValue: 130_020)
    /// The agent did not answer within the wait time.
    public static let agentTimeout = Self(rawValue: 130_021)
    /// The server is shutting down.
    public static let unavailable = Self(rawValue: 130_030)

    /// What an operator reads next to the code.
    public var message: String {
        self.entry?.message ?? "error \(self.rawValue)"
    }

    /// The gRPC status code this error travels as.
    public var rpcCode: RPCError.Code {
        self.entry?.rpc ?? .unknown
    }

    /// The HTTP status of the REST envelope carrying this error.
    public var httpStatus: Int {
        self.entry?.http ?? 500
    }

    /// Finds the code an `RPCError` carries, or derives one from its gRPC status.
    public init(rpcError: RPCError) {
        if let value = rpcError.metadata[Self.metadataKey].first(where: { _ in true }),
            case .string(let text) = value, let number = Int32(text)
        {
            self.init(rawValue: number)
            return
        }
        switch rpcError.code {
        case .unauthenticated: self = .unauthenticated
        case .permissionDenied: self = .permissionDenied
        case .invalidArgument: self = .badRequest
        case .notFound: self = .notFound
        case .alreadyExists, .failedPrecondition, .aborted: self = .conflict
        case .deadlineExceeded: self = .agentTimeout
        case .unavailable: self = .unavailable
        case .resourceExhausted: self = .payloadTooLarge
        default: self = .internalError
        }
    }

    /// Metadata key under which an `RPCError` carries the Aspire code.
    public static let metadataKey = "aspire-error-code"

    private struct Entry {
        var message: String
        var rpc: RPCError.Code
        var http: Int
    }

    private var entry: Entry? { Self.table[self.rawValue] }

    private static let table: [Int32: Entry] = [
        3021: Entry(message: "Invalid params", rpc: .invalidArgument, http: 400),
        3022: Entry(message: "Unknown method", rpc: .invalidArgument, http: 400),
        3023: Entry(message: "Unknown user or group", rpc: .invalidArgument, http: 422),
        3024: Entry(message: "Timed out", rpc: .deadlineExceeded, http: 504),
        3025: Entry(message: "Could not start the command", rpc: .internalError, http: 500),
        3026: Entry(message: "Interrupted by an agent restart", rpc: .aborted, http: 409),
        3029: Entry(message: "Agent internal error", rpc: .internalError, http: 500),
        3031: Entry(message: "Package download failed", rpc: .unavailable, http: 502),
        3032: Entry(message: "Checksum mismatch", rpc: .dataLoss, http: 422),
        3033: Entry(message: "Bad package", rpc: .invalidArgument, http: 422),
        3034: Entry(message: "Sub-agent failed to start", rpc: .failedPrecondition, http: 500),
        3035: Entry(message: "Rolled back", rpc: .aborted, http: 409),
        3036: Entry(message: "Sub-agent not installed", rpc: .notFound, http: 404),
        3037: Entry(message: "Sub-agent busy", rpc: .aborted, http: 409),
        3038: Entry(message: "Required tool missing", rpc: .failedPrecondition, http: 500),
        3039: Entry(message: "Skipped: the previous run is still going", rpc: .aborted, http: 409),
        130_000: Entry(message: "internal error", rpc: .internalError, http: 500),
        130_001: Entry(message: "unauthenticated", rpc: .unauthenticated, http: 401),
        130_002: Entry(message: "permission denied", rpc: .permissionDenied, http: 403),
        130_003: Entry(message: "bad request", rpc: .invalidArgument, http: 400),
        130_004: Entry(message: "payload too large", rpc: .resourceExhausted, http: 413),
        130_005: Entry(message: "unprocessable", rpc: .invalidArgument, http: 422),
        130_006: Entry(message: "unsupported media type", rpc: .invalidArgument, http: 415),
        130_009: Entry(message: "conflict", rpc: .failedPrecondition, http: 409),
        130_010: Entry(message: "not found", rpc: .notFound, http: 404),
        130_020: Entry(message: "agent offline", rpc: .unavailable, http: 409),
        130_021: Entry(message: "agent did not answer in time", rpc: .deadlineExceeded, http: 504),
        130_030: Entry(message: "unavailable", rpc: .unavailable, http: 503),
    ]
}
