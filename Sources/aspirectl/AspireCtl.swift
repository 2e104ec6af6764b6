import ArgumentParser
import RPC

@main
struct AspireCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aspirectl",
        abstract: "Operate an Aspire fleet: run commands on agents, read host facts, list agents.",
        discussion: """
            Connection: --server HOST:PORT (env ASPIRE_SERVER, default localhost:8443), the admin \
            token from --token-file (env ASPIRE_TOKEN_FILE) or ASPIRE_TOKEN, and the server's CA \
            from --ca (env ASPIRE_CA). --server-data DIR (env ASPIRE_SERVER_DATA, default \
            /var/lib/aspire) points at a server's data directory on this host and takes the token \
            and CA from there.

            Exit status: 0 all succeeded; 2 a host's command exited non-zero; 3 a host timed out \
            or was offline; 4 nothing matched the target; 1 usage or connection error.
            """,
        version: AspireVersion.current,
        subcommands: [Run.self, Deploy.self, DeploymentCommand.self, SubAgentCommand.self, ConfigCommand.self, SubAgents.self, TagsCommand.self, RegionsCommand.self, EventsCommand.self, DashboardCommand.self, Info.self, Agents.self, Hosts.self, Nodes.self, Tasks.self, TaskCommand.self, Packages.self, CronCommand.self, ScheduleCommand.self, PluginCommand.self, MetricsCommand.self, TokenCommand.self, OperatorCommand.self, AuditCommand.self]
    )
}
