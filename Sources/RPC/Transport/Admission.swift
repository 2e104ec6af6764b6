public import GRPCCore

/// What a node over its connect rate tells an agent at `Init`, and how an agent waits for it.
///
/// A node takes so many new agents a second (`aspire-server --max-connect-rate`). An agent over
/// the rate gets a slot of its own, later, and a RESOURCE_EXHAUSTED answer naming the wait in
/// its metadata; it asks again then, on the connection it already has (no second handshake), and
/// is let in. A reconnect storm so arrives at the node's pace, however large the fleet.
public enum Admission {
    /// The metadata key of the wait, in whole milliseconds.
    public static let retryAfterKey = "retry-after-ms"

    /// The answer to an agent told to come back in `wait`.
    public static func refusal(node: String, wait: Duration) -> RPCError {
        var metadata = Metadata()
        metadata.addString("\(max(1, wait.milliseconds))", forKey: Self.retryAfterKey)
        return RPCError(
            code: .resourceExhausted,
            message: "node \(node) takes agents at its connect rate (--max-connect-rate); this one's turn is in \(wait.milliseconds) ms",
            metadata: metadata
        )
    }

    /// The wait a refusal names; nil for any other error (a node full of agents names none).
    public static func wait(_ error: any Error) -> Duration? {
        guard let error = error as? RPCError, error.code == .resourceExhausted,
              let text = error.metadata[stringValues: Self.retryAfterKey].first(where: { _ in true }),
              let milliseconds = Int64(text), milliseconds > 0
        else { return nil }
        return .milliseconds(milliseconds)
    }
}

extension Aspire_V1_Bootstrap.Client {
    /// `Init`, asked again at the slot a node over its connect rate names, up to `maxWait` in
    /// all; `waiting` hears each wait. The slot is this agent's own, an interval from its
    /// neighbours', so no jitter is added: agents back a round trip late are let in as their
    /// slots come, and the node keeps those back together to its rate (``ConnectAdmission``).
    /// The call's own duration is not taken off the wait: a first call's includes the handshake.
    public func initAdmitted(
        _ request: Aspire_V1_InitRequest,
        options: CallOptions,
        maxWait: Duration = .seconds(300),
        waiting: (Duration) -> Void = { _ in }
    ) async throws -> Aspire_V1_InitResponse {
        var waited = Duration.zero
        while true {
            do {
                return try await self.`init`(request, options: options)
            } catch {
                guard let wait = Admission.wait(error), waited + wait <= maxWait else { throw error }
                waiting(wait)
                try await Task.sleep(for: wait)
                waited += wait
            }
        }
    }
}
