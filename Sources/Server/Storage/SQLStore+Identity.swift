import Foundation
public import RPC
import SQLKit

/// A join token as the store keeps it: never the secret, only its SHA-256.
public struct JoinTokenRecord: Sendable, Hashable {
    public var id: String
    public var note: String = ""
    /// Given to hosts that enroll with it.
    public var tags: [String: String] = [:]
    /// Enrollments allowed; 0 for any number.
    public var maxUses: Int = 0
    public var uses: Int = 0
    /// Unix milliseconds; 0 for never.
    public var expires: Int64 = 0
    public var revoked: Int64 = 0
    public var created: Int64 = 0

    public enum State: String, Sendable {
        case usable
        case expired
        case usedUp = "used up"
        case revoked
    }

    public func state(now: Int64) -> State {
        if self.revoked != 0 { return .revoked }
        if self.expires != 0 && self.expires <= now { return .expired }
        if self.maxUses != 0 && self.uses >= self.maxUses { return .usedUp }
        return .usable
    }
}

/// A host's certificate as the store knows it.
public struct IdentityRecord: Sendable, Hashable {
    public var agentSN: String
    /// Hex serial of its current certificate; empty when it holds none.
    public var serial: String
    /// Unix milliseconds.
    public var notAfter: Int64
    /// The join token it enrolled with.
    public var token: String
    /// Unix milliseconds when it was banned; 0 when it is not.
    public var banned: Int64
    public var banReason: String
}

extension SQLStore {
    /// Registers the node's own first join token (the `enroll.token` file) unless it is known:
    /// a token an operator revoked stays revoked when the node starts again.
    public func registerJoinToken(secret: String, note: String) async throws {
        let digest = Secret.digest(secret)
        let id = "enroll-" + digest.prefix(8)
        try await self.engine.withConnection { database in
            try await database.raw(
                """
                INSERT INTO join_tokens (id, digest, note, gmt_create) VALUES (\(bind: id), \(bind: digest), \(bind: note), \(bind: Self.now))
                ON CONFLICT (digest) DO NOTHING
                """
            ).run()
        }
    }

    /// Makes a join token; returns it and its secret (which only the caller ever sees).
    public func createJoinToken(ttl: Int64?, maxUses: Int, tags: [String: String], note: String) async throws -> (JoinTokenRecord, String) {
        for (name, value) in tags { try Self.validateTag(name: name, value: value) }
        guard maxUses >= 0 else { throw AspireError(.badRequest, "max_uses must be 0 (any number) or more") }
        let secret = Secret.make()
        let now = Self.now
        var record = JoinTokenRecord(
            id: Secret.make(bytes: 5),
            note: note, tags: tags, maxUses: maxUses, expires: ttl.map { now + $0 * 1000 } ?? 0, created: now
        )
        record.created = now
        let tagsJSON = try Self.encodeJSON(tags)
        try await self.engine.withConnection { database in
            try await database.raw(
                """
                INSERT INTO join_tokens (id, digest, note, tags, max_uses, expires, gmt_create)
                VALUES (\(bind: record.id), \(bind: Secret.digest(secret)), \(bind: note), \(bind: tagsJSON),
                        \(bind: maxUses), \(bind: record.expires), \(bind: now))
                """
            ).run()
        }
        return (record, secret)
    }

    /// Join tokens, newest first; only the usable ones unless `all`.
    public func joinTokens(all: Bool) async throws -> [JoinTokenRecord] {
        let now = Self.now
        let tokens = try await self.engine.withConnection { database in
            try await database.raw("SELECT * FROM join_tokens ORDER BY gmt_create DESC, id").all().map(Self.joinToken(from:))
        }
        return all ? tokens : tokens.filter { $0.state(now: now) == .usable }
    }

    /// The join token whose secret is `secret`, if any.
    public func joinToken(secret: String) async throws -> JoinTokenRecord? {
        try await self.engine.withConnection { database in
            try await database.raw("SELECT * FROM join_tokens WHERE digest = \(bind: Secret.digest(secret))").first()
                .map(Self.joinToken(from:))
        }
    }

    /// Revokes a join token: no host enrolls with it any more (hosts that did keep their
    /// certificates).
    public func revokeJoinToken(id: String) async throws -> JoinTokenRecord {
        try await self.engine.withConnection { database in
            try await database.raw(
                "UPDATE join_tokens SET revoked = \(bind: Self.now) WHERE id = \(bind: id) AND revoked = 0"
            ).run()
            guard let row = try await database.raw("SELECT * FROM join_tokens WHERE id = \(bind: id)").first() else {
                throw AspireError(.notFound, "no join token with id \(id)")
            }
            return try Self.joinToken(from: row)
        }
    }

