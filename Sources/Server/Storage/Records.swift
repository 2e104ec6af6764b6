import RPC

/// A host as the store keeps it (the seed's `hosts` row, with its tags).
public struct HostRecord: Sendable, Hashable {
    public var id: Int
    public var agentSN: String
    public var hostname: String
    public var ipaddr: String
    public var region: Int
    public var status: HostStatus
    public var feature: Int
    public var step: Int
    public var prevers: String
    public var curvers: String
    public var os: String
    public var arch: String
    /// The server node holding its stream, while online.
    public var node: String
    /// Unix milliseconds.
    public var lastSeen: Int64
    public var created: Int64
    public var modified: Int64
    public var tags: [TagRecord] = []
    /// Its certificate, as the store knows it.
    public var identity: HostIdentity = .none
    /// Unix milliseconds when its certificate expires; 0 for none.
    public var certificateNotAfter: Int64 = 0
    /// Tools its agent needs and lacks, each with what it is needed for.
    public var missingTools: [String] = []
}

/// Whether a host holds a certificate of the cluster.
public enum HostIdentity: String, Sendable, Hashable {
    /// Never enrolled, or deleted since: it may enroll with a join token.
    case none
    case enrolled
    /// Refused everywhere, and may not enroll until an operator lifts the ban.
    case banned
}

/// The seed's host states.
public enum HostStatus: Int, Sendable, Hashable, CaseIterable {
    case unknown = 0
    case register = 1
    case online = 2
    case offline = 3
    /// Deleted by an operator: its certificate was taken back.
    case deleted = 4

    public var name: String {
        switch self {
        case .unknown: "unknown"
        case .register: "register"
        case .online: "online"
        case .offline: "offline"
        case .deleted: "deleted"
        }
    }

    public init?(name: String) {
        guard let status = Self.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = status
    }
}

/// What an agent says about itself when it connects.
public struct HostRegistration: Sendable, Hashable {
    public var agentSN: String
    public var hostname: String
    public var ipaddr: String
    public var os: String
    public var arch: String
    public var version: String
    public var node: String
    /// The stream that holds the host (``AgentSession/connectionID``); 0 for the seed's
    /// polling agents, which hold none.
    public var stream: Int64
    /// Tools the agent said it lacks.
    public var missingTools: [String] = []

    public init(
        agentSN: String, hostname: String, ipaddr: String, os: String, arch: String, version: String, node: String, stream: Int64 = 0,
        missingTools: [String] = []
    ) {
        self.agentSN = agentSN
        self.hostname = hostname
        self.ipaddr = ipaddr
        self.os = os
        self.arch = arch
        self.version = version
        self.node = node
        self.stream = stream
        self.missingTools = missingTools
    }
}

/// Filters and paging of the host list.
public struct HostQuery: Sendable, Hashable {
    public var status: HostStatus?
    public var region: Int?
    /// Hosts carrying every one of these tags.
    public var tags: [String: String] = [:]
    public var hostnamePrefix: String?
    /// Hosts held by this node (online on it, or last).
    public var node: String?
    public var page = Page()

    public init() {}
}

/// Offset and limit of a list, as the seed's `offset=0&limit=10`.
public struct Page: Sendable, Hashable {
    public var offset: Int = 0
    public var limit: Int = 50
    public var ascending = true

    public init(offset: Int = 0, limit: Int = 50, ascending: Bool = true) {
        self.offset = offset
        self.limit = limit
        self.ascending = ascending
    }
}

/// One page of a list, with the count of all matches.
public struct Listing<Item: Sendable>: Sendable {
    public var count: Int
    public var items: [Item]
}

public struct TagRecord: Sendable, Hashable {
    public var id: Int
    public var name: String
    public var value: String
    /// Hosts bound to the tag (filled by tag listings).
    public var hosts: Int = 0
    public var created: Int64
    public var modified: Int64
}

public struct RegionRecord: Sendable, Hashable {
    public var id: Int
    public var name: String

    public init(id: Int, name: String) {
        self.id = id
        self.name = name
    }
}

/// A package version (the seed's `agents` table).
public struct PackageRecord: Sendable, Hashable {
    public var id: Int
    public var name: String
    public var os: String
    public var arch: String
    public var version: String
    public var file: String
    /// Relative to the package store: `packages/{os}/{arch}/{file}`.
    public var path: String
    public var sha256: String
    public var size: Int64
    public var created: Int64
    public var modified: Int64

    /// Where agents fetch it: `aspire://package/OS/ARCH/FILE`, over their own connection.
    public var url: String { StoreFile(os: self.os, arch: self.arch, file: self.file).url }

    public init(
        id: Int = 0, name: String, os: String, arch: String, version: String, file: String, path: String, sha256: String,
        size: Int64, created: Int64 = 0, modified: Int64 = 0
    ) {
        self.id = id
        self.name = name
        self.os = os
        self.arch = arch
        self.version = version
        self.file = file
        self.path = path
        self.sha256 = sha256
        self.size = size
        self.created = created
        self.modified = modified
    }
}

public struct PackageQuery: Sendable, Hashable {
    public var name: String?
    public var version: String?
    public var os: String?
    public var arch: String?
    public var file: String?
    /// id, name, version, gmt_create or gmt_modify.
    public var sortBy = "id"
    public var page = Page()

    public init() {}
}

public struct EventRecord: Sendable, Hashable {
    public var id: Int
    public var agentSN: String
    public var category: String
    public var localID: Int64
    /// Unix milliseconds.
    public var occurred: Int64
    public var message: String
    public var created: Int64

    public init(id: Int = 0, agentSN: String, category: String, localID: Int64, occurred: Int64, message: String, created: Int64 = 0) {
        self.id = id
        self.agentSN = agentSN
        self.category = category
        self.localID = localID
        self.occurred = occurred
        self.message = message
        self.created = created
    }
}
