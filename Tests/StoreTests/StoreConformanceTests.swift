import Foundation
import RPC
import SQLKit
import Server
import Testing

/// Every store behaviour, checked on SQLite and on a real PostgreSQL server.
@Suite("Store conformance")
struct StoreConformanceTests {
    static func registration(_ sn: String, hostname: String = "web-1", version: String = "1.0", node: String = "n1", stream: Int64 = 0) -> HostRegistration {
        HostRegistration(agentSN: sn, hostname: hostname, ipaddr: "10.0.0.1", os: "linux", arch: "x86_64", version: version, node: node, stream: stream)
    }

    @Test("PostgreSQL is part of the run in CI", .enabled(if: ProcessInfo.processInfo.environment["CI"] != nil))
    func postgresInCI() {
        #expect(StoreHarness.postgresURL != nil, "CI must run the store suite on PostgreSQL: set ASPIRE_TEST_POSTGRES_URL")
    }

    @Test("Migrations apply once and again as a no-op", arguments: StoreHarness.engines)
    func migrations(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            #expect(try await store.appliedMigrations() == Array(1 ... 17))
            try await store.migrate()
            #expect(try await store.appliedMigrations() == Array(1 ... 17))
            #expect(try await store.regions() == [RegionRecord(id: 0, name: "global")])
        }
    }

    @Test("Audit rows are stored as given and read back newest first, by actor, method and time", arguments: StoreHarness.engines)
    func auditRows(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            var one = AuditRecord(time: 1_000, actor: "alice", method: "RunCommand")
            (one.role, one.address, one.node, one.targets, one.resolved) = ("operator", "ipv4:127.0.0.1:5", "n1", "h1", #"["h1"]"#)
            one.record(command: #"{"agentSn":"h1","command":{"method":"sync.bash"}}"#)
            (one.outcome, one.task, one.subtask) = ("ok", 7, "cmd-7")
            try await store.appendAudit(one)
            let many = (0 ..< 345).map { index in
                var record = AuditRecord(time: 2_000 + Int64(index), actor: index.isMultiple(of: 2) ? "bob" : "carol", method: "CreateTask")
                record.outcome = "ok \(index)"
                record.record(command: "{\"n\":\(index)}")
                return record
            }
            for record in many { try await store.appendAudit(record) }

            var query = AuditQuery()
            query.actor = "alice"
            let alice = try await store.audit(query)
            #expect(alice.count == 1)
            var stored = try #require(alice.items.first)
            #expect(stored.id > 0)
            stored.id = 0
            #expect(stored == one)

            query = AuditQuery()
            query.method = "CreateTask"
            query.page = Page(offset: 0, limit: 100, ascending: false)
            let created = try await store.audit(query)
            #expect(created.count == 345 && created.items.count == 100)
            #expect(created.items.map(\.time) == (2_000 + 245 ..< 2_000 + 345).reversed().map(Int64.init))
            #expect(created.items.first?.outcome == "ok 344" && created.items.first?.actor == "bob")
            query.since = 2_000 + 340
            #expect(try await store.audit(query).count == 5)
            query = AuditQuery()
            query.actor = "carol"
            #expect(try await store.audit(query).count == 172)
        }
    }

    @Test("Columns and binds read and written as SQLKit's coders do, whatever form a value is stored in", arguments: StoreHarness.engines)
    func columnsAndBinds(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            try await store.engine.withConnection { database in
                let blob: SQLQueryString = kind == .sqlite ? "x'00ff'" : "'\\x00ff'::bytea"
                let row = try #require(
                    try await database.raw(
                        "SELECT 7 AS i, 'seven' AS s, 2.5 AS d, NULL AS n, \(blob) AS b, \(bind: "bound") AS bs, \(bind: Int64.min) AS bi, \(bind: -1.25) AS bd, \(bind: true) AS bb, \(bind: Int?.none) AS bn, \(bind: Data([1, 0, 2])) AS bdata"
                    ).first()
                )
                #expect(try row.decode(column: "i", as: Int.self) == 7 && row.decode(column: "i", as: Int64.self) == 7)
                #expect(try row.decode(column: "s", as: String.self) == "seven")
                #expect(try row.decode(column: "d", as: Double.self) == 2.5)
                #expect(try row.decode(column: "n", as: Int?.self) == nil && row.decodeNil(column: "n"))
                #expect(try row.decode(column: "i", as: Int?.self) == 7)
                #expect(try row.decode(column: "b", as: Data.self) == Data([0, 255]))
                #expect(try row.decode(column: "bs", as: String.self) == "bound")
                #expect(try row.decode(column: "bi", as: Int64.self) == .min)
                #expect(try row.decode(column: "bd", as: Double.self) == -1.25)
                #expect(try row.decode(column: "bn", as: String?.self) == nil)
                #expect(try row.decode(column: "bdata", as: Data.self) == Data([1, 0, 2]) && row.decode(column: "bdata", as: Data?.self) == Data([1, 0, 2]))
                #expect(try row.decode(column: "n", as: Data?.self) == nil && row.decode(column: "n", as: Int64?.self) == nil)
                #expect(try row.decode(column: "s", as: String?.self) == "seven" && row.decode(column: "i", as: Int64?.self) == 7)
                #expect(try row.decode(column: "bb", as: Bool.self))
                #expect(throws: (any Error).self) { try row.decode(column: "missing", as: Int.self) }
                #expect(try !row.decodeNil(column: "i") && row.contains(column: "s") && !row.contains(column: "missing"))
                if kind == .sqlite {
                    // Stored in another form than its type's: converted as SQLiteKit converts it.
                    #expect(try row.decode(column: "i", as: String.self) == "7")
                    #expect(try row.decode(column: "i", as: Double.self) == 7)
                    #expect(throws: (any Error).self) { try row.decode(column: "s", as: Int.self) }
                }
            }
        }
    }

    @Test("Text with a NUL character: SQLite keeps it; PostgreSQL cannot, and says so as bad input, not an internal error", arguments: StoreHarness.engines)
    func nulCharacter(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            switch kind {
            case .sqlite:
                let tag = try await store.createTag(name: "a\u{0}b", value: "v")
                #expect(tag.name == "a\u{0}b")
            case .postgres:
                let error = await #expect(throws: AspireError.self) { try await store.createTag(name: "a\u{0}b", value: "v") }
                #expect(error?.code == .badRequest && error?.cause.contains("NUL") == true, "\(String(describing: error))")
            }
            // The store serves on.
            #expect(try await store.createTag(name: "after", value: "nul").name == "after")
        }
    }

    @Test("Registering a host creates it online; again updates it and keeps the previous version", arguments: StoreHarness.engines)
    func registerHost(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            func register(_ registration: HostRegistration) async throws -> HostRecord {
                try await store.registerHost(registration)
                return try #require(try await store.host(agentSN: registration.agentSN))
            }
            let first = try await register(Self.registration("sn-1", version: "1.0"))
            #expect(first.status == .online)
            #expect(first.curvers == "1.0" && first.prevers == "")
            #expect(first.region == 0)
            #expect(first.created > 0 && first.lastSeen > 0)

            let again = try await register(Self.registration("sn-1", hostname: "web-1b", version: "1.1", node: "n2"))
            #expect(again.id == first.id)
            #expect(again.hostname == "web-1b")
            #expect(again.curvers == "1.1" && again.prevers == "1.0")
            #expect(again.node == "n2")
            let same = try await register(Self.registration("sn-1", version: "1.1", node: "n2"))
            #expect(same.prevers == "1.0", "prevers must not be overwritten by the same version")
            #expect(try await store.host(agentSN: "nope") == nil)

            // The tools the agent said it lacks, as of its latest connect.
            var lacking = Self.registration("sn-1", version: "1.1", node: "n2")
            lacking.missingTools = ["tar (sub-agent packages, plugins)", "gzip (compressed packages)"]
            #expect(try await register(lacking).missingTools == lacking.missingTools)
            #expect(try await register(Self.registration("sn-1", version: "1.1", node: "n2")).missingTools.isEmpty)
        }
    }

    @Test("Only the stream that holds a host takes it offline; a node that starts again releases its hosts", arguments: StoreHarness.engines)
    func hostStatus(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            try await store.registerHost(Self.registration("sn-1", node: "n1", stream: 11))
            // The agent comes back (here on another node) before its old stream's end is written.
            try await store.registerHost(Self.registration("sn-1", node: "n2", stream: 22))
            #expect(try await store.releaseHost(agentSN: "sn-1", stream: 11) == false)
            #expect(try await store.host(agentSN: "sn-1")?.status == .online)
            // The same node, a newer stream: the same.
            try await store.registerHost(Self.registration("sn-1", node: "n2", stream: 33))
            #expect(try await store.releaseHost(agentSN: "sn-1", stream: 22) == false)
            #expect(try await store.host(agentSN: "sn-1")?.status == .online)
            #expect(try await store.releaseHost(agentSN: "sn-1", stream: 33))
            #expect(try await store.host(agentSN: "sn-1")?.status == .offline)
            #expect(try await store.releaseHost(agentSN: "sn-1", stream: 33) == false)
            #expect(try await store.releaseHost(agentSN: "missing", stream: 33) == false)

            try await store.registerHost(Self.registration("sn-2", node: "n3"))
            try await store.registerHost(Self.registration("sn-3", node: "n3"))
            try await store.releaseHosts(of: "n3")
            let counts = try await store.hostCounts()
            #expect(counts[.offline] == 3)
            #expect(counts[.online] == nil)
        }
    }

    @Test("Host counts: one row a step whoever counts first, the last day read back oldest first, old ones dropped", arguments: StoreHarness.engines)
    func hostCountHistory(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let step = SQLStore.hostCountStep
            let start = (Date().unixMilliseconds / step - 400) * step
            try await store.registerHost(Self.registration("sn-1"))
            try await store.recordHostCounts(now: start + 10)
            try await store.registerHost(Self.registration("sn-2"))
            try await store.releaseHost(agentSN: "sn-1", stream: 0)
            // A second node counting in the same step changes nothing.
            try await store.recordHostCounts(now: start + step - 1)
            try await store.recordHostCounts(now: start + step)
            let history = try await store.hostCountHistory(since: start)
            #expect(history.map(\.time) == [start, start + step])
            #expect(history.map(\.total) == [1, 2] && history.map(\.online) == [1, 1])
            #expect(try await store.hostCountHistory(since: start + 1).map(\.time) == [start + step])
            // Counted far later: what is older than the keep is gone.
            try await store.recordHostCounts(now: start + SQLStore.hostCountKeep + step)
            #expect(try await store.hostCountHistory(since: 0).map(\.time) == [start + step, start + SQLStore.hostCountKeep + step])
        }
    }

    @Test("Polling hosts silent for three steps go offline; others stay", arguments: StoreHarness.engines)
    func silentHosts(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            try await store.registerHost(Self.registration("poll-1", node: "http"))
            try await store.registerHost(Self.registration("poll-2", node: "http"))
            try await store.registerHost(Self.registration("stream-1", node: "n1"))
            #expect(try await store.recordStatus(agentSN: "poll-1", step: 60, subAgents: []))
            #expect(try await store.recordStatus(agentSN: "poll-2", step: 600, subAgents: []))
            let now = Date().unixMilliseconds
            // 3 x 60 s later poll-1 is silent; poll-2 reports every 600 s and is not.
            #expect(try await store.expireSilentHosts(of: "http", now: now + 181_000) == 1)
            #expect(try await store.host(agentSN: "poll-1")?.status == .offline)
            #expect(try await store.host(agentSN: "poll-2")?.status == .online)
            #expect(try await store.host(agentSN: "stream-1")?.status == .online)
            #expect(try await store.expireSilentHosts(of: "http", now: now + 181_000) == 0)
        }
    }

    @Test("Host lists filter by status, tag and hostname prefix, with counts and paging", arguments: StoreHarness.engines)
    func hostList(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            for index in 1 ... 12 {
                try await store.registerHost(Self.registration("sn-\(index)", hostname: index <= 5 ? "db-\(index)" : "web-\(index)"))
            }
            try await store.releaseHost(agentSN: "sn-1", stream: 0)
            try await store.bindTag(name: "svc", value: "ecs", to: "sn-2")
            try await store.bindTag(name: "svc", value: "ecs", to: "sn-3")
            try await store.bindTag(name: "zone", value: "a", to: "sn-3")

            var query = HostQuery()
            query.page = Page(offset: 0, limit: 5)
            let first = try await store.hosts(query)
            #expect(first.count == 12)
            #expect(first.items.map(\.agentSN) == ["sn-1", "sn-2", "sn-3", "sn-4", "sn-5"])
            query.page = Page(offset: 10, limit: 5)
            let last = try await store.hosts(query)
            #expect(last.items.map(\.agentSN) == ["sn-11", "sn-12"] && last.count == 12)
            query.page = Page(offset: 12, limit: 5)
            let past = try await store.hosts(query)
            #expect(past.items.isEmpty && past.count == 12, "a page past the end still counts them all")
            query.page = Page(offset: 0, limit: 2, ascending: false)
            #expect(try await store.hosts(query).items.map(\.agentSN) == ["sn-12", "sn-11"])

            var offline = HostQuery()
            offline.status = .offline
            #expect(try await store.hosts(offline).items.map(\.agentSN) == ["sn-1"])

            var tagged = HostQuery()
            tagged.tags = ["svc": "ecs"]
            let ecs = try await store.hosts(tagged)
            #expect(ecs.count == 2)
            #expect(ecs.items.first { $0.agentSN == "sn-3" }?.tags.map { "\($0.name)=\($0.value)" } == ["svc=ecs", "zone=a"])
            tagged.tags = ["svc": "ecs", "zone": "a"]
            #expect(try await store.hosts(tagged).items.map(\.agentSN) == ["sn-3"])
            tagged.tags = ["svc": "ecs"]
            tagged.page = Page(offset: 1, limit: 1)
            let second = try await store.hosts(tagged)
            #expect(second.items.map(\.agentSN) == ["sn-3"] && second.count == 2, "the count is of the filter, not of the page")
            tagged.tags = ["svc": "none"]
            #expect(try await store.hosts(tagged).count == 0)
            #expect(try await store.agentSNs(matching: ["svc": "ecs"]).sorted() == ["sn-2", "sn-3"])

            var prefix = HostQuery()
            prefix.hostnamePrefix = "db-"
            #expect(try await store.hosts(prefix).count == 5)
            prefix.page = Page(offset: 0, limit: 2)
            let db = try await store.hosts(prefix)
            #expect(db.count == 5 && db.items.map(\.hostname) == ["db-1", "db-2"])
            prefix.page = Page()
            prefix.hostnamePrefix = "db-%"
            #expect(try await store.hosts(prefix).count == 0, "a prefix is matched literally, not as a LIKE pattern")
        }
    }

    @Test("A report's tags: bound once, the same again binds nothing new, a new value is bound beside the old, an unknown host is refused", arguments: StoreHarness.engines)
    func reportedTags(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            try await store.registerHost(Self.registration("sn-1"))
            func carried() async throws -> [String] {
                try await #require(store.host(agentSN: "sn-1")).tags.map { "\($0.name)=\($0.value)" }
            }
            try await store.bindTags(["svc": "web", "dc": "sh"], to: "sn-1")
            #expect(try await carried() == ["dc=sh", "svc=web"])
            try await store.bindTags(["svc": "web", "dc": "sh"], to: "sn-1")
            #expect(try await carried() == ["dc=sh", "svc=web"])
            try await store.bindTags(["svc": "db", "dc": "sh"], to: "sn-1")
            #expect(try await carried() == ["dc=sh", "svc=db", "svc=web"])
            try await store.bindTags([:], to: "nobody")
            await #expect(throws: AspireError.self) { try await store.bindTags(["svc": "web"], to: "nobody") }
            await #expect(throws: AspireError.self) { try await store.bindTags(["": "x"], to: "sn-1") }
        }
    }

    @Test("Tags: create once, list with host counts, bind, unbind, delete", arguments: StoreHarness.engines)
    func tags(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let tag = try await store.createTag(name: "svc", value: "ecs")
            await #expect(throws: AspireError.self) { try await store.createTag(name: "svc", value: "ecs") }
            await #expect(throws: AspireError.self) { try await store.createTag(name: "", value: "x") }
            try await store.registerHost(Self.registration("sn-1"))
            try await store.bindTag(name: "svc", value: "ecs", to: "sn-1")
            try await store.bindTag(name: "svc", value: "ecs", to: "sn-1")
            try await store.bindTag(name: "svc", value: "rds", to: "sn-1")
            let error = await #expect(throws: AspireError.self) { try await store.bindTag(name: "svc", value: "ecs", to: "nobody") }
            #expect(error?.code == .notFound)

            let listed = try await store.tags()
            #expect(listed.map { "\($0.name)=\($0.value):\($0.hosts)" } == ["svc=ecs:1", "svc=rds:1"])
            #expect(try await store.unbindTag(name: "svc", value: "rds", from: "sn-1"))
            #expect(try await store.unbindTag(name: "svc", value: "rds", from: "sn-1") == false)
            #expect(try await store.deleteTag(id: tag.id))
            #expect(try await store.deleteTag(id: tag.id) == false)
            #expect(try await store.host(agentSN: "sn-1")?.tags.isEmpty == true)
        }
    }

    @Test("Regions: global exists; names are unique", arguments: StoreHarness.engines)
    func regions(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let east = try await store.createRegion(name: "east")
            #expect(east.id > 0)
            await #expect(throws: AspireError.self) { try await store.createRegion(name: "east") }
            #expect(try await store.regions().map(\.name) == ["global", "east"])
        }
    }

    @Test("Packages: unique per name, os, arch and version; filtered, sorted and paged; deleted", arguments: StoreHarness.engines)
    func packages(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            func package(_ name: String, _ version: String, arch: String = "x86_64") -> PackageRecord {
                let file = "\(name)-\(version).\(arch).rpm"
                return PackageRecord(
                    name: name, os: "linux", arch: arch, version: version, file: file, path: "packages/linux/\(arch)/\(file)",
                    sha256: String(repeating: "a", count: 64), size: 1024
                )
            }
            let first = try await store.addPackage(package("FoobarAgent", "1.2.3-rc1"))
            #expect(first.id > 0 && first.created > 0)
            let conflict = await #expect(throws: AspireError.self) { try await store.addPackage(package("FoobarAgent", "1.2.3-rc1")) }
            #expect(conflict?.code == .conflict)
            _ = try await store.addPackage(package("FoobarAgent", "1.2.3-rc1", arch: "aarch64"))
            _ = try await store.addPackage(package("FoobarAgent", "1.2.4"))
            _ = try await store.addPackage(package("BasicAgent", "0.1.1-1"))

            var query = PackageQuery()
            query.name = "FoobarAgent"
            query.page = Page(offset: 0, limit: 10)
            let foobar = try await store.packages(query)
            #expect(foobar.count == 3)
            query.version = "1.2.3-rc1"
            #expect(try await store.packages(query).count == 2)

            var sorted = PackageQuery()
            sorted.sortBy = "name"
            sorted.page = Page(offset: 0, limit: 2, ascending: false)
            let page = try await store.packages(sorted)
            #expect(page.count == 4)
            #expect(page.items.map(\.name) == ["FoobarAgent", "FoobarAgent"])
            sorted.sortBy = "name; DROP TABLE agents"
            await #expect(throws: AspireError.self) { try await store.packages(sorted) }

            var victim = PackageQuery()
            victim.name = "FoobarAgent"
            victim.version = "1.2.3-rc1"
            victim.arch = "aarch64"
            let deleted = try await store.deletePackages(victim)
            #expect(deleted.map(\.arch) == ["aarch64"])
            #expect(try await store.packages(PackageQuery()).count == 3)
            await #expect(throws: AspireError.self) { try await store.deletePackages(PackageQuery()) }
        }
    }

    @Test("Events are stored once per agent, local id and time", arguments: StoreHarness.engines)
    func events(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            let event = EventRecord(agentSN: "sn-1", category: "agent", localID: 7, occurred: 1_700_000_000_000, message: "started")
            #expect(try await store.recordEvent(event))
            #expect(try await store.recordEvent(event) == false)
            var later = event
            later.occurred += 1000
            later.message = "restarted"
            #expect(try await store.recordEvent(later))
            try await store.recordEvent(EventRecord(agentSN: "sn-2", category: "server", localID: 1, occurred: 1, message: "x"))
            let mine = try await store.events(agentSN: "sn-1")
            #expect(mine.count == 2)
            #expect(mine.items.map(\.message) == ["restarted", "started"])
            #expect(try await store.events().count == 3)
        }
    }

    @Test("Concurrent registrations and bindings do not lose or duplicate rows", arguments: StoreHarness.engines)
    func concurrency(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0 ..< 40 {
                    group.addTask {
                        try await store.registerHost(Self.registration("sn-\(index % 20)", version: "v\(index)"))
                        try await store.bindTag(name: "batch", value: "\(index % 3)", to: "sn-\(index % 20)")
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await store.hosts(HostQuery()).count == 20)
            #expect(try await store.tags().count == 3)
        }
    }

    @Test("Status reports replace a host's sub-agents; deployments count hosts and running ones", arguments: StoreHarness.engines)
    func subAgents(_ kind: SQLEngineKind) async throws {
        try await StoreHarness.withStore(kind) { store in
            #expect(try await store.recordStatus(agentSN: "ghost", step: 60, subAgents: []) == false)
            try await store.registerHost(Self.registration("sn-1"))
            try await store.registerHost(Self.registration("sn-2"))
            try await store.recordStatus(agentSN: "sn-1", step: 120, subAgents: [
                SubAgentRecord(name: "Monitor", version: "1.0", status: "running", pid: 10),
                SubAgentRecord(name: "Basic", version: "0.1", status: "fatal", restarts: 4),
            ])
            try await store.recordStatus(agentSN: "sn-2", step: 0, subAgents: [
                SubAgentRecord(name: "Monitor", version: "1.0", status: "stoped"),
            ])
            #expect(try await store.host(agentSN: "sn-1")?.step == 120)
            #expect(try await store.host(agentSN: "sn-2")?.step == 600, "step 0 keeps the previous step")
            #expect(try await store.subAgents(agentSN: "sn-1").map(\.name) == ["Basic", "Monitor"])
            #expect(try await store.subAgentVersions().map { "\($0.name) \($0.version) \($0.hosts)/\($0.running)" } == ["Basic 0.1 1/0", "Monitor 1.0 2/1"])
            try await store.recordStatus(agentSN: "sn-1", step: 120, subAgents: [
                SubAgentRecord(name: "Monitor", version: "1.1", status: "running", uptime: 99),
                SubAgentRecord(name: "Monitor", version: "9.9", status: "fatal"),
            ])
            #expect(try await store.subAgents(agentSN: "sn-1").map { "\($0.name) \($0.version) \($0.uptime)" } == ["Monitor 1.1 99"], "the first of a name counts")
            try await store.recordStatus(agentSN: "sn-1", step: 120, subAgents: [])
            #expect(try await store.subAgents(agentSN: "sn-1").isEmpty, "a report replaces the previous list")
            // A report with nothing to replace is one statement; it still moves the step.
            #expect(try await store.recordStatus(agentSN: "sn-1", step: 30, subAgents: []))
            #expect(try await store.host(agentSN: "sn-1")?.step == 30)
            #expect(try await store.subAgents(agentSN: "sn-2").map(\.status) == ["stoped"])
        }
    }
}
