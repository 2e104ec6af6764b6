#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

extension Aspire_V1_CommandResult {
    /// A `failed` result with a code of the error table.
    public static func failed(id: String, _ code: ErrorCode, _ message: String, started: Date = Date()) -> Self {
        var result = Self()
        result.id = id
        result.resp = .failed
        result.retcode = code.rawValue
        result.message = message
        result.startedUnixMs = started.unixMilliseconds
        result.finishedUnixMs = Date().unixMilliseconds
        return result
    }

    /// A `success` result: a document (getinfo.*), or what was done in words (sub-agents, config).
    public static func success(id: String, data: Data = Data(), message: String = "Normal termination", started: Date) -> Self {
        var result = Self()
        result.id = id
        result.resp = .success
        result.retcode = 0
        result.message = message
        result.data = data
        result.startedUnixMs = started.unixMilliseconds
        result.finishedUnixMs = Date().unixMilliseconds
        return result
    }
}

extension Date {
    /// Milliseconds since 1970, as the protocol carries times.
    public var unixMilliseconds: Int64 {
        Int64((self.timeIntervalSince1970 * 1000).rounded())
    }
}

extension Aspire_V1_Event {
    /// An event that happened now; its local id is the time in milliseconds.
    public init(category: String, message: String, attributes: [String: String] = [:]) {
        self.init()
        self.localID = Date().unixMilliseconds
        self.occurredUnixMs = self.localID
        self.category = category
        self.message = message
        self.attributes = attributes
    }
}
