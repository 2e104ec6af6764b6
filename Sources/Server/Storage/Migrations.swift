import Foundation
import Logging
import RPC
import SQLKit

/// The schema, as numbered steps applied in order at start. A step is never edited once
/// released; changes are new steps.
enum Migrations {
    struct Step: Sendable {
        var version: Int
        var name: String
        var statements: @Sendable (SQLEngineKind) -> [String]
    }

    static let steps: [Step] = [
        Step(version: 1, name: "seed data model") { kind in
            let (id, bytes) = (Self.idColumn(kind), Self.bytesColumn(kind))
            return [
                """
                CREATE TABLE regions (
                    id \(id),
                    name TEXT NOT NULL UNIQUE,
                    gmt_create BIGINT NOT NULL,
                    gmt_modify BIGINT NOT NULL)
                """,
                "INSERT INTO regions (id, name, gmt_create, gmt_modify) VALUES (0, 'global', 0, 0)",
                """
                CREATE TABLE hosts (
                    id \(id),
                    agentsn TEXT NOT NULL UNIQUE,
                    hostname TEXT NOT NULL DEFAULT '',
                    ipaddr TEXT NOT NULL DEFAULT '',
                    region BIGINT NOT NULL DEFAULT 0,
                    status INTEGER NOT NULL DEFAULT 0,
                    feature INTEGER NOT NULL DEFAULT 0,
                    step INTEGER NOT NULL DEFAULT 600,
                    prevers TEXT NOT NULL DEFAULT '',
                    curvers TEXT NOT NULL DEFAULT '',
                    os TEXT NOT NULL DEFAULT '',
                    arch TEXT NOT NULL DEFAULT '',
                    node TEXT NOT NULL DEFAULT '',
                    last_seen BIGINT NOT NULL DEFAULT 0,
                    gmt_create BIGINT NOT NULL,
                    gmt_modify BIGINT NOT NULL)
                """,
                "CREATE INDEX hosts_status ON hosts (status)",
                "CREATE INDEX hosts_hostname ON hosts (hostname)",
                """
                CREATE TABLE tags (
                    id \(id),
                    name TEXT NOT NULL,
                    value TEXT NOT NULL,
                    gmt_create BIGINT NOT NULL,
                    gmt_modify BIGINT NOT NULL,
                    UNIQUE (name, value))
                """,
                """
                CREATE TABLE hosts_tags (
                    hostid BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
                    tagid BIGINT NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
                    PRIMARY KEY (hostid, tagid))
                """,
                "CREATE INDEX hosts_tags_tag ON hosts_tags (tagid)",
                """
                CREATE TABLE agents (
                    id \(id),
                    name TEXT NOT NULL,
                    os TEXT NOT NULL,
                    arch TEXT NOT NULL,
                    version TEXT NOT NULL,
                    file TEXT NOT NULL,
                    path TEXT NOT NULL,
                    sha256 TEXT NOT NULL,
                    size BIGINT NOT NULL,
                    gmt_create BIGINT NOT NULL,
                    gmt_modify BIGINT NOT NULL,
                    UNIQUE (name, os, arch, version))
                """,
                """
                CREATE TABLE hosts_agents (
                    hostid BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
                    name TEXT NOT NULL,
                    version TEXT NOT NULL DEFAULT '',
                    agentid BIGINT,
                    status TEXT NOT NULL DEFAULT '',
                    pid INTEGER NOT NULL DEFAULT 0,
                    restarts INTEGER NOT NULL DEFAULT 0,
                    uptime BIGINT NOT NULL DEFAULT 0,
                    gmt_modify BIGINT NOT NULL,
                    PRIMARY KEY (hostid, name))
                """,
                """
                CREATE TABLE tasks (
                    id \(id),
                    status INTEGER NOT NULL DEFAULT 0,
                    "user" TEXT NOT NULL DEFAULT '',
                    command TEXT NOT NULL,
                    body TEXT NOT NULL,
                    selector TEXT NOT NULL DEFAULT '',
                    window_start BIGINT NOT NULL DEFAULT 0,
                    window_end BIGINT NOT NULL DEFAULT 0,
                    max_concurrency TEXT NOT NULL DEFAULT '',
                    max_errors TEXT NOT NULL DEFAULT '',
                    count INTEGER NOT NULL DEFAULT 0,
                    complete INTEGER NOT NULL DEFAULT 0,
                    failed INTEGER NOT NULL DEFAULT 0,
                    gmt_create BIGINT NOT NULL,
                    gmt_modify BIGINT NOT NULL)
                """,
                """
                CREATE TABLE subtasks (
                    id TEXT PRIMARY KEY,
                    taskid BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
                    agentsn TEXT NOT NULL,
                    status INTEGER NOT NULL DEFAULT 0,
                    resp INTEGER NOT NULL DEFAULT 0,
                    retcode INTEGER NOT NULL DEFAULT 0,
                    message TEXT NOT NULL DEFAULT '',
                    data \(bytes),
                    stderr \(bytes),
                    truncated INTEGER NOT NULL DEFAULT 0,
                    started BIGINT NOT NULL DEFAULT 0,
                    finished BIGINT NOT NULL DEFAULT 0,
                    gmt_create BIGINT NOT NULL,
                    gmt_modify BIGINT NOT NULL)
                """,
                "CREATE INDEX subtasks_task ON subtasks (taskid)",
                "CREATE INDEX subtasks_agent ON subtasks (agentsn, status)",
                """
                CREATE TABLE pendings (
                    subtaskid TEXT PRIMARY KEY,
                    taskid BIGINT NOT NULL,
                    agentsn TEXT NOT NULL,
                    status INTEGER NOT NULL DEFAULT 0,
                    gmt_schedule BIGINT NOT NULL DEFAULT 0,
                    gmt_create BIGINT NOT NULL)
                """,
                "CREATE INDEX pendings_sched ON pendings (gmt_schedule)",
                "CREATE INDEX pendings_agent ON pendings (agentsn, gmt_schedule)",
                """
                CREATE TABLE events (
                    id \(id),
                    agentsn TEXT NOT NULL,
                    category TEXT NOT NULL DEFAULT '',
                    localid BIGINT NOT NULL,
                    occured BIGINT NOT NULL,
                    message TEXT NOT NULL DEFAULT '',
                    attributes TEXT NOT NULL DEFAULT '{}',
                    gmt_create BIGINT NOT NULL,
                    UNIQUE (agentsn, localid, occured))
                """,
            ]
        },
        Step(version: 2, name: "one subtask per task and host") { _ in
            ["CREATE UNIQUE INDEX subtasks_task_agent ON subtasks (taskid, agentsn)"]
        },
        Step(version: 3, name: "sub-agents' last message and previous version") { _ in
            [
                "ALTER TABLE hosts_agents ADD COLUMN message TEXT NOT NULL DEFAULT ''",
                "ALTER TABLE hosts_agents ADD COLUMN prevers TEXT NOT NULL DEFAULT ''",
            ]
        },
        Step(version: 4, name: "scheduled commands and their runs") { kind in
            let (id, bytes) = (Self.idColumn(kind), Self.bytesColumn(kind))
            return [
                """
                CREATE TABLE schedules (
                    id \(id),
                    name TEXT NOT NULL UNIQUE,
                    expr TEXT NOT NULL,
                    tz TEXT NOT NULL DEFAULT '',
                    "user" TEXT NOT NULL,
                    "group" TEXT NOT NULL DEFAULT '',
                    command TEXT NOT NULL,
                    timeout INTEGER NOT NULL DEFAULT 0,
                    agents TEXT NOT NULL DEFAULT '[]',
                    selector TEXT NOT NULL DEFAULT '{}',
                    enabled INTEGER NOT NULL DEFAULT 1,
                    gmt_create BIGINT NOT NULL,
                    gmt_modify BIGINT NOT NULL)
                """,
                """
                CREATE TABLE schedule_runs (
                    agentsn TEXT NOT NULL,
                    name TEXT NOT NULL,
                    due BIGINT NOT NULL,
                    resp INTEGER NOT NULL DEFAULT 0,
                    retcode INTEGER NOT NULL DEFAULT 0,
                    message TEXT NOT NULL DEFAULT '',
                    data \(bytes),
                    stderr \(bytes),
                    truncated INTEGER NOT NULL DEFAULT 0,
                    started BIGINT NOT NULL DEFAULT 0,
                    finished BIGINT NOT NULL DEFAULT 0,
                    gmt_create BIGINT NOT NULL,
                    PRIMARY KEY (agentsn, name, due))
                """,
                "CREATE INDEX schedule_runs_name ON schedule_runs (name, due)",
                "CREATE INDEX schedule_runs_due ON schedule_runs (due)",
            ]
        },
        Step(version: 5, name: "plugins and the hosts' latest metrics") { kind in
            [
                """
                CREATE TABLE plugins (
                    id \(Self.idColumn(kind)),
                    name TEXT NOT NULL UNIQUE,
                    definition TEXT NOT NULL,
                    agents TEXT NOT NULL DEFAULT '[]',
                    selector TEXT NOT NULL DEFAULT '{}',
                    gmt_create BIGINT NOT NULL,
                    gmt_modify BIGINT NOT NULL)
                """,
                // One row per host, metric name and tag set: its latest value.
                """
                CREATE TABLE metrics (
                    agentsn TEXT NOT NULL,
                    name TEXT NOT NULL,
                    tags TEXT NOT NULL,
                    value DOUBLE PRECISION NOT NULL,
                    ts BIGINT NOT NULL,
                    gmt_receive BIGINT NOT NULL,
                    PRIMARY KEY (agentsn, name, tags))
                """,
                "CREATE INDEX metrics_name ON metrics (name)",
            ]
        },
        Step(version: 6, name: "tasks keep their typed command") { kind in
            // The command as the task engine made it (serialized Aspire_V1_Command): deliveries
            // send it as it is instead of translating the JSON body again. NULL in tasks stored
            // before; those are still translated from their body.
            ["ALTER TABLE tasks ADD COLUMN command_pb \(Self.bytesColumn(kind))"]
        },
        Step(version: 7, name: "per-host certificates, join tokens and operators") { kind in
            [
                // What new hosts enroll with: only the SHA-256 of the secret is kept.
                """
                CREATE TABLE join_tokens (
                    id TEXT PRIMARY KEY,
                    digest TEXT NOT NULL UNIQUE,
                    note TEXT NOT NULL DEFAULT '',
                    tags TEXT NOT NULL DEFAULT '{}',
                    max_uses INTEGER NOT NULL DEFAULT 0,
                    uses INTEGER NOT NULL DEFAULT 0,
                    expires BIGINT NOT NULL DEFAULT 0,
                    revoked BIGINT NOT NULL DEFAULT 0,
                    gmt_create BIGINT NOT NULL)
                """,
                // Each host's current certificate (serial '' for none) and its ban.
                """
                CREATE TABLE agent_identities (
                    agentsn TEXT PRIMARY KEY,
                    serial TEXT NOT NULL DEFAULT '',
                    not_after BIGINT NOT NULL DEFAULT 0,
                    token TEXT NOT NULL DEFAULT '',
                    banned BIGINT NOT NULL DEFAULT 0,
                    ban_reason TEXT NOT NULL DEFAULT '',
                    gmt_create BIGINT NOT NULL,
                    gmt_modify BIGINT NOT NULL)
                """,
                // Certificates taken back (host deleted or banned), in order: every node follows
                // this list and closes the streams they open.
                """
                CREATE TABLE identity_revocations (
                    id \(Self.idColumn(kind)),
                    agentsn TEXT NOT NULL,
                    gmt_create BIGINT NOT NULL)
                """,
                // Named operator credentials: role, scope (tags), and the SHA-256 of the token.
                """
                CREATE TABLE operators (
                    name TEXT PRIMARY KEY,
                    role TEXT NOT NULL,
                    scope TEXT NOT NULL DEFAULT '{}',
                    digest TEXT NOT NULL UNIQUE,
                    revoked BIGINT NOT NULL DEFAULT 0,
                    gmt_create BIGINT NOT NULL)
                """,
            ]
        },
        Step(version: 8, name: "audit trail") { kind in
            [
                // Append-only: who did what, from where, to which hosts, and how it ended. A
                // dispatch row names its subtask, and there is one per subtask.
                """
                CREATE TABLE audit (
                    id \(Self.idColumn(kind)),
                    ts BIGINT NOT NULL,
                    actor TEXT NOT NULL,
                    role TEXT NOT NULL DEFAULT '',
                    address TEXT NOT NULL DEFAULT '',
                    node TEXT NOT NULL DEFAULT '',
                    method TEXT NOT NULL,
                    targets TEXT NOT NULL DEFAULT '',
                    resolved TEXT NOT NULL DEFAULT '',
                    digest TEXT NOT NULL DEFAULT '',
                    command TEXT NOT NULL DEFAULT '',
                    outcome TEXT NOT NULL DEFAULT '',
                    task BIGINT NOT NULL DEFAULT 0,
                    subtask TEXT NOT NULL DEFAULT '')
                """,
                "CREATE INDEX audit_actor ON audit (actor, ts)",
                "CREATE INDEX audit_ts ON audit (ts)",
                "CREATE UNIQUE INDEX audit_dispatch ON audit (subtask) WHERE subtask <> ''",
                // Who created a task: its dispatches are recorded in that operator's name.
                "ALTER TABLE tasks ADD COLUMN actor TEXT NOT NULL DEFAULT ''",
            ]
        },
        Step(version: 9, name: "cluster membership") { _ in
            [
                // Each node's row, refreshed by its heartbeat; `stopped` when it shut down cleanly.
                """
                CREATE TABLE nodes (
                    name TEXT PRIMARY KEY,
                    address TEXT NOT NULL,
                    started BIGINT NOT NULL,
                    heartbeat BIGINT NOT NULL,
                    stopped BIGINT NOT NULL DEFAULT 0)
                """
            ]
        },
        Step(version: 10, name: "node draining") { _ in
            // Set by an operator (DrainNode); the node sends its agents away while it is.
            ["ALTER TABLE nodes ADD COLUMN draining INTEGER NOT NULL DEFAULT 0"]
        },
        Step(version: 11, name: "package content in the store") { kind in
            // A cluster's package files, by SHA256, in chunks (PostgreSQL; one SQLite node
            // keeps its files). `package_contents` is written last: content is whole once listed.
            [
                """
                CREATE TABLE package_blobs (
                    sha256 TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    data \(Self.bytesColumn(kind)) NOT NULL,
                    PRIMARY KEY (sha256, seq))
                """,
                """
                CREATE TABLE package_contents (
                    sha256 TEXT PRIMARY KEY,
                    size BIGINT NOT NULL,
                    chunks INTEGER NOT NULL,
                    gmt_create BIGINT NOT NULL)
                """,
            ]
        },
        Step(version: 12, name: "the stream that holds each host") { _ in
            ["ALTER TABLE hosts ADD COLUMN stream BIGINT NOT NULL DEFAULT 0"]
        },
        Step(version: 13, name: "host counts over time") { _ in
            // One row every SQLStore.hostCountStep: the first node to count in a step writes it.
            ["CREATE TABLE host_counts (bucket BIGINT PRIMARY KEY, total INTEGER NOT NULL, online INTEGER NOT NULL)"]
        },
        Step(version: 14, name: "declared deployments") { kind in
            [
                // The spec and rollout policy as protobuf JSON; `stable` is the spec of the
                // stable revision ('' on a first revision).
                """
                CREATE TABLE deployments (
                    id \(Self.idColumn(kind)),
                    name TEXT NOT NULL UNIQUE,
                    spec TEXT NOT NULL,
                    rollout TEXT NOT NULL,
                    revision BIGINT NOT NULL,
                    stable TEXT NOT NULL DEFAULT '',
                    stable_revision BIGINT NOT NULL DEFAULT 0,
                    state TEXT NOT NULL,
                    wave INTEGER NOT NULL DEFAULT 0,
                    wave_started BIGINT NOT NULL DEFAULT 0,
                    reason TEXT NOT NULL DEFAULT '',
                    gmt_create BIGINT NOT NULL,
                    gmt_modify BIGINT NOT NULL)
                """,
                // The hosts a rollout moved to its revision, and in which wave.
                """
                CREATE TABLE deployment_moves (
                    deployment TEXT NOT NULL,
                    agentsn TEXT NOT NULL,
                    revision BIGINT NOT NULL,
                    wave INTEGER NOT NULL,
                    moved BIGINT NOT NULL,
                    PRIMARY KEY (deployment, agentsn))
                """,
                // What each host reports it runs of each deployment.
                """
                CREATE TABLE hosts_deployments (
                    hostid BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
                    name TEXT NOT NULL,
                    revision BIGINT NOT NULL,
                    version TEXT NOT NULL,
                    error TEXT NOT NULL DEFAULT '',
                    gmt_modify BIGINT NOT NULL,
                    PRIMARY KEY (hostid, name))
                """,
                // Counters that move when something without timestamps of its own changes.
                "CREATE TABLE revisions (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
                "INSERT INTO revisions (name, value) VALUES ('tags', 0)",
            ]
        },
        Step(version: 15, name: "tools a host lacks, metric values that are not numbers") { _ in
            [
                // One a line, as the agent said them in Hello.
                "ALTER TABLE hosts ADD COLUMN missing_tools TEXT NOT NULL DEFAULT ''",
                "ALTER TABLE metrics ADD COLUMN text TEXT NOT NULL DEFAULT ''",
            ]
        },
        Step(version: 16, name: "a subtask's delivery kept in its own row") { _ in
            // A result used to touch eight B-trees (the subtask, its agent-and-status index, and
            // the delivery row with its three); now the subtask row and two partial indexes that
            // hold open subtasks only: 4× the results a second from Python's sqlite3, 2× through the
            // node's own path (bench/README, P7).
            // `subtasks_task` was a prefix of the unique (taskid, agentsn) index.
            [
                "ALTER TABLE subtasks ADD COLUMN due BIGINT NOT NULL DEFAULT 0",
                """
                UPDATE subtasks SET due = COALESCE((SELECT gmt_schedule FROM pendings WHERE pendings.subtaskid = subtasks.id), 0)
                WHERE \(SQLStore.openSubtask)
                """,
                "DROP TABLE pendings",
                "DROP INDEX subtasks_task",
                "DROP INDEX subtasks_agent",
                "CREATE INDEX subtasks_agent ON subtasks (agentsn)",
                "CREATE INDEX subtasks_due ON subtasks (due) WHERE \(SQLStore.openSubtask)",
                "CREATE INDEX subtasks_agent_due ON subtasks (agentsn, due) WHERE \(SQLStore.openSubtask)",
            ]
        },
        Step(version: 17, name: "the key each host enrolled with") { _ in
            // The SHA-256 of its public key (SubjectPublicKeyInfo): a host whose enrollment's
            // answer was lost asks again with the same key and gets its certificate again.
            ["ALTER TABLE agent_identities ADD COLUMN key_digest TEXT NOT NULL DEFAULT ''"]
        },
    ]