    static func joinToken(from row: any SQLRow) throws -> JoinTokenRecord {
        JoinTokenRecord(
            id: try row.decode(column: "id", as: String.self),
            note: try row.decode(column: "note", as: String.self),
            tags: Self.jsonColumn(row, "tags", default: [:]),
            maxUses: try row.decode(column: "max_uses", as: Int.self),
            uses: try row.decode(column: "uses", as: Int.self),
            expires: try row.decode(column: "expires", as: Int64.self),
            revoked: try row.decode(column: "revoked", as: Int64.self),
            created: try row.decode(column: "gmt_create", as: Int64.self)
        )
    }

    /// Enrolls a host: takes one use of the join token `secret`, and records the certificate
    /// `serial`
    /// as the host's current one. Refused, with nothing taken, when the token is not usable,
    /// when the host is banned, or when it holds an unexpired certificate (a reinstalled host
    /// is deleted by an operator first: nobody holding a join token can take over an enrolled
    /// host's name while its certificate lives). The one exception is the enrolled host itself
    /// asking again because it lost the answer: the same key (`keyDigest`, the SHA-256 of its
    /// public key, which the request's signature proved it holds) with the same, unrevoked
    /// token gets the new certificate recorded, and no second use of the token is taken.
    /// Returns the token used.
    public func enroll(
        agentSN: String,
        hostname: String,
        joinToken secret: String,
        serial: String,
        notAfter: Int64,
        keyDigest: String
    ) async throws -> JoinTokenRecord {
        let digest = Secret.digest(secret)
        let now = Self.now
        let token = try await self.transaction { database -> JoinTokenRecord in
            let again = try await database.raw(
                """
                UPDATE agent_identities SET serial = \(bind: serial), not_after = \(bind: notAfter), gmt_modify = \(bind: now)
                WHERE agentsn = \(bind: agentSN) AND banned = 0 AND serial <> '' AND key_digest <> '' AND key_digest = \(bind: keyDigest)
                  AND token IN (SELECT id FROM join_tokens WHERE digest = \(bind: digest) AND revoked = 0)
                RETURNING token
                """
            ).first()
            if let again,
                let taken = try await database.raw("SELECT * FROM join_tokens WHERE id = \(bind: try again.decode(column: "token", as: String.self))").first()
            {
                return try Self.joinToken(from: taken)
            }
            let taken = try await database.raw(
                """
                UPDATE join_tokens SET uses = uses + 1
                WHERE digest = \(bind: digest) AND revoked = 0 AND (expires = 0 OR expires > \(bind: now))
                  AND (max_uses = 0 OR uses < max_uses)
                RETURNING *
                """
            ).first()
            guard let taken else {
                guard let row = try await database.raw("SELECT * FROM join_tokens WHERE digest = \(bind: digest)").first() else {
                    throw AspireError(.unauthenticated, "unknown join token")
                }
                let token = try Self.joinToken(from: row)
                throw AspireError(.unauthenticated, "join token \(token.id) is \(token.state(now: now).rawValue)")
            }
            let recorded = try await database.raw(
                """
                INSERT INTO agent_identities (agentsn, serial, not_after, token, key_digest, gmt_create, gmt_modify)
                VALUES (\(bind: agentSN), \(bind: serial), \(bind: notAfter), \(bind: try taken.decode(column: "id", as: String.self)),
                        \(bind: keyDigest), \(bind: now), \(bind: now))
                ON CONFLICT (agentsn) DO UPDATE SET
                    serial = excluded.serial, not_after = excluded.not_after, token = excluded.token, key_digest = excluded.key_digest,
                    gmt_modify = excluded.gmt_modify
                WHERE agent_identities.banned = 0 AND (agent_identities.serial = '' OR agent_identities.not_after < \(bind: now))
                RETURNING agentsn
                """
            ).first()
            if recorded == nil {
                let identity = try await database.raw("SELECT banned FROM agent_identities WHERE agentsn = \(bind: agentSN)").first()
                if try identity?.decode(column: "banned", as: Int64.self) ?? 0 != 0 {
                    throw AspireError(.permissionDenied, "host \(agentSN) is banned; an operator must lift the ban first (aspirectl hosts unban \(agentSN))")
                }
                throw AspireError(
                    .conflict,
                    "host \(agentSN) is already enrolled; to enroll a reinstalled host again, an operator deletes it first (aspirectl hosts delete \(agentSN))"
                )
            }
            // The host is known from now on, as registered until its first stream.
            try await database.raw(
                """
                INSERT INTO hosts (agentsn, hostname, status, gmt_create, gmt_modify)
                VALUES (\(bind: agentSN), \(bind: hostname), \(bind: HostStatus.register.rawValue), \(bind: now), \(bind: now))
                ON CONFLICT (agentsn) DO UPDATE SET
                    status = CASE WHEN hosts.status = \(bind: HostStatus.deleted.rawValue) THEN excluded.status ELSE hosts.status END,
                    gmt_modify = excluded.gmt_modify
                """
            ).run()
            return try Self.joinToken(from: taken)
        }
        try await self.bindTags(token.tags, to: agentSN)
        return token
    }

