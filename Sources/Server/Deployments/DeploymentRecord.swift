import Foundation
public import RPC

/// A declared deployment: what every host matching its selector must run, and how far a change
/// of it has rolled out.
public struct DeploymentRecord: Sendable, Equatable {
    public var spec: Aspire_V1_DeploymentSpec
    /// With its defaults filled in.
    public var rollout: Aspire_V1_RolloutPolicy
    public var revision: Int64 = 1
    /// The revision the hosts not moved run (nil on a first revision).
    public var stable: Aspire_V1_DeploymentSpec?
    public var stableRevision: Int64 = 0
    public var state: RolloutState = .done
    /// The current wave (0 the canary); -1 before the canary is chosen.
    public var wave: Int = 0
    /// Unix ms when the current wave's hosts were moved.
    public var waveStarted: Int64 = 0
    public var reason: String = ""
    public var created: Int64 = 0
    public var modified: Int64 = 0

    public init(spec: Aspire_V1_DeploymentSpec, rollout: Aspire_V1_RolloutPolicy) {
        self.spec = spec
        self.rollout = rollout
    }

    public var name: String { self.spec.name }

    /// The spec and revision a host runs, by whether the rollout moved it.
    public func target(moved: Bool) -> (spec: Aspire_V1_DeploymentSpec, revision: Int64) {
        guard let stable else { return (self.spec, self.revision) }
        switch self.state {
        case .done: return (self.spec, self.revision)
        case .rolledBack: return (stable, self.stableRevision)
        case .rolling, .paused, .halted: return moved ? (self.spec, self.revision) : (stable, self.stableRevision)
        }
    }

    /// True for a host carrying every tag of the selector.
    public func matches(tags: [String: String]) -> Bool {
        HostTargets.match(agents: [], selector: self.spec.tags, agentSN: "", tags: tags)
    }

    /// Whether hosts leaving it uninstall the sub-agent.
    public var removesOnLeave: Bool { self.spec.onUntag != "keep" }

    /// Hosts moved by the end of `wave` (0 the canary) out of `hosts`.
    func moved(byWave wave: Int, of hosts: Int) throws(AspireError) -> Int {
        let canary = try RateLimit(parsing: self.rollout.canary, field: "canary")?.value(of: hosts) ?? 1
        let batch = try RateLimit(parsing: self.rollout.batch, field: "batch")?.value(of: hosts) ?? 1
        return min(hosts, canary + wave * batch)
    }
}

extension Aspire_V1_DeploymentSpec {
    /// What the hosts run: the spec without its selector and untag policy (a change of those
    /// changes which hosts run it, not what they run).
    var runs: Aspire_V1_DeploymentSpec {
        var spec = self
        spec.tags = [:]
        spec.onUntag = ""
        return spec
    }

    /// Checks what an operator declared; `onUntag` comes back as remove or keep.
    func checked() throws(AspireError) -> Aspire_V1_DeploymentSpec {
        var spec = self
        let owner = "deployment '\(spec.name)'"
        try PathName.check(spec.name, field: "deployment name", code: .badRequest)
        try PathName.check(spec.version, field: "\(owner) version", code: .badRequest)
        guard !spec.tags.isEmpty else {
            throw AspireError(.badRequest, "\(owner) names no tags: a deployment is for the hosts carrying every one of its tags (e.g. svc=web)")
        }
        for (name, value) in spec.tags { try SQLStore.validateTag(name: name, value: value) }
        if !spec.checksum.isEmpty, !CommandParameters.isSHA256(spec.checksum) {
            throw AspireError(.badRequest, "\(owner): checksum must be SHA256:<64 hex digits>")
        }
        if spec.url.isEmpty {
            guard spec.checksum.isEmpty else {
                throw AspireError(.badRequest, "\(owner): a checksum goes with a url; a store package carries its own")
            }
        } else if !spec.url.hasPrefix("command://"), !CommandParameters.isSHA256(spec.checksum) {
            throw AspireError(.badRequest, "\(owner): checksum must be SHA256:<64 hex digits>; packages are not installed unchecked")
        }
        try AccountName.check([spec.user, spec.group], owner: owner)
        if spec.hasDaemon { try spec.daemon.check(owner: owner, code: .badRequest) }
        switch spec.onUntag {
        case "", "remove": spec.onUntag = "remove"
        case "keep": break
        default: throw AspireError(.badRequest, "\(owner): on_untag '\(spec.onUntag)' is not remove or keep")
        }
        return spec
    }

    /// The sub-agent command's parameters for a host: url and checksum as given (a store
    /// package's are filled in per host).
    var subAgent: Aspire_V1_SubAgentParams {
        var params = Aspire_V1_SubAgentParams()
        params.name = self.name
        params.version = self.version
        params.url = self.url
        params.checksum = self.checksum
        params.envs = self.envs
        if self.hasLimits { params.limits = self.limits }
        params.user = self.user
        params.group = self.group
        if self.hasDaemon { params.daemon = self.daemon }
        return params
    }
}

extension Aspire_V1_RolloutPolicy {
    /// The policy with its defaults, checked.
    func checked() throws(AspireError) -> Aspire_V1_RolloutPolicy {
        var policy = self
        // A wave moves at least one host.
        try RateLimitText.check(policy.canary, field: "canary", minimumCount: 1)
        try RateLimitText.check(policy.batch, field: "batch", minimumCount: 1)
        if policy.canary.isEmpty { policy.canary = "1" }
        if policy.batch.isEmpty { policy.batch = "20%" }
        guard policy.maxFailures >= 0 else { throw AspireError(.badRequest, "max_failures \(policy.maxFailures): not negative") }
        if policy.healthSeconds == 0 { policy.healthSeconds = 60 }
        if policy.waveTimeoutSeconds == 0 { policy.waveTimeoutSeconds = 600 }
        guard (1 ... 86_400).contains(policy.healthSeconds) else {
            throw AspireError(.badRequest, "health_seconds \(policy.healthSeconds): from 1 to 86400")
        }
        guard (1 ... 604_800).contains(policy.waveTimeoutSeconds) else {
            throw AspireError(.badRequest, "wave_timeout_seconds \(policy.waveTimeoutSeconds): from 1 to 604800")
        }
        return policy
    }
}

extension Aspire_V1_DeploymentInfo {
    init(_ record: DeploymentRecord) {
        self.init()
        self.spec = record.spec
        self.rollout = record.rollout
        self.revision = record.revision
        self.state = record.state.rawValue
        self.stableVersion = record.stable?.version ?? ""
        self.stableRevision = record.stableRevision
        self.wave = Int32(clamping: max(0, record.wave))
        self.reason = record.reason
        self.createdUnixMs = record.created
        self.modifiedUnixMs = record.modified
    }
}