    /// An auto-numbered primary key.
    static func idColumn(_ kind: SQLEngineKind) -> String {
        kind == .sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT" : "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    }

    static func bytesColumn(_ kind: SQLEngineKind) -> String {
        kind == .sqlite ? "BLOB" : "BYTEA"
    }

    /// Applies the steps not applied yet, each in its own transaction. On PostgreSQL an advisory
    /// lock keeps nodes that start together from migrating twice.
    static func apply(on engine: any SQLEngine, through version: Int = .max, logger: Logger) async throws {
        try await engine.withConnection { database in
            try await database.raw(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied BIGINT NOT NULL)"
            ).run()
        }
        for step in self.steps where step.version <= version {
            try await engine.withConnection { database in
                try await database.raw(engine.kind == .sqlite ? "BEGIN IMMEDIATE" : "BEGIN").run()
                do {
                    if engine.kind == .postgres {
                        try await database.raw("SELECT pg_advisory_xact_lock(7305742)").run()
                    }
                    let done = try await database.raw("SELECT version FROM schema_migrations WHERE version = \(bind: step.version)")
                        .first()
                    if done == nil {
                        for statement in step.statements(engine.kind) {
                            try await database.raw("\(unsafeRaw: statement)").run()
                        }
                        try await database.raw(
                            "INSERT INTO schema_migrations (version, name, applied) VALUES (\(bind: step.version), \(bind: step.name), \(bind: Date().unixMilliseconds))"
                        ).run()
                        logger.notice("applied schema migration", metadata: ["migration.version": "\(step.version)", "migration.name": "\(step.name)"])
                    }
                    try await database.raw("COMMIT").run()
                } catch {
                    try? await database.raw("ROLLBACK").run()
                    throw error
                }
            }
        }
    }
}
