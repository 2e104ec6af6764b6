public import Foundation

/// What went wrong in a test or benchmark harness, said plainly.
public struct HarnessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Polls `condition` every `interval` until it holds or `timeout` passes.
public func eventually(
    timeout: Duration = .seconds(20),
    interval: Duration = .milliseconds(50),
    _ what: @autoclosure () -> String,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: interval)
    }
    throw HarnessError("timed out after \(timeout) waiting for: \(what())")
}
