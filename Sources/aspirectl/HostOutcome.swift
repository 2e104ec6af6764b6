import ArgumentParser
import Foundation
import GRPCCore
import RPC

/// How one host's part of a fan-out ended, as the per-host summary line and the exit code see it.
/// `run --agent`, `run --tag` and `task show` all judge hosts through this one type.
struct HostOutcome {
    enum Kind {
        case succeeded
        /// Ran and failed: a non-zero exit, a refusal, an error.
        case failed
        /// Did not answer: offline, undeliverable, still pending, timed out.
        case silent
        /// Counts for nothing (cancelled).
        case none
    }

    var kind: Kind
    var line: String

    init(result: Aspire_V1_CommandResult) {
        if result.resp == .success {
            self = result.retcode == 0 ? HostOutcome(kind: .succeeded, line: "ok") : HostOutcome(kind: .failed, line: "exit \(result.retcode)")
        } else if result.retcode == ErrorCode.timeout.rawValue {
            self.init(kind: .silent, line: "timeout: \(result.message)")
        } else {
            self.init(kind: .failed, line: "failed (\(result.retcode)): \(result.message)")
        }
    }

    init(error: any Error) {
        let message = (error as? RPCError)?.message ?? "\(error)"
        switch (error as? RPCError).map({ ErrorCode(rpcError: $0) }) ?? .internalError {
        case .agentOffline: self.init(kind: .silent, line: "offline: \(message)")
        case .agentTimeout: self.init(kind: .silent, line: "timeout: \(message)")
        default: self.init(kind: .failed, line: "error: \(message)")
        }
    }

    init(subtask: Aspire_V1_Subtask) {
        switch subtask.status {
        case "succeeded", "failed": self.init(result: subtask.result)
        case "undeliverable": self.init(kind: .silent, line: "offline")
        case "pending", "dispatched": self.init(kind: .silent, line: subtask.status)
        default: self.init(kind: .none, line: subtask.status)
        }
    }

    private init(kind: Kind, line: String) {
        self.kind = kind
        self.line = line
    }
}

/// Prints `[host] outcome` for each host (sorted) and, when asked, the totals line; returns the
/// documented exit code: 3 when a host did not answer, else 2 when one failed, else 0.
func summarize(_ outcomes: [(agent: String, outcome: HostOutcome)], totals: Bool) -> ExitCode {
    var counts: [HostOutcome.Kind: Int] = [:]
    for (agent, outcome) in outcomes.sorted(by: { $0.agent < $1.agent }) {
        counts[outcome.kind, default: 0] += 1
        FileHandle.standardError.write("[\(agent)] \(outcome.line)\n")
    }
    if totals {
        FileHandle.standardError.write(
            "\(counts[.succeeded] ?? 0) succeeded, \(counts[.failed] ?? 0) failed, \(counts[.silent] ?? 0) did not answer\n"
        )
    }
    if counts[.silent] != nil { return Exit.timeoutOrOffline }
    if counts[.failed] != nil { return Exit.nonZero }
    return .success
}