    /// A host's certificate record, if it ever enrolled or was banned.
    public func identity(agentSN: String) async throws -> IdentityRecord? {
        try await self.engine.withConnection { database in
            try await database.raw("SELECT * FROM agent_identities WHERE agentsn = \(bind: agentSN)").first().map(Self.identity(from:))
        }
    }

    /// Replaces the host's current certificate `serial` by a renewed one; false when `serial`
    /// is not its current one any more (deleted, banned or renewed meanwhile).
    public func renewIdentity(agentSN: String, serial: String, newSerial: String, notAfter: Int64) async throws -> Bool {
        try await self.engine.withConnection { database in
            try await database.raw(
                """
                UPDATE agent_identities SET serial = \(bind: newSerial), not_after = \(bind: notAfter), gmt_modify = \(bind: Self.now)
                WHERE agentsn = \(bind: agentSN) AND serial = \(bind: serial) AND banned = 0
                RETURNING agentsn
                """
            ).first() != nil
        }
    }

    /// Takes a host's certificate back and marks it deleted: it may enroll again with a join
    /// token (unless banned). Returns the host.
    public func deleteHost(agentSN: String) async throws -> HostRecord {
        try await self.transaction { database in
            let now = Self.now
            let updated = try await database.raw(
                "UPDATE hosts SET status = \(bind: HostStatus.deleted.rawValue), gmt_modify = \(bind: now) WHERE agentsn = \(bind: agentSN) RETURNING id"
            ).first()
            guard updated != nil else { throw AspireError(.notFound, "no host with AgentSN \(agentSN)") }
            try await database.raw("DELETE FROM agent_identities WHERE agentsn = \(bind: agentSN) AND banned = 0").run()
            try await database.raw(
                "UPDATE agent_identities SET serial = '', not_after = 0, gmt_modify = \(bind: now) WHERE agentsn = \(bind: agentSN)"
            ).run()
            try await Self.revoke(agentSN, at: now, on: database)
        }
        return try await self.requireHost(agentSN)
    }

    /// Bans a host (its certificate is taken back, and it may not enroll) or lifts its ban
    /// (then it enrolls again with a join token). Returns the host.
    public func banHost(agentSN: String, reason: String, lift: Bool) async throws -> HostRecord {
        try AgentIdentity.validate(agentSN: agentSN)
        try await self.transaction { database in
            let now = Self.now
            if lift {
                try await database.raw(
                    "UPDATE agent_identities SET banned = 0, ban_reason = '', gmt_modify = \(bind: now) WHERE agentsn = \(bind: agentSN)"
                ).run()
                return
            }
            try await database.raw(
                """
                INSERT INTO agent_identities (agentsn, banned, ban_reason, gmt_create, gmt_modify)
                VALUES (\(bind: agentSN), \(bind: now), \(bind: reason), \(bind: now), \(bind: now))
                ON CONFLICT (agentsn) DO UPDATE SET
                    serial = '', not_after = 0, banned = excluded.banned, ban_reason = excluded.ban_reason, gmt_modify = excluded.gmt_modify
                """
            ).run()
            try await Self.revoke(agentSN, at: now, on: database)
        }
        if let host = try await self.host(agentSN: agentSN) { return host }
        // A host banned before it was ever seen: known by its ban alone.
        return HostRecord(
            id: 0, agentSN: agentSN, hostname: "", ipaddr: "", region: 0, status: .unknown, feature: 0, step: 0, prevers: "",
            curvers: "", os: "", arch: "", node: "", lastSeen: 0, created: 0, modified: 0, identity: lift ? .none : .banned
        )
    }

    private static func revoke(_ agentSN: String, at now: Int64, on database: any SQLDatabase) async throws {
        try await database.raw("INSERT INTO identity_revocations (agentsn, gmt_create) VALUES (\(bind: agentSN), \(bind: now))").run()
    }

