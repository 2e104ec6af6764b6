/// What a caller may do. Each role is a set of permissions, and each call needs one.
public enum Permission: String, Sendable, CaseIterable {
    /// Learn who one is (every role).
    case identify
    /// See hosts, tasks, packages, schedules, plugins, events.
    case read
    /// Read metrics (Prometheus scrapes).
    case metrics
    /// Run commands and tasks, deploy, and manage schedules and plugins, on the hosts of the
    /// operator's scope.
    case operate
    /// Everything else: operators, join tokens, bans, packages, tags and regions.
    case administer
}

/// An operator's role.
public enum Role: String, Sendable, CaseIterable {
    case viewer
    case `operator`
    case admin
    case metrics

    public static var names: [String] { Self.allCases.map(\.rawValue) }

    public var permissions: Set<Permission> {
        switch self {
        case .viewer: [.identify, .read, .metrics]
        case .operator: [.identify, .read, .metrics, .operate]
        case .admin: Set(Permission.allCases)
        case .metrics: [.identify, .metrics]
        }
    }
}

/// Who is calling: a named operator (the node's `admin.token` is the operator `admin`).
public struct Principal: Sendable, Hashable {
    public var name: String
    public var role: Role
    /// For the operator role: the tags every host it acts on must carry; empty for all hosts.
    public var scope: [String: String] = [:]

    public init(name: String, role: Role, scope: [String: String] = [:]) {
        self.name = name
        self.role = role
        self.scope = scope
    }

    /// The holder of the node's admin token.
    public static let admin = Principal(name: "admin", role: .admin)
}

/// The one table of who may call what: the permission every Admin method needs, by method name.
/// A method missing here is refused to everyone (a test walks the generated descriptors and
/// every role against this table).
public enum AccessTable {
    public static let admin: [String: Permission] = [
        // Reading.
        "ListAgents": .read, "GetTask": .read, "ListTasks": .read, "ListHosts": .read, "GetHost": .read,
        "ListTags": .read, "ListRegions": .read, "ListEvents": .read, "Dashboard": .read, "ListPackages": .read,
        "ListSchedules": .read, "ListScheduleRuns": .read, "ListPlugins": .read, "ListDeployments": .read, "GetDeployment": .read,
        "QueryMetrics": .metrics, "ExportMetrics": .metrics,
        // Acting on hosts: scoped for operators.
        "RunCommand": .operate, "RunCommandStream": .operate, "CreateTask": .operate, "CancelTask": .operate,
        "CreateSchedule": .operate, "DeleteSchedule": .operate, "SetScheduleEnabled": .operate, "ImportCrontab": .operate,
        "CreatePlugin": .operate, "DeletePlugin": .operate,
        "ApplyDeployment": .operate, "ControlDeployment": .operate, "DeleteDeployment": .operate,
        // Administering: what decides who and what is trusted, or regroups hosts.
        "UploadPackage": .administer, "DeletePackages": .administer,
        "CreateTag": .administer, "DeleteTag": .administer, "BindTag": .administer, "CreateRegion": .administer, "SetHostRegion": .administer,
        "DeleteHost": .administer, "BanHost": .administer,
        "CreateJoinToken": .administer, "ListJoinTokens": .administer, "RevokeJoinToken": .administer,
        "CreateOperator": .administer, "ListOperators": .administer, "RevokeOperator": .administer,
        "WhoAmI": .identify, "ListAudit": .administer, "ListNodes": .read, "DrainNode": .administer,
    ]

    /// The permission a REST route's service method (`Method` of Admin, or `Service.Method`) needs.
    public static func permission(route rpc: String) -> Permission? {
        let parts = rpc.split(separator: ".")
        return parts.count == 2
            ? Self.permission(service: "aspire.v1.\(parts[0])", method: String(parts[1]))
            : Self.permission(service: "aspire.v1.Admin", method: rpc)
    }

    /// The permission a call to `service`/`method` needs from an operator; nil for calls no
    /// operator makes (agents' services, unknown methods).
    public static func permission(service: String, method: String) -> Permission? {
        switch service {
        case "aspire.v1.Admin": Self.admin[method]
        // The gateway's credential for the seed's plain-HTTP agents.
        case "aspire.v1.AgentPoll": .administer
        case "aspire.v1.PackageStore": .read
        default: nil
        }
    }
}
