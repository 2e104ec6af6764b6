import ArgumentParser
import Foundation
import GRPCCore
import RPC
import SwiftProtobuf

/// `deployment apply|list|status|pause|resume|rollback|delete`: declared deployments and their
/// rollouts.
struct DeploymentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deployment",
        abstract: "Declared deployments: what every host carrying some tags must run, rolled out in health-gated waves.",
        discussion: """
            A deployment names a sub-agent, its version and package, and the tags of its hosts. Every \
            matching host converges to it: those online now, those that join or get the tags later, and \
            those back from offline; a host that loses a tag removes it (or keeps it, --on-untag keep). \
            Applying a new version rolls it out: a canary first, then batches, each wave promoted only \
            when its hosts have run the new version through the health window. Past --max-failures the \
            rollout halts fleet-wide and the hosts already moved go back to the previous version.

              aspirectl deployment apply web-agent 1.2.0 --tag svc=web
              aspirectl deployment apply web-agent 1.3.0 --tag svc=web --canary 5% --batch 20% --max-failures 1
              aspirectl deployment status web-agent
              aspirectl deployment rollback web-agent
            """,
        subcommands: [Apply.self, List.self, Status.self, Pause.self, Resume.self, Rollback.self, Delete.self]
    )

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Declare a deployment, or change one (a new version rolls out in waves).",
            discussion: """
                The package is the store's build of NAME VERSION for each host's os and arch (upload it \
                with 'aspirectl packages upload'), or --url with --checksum. Applying what is already \
                declared changes nothing. Rollout options are kept with the deployment for its later changes.
                """
        )

        @OptionGroup var connection: ConnectionOptions

        @Argument(help: "Sub-agent name (names the deployment too).")
        var name: String

        @Argument(help: "The version every matching host must run.")
        var version: String

        @Option(name: .customLong("tag"), help: "The hosts carrying KEY=VALUE (repeatable: all must match; at least one).")
        var tags: [String] = []

        @Option(help: "Fetch from this URL (http(s)://, aspire://package/..., command://...) instead of the store.")
        var url = ""

        @Option(help: "SHA256:<hex> of the file at --url.")
        var checksum = ""

        @Option(name: .customLong("env"), help: "KEY=VALUE in the sub-agent's environment (repeatable).")
        var envs: [String] = []

        @Option(help: "CPU limit, a percent of one CPU, e.g. 10%.")
        var cpu = ""

        @Option(help: "Memory limit, e.g. 20M.")
        var memory = ""

        @Option(help: "Most processes at once, e.g. 64 (enforced where cgroups are).")
        var pids = ""

        @Option(help: "Run it as this user (default root).")
        var user = ""

        @Option(help: "Run it with this group (default: the user's primary group).")
        var group = ""

        @Option(
            help: ArgumentHelp(
                "For a program without a control script: the seed's daemon.init fields as JSON, or @FILE.",
                discussion: #"e.g. '{"start":"bin/mond -d","stop":"kill:TERM","check":"pidfile","pidfile":"/run/mond.pid"}'"#
            )
        )
        var daemon: String?

        @Option(name: .customLong("on-untag"), help: "A host that stops matching: remove (default) or keep it running, unmanaged.")
        var onUntag = "remove"

        @Option(help: "Hosts moved first: a number or a share, e.g. 1 or 5% (default 1).")
        var canary = ""

        @Option(help: "Hosts moved in each later wave: a number or a share (default 20%).")
        var batch = ""

        @Option(name: .customLong("max-failures"), help: "Failed hosts tolerated; one more halts the rollout (default 0).")
        var maxFailures: Int32 = 0

        @Option(help: "Seconds a moved host must run the new version before its wave counts it healthy (default 60).")
        var health: Int32 = 0

        @Option(name: .customLong("wave-timeout"), help: "Seconds a wave may take; its hosts not healthy by then count as failed (default 600).")
        var waveTimeout: Int32 = 0

        @Flag(name: .customLong("no-auto-rollback"), help: "When the rollout halts, leave the moved hosts on the new version.")
        var noAutoRollback = false

        @Option(name: .shortAndLong, help: "table or json.")
        var output: OutputFormat = .table

        func validate() throws {
            guard !self.tags.isEmpty else { throw ValidationError("say which hosts: --tag KEY=VALUE (repeatable)") }
            guard ["remove", "keep"].contains(self.onUntag) else { throw ValidationError("--on-untag is remove or keep") }
        }

        func run() async throws {
            var request = Aspire_V1_ApplyDeploymentRequest()
            request.spec.name = self.name
            request.spec.version = self.version
            request.spec.tags = try Run.parseTags(self.tags)
            request.spec.url = self.url
            request.spec.checksum = self.checksum
            request.spec.envs = try Run.parsePairs(self.envs, option: "--env")
            if !self.cpu.isEmpty || !self.memory.isEmpty || !self.pids.isEmpty {
                request.spec.limits.cpu = self.cpu
                request.spec.limits.memory = self.memory
                request.spec.limits.pids = self.pids
            }
            request.spec.user = self.user
            request.spec.group = self.group
            request.spec.onUntag = self.onUntag
            if let daemon {
                let text = daemon.hasPrefix("@") ? try String(contentsOfFile: String(daemon.dropFirst()), encoding: .utf8) : daemon
                do {
                    request.spec.daemon = try Aspire_V1_DaemonSpec(jsonString: text)
                } catch {
                    throw ValidationError("--daemon: not a daemon spec in JSON (\(error)); fields: precheck, precheck_retries, start, start_delay, stop, stop_timeout, check, check_interval, pidfile, socket, hits")
                }
            }
            request.rollout.canary = self.canary
            request.rollout.batch = self.batch
            request.rollout.maxFailures = self.maxFailures
            request.rollout.healthSeconds = self.health
            request.rollout.waveTimeoutSeconds = self.waveTimeout
            request.rollout.noAutoRollback = self.noAutoRollback
            let info: Aspire_V1_DeploymentInfo
            do {
                info = try await self.connection.withAdmin { try await $0.applyDeployment(request) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            if self.output == .json {
                FileHandle.standardOutput.write(try info.jsonUTF8Data() + Data("\n".utf8))
                return
            }
            let rollout = info.state == "rolling" ? ": rolling out from \(info.stableVersion) (canary \(info.rollout.canary), then \(info.rollout.batch) a wave)" : ""
            print("deployment \(info.spec.name) \(info.spec.version), revision \(info.revision), \(info.state)\(rollout)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List deployments.")

        @OptionGroup var connection: ConnectionOptions

        @Option(name: .shortAndLong, help: "table or json.")
        var output: OutputFormat = .table

        func run() async throws {
            let listing: Aspire_V1_ListDeploymentsResponse
            do {
                listing = try await self.connection.withAdmin { try await $0.listDeployments(Aspire_V1_ListDeploymentsRequest()) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            if self.output == .json {
                FileHandle.standardOutput.write(try listing.jsonUTF8Data() + Data("\n".utf8))
                return
            }
            var rows = [["NAME", "VERSION", "REVISION", "STATE", "STABLE", "TAGS", "REASON"]]
            for info in listing.deployments {
                rows.append([
                    info.spec.name, info.spec.version, "\(info.revision)", info.state, info.stableVersion.isEmpty ? "-" : info.stableVersion,
                    info.spec.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","), info.reason,
                ])
            }
            printTable(rows)
            FileHandle.standardError.write("\(listing.deployments.count) deployments\n")
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A deployment's hosts counted per version and state, its wave, and why it stopped.",
            discussion: "Host states: pending (applying, or offline), starting (inside the health window), healthy, failed."
        )

        @OptionGroup var connection: ConnectionOptions

        @Argument(help: "The deployment.")
        var name: String

        @Flag(help: "List every host, not only those not healthy.")
        var all = false

        @Option(name: .shortAndLong, help: "table or json.")
        var output: OutputFormat = .table

        func run() async throws {
            var request = Aspire_V1_GetDeploymentRequest()
            request.name = self.name
            let status: Aspire_V1_DeploymentStatus
            do {
                status = try await self.connection.withAdmin { try await $0.getDeployment(request) }
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
            if self.output == .json {
                FileHandle.standardOutput.write(try status.jsonUTF8Data() + Data("\n".utf8))
                return
            }
            let info = status.deployment
            print("deployment \(info.spec.name): \(info.spec.version), revision \(info.revision), \(info.state)")
            if !info.stableVersion.isEmpty { print("stable: \(info.stableVersion) (revision \(info.stableRevision))") }
            if info.state == "rolling" || info.state == "paused" { print("wave: \(info.wave)") }
            if !info.reason.isEmpty { print("reason: \(info.reason)") }
            print("hosts: \(status.matching) matching")
            var counts = [["VERSION", "STATE", "HOSTS"]]
            for count in status.counts { counts.append([count.version, count.state, "\(count.hosts)"]) }
            printTable(counts)
            let shown = status.hosts.filter { self.all || $0.state != "healthy" }
            guard !shown.isEmpty else { return }
            print("")
            var rows = [["AGENTSN", "HOSTNAME", "VERSION", "STATE", "WAVE", "MESSAGE"]]
            for host in shown {
                rows.append([host.agentSn, host.hostname, host.version, host.state, host.moved ? "\(host.wave)" : "-", host.message])
            }
            printTable(rows)
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pause a rollout: no further wave; hosts stay where they are.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The deployment.") var name: String
        func run() async throws { try await DeploymentCommand.control(self.name, "pause", self.connection) }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Resume a paused rollout.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The deployment.") var name: String
        func run() async throws { try await DeploymentCommand.control(self.name, "resume", self.connection) }
    }

    struct Rollback: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Put every host of a deployment back on its previous (stable) version.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The deployment.") var name: String
        func run() async throws { try await DeploymentCommand.control(self.name, "rollback", self.connection) }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a deployment; its hosts remove the sub-agent (or keep it, if it was declared --on-untag keep)."
        )
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The deployment.") var name: String

        func run() async throws {
            var request = Aspire_V1_DeleteDeploymentRequest()
            request.name = self.name
            do {
                let deleted = try await self.connection.withAdmin { try await $0.deleteDeployment(request) }
                print("deleted deployment \(deleted.spec.name) (its hosts \(deleted.spec.onUntag == "keep" ? "keep" : "remove") \(deleted.spec.name))")
            } catch {
                throw report(error, prefix: "aspirectl: ")
            }
        }
    }

    static func control(_ name: String, _ action: String, _ connection: ConnectionOptions) async throws {
        var request = Aspire_V1_ControlDeploymentRequest()
        request.name = name
        request.action = action
        do {
            let info = try await connection.withAdmin { try await $0.controlDeployment(request) }
            print("deployment \(info.spec.name): \(info.state)\(info.reason.isEmpty ? "" : " (\(info.reason))")")
        } catch {
            throw report(error, prefix: "aspirectl: ")
        }
    }
}
