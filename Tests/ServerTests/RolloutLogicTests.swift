import Foundation
import RPC
@testable import Server
import Testing

/// The rollout's decisions, from hosts as the store would give them.
@Suite("Rollout decisions")
struct RolloutLogicTests {
    static let now: Int64 = 1_800_000_000_000

    /// web-agent at revision 2 (2.0) rolling out from revision 1 (1.0).
    static func rolling(canary: String = "1", batch: String = "50%", maxFailures: Int32 = 0, wave: Int = -1) throws -> DeploymentRecord {
        var spec = Aspire_V1_DeploymentSpec()
        spec.name = "web-agent"
        spec.version = "2.0"
        spec.tags = ["svc": "web"]
        var stable = spec
        stable.version = "1.0"
        var policy = Aspire_V1_RolloutPolicy()
        policy.canary = canary
        policy.batch = batch
        policy.maxFailures = maxFailures
        policy.healthSeconds = 30
        policy.waveTimeoutSeconds = 300
        var record = DeploymentRecord(spec: spec, rollout: try policy.checked())
        record.revision = 2
        record.stable = stable
        record.stableRevision = 1
        record.state = .rolling
        record.wave = wave
        record.waveStarted = now - 10_000
        return record
    }

    /// A host that runs `version` at `revision` since `since` ms before now (nil: nothing reported).
    static func host(
        _ sn: String, online: Bool = true, moved wave: Int? = nil, revision: Int64? = 1, version: String = "1.0", status: String = "running",
        runningFor seconds: Int64 = 3600, error: String = ""
    ) -> DeploymentHostView {
        var host = DeploymentHostView(agentSN: sn, hostname: sn, online: online)
        if let wave { host.moved = (2, wave) }
        if let revision {
            var state = Aspire_V1_DeploymentState()
            state.name = "web-agent"
            state.revision = revision
            state.version = version
            state.error = error
            host.reported = state
            host.subAgent = SubAgentRecord(name: "web-agent", version: version, status: status, uptime: seconds)
            host.reportedAt = now
        }
        return host
    }

    @Test("Phases: pending until the revision is reported, failed on an error or a sub-agent not running, starting inside the health window")
    func phases() throws {
        let record = try Self.rolling(wave: 0)
        let phase = { (host: DeploymentHostView) in host.phase(in: record, now: Self.now).phase }
        #expect(phase(Self.host("a")) == .healthy, "not moved: judged against the stable revision")
        #expect(phase(Self.host("a", moved: 0)) == .pending, "moved, still on revision 1")
        #expect(phase(Self.host("a", moved: 0, revision: nil)) == .pending)
        #expect(phase(Self.host("a", moved: 0, revision: 2, version: "2.0", runningFor: 5)) == .starting)
        #expect(phase(Self.host("a", moved: 0, revision: 2, version: "2.0", runningFor: 30)) == .healthy)
        #expect(phase(Self.host("a", moved: 0, revision: 2, version: "2.0", status: "fatal")) == .failed)
        #expect(phase(Self.host("a", moved: 0, revision: 2, version: "1.0", error: "upgrade failed; rolled back")) == .failed)
        #expect(Self.host("a", moved: 0, revision: 2, version: "1.0", error: "upgrade failed").phase(in: record, now: Self.now).message == "upgrade failed")
        #expect(phase(Self.host("a", moved: 0, revision: 2, version: "1.0")) == .failed, "says it applied 2 but runs 1.0")
    }

    @Test("Waves: the canary is one online host, then batches of a share, each only once the one before is healthy; then done")
    func waves() throws {
        var record = try Self.rolling()
        let hosts = (0 ..< 6).map { Self.host("sn-\($0)", online: $0 != 3) }
        guard case .move(let canary, wave: 0) = try record.nextStep(hosts: hosts, now: Self.now) else { Issue.record("no canary"); return }
        #expect(canary.count == 1 && canary != ["sn-3"])
        // The same deployment picks the same canary every time.
        #expect(try record.nextStep(hosts: hosts.reversed(), now: Self.now) == .move(canary, wave: 0))

        record.wave = 0
        var moved = hosts.map { $0.agentSN == canary[0] ? Self.host($0.agentSN, moved: 0, revision: 2, version: "2.0", runningFor: 5) : $0 }
        guard case .wait(let why) = try record.nextStep(hosts: moved, now: Self.now) else { Issue.record("moved on too early"); return }
        #expect(why.contains("0 of 1"))

        moved = hosts.map { $0.agentSN == canary[0] ? Self.host($0.agentSN, moved: 0, revision: 2, version: "2.0", runningFor: 60) : $0 }
        guard case .move(let batch, wave: 1) = try record.nextStep(hosts: moved, now: Self.now) else { Issue.record("no batch"); return }
        #expect(batch.count == 3 && !batch.contains("sn-3") && !batch.contains(canary[0]), "1 + 50% of 6 = 4 moved by wave 1, online only")

        record.wave = 1
        let online = Set(canary + batch)
        moved = hosts.map { online.contains($0.agentSN) ? Self.host($0.agentSN, moved: 1, revision: 2, version: "2.0", runningFor: 60) : $0 }
        guard case .move(let last, wave: 2) = try record.nextStep(hosts: moved, now: Self.now) else { Issue.record("no last wave"); return }
        #expect(last.count == 1 && !last.contains("sn-3"))
        record.wave = 2
        moved = moved.map { last.contains($0.agentSN) ? Self.host($0.agentSN, moved: 2, revision: 2, version: "2.0", runningFor: 60) : $0 }
        #expect(try record.nextStep(hosts: moved, now: Self.now) == .finish, "the offline host converges when it returns")
    }

