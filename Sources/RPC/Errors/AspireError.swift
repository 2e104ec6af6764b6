public import GRPCCore

/// An error of Aspire's own, with a code from the shared table, the code's message and a cause
/// that says what exactly went wrong.
///
/// It converts itself to an `RPCError` at the RPC boundary, so no service maps errors by hand.
public struct AspireError: Error, Hashable, Sendable, CustomStringConvertible, RPCErrorConvertible {
    public var code: ErrorCode
    /// The specific reason, for the operator.
    public var cause: String

    public init(_ code: ErrorCode, _ cause: String) {
        self.code = code
        self.cause = cause
    }

    public var message: String { self.code.message }

    public var description: String {
        "\(self.code.message) (\(self.code.rawValue)): \(self.cause)"
    }

    public var rpcErrorCode: RPCError.Code { self.code.rpcCode }

    public var rpcErrorMessage: String { self.cause }

    public var rpcErrorMetadata: Metadata {
        [ErrorCode.metadataKey: "\(self.code.rawValue)"]
    }

    /// Recovers the Aspire error an `RPCError` carries.
    public init(rpcError: RPCError) {
        self.init(ErrorCode(rpcError: rpcError), rpcError.message)
    }
}
