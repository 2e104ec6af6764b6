public import SwiftProtobuf

/// Turns a task's method and the seed's free-form `parameters` object into a typed command,
/// refusing unknown methods, unknown keys and values of the wrong type before anything is sent.
public enum CommandParameters {
    /// The getinfo methods every agent has.
    public static let getInfoMethods = ["users", "kernel", "os", "cpu", "memory", "disk", "network", "processes"]

    /// Sub-agent actions, as tasks name them (`install`) and as agents receive them (`agent.install`).
    public static let subAgentActions = ["install", "upgrade", "uninstall", "start", "stop", "restart"]

    /// Every method a task may carry.
    public static var methods: [String] {
        ["sync.bash", "config"] + self.getInfoMethods.map { "getinfo.\($0)" } + self.subAgentActions
    }

    public static func command(method: String, parameters: Google_Protobuf_Struct) throws(AspireError) -> Aspire_V1_Command {
        var command = Aspire_V1_Command()
        let fields = Fields(method: method, fields: parameters.fields)
        switch method {
        case "sync.bash":
            try fields.allow(["cmd", "timeout", "user", "group"])
            var bash = Aspire_V1_BashParams()
            bash.cmd = try fields.string("cmd", required: true)
            bash.timeout = Int32(try fields.integer("timeout", range: 0 ... 86400 * 7) ?? 0)
            bash.user = try fields.string("user")
            bash.group = try fields.string("group")
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
            try fields.allow(["name", "version", "url", "checksum", "envs", "limits"])
            var params = Aspire_V1_SubAgentParams()
            params.name = try fields.string("name", required: true)
            params.version = try fields.string("version")
            params.url = try fields.string("url")
            params.checksum = try fields.string("checksum")
            if !params.checksum.isEmpty, !Self.isSHA256(params.checksum) {
                throw AspireError(.invalidParams, "\(method): checksum must be SHA256:<64 hex digits>")
            }
            params.envs = try fields.stringMap("envs")
            let limits = try fields.stringMap("limits")
            for key in limits.keys where !["cpu", "memory"].contains(key.lowercased()) {
                throw AspireError(.invalidParams, "\(method): unknown limit '\(key)' (use CPU and memory)")
            }
            params.limits.cpu = limits.first { $0.key.lowercased() == "cpu" }?.value ?? ""
            params.limits.memory = limits.first { $0.key.lowercased() == "memory" }?.value ?? ""
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
        default:
            throw AspireError(.invalidParams, "unknown command '\(method)'; use one of \(self.methods.joined(separator: ", "))")
        }
        return command
    }

    static func isSHA256(_ text: String) -> Bool {
        guard text.hasPrefix("SHA256:") else { return false }
        let hex = text.dropFirst("SHA256:".count)
        return hex.count == 64 && hex.allSatisfy(\.isHexDigit)
    }

    /// Typed access to the parameters of one method, with errors naming the method and the key.
    struct Fields {
        var method: String
        var fields: [String: Google_Protobuf_Value]

        func allow(_ keys: Set<String>) throws(AspireError) {
            if let unknown = self.fields.keys.sorted().first(where: { !keys.contains($0) }) {
                throw AspireError(
                    .invalidParams,
                    "\(self.method): unknown parameter '\(unknown)' (it takes \(keys.sorted().joined(separator: ", ")))"
                )
            }
        }

        func string(_ key: String, required: Bool = false) throws(AspireError) -> String {
            guard let value = self.fields[key], !Self.isNull(value) else {
                if required { throw AspireError(.invalidParams, "\(self.method): '\(key)' is required") }
                return ""
            }
            guard case .stringValue(let text)? = value.kind else {
                throw AspireError(.invalidParams, "\(self.method): '\(key)' must be a string")
            }
            if required, text.isEmpty { throw AspireError(.invalidParams, "\(self.method): '\(key)' must not be empty") }
            return text
        }

        func integer(_ key: String, range: ClosedRange<Int>) throws(AspireError) -> Int? {
            guard let value = self.fields[key], !Self.isNull(value) else { return nil }
            let number: Double
            switch value.kind {
            case .numberValue(let double)?: number = double
            case .stringValue(let text)?:
                // Seeds and shell users write "10" as often as 10.
                guard let double = Double(text) else {
                    throw AspireError(.invalidParams, "\(self.method): '\(key)' must be a number")
                }
                number = double
            default:
                throw AspireError(.invalidParams, "\(self.method): '\(key)' must be a number")
            }
            guard number.rounded() == number, number >= Double(range.lowerBound), number <= Double(range.upperBound) else {
                throw AspireError(.invalidParams, "\(self.method): '\(key)' must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return Int(number)
        }

        func stringMap(_ key: String) throws(AspireError) -> [String: String] {
            guard let value = self.fields[key], !Self.isNull(value) else { return [:] }
            guard case .structValue(let object)? = value.kind else {
                throw AspireError(.invalidParams, "\(self.method): '\(key)' must be an object of strings")
            }
            var result: [String: String] = [:]
            for (name, item) in object.fields {
                switch item.kind {
                case .stringValue(let text)?: result[name] = text
                case .numberValue(let number)?:
                    result[name] = number.rounded() == number ? String(Int(number)) : String(number)
                default:
                    throw AspireError(.invalidParams, "\(self.method): '\(key).\(name)' must be a string")
                }
            }
            return result
        }

        static func isNull(_ value: Google_Protobuf_Value) -> Bool {
            if case .nullValue? = value.kind { return true }
            return value.kind == nil
        }
    }
}