    @Test("Past max_failures the rollout halts and says which hosts failed and why; a wave past its timeout counts its laggards")
    func halts() throws {
        var record = try Self.rolling(maxFailures: 1, wave: 1)
        var hosts = [
            Self.host("a", moved: 0, revision: 2, version: "2.0", runningFor: 60),
            Self.host("b", moved: 1, revision: 2, version: "1.0", error: "upgrade of web-agent to 2.0 failed: exited at once"),
            Self.host("c", moved: 1, revision: 1),
            Self.host("d"),
        ]
        guard case .wait = try record.nextStep(hosts: hosts, now: Self.now) else { Issue.record("one failure is tolerated"); return }
        hosts[2] = Self.host("c", moved: 1, revision: 2, version: "2.0", status: "stoped")
        guard case .halt(let why) = try record.nextStep(hosts: hosts, now: Self.now) else { Issue.record("did not halt"); return }
        #expect(why.contains("2 of 3 moved hosts failed") && why.contains("b: upgrade of web-agent to 2.0 failed: exited at once"), "\(why)")

        record.rollout.maxFailures = 0
        hosts = [Self.host("a", moved: 1, revision: 1), Self.host("b")]
        guard case .wait = try record.nextStep(hosts: hosts, now: Self.now) else { Issue.record("a pending host is not a failure yet"); return }
        guard case .halt(let late) = try record.nextStep(hosts: hosts, now: record.waveStarted + 300_000) else {
            Issue.record("a wave past its timeout must halt")
            return
        }
        #expect(late.contains("not healthy within 300 s"))
    }

    @Test("Targets: moved hosts run the new revision while rolling, paused or halted; every host the stable one once rolled back, the new one once done")
    func targets() throws {
        var record = try Self.rolling()
        for state in [RolloutState.rolling, .paused, .halted] {
            record.state = state
            #expect(record.target(moved: true).revision == 2 && record.target(moved: false).revision == 1)
        }
        record.state = .rolledBack
        #expect(record.target(moved: true).revision == 1)
        record.state = .done
        #expect(record.target(moved: false).revision == 2)
        record.stable = nil
        record.state = .rolling
        #expect(record.target(moved: false).revision == 2, "a first revision has nothing else to run")
    }

    @Test("Declarations are checked: names, tags, checksums, untag policy, rollout shares")
    func checks() throws {
        var spec = Aspire_V1_DeploymentSpec()
        spec.name = "web-agent"
        spec.version = "1.0"
        #expect(throws: AspireError.self) { try spec.checked() }  // no tags
        spec.tags = ["svc": "web"]
        #expect(try spec.checked().onUntag == "remove")
        spec.name = "../etc"
        #expect(throws: AspireError.self) { try spec.checked() }
        spec.name = "web-agent"
        spec.url = "https://files.example.com/a.tar.gz"
        #expect(throws: AspireError.self) { try spec.checked() }  // a url without its checksum
        spec.checksum = "SHA256:" + String(repeating: "ab", count: 32)
        #expect(try spec.checked().url == spec.url)
        spec.onUntag = "sometimes"
        #expect(throws: AspireError.self) { try spec.checked() }
        spec.onUntag = "keep"
        spec.user = "root; rm"
        #expect(throws: AspireError.self) { try spec.checked() }

        var policy = Aspire_V1_RolloutPolicy()
        let defaults = try policy.checked()
        #expect(defaults.canary == "1" && defaults.batch == "20%" && defaults.healthSeconds == 60 && defaults.waveTimeoutSeconds == 600)
        for (canary, batch) in [("0", ""), ("", "0"), ("150%", ""), ("x", ""), ("", "-1")] {
            policy.canary = canary
            policy.batch = batch
            #expect(throws: AspireError.self, "canary \(canary) batch \(batch)") { try policy.checked() }
        }
    }
}
