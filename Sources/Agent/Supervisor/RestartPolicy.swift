#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Where a sub-agent is in its life. Kept in its record; after an operator's action only the
/// ``RestartPolicy``'s transitions change it.
enum SubAgentPhase: Codable, Equatable, Sendable {
    /// Not to run: an operator stopped it (or an uninstall failed half way).
    case stopped
    /// Started at `since`; its processes run, as far as the last check saw.
    case running(since: Date)
    /// Its processes ended at `at`, after a start at `since`; `killed` when a limit killed it.
    /// It is restarted once the hold-off since its start has passed.
    case exited(since: Date, at: Date, killed: Bool)
    /// It ended abnormally too often in a row: nothing restarts it until an operator starts it.
    case fatal

    /// The seed's status of a sub-agent in this phase.
    var status: SubAgentRecord.Status {
        switch self {
        case .running: .running
        case .exited(_, _, killed: true): .killed
        case .exited, .stopped: .stoped
        case .fatal: .fatal
        }
    }

    /// When it was last started, while it is running.
    var runningSince: Date? {
        if case .running(let since) = self { return since }
        return nil
    }

    /// When it was last started, while it is running or waits to be restarted.
    var since: Date? {
        switch self {
        case .running(let since), .exited(let since, _, _): since
        case .stopped, .fatal: nil
        }
    }
}

/// The seed's restart policy as pure functions of a sub-agent's life and the time: the
/// supervisor looks at the processes and the clock, asks the policy, and carries out what it
/// answers. An abnormal exit within `anomalyWindow` of the start is an anomaly (a later one ends
/// the streak); more than `maxAnomalies` in a row make the sub-agent fatal; otherwise it is
/// restarted, but not before `holdoff` since its start has passed.
struct RestartPolicy: Sendable, Equatable {
    var holdoff: Duration
    var anomalyWindow: Duration
    var maxAnomalies: Int

    init(holdoff: Duration, anomalyWindow: Duration, maxAnomalies: Int) {
        self.holdoff = holdoff
        self.anomalyWindow = anomalyWindow
        self.maxAnomalies = maxAnomalies
    }

    init(_ configuration: SupervisorConfiguration) {
        self.init(holdoff: configuration.holdoff, anomalyWindow: configuration.anomalyWindow, maxAnomalies: configuration.maxAnomalies)
    }

    /// What the policy governs in a sub-agent's record.
    struct Life: Equatable, Sendable {
        var phase: SubAgentPhase
        /// Abnormal exits in a row, each within the anomaly window of its start.
        var anomalies = 0
        /// Restarts by the supervisor since the last operator action.
        var restarts = 0
    }

    /// What a check does with a sub-agent whose processes are gone.
    enum Decision: Equatable, Sendable {
        /// Nothing to do now (it is not down, or it is fatal or stopped).
        case none
        /// Restart it now.
        case restart
        /// Restart it at this time, when the hold-off since its start has passed.
        case wait(until: Date)
    }

    /// An operator started it (start, restart, install, upgrade) at `now`: the streak and the
    /// restart count begin again.
    func onCommandStart(_ life: Life, at now: Date) -> Life {
        Life(phase: .running(since: now), anomalies: 0, restarts: 0)
    }

    /// An operator stopped it.
    func onCommandStop(_ life: Life) -> Life {
        var life = life
        life.phase = .stopped
        return life
    }

    /// A check found its processes gone at `now`. Counts the exit: an anomaly when it came within
    /// the anomaly window of the start; past `maxAnomalies` in a row, fatal.
    func onExit(_ life: Life, at now: Date, killed: Bool) -> Life {
        guard case .running(let since) = life.phase else { return life }
        var life = life
        life.anomalies = now.timeIntervalSince(since) < self.anomalyWindow.secondsDouble ? life.anomalies + 1 : 0
        life.phase = life.anomalies > self.maxAnomalies ? .fatal : .exited(since: since, at: now, killed: killed)
        return life
    }

    /// It died inside the health window of a start an operator asked for: down, and restarted by
    /// the checks like any exit, but the action that started it fails and no anomaly is counted.
    func onStartFailed(_ life: Life, at now: Date, killed: Bool) -> Life {
        guard case .running(let since) = life.phase else { return life }
        var life = life
        life.phase = .exited(since: since, at: now, killed: killed)
        return life
    }

    /// A check at `now` of a sub-agent that is down.
    func onCheck(_ life: Life, at now: Date) -> Decision {
        guard case .exited(let since, _, _) = life.phase else { return .none }
        let due = since.addingTimeInterval(self.holdoff.secondsDouble)
        return now >= due ? .restart : .wait(until: due)
    }

    /// The supervisor restarted it at `now`; a restart that failed counts as another exit at once.
    func onRestart(_ life: Life, at now: Date, succeeded: Bool) -> Life {
        var life = life
        life.restarts += 1
        life.phase = .running(since: now)
        return succeeded ? life : self.onExit(life, at: now, killed: false)
    }

    /// A check found it running though its record said otherwise (started again outside the
    /// agent, or still running after all): supervised from here on as it is.
    func onFoundRunning(_ life: Life) -> Life {
        guard case .exited(let since, _, _) = life.phase else { return life }
        var life = life
        life.phase = .running(since: since)
        return life
    }
}