    /// Revocations after `cursor`, oldest first: (id, AgentSN).
    public func revocations(after cursor: Int) async throws -> [(id: Int, agentSN: String)] {
        try await self.engine.withConnection { database in
            try await database.raw("SELECT id, agentsn FROM identity_revocations WHERE id > \(bind: cursor) ORDER BY id").all().map {
                (try $0.decode(column: "id", as: Int.self), try $0.decode(column: "agentsn", as: String.self))
            }
        }
    }

    /// The id of the latest revocation; 0 for none.
    public func latestRevocation() async throws -> Int {
        try await self.engine.withConnection { database in
            try await database.raw("SELECT COALESCE(MAX(id), 0) AS n FROM identity_revocations").first()?.decode(column: "n", as: Int.self) ?? 0
        }
    }

    static func identity(from row: any SQLRow) throws -> IdentityRecord {
        IdentityRecord(
            agentSN: try row.decode(column: "agentsn", as: String.self),
            serial: try row.decode(column: "serial", as: String.self),
            notAfter: try row.decode(column: "not_after", as: Int64.self),
            token: try row.decode(column: "token", as: String.self),
            banned: try row.decode(column: "banned", as: Int64.self),
            banReason: try row.decode(column: "ban_reason", as: String.self)
        )
    }
}

/// A named operator credential as the store keeps it: never the token, only its SHA-256.
public struct OperatorRecord: Sendable, Hashable {
    public var principal: Principal
    public var created: Int64 = 0
    public var revoked: Int64 = 0
}

extension SQLStore {
    /// Makes an operator; returns it and its token (which only the caller ever sees).
    public func createOperator(_ principal: Principal) async throws -> (OperatorRecord, String) {
        guard !principal.name.isEmpty, principal.name.utf8.count <= 64,
            principal.name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x2F })
        else { throw AspireError(.badRequest, "an operator name is 1 to 64 printable characters, no spaces or slashes") }
        guard principal.name != Principal.admin.name else {
            throw AspireError(.conflict, "'admin' is the holder of the node's admin.token")
        }
        guard principal.scope.isEmpty || principal.role == .operator else {
            throw AspireError(.badRequest, "only the operator role has a scope")
        }
        for (name, value) in principal.scope { try Self.validateTag(name: name, value: value) }
        let secret = Secret.make()
        let record = OperatorRecord(principal: principal, created: Self.now)
        let scope = try Self.encodeJSON(principal.scope)
        try await self.engine.withConnection { database in
            let inserted = try await database.raw(
                """
                INSERT INTO operators (name, role, scope, digest, gmt_create)
                VALUES (\(bind: principal.name), \(bind: principal.role.rawValue), \(bind: scope), \(bind: Secret.digest(secret)),
                        \(bind: record.created))
                ON CONFLICT (name) DO NOTHING
                RETURNING name
                """
            ).first()
            guard inserted != nil else { throw AspireError(.conflict, "operator '\(principal.name)' already exists (revoke it first)") }
        }
        return (record, secret)
    }

    public func operators() async throws -> [OperatorRecord] {
        try await self.engine.withConnection { database in
            try await database.raw("SELECT * FROM operators ORDER BY name").all().map(Self.operatorRecord(from:))
        }
    }

    /// The operator whose token is `secret`, unless revoked.
    public func `operator`(secret: String) async throws -> OperatorRecord? {
        try await self.engine.withConnection { database in
            try await database.raw(
                "SELECT * FROM operators WHERE digest = \(bind: Secret.digest(secret)) AND revoked = 0"
            ).first().map(Self.operatorRecord(from:))
        }
    }

    /// Revokes an operator's token; its name stays taken, so the trail keeps one meaning for it.
    public func revokeOperator(name: String) async throws -> OperatorRecord {
        try await self.engine.withConnection { database in
            try await database.raw("UPDATE operators SET revoked = \(bind: Self.now) WHERE name = \(bind: name) AND revoked = 0").run()
            guard let row = try await database.raw("SELECT * FROM operators WHERE name = \(bind: name)").first() else {
                throw AspireError(.notFound, "no operator named \(name)")
            }
            return try Self.operatorRecord(from: row)
        }
    }

    static func operatorRecord(from row: any SQLRow) throws -> OperatorRecord {
        OperatorRecord(
            principal: Principal(
                name: try row.decode(column: "name", as: String.self),
                role: Role(rawValue: try row.decode(column: "role", as: String.self)) ?? .viewer,
                scope: Self.jsonColumn(row, "scope", default: [:])
            ),
            created: try row.decode(column: "gmt_create", as: Int64.self),
            revoked: try row.decode(column: "revoked", as: Int64.self)
        )
    }
}
