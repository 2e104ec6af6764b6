/// Every method a command can carry, named once.
///
/// On the wire a command says its method twice: `Command.method` (a string, as the seed's
/// agents and other clients send it) and the case of `Command.params`. This type names each
/// method (``name``), the name tasks and the seed's jobs give it (``taskName``: sub-agent
/// actions without their `agent.` prefix), and the parameters it takes; ``Aspire_V1_Command``'s
/// ``Aspire_V1_Command/checkedMethod()`` checks the two agree, so no executor checks again.
public enum CommandMethod: Hashable, Sendable, CustomStringConvertible {
    /// `sync.bash`: a shell command as a user, with a timeout.
    case bash
    /// `getinfo.<topic>`: facts about the host.
    case getInfo(GetInfoTopic)
    /// `agent.<action>`: a sub-agent's lifecycle.
    case subAgent(SubAgentAction)
    /// `config`: the agent's status step, extra servers and tags.
    case config
    /// `schedule.set`: the host's scheduled commands (sent by the server, never by a task).
    case scheduleSet
    /// `deployment.set`: the sub-agents the host's deployments declare (the server's alone).
    case deploymentSet
    /// `plugin.<action>`: the host's plugins (`plugin.set` is the server's alone).
    case plugin(PluginAction)

    public enum GetInfoTopic: String, CaseIterable, Sendable {
        case users, kernel, os, cpu, memory, disk, network, processes
    }

    public enum SubAgentAction: String, CaseIterable, Sendable {
        case install, upgrade, uninstall, start, stop, restart
        /// The seed's `daemon.init`: an install of a program without a control script, with the
        /// spec that says how to start, stop and check it.
        case daemonInit = "daemon.init"

        /// Whether it puts a version in place (and so needs a package).
        public var installs: Bool { self == .install || self == .upgrade || self == .daemonInit }
    }

    public enum PluginAction: String, CaseIterable, Sendable {
        case set, run, enable, disable, list, update
    }

    /// The parameters a method takes: one case of `Command.params`.
    public enum Parameters: Sendable {
        case bash, getInfo, subAgent, config, schedules, plugins, deployments

        /// Whether `params` is this case. getinfo methods may carry no parameters at all.
        func matches(_ params: Aspire_V1_Command.OneOf_Params?) -> Bool {
            switch (self, params) {
            case (.bash, .bash?), (.getInfo, .getinfo?), (.getInfo, nil), (.subAgent, .subagent?), (.config, .config?),
                (.schedules, .schedules?), (.plugins, .plugins?), (.deployments, .deployments?):
                true
            default:
                false
            }
        }

        /// How an error names what is missing.
        var description: String {
            switch self {
            case .bash: "bash parameters (cmd, timeout, user, group)"
            case .getInfo: "getinfo parameters (args)"
            case .subAgent: "sub-agent parameters (name, version, url, checksum, ...)"
            case .config: "config parameters (svrlist, step, tags)"
            case .schedules: "the schedules"
            case .plugins: "plugin parameters"
            case .deployments: "the deployments"
            }
        }
    }

    /// Every method.
    public static var allCases: [CommandMethod] {
        [.bash] + GetInfoTopic.allCases.map(Self.getInfo) + SubAgentAction.allCases.map(Self.subAgent) + [.config, .scheduleSet, .deploymentSet]
            + PluginAction.allCases.map(Self.plugin)
    }

    /// The methods a task may carry; the server sends `schedule.set`, `deployment.set` and
    /// `plugin.set` itself.
    public static var taskMethods: [CommandMethod] {
        self.allCases.filter(\.isTaskMethod)
    }

    public var isTaskMethod: Bool {
        switch self {
        case .scheduleSet, .deploymentSet, .plugin(.set): false
        default: true
        }
    }

    /// The name in `Command.method`.
    public var name: String {
        switch self {
        case .bash: "sync.bash"
        case .getInfo(let topic): "getinfo.\(topic.rawValue)"
        case .subAgent(.daemonInit): "daemon.init"
        case .subAgent(let action): "agent.\(action.rawValue)"
        case .config: "config"
        case .scheduleSet: "schedule.set"
        case .deploymentSet: "deployment.set"
        case .plugin(let action): "plugin.\(action.rawValue)"
        }
    }

    /// The name in a task and in the seed's jobs (`install`, not `agent.install`).
    public var taskName: String {
        if case .subAgent(let action) = self { return action.rawValue }
        return self.name
    }

    public var description: String { self.name }

    public init?(name: String) {
        guard let method = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = method
    }

    public init?(taskName: String) {
        guard let method = Self.taskMethods.first(where: { $0.taskName == taskName }) else { return nil }
        self = method
    }

    /// The parameters this method takes.
    public var parameters: Parameters {
        switch self {
        case .bash: .bash
        case .getInfo: .getInfo
        case .subAgent: .subAgent
        case .config: .config
        case .scheduleSet: .schedules
        case .deploymentSet: .deployments
        case .plugin: .plugins
        }
    }
}

extension Aspire_V1_Command {
    /// A command of `method` with its parameters.
    public init(id: String = "", _ method: CommandMethod, _ params: OneOf_Params?) {
        self.init()
        self.id = id
        self.method = method.name
        self.params = params
    }

    /// The command's method, once its parameters are checked to be the ones it takes.
    public func checkedMethod() throws(AspireError) -> CommandMethod {
        guard !self.method.isEmpty else { throw AspireError(.invalidParams, "the command names no method") }
        guard let method = CommandMethod(name: self.method) else {
            throw AspireError(
                .unknownMethod, "unknown method '\(self.method)'; methods are \(CommandMethod.allCases.map(\.name).joined(separator: ", "))"
            )
        }
        guard method.parameters.matches(self.params) else {
            throw AspireError(.invalidParams, "\(method) needs \(method.parameters.description)")
        }
        return method
    }
}
