import Crypto
public import SwiftProtobuf

/// Turns a task's method and the seed's free-form `parameters` object into a typed command,
/// refusing unknown methods, unknown keys and values of the wrong type before anything is sent.
public enum CommandParameters {
    /// Every method a task may carry, by the name tasks give it.
    public static var methods: [String] {
        CommandMethod.taskMethods.map(\.taskName)
    }

    /// A shell command's timeout, seconds (0: the agent's default).
    public static var bashTimeouts: ClosedRange<Int64> { 0 ... 86_400 * 7 }
    /// `config`'s status step, seconds.
    public static var steps: ClosedRange<Int64> { 10 ... 86_400 }
    /// `plugin.run`'s timeout, seconds (0: the plugin's own).
    public static var pluginTimeouts: ClosedRange<Int64> { 0 ... 86_400 }
    /// How long `plugin.disable` holds a plugin off, seconds (0: until enabled).
    public static var disableSeconds: ClosedRange<Int64> { 0 ... 86_400 * 365 }
    /// The limits a sub-agent takes (`limits` keys, any case); daemon.init's `hits` besides.
    public static let limitNames = ["cpu", "memory", "pids"]
    /// A sub-agent's `checksum`: `SHA256:` and 64 hex digits, or nothing.
    public static let checksumPattern = "^(?:SHA256:[0-9a-fA-F]{64})?$"

    /// The fields a method's parameters may carry: what the parser allows and the REST document
    /// declares.
    public static func fields(for method: CommandMethod) -> Set<String> {
        switch method {
        case .bash: ["cmd", "timeout", "user", "group"]
        case .getInfo: ["args"]
        case .subAgent(let action):
            Set(["name", "version", "url", "checksum", "envs", "limits", "user", "group"])
                .union(action == .daemonInit ? Aspire_V1_DaemonSpec.fieldNames.union(["env"]) : Set<String>())
        case .config: ["svrlist", "step", "tags"]
        case .plugin(.list): []
        case .plugin(.run): ["name", "timeout", "param"]
        case .plugin(.disable): ["name", "seconds"]
        case .plugin: ["name"]
        case .scheduleSet, .deploymentSet: []
        }
    }

    /// What `command(method:parameters:)` takes as the parameters of `method`, for the REST
    /// document: every rule of their own shape (a well-formed request is refused only for what it
    /// meets: a package the store lacks, a user the host lacks). Its fields are ``fields(for:)``.
    public static func schema(for method: CommandMethod) -> Schema {
        let (fields, required) = Self.shape(of: method)
        let shape = Schema.object(fields, required: required, additional: .never)
        switch method {
        case .subAgent(.daemonInit):
            return .allOf([shape] + Aspire_V1_DaemonSpec.schemaRules)
        case .subAgent(let action) where action.installs:
            // A version of the store's, or a url (`TaskEngine.resolvePackage`).
            return .allOf([
                shape,
                .anyOf([
                    .object(["version": .nonEmpty], required: ["version"], additional: .any),
                    .object(["url": .nonEmpty], required: ["url"], additional: .any),
                ]),
            ])
        default:
            return shape
        }
    }

    /// Whether `method` has a parameter it cannot go without (a task of it must carry `parameters`).
    public static func needsParameters(_ method: CommandMethod) -> Bool {
        !Self.shape(of: method).required.isEmpty
    }

    /// The fields of `method`'s parameters, each with its schema, and those it requires.
    private static func shape(of method: CommandMethod) -> (fields: [String: Schema], required: [String]) {
        let account = Schema.matching(AccountName.pattern)
        let name = Schema.matching(PathName.pattern)
        let fields: [String: Schema]
        var required: [String] = []
        switch method {
        case .bash:
            fields = ["cmd": .matching(CommandText.pattern), "timeout": .wholeOrText(Self.bashTimeouts), "user": account, "group": account]
            required = ["cmd"]
        case .getInfo:
            fields = ["args": .string]
        case .subAgent(let action):
            var limits = Dictionary(uniqueKeysWithValues: Self.limitNames.map { ("^\(PatternText.anyCase($0))$", Schema.textOrNumber) })
            var subAgent: [String: Schema] = [
                "name": name, "version": .matching(PathName.optionalPattern), "url": .matching(StoreFile.urlPattern),
                "checksum": .matching(Self.checksumPattern),
                "envs": .object([:], additional: .textOrNumber), "user": account, "group": account,
            ]
            required = ["name"]
            if action == .daemonInit {
                limits["^\(PatternText.anyCase("hits"))$"] = .wholeOrText(Aspire_V1_DaemonSpec.range("hits"))
                subAgent.merge(Aspire_V1_DaemonSpec.schemaFields(numbersAsText: true, hits: false)) { $1 }
                subAgent["env"] = .object([:], additional: .textOrNumber)
                subAgent["version"] = name
                required += ["version", "start"]
            }
            subAgent["limits"] = .patterned(limits)
            fields = subAgent
        case .config:
            fields = ["svrlist": .matching(HostPort.listPattern), "step": .wholeOrText(Self.steps), "tags": .object([:], additional: .textOrNumber)]
        case .plugin(.run):
            fields = ["name": name, "timeout": .wholeOrText(Self.pluginTimeouts), "param": .string]
            required = ["name"]
        case .plugin(.disable):
            fields = ["name": name, "seconds": .wholeOrText(Self.disableSeconds)]
            required = ["name"]
        case .plugin(.list), .scheduleSet, .deploymentSet:
            fields = [:]
        case .plugin:
            fields = ["name": name]
            required = ["name"]
        }
        assert(Set(fields.keys) == Self.fields(for: method), "\(method): the schema's fields are not the parser's")
        return (fields, required)
    }

