/// The words of a deployment's rollout, shared by the server that decides and the gateway that
/// shows them (REST schemas, the console).

/// Where a deployment's rollout is.
public enum RolloutState: String, Sendable, CaseIterable {
    /// Waves under way: moved hosts run the new revision, the others the stable one.
    case rolling
    /// Stopped by an operator: no further wave until resumed; hosts stay where they are.
    case paused
    /// Past max_failures, without auto-rollback: hosts stay where they are.
    case halted
    /// Every host runs the stable revision (after a halt, or an operator's rollback).
    case rolledBack = "rolled_back"
    /// Every host runs the deployment's revision.
    case done
}

/// Where a host stands against the revision it must run.
public enum HostRolloutPhase: String, Sendable, CaseIterable {
    /// Has not reported that revision yet: applying it, or offline.
    case pending
    /// Runs it, for less than the health window so far.
    case starting
    /// Has run it for the health window.
    case healthy
    /// Could not apply it, or it does not run.
    case failed
}
