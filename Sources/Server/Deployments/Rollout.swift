import Foundation
import RPC

extension DeploymentHostView {
    /// How a reason names the host: its hostname, or its AgentSN when it has none.
    var label: String { self.hostname.isEmpty ? self.agentSN : self.hostname }

    /// Whether this host moved to the deployment's current revision.
    func isMoved(in record: DeploymentRecord) -> Bool {
        self.moved?.revision == record.revision
    }

    /// The phase of this host against the revision it must run, with the reason in words.
    func phase(in record: DeploymentRecord, now: Int64) -> (phase: HostRolloutPhase, message: String) {
        let (spec, revision) = record.target(moved: self.isMoved(in: record))
        guard let reported, reported.revision == revision else {
            return (.pending, self.online ? "applying revision \(revision)" : "offline; converges when it connects")
        }
        if !reported.error.isEmpty { return (.failed, reported.error) }
        guard let subAgent, subAgent.version == spec.version else {
            return (.failed, "applied revision \(revision), but \(self.subAgent.map { "runs \($0.version)" } ?? "has no \(spec.name) installed")")
        }
        guard subAgent.status == "running" else {
            return (.failed, "\(spec.name) \(spec.version) is \(subAgent.status)\(subAgent.message.isEmpty ? "" : ": \(subAgent.message)")")
        }
        let runningSince = self.reportedAt - subAgent.uptime * 1000
        let health = Int64(record.rollout.healthSeconds) * 1000
        if now - runningSince >= health { return (.healthy, "running for \((now - runningSince) / 1000) s") }
        return (.starting, "running for \(max(0, now - runningSince) / 1000) s of \(record.rollout.healthSeconds)")
    }
}

/// What a rollout does next, decided from its hosts as the store has them.
enum RolloutStep: Equatable {
    /// Nothing yet: the wave's hosts are still applying or inside the health window.
    case wait(String)
    /// Move these hosts to the new revision as this wave.
    case move([String], wave: Int)
    /// Every matching host runs the new revision, healthy.
    case finish
    /// Past max_failures: stop, saying why.
    case halt(String)
}

extension DeploymentRecord {
    /// The next step of a rolling deployment over `hosts` (the hosts matching it).
    func nextStep(hosts: [DeploymentHostView], now: Int64) throws(AspireError) -> RolloutStep {
        let moved = hosts.filter { $0.isMoved(in: self) }
        let phases = moved.map { (host: $0, phase: $0.phase(in: self, now: now)) }
        var failures = phases.filter { $0.phase.phase == .failed }.map { "\($0.host.label): \($0.phase.message)" }
        let unhealthy = phases.filter { $0.phase.phase != .healthy }
        let timeout = Int64(self.rollout.waveTimeoutSeconds) * 1000
        if self.wave >= 0, now - self.waveStarted >= timeout {
            failures += unhealthy.filter { $0.phase.phase != .failed }.map {
                "\($0.host.label): not healthy within \(self.rollout.waveTimeoutSeconds) s (\($0.phase.message))"
            }
        }
        if failures.count > Int(self.rollout.maxFailures) {
            let shown = failures.prefix(3).joined(separator: "; ")
            return .halt(
                "wave \(max(0, self.wave)): \(failures.count) of \(moved.count) moved hosts failed (max_failures \(self.rollout.maxFailures)): \(shown)\(failures.count > 3 ? "; …" : "")"
            )
        }
        if !unhealthy.isEmpty {
            let healthy = moved.count - unhealthy.count
            return .wait("wave \(max(0, self.wave)): \(healthy) of \(moved.count) moved hosts healthy")
        }
        // Only online hosts are moved: one offline now converges to whatever is declared when
        // it comes back (the new revision once the rollout is done).
        let candidates = hosts.filter { !$0.isMoved(in: self) && $0.online }
        guard !candidates.isEmpty else {
            return moved.isEmpty && !hosts.isEmpty ? .wait("no matching host is online to move") : .finish
        }
        let wave = self.wave + 1
        let target = try self.moved(byWave: wave, of: hosts.count)
        // An order fixed per deployment and spread over the fleet.
        let chosen = candidates.sorted { Self.spread(self.name, $0.agentSN) < Self.spread(self.name, $1.agentSN) }
        return .move(chosen.prefix(max(1, target - moved.count)).map(\.agentSN), wave: wave)
    }

    /// A stable pseudo-random rank of a host within a deployment (FNV-1a).
    static func spread(_ deployment: String, _ agentSN: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "\(deployment)\u{0}\(agentSN)".utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }
}

extension Aspire_V1_DeploymentStatus {
    /// A deployment with its hosts counted by target version and phase, failed hosts first.
    init(_ record: DeploymentRecord, hosts: [DeploymentHostView], now: Int64) {
        self.init()
        self.deployment = Aspire_V1_DeploymentInfo(record)
        self.matching = Int32(clamping: hosts.count)
        var counts: [String: [HostRolloutPhase: Int]] = [:]
        var listed: [(order: Int, host: Aspire_V1_DeploymentHost)] = []
        for view in hosts {
            let moved = view.isMoved(in: record)
            let (spec, revision) = record.target(moved: moved)
            let (phase, message) = view.phase(in: record, now: now)
            counts[spec.version, default: [:]][phase, default: 0] += 1
            var host = Aspire_V1_DeploymentHost()
            host.agentSn = view.agentSN
            host.hostname = view.hostname
            host.version = spec.version
            host.revision = revision
            host.state = phase.rawValue
            host.message = message
            host.moved = moved
            host.wave = Int32(clamping: moved ? view.moved?.wave ?? 0 : 0)
            host.online = view.online
            let order = [HostRolloutPhase.failed, .pending, .starting, .healthy].firstIndex(of: phase) ?? 0
            listed.append((order, host))
        }
        self.counts = counts.sorted { $0.key < $1.key }.flatMap { version, phases in
            HostRolloutPhase.allCases.compactMap { phase in
                phases[phase].map { count in
                    var entry = Aspire_V1_DeploymentHostCount()
                    entry.version = version
                    entry.state = phase.rawValue
                    entry.hosts = Int32(clamping: count)
                    return entry
                }
            }
        }
        self.hosts = listed.enumerated().sorted { ($0.element.order, $0.offset) < ($1.element.order, $1.offset) }.prefix(1000).map(\.element.host)
    }
}