    public static func command(method name: String, parameters: Google_Protobuf_Struct) throws(AspireError) -> Aspire_V1_Command {
        guard let method = CommandMethod(taskName: name) else {
            if name.hasPrefix("getinfo.") {
                throw AspireError(
                    .invalidParams,
                    "unknown method '\(name)'; getinfo has \(CommandMethod.GetInfoTopic.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            throw AspireError(.invalidParams, "unknown command '\(name)'; use one of \(self.methods.joined(separator: ", "))")
        }
        let fields = JSONFields(parameters.fields, context: name, code: .invalidParams)
        try fields.allow(Self.fields(for: method))
        let params: Aspire_V1_Command.OneOf_Params
        switch method {
        case .bash:
            var bash = Aspire_V1_BashParams()
            bash.cmd = try fields.string("cmd", required: true)
            if CommandText.isBlank(bash.cmd) { throw AspireError(.invalidParams, "\(name): 'cmd' is blank") }
            bash.timeout = Int32(try fields.integer("timeout", range: Self.bashTimeouts) ?? 0)
            bash.user = try fields.string("user")
            bash.group = try fields.string("group")
            try AccountName.check([bash.user, bash.group], owner: name, code: .invalidParams)
            params = .bash(bash)
        case .getInfo:
            var getinfo = Aspire_V1_GetInfoParams()
            getinfo.args = try fields.string("args")
            params = .getinfo(getinfo)
        case .subAgent(let action):
            var subAgent = Aspire_V1_SubAgentParams()
            subAgent.name = try fields.string("name", required: true)
            try PathName.check(subAgent.name, field: "\(name): name")
            subAgent.version = try fields.string("version")
            if !subAgent.version.isEmpty { try PathName.check(subAgent.version, field: "\(name): version") }
            subAgent.url = try fields.string("url")
            if StoreFile.isStoreURL(subAgent.url), StoreFile(url: subAgent.url) == nil {
                throw AspireError(.invalidParams, "\(name): url '\(subAgent.url.prefix(200))' must be \(StoreFile.urlPrefix)OS/ARCH/FILE")
            }
            subAgent.checksum = try fields.string("checksum")
            if !subAgent.checksum.isEmpty, !Self.isSHA256(subAgent.checksum) {
                throw AspireError(.invalidParams, "\(name): checksum must be SHA256:<64 hex digits>")
            }
            // The seed's daemon.init says env; the other methods envs.
            subAgent.envs = try fields.stringMap("envs").merging(try fields.stringMap("env")) { $1 }
            let limits = try fields.stringMap("limits")
            let limitKeys = Self.limitNames + (action == .daemonInit ? ["hits"] : [])
            for key in limits.keys where !limitKeys.contains(key.lowercased()) {
                throw AspireError(.invalidParams, "\(name): unknown limit '\(key)' (use \(limitKeys.joined(separator: ", ")))")
            }
            subAgent.limits.cpu = limits.first { $0.key.lowercased() == "cpu" }?.value ?? ""
            subAgent.limits.memory = limits.first { $0.key.lowercased() == "memory" }?.value ?? ""
            subAgent.limits.pids = limits.first { $0.key.lowercased() == "pids" }?.value ?? ""
            subAgent.user = try fields.string("user")
            subAgent.group = try fields.string("group")
            try AccountName.check([subAgent.user, subAgent.group], owner: name, code: .invalidParams)
            if action == .daemonInit {
                guard !subAgent.version.isEmpty else { throw AspireError(.invalidParams, "\(name): version is required") }
                var daemon = try Aspire_V1_DaemonSpec(fields: fields)
                if let hits = limits.first(where: { $0.key.lowercased() == "hits" })?.value {
                    let range = Aspire_V1_DaemonSpec.range("hits")
                    guard let value = WholeText.value(hits), range.contains(value) else {
                        throw AspireError(.invalidParams, "\(name): limits.hits '\(hits)' is not a number from \(range.lowerBound) to \(range.upperBound)")
                    }
                    daemon.hits = Int32(value)
                }
                try daemon.check(owner: "\(name) \(subAgent.name)")
                subAgent.daemon = daemon
            }
            params = .subagent(subAgent)
        case .config:
            var config = Aspire_V1_ConfigParams()
            config.svrlist = try fields.string("svrlist")
            guard PatternText.matches(config.svrlist, HostPort.listPattern) else {
                throw AspireError(.invalidParams, "\(name): svrlist '\(config.svrlist.prefix(200))' is not HOST:PORT[,HOST:PORT...]")
            }
            config.step = Int32(try fields.integer("step", range: Self.steps) ?? 0)
            config.tags = try fields.stringMap("tags")
            params = .config(config)
        case .plugin(let action):
            var plugin = Aspire_V1_PluginParams()
            switch action {
            case .list, .enable, .update, .set:
                break
            case .run:
                plugin.timeout = Int32(try fields.integer("timeout", range: Self.pluginTimeouts) ?? 0)
                plugin.param = try fields.string("param")
            case .disable:
                plugin.disableSeconds = Int32(try fields.integer("seconds", range: Self.disableSeconds) ?? 0)
            }
            if action != .list {
                plugin.name = try fields.string("name", required: true)
                try PathName.check(plugin.name, field: "plugin name")
            }
            params = .plugins(plugin)
        case .scheduleSet, .deploymentSet:
            // Not a task method: CommandMethod(taskName:) never answers it.
            throw AspireError(.invalidParams, "unknown command '\(name)'; use one of \(self.methods.joined(separator: ", "))")
        }
        return Aspire_V1_Command(method, params)
    }

    /// The task form of a typed command (its task name and the seed's parameters object): what
    /// ``command(method:parameters:)`` reads back into the same command. A command sent as one
    /// host's task goes through both, so it is checked exactly as a task is.
    public static func task(of command: Aspire_V1_Command) throws(AspireError) -> (method: String, parameters: Google_Protobuf_Struct) {
        let method = try command.checkedMethod()
        guard method.isTaskMethod else {
            throw AspireError(.invalidParams, "\(method) is sent by the server itself; use one of \(self.methods.joined(separator: ", "))")
        }
        var fields: [String: Google_Protobuf_Value] = [:]
        func put(_ key: String, _ text: String) {
            if !text.isEmpty { fields[key] = Google_Protobuf_Value(stringValue: text) }
        }
        func put(_ key: String, _ number: Int32) {
            if number != 0 { fields[key] = Google_Protobuf_Value(numberValue: Double(number)) }
        }
        func put(_ key: String, _ map: [String: String]) {
            if !map.isEmpty { fields[key] = Google_Protobuf_Value(structValue: Google_Protobuf_Struct(fields: map.mapValues(Google_Protobuf_Value.init(stringValue:)))) }
        }
        switch command.params {
        case .bash(let bash)?:
            put("cmd", bash.cmd)
            put("timeout", bash.timeout)
            put("user", bash.user)
            put("group", bash.group)
        case .getinfo(let getinfo)?:
            put("args", getinfo.args)
        case .subagent(let subAgent)?:
            put("name", subAgent.name)
            put("version", subAgent.version)
            put("url", subAgent.url)
            put("checksum", subAgent.checksum)
            put("envs", subAgent.envs)
            var limits: [String: String] = [:]
            if !subAgent.limits.cpu.isEmpty { limits["CPU"] = subAgent.limits.cpu }
            if !subAgent.limits.memory.isEmpty { limits["memory"] = subAgent.limits.memory }
            if !subAgent.limits.pids.isEmpty { limits["pids"] = subAgent.limits.pids }
            put("user", subAgent.user)
            put("group", subAgent.group)
            if subAgent.hasDaemon {
                let daemon = subAgent.daemon
                put("precheck", daemon.precheck)
                put("precheck_retries", daemon.precheckRetries)
                put("start", daemon.start)
                put("start_delay", daemon.startDelay)
                put("stop", daemon.stop)
                put("stop_timeout", daemon.stopTimeout)
                put("check", daemon.check)
                put("check_interval", daemon.checkInterval)
                put("pidfile", daemon.pidfile)
                put("socket", daemon.socket)
                if daemon.hits > 0 { limits["hits"] = "\(daemon.hits)" }
            }
            put("limits", limits)
        case .config(let config)?:
            put("svrlist", config.svrlist)
            put("step", config.step)
            put("tags", config.tags)
        case .plugins(let plugin)?:
            put("name", plugin.name)
            put("timeout", plugin.timeout)
            put("param", plugin.param)
            put("seconds", plugin.disableSeconds)
        case .schedules?, .deployments?, nil:
            break
        }
        return (method.taskName, Google_Protobuf_Struct(fields: fields))
    }

    public static func isSHA256(_ text: String) -> Bool {
        guard text.hasPrefix("SHA256:") else { return false }
        let hex = text.utf8.dropFirst("SHA256:".count)
        // ASCII only (Character.isHexDigit takes fullwidth digits too).
        return hex.count == 64 && hex.allSatisfy { (0x30 ... 0x39).contains($0) || (0x41 ... 0x46).contains($0) || (0x61 ... 0x66).contains($0) }
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

extension Aspire_V1_DeploymentParams {
    /// What an agent reports in Hello as the deployment set it has, as ``Aspire_V1_ScheduleParams/digest``
    /// (maps in key order: a set's digest is the same in every process).
    public var digest: String {
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        guard !self.deployments.isEmpty, let bytes = try? self.serializedBytes(options: options) as [UInt8] else { return "" }
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
