import Crypto
public import SwiftProtobuf

/// Turns a task's method and the seed's free-form `parameters` object into a typed command,
/// refusing unknown methods, unknown keys and values of the wrong type before anything is sent.
public enum CommandParameters {
    /// The getinfo methods every agent has.
    public static let getInfoMethods = ["users", "kernel", "os", "cpu", "memory", "disk", "network", "processes"]

    /// Sub-agent actions, as tasks name them (`install`) and as agents receive them (`agent.install`).
    public static let subAgentActions = ["install", "upgrade", "uninstall", "start", "stop", "restart"]

    /// Plugin methods a task may carry (`plugin.set` is the server's alone).
    public static let pluginMethods = ["plugin.run", "plugin.enable", "plugin.disable", "plugin.list", "plugin.update"]

    /// Every method a task may carry.
    public static var methods: [String] {
        ["sync.bash", "config"] + self.getInfoMethods.map { "getinfo.\($0)" } + self.subAgentActions + self.pluginMethods
    }

    public static func command(method: String, parameters: Google_Protobuf_Struct) throws(AspireError) -> Aspire_V1_Command {
        var command = Aspire_V1_Command()
        let fields = JSONFields(parameters.fields, context: method, code: .invalidParams)
        switch method {
        case "sync.bash":
            try fields.allow(["cmd", "timeout", "user", "group"])
            var bash = Aspire_V1_BashParams()
            bash.cmd = try fields.string("cmd", required: true)
            bash.timeout = Int32(try fields.integer("timeout", range: 0 ... 86400 * 7) ?? 0)
            bash.user = try fields.string("user")
            bash.group = try fields.string("group")
            try AccountName.check([bash.user, bash.group], owner: method, code: .invalidParams)
            command.bash = bash
            command.method = method
        case let name where name.hasPrefix("getinfo."):
            guard self.getInfoMethods.contains(String(name.dropFirst("getinfo.".count))) else {
                throw AspireError(.invalidParams, "unknown method '\(method)'; getinfo has \(self.getInfoMethods.joined(separator: ", "))")
            }
            try fields.allow(["args"])
            var getinfo = Aspire_V1_GetInfoParams()
            getinfo.args = try fields.string("args")
            command.getinfo = getinfo
            command.method = method
        case let action where self.subAgentActions.contains(action):
            try fields.allow(["name", "version", "url", "checksum", "envs", "limits", "user", "group"])
            var params = Aspire_V1_SubAgentParams()
            params.name = try fields.string("name", required: true)
            try PathName.check(params.name, field: "\(method): name")
            params.version = try fields.string("version")
            if !params.version.isEmpty { try PathName.check(params.version, field: "\(method): version") }
            params.url = try fields.string("url")
            params.checksum = try fields.string("checksum")
            if !params.checksum.isEmpty, !Self.isSHA256(params.checksum) {
                throw AspireError(.invalidParams, "\(method): checksum must be SHA256:<64 hex digits>")
            }
            params.envs = try fields.stringMap("envs")
            let limits = try fields.stringMap("limits")
            for key in limits.keys where !["cpu", "memory", "pids"].contains(key.lowercased()) {
                throw AspireError(.invalidParams, "\(method): unknown limit '\(key)' (use CPU, memory and pids)")
            }
            params.limits.cpu = limits.first { $0.key.lowercased() == "cpu" }?.value ?? ""
            params.limits.memory = limits.first { $0.key.lowercased() == "memory" }?.value ?? ""
            params.limits.pids = limits.first { $0.key.lowercased() == "pids" }?.value ?? ""
            params.user = try fields.string("user")
            params.group = try fields.string("group")
            try AccountName.check([params.user, params.group], owner: method, code: .invalidParams)
            command.subagent = params
            command.method = "agent.\(action)"
        case "config":
            try fields.allow(["svrlist", "step", "tags"])
            var config = Aspire_V1_ConfigParams()
            config.svrlist = try fields.string("svrlist")
            if !config.svrlist.isEmpty { _ = try HostPort.parseList(config.svrlist) }
            config.step = Int32(try fields.integer("step", range: 10 ... 86400) ?? 0)
            config.tags = try fields.stringMap("tags")
            command.config = config
            command.method = method
        case let name where self.pluginMethods.contains(name):
            var params = Aspire_V1_PluginParams()
            switch name {
            case "plugin.list":
                try fields.allow([])
            case "plugin.run":
                try fields.allow(["name", "timeout", "param"])
                params.timeout = Int32(try fields.integer("timeout", range: 0 ... 86400) ?? 0)
                params.param = try fields.string("param")
            case "plugin.disable":
                try fields.allow(["name", "seconds"])
                params.disableSeconds = Int32(try fields.integer("seconds", range: 0 ... 86400 * 365) ?? 0)
            default:
                try fields.allow(["name"])
            }
            if name != "plugin.list" {
                params.name = try fields.string("name", required: true)
                try PathName.check(params.name, field: "plugin name")
            }
            command.plugins = params
            command.method = method
        default:
            throw AspireError(.invalidParams, "unknown command '\(method)'; use one of \(self.methods.joined(separator: ", "))")
        }
        return command
    }

    public static func isSHA256(_ text: String) -> Bool {
        guard text.hasPrefix("SHA256:") else { return false }
        let hex = text.dropFirst("SHA256:".count)
        return hex.count == 64 && hex.allSatisfy(\.isHexDigit)
    }
}

extension Aspire_V1_ScheduleParams {
    /// What an agent reports in Hello and a node compares before sending a set: the lowercase
    /// hex SHA256 of the serialized set, empty for no schedules.
    public var digest: String {
        guard !self.schedules.isEmpty, let bytes = try? self.serializedBytes() as [UInt8] else { return "" }
        return SHA256.hash(data: bytes).hexString
    }
}

extension Aspire_V1_PluginParams {
    /// What an agent reports in Hello as the plugin set it has, as ``Aspire_V1_ScheduleParams/digest``.
    public var digest: String {
        guard !self.plugins.isEmpty else { return "" }
        var set = Aspire_V1_PluginParams()
        set.plugins = self.plugins
        guard let bytes = try? set.serializedBytes() as [UInt8] else { return "" }
        return SHA256.hash(data: bytes).hexString
    }
}
