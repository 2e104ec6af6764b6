public import RPC

/// The seed's REST envelope: `{"status": 0, "message": "success"}` on success and
/// `{"status": 130010, "message": "not found", "cause": "no agent package found"}` on failure,
/// with the HTTP status of the code. The REST routes of the control-plane issue answer with it.
public struct ErrorEnvelope: Codable, Hashable, Sendable {
    public var status: Int32
    public var message: String
    public var cause: String?

    public static let success = ErrorEnvelope(status: 0, message: "success", cause: nil)

    public init(status: Int32, message: String, cause: String?) {
        self.status = status
        self.message = message
        self.cause = cause
    }

    public init(_ error: AspireError) {
        self.init(status: error.code.rawValue, message: error.code.message, cause: error.cause)
    }

    /// The HTTP status that goes with the envelope.
    public var httpStatus: Int {
        self.status == 0 ? 200 : ErrorCode(rawValue: self.status).httpStatus
    }
}
