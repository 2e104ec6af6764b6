import Fleet
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RPC
import TestSupport

/// A real `aspire-server` process with its data directory.
struct TestNode: NodeUnderTest {
    let process: TestProcess
    let dataDirectory: String
    let address: HostPort
    /// The REST gateway.
    let httpAddress: HostPort

    /// Starts a node on `host` (port 0 unless given) and waits until it listens.
    static func start(
        in directory: String,
        name: String = "node",
        host: String,
        port: Int = 0,
        arguments: [String] = [],
        sharingSecretsOf other: TestNode? = nil
    ) async throws -> TestNode {
        let data = "\(directory)/\(name)"
        try FileManager.default.createDirectory(atPath: "\(data)/tls", withIntermediateDirectories: true)
        if let other {
            // Nodes of one cluster share the CA and the tokens; each issues its own certificate.
            for file in ["admin.token", "enroll.token", "tls/ca.pem", "tls/ca.key"] {
                try? FileManager.default.removeItem(atPath: "\(data)/\(file)")
                try FileManager.default.copyItem(atPath: "\(other.dataDirectory)/\(file)", toPath: "\(data)/\(file)")
            }
        }
        let node = try await NodeProcess.start(
            binary: "\(TestProcess.binDirectory)/aspire-server",
            dataDirectory: data,
            listen: HostPort(host: host, port: port),
            httpListen: HostPort(host: host, port: 0),
            name: name,
            arguments: ["--tls-name", "aspire.test", "--log-level", "debug"] + arguments,
            log: "\(directory)/\(name).log",
            timeout: .seconds(20)
        )
        guard let httpAddress = node.httpAddress else { throw HarnessError("\(name) wrote no http.addr") }
        return TestNode(process: node.process, dataDirectory: data, address: node.address, httpAddress: httpAddress)
    }

    var caFile: String { "\(self.dataDirectory)/tls/ca.pem" }
    var enrollTokenFile: String { "\(self.dataDirectory)/enroll.token" }
    var adminTokenFile: String { "\(self.dataDirectory)/admin.token" }
    var adminToken: String { get throws { try Secret.read(self.adminTokenFile) } }
    var enrollToken: String { get throws { try Secret.read(self.enrollTokenFile) } }

    func connectedAgents() async throws -> [Aspire_V1_ConnectedAgent] {
        try await self.admin { try await $0.listAgents(Aspire_V1_ListAgentsRequest()).agents }
    }

    func waitForAgent(_ sn: String, timeout: Duration = .seconds(30), agentLog: @autoclosure () -> String = "") async throws {
        try await eventually(
            timeout: timeout,
            "agent \(sn) on \(self.address)\n--- the agent's log, its end:\n\(agentLog().suffix(6000))\n--- the node's log, its end:\n\(self.process.log.suffix(8000))"
        ) {
            try await self.connectedAgents().contains { $0.agentSn == sn }
        }
    }

    /// Waits until the agent is online here; a failure shows the ends of both logs.
    func waitForAgent(_ agent: TestAgent, timeout: Duration = .seconds(30)) async throws {
        try await self.waitForAgent(agent.agentSN, timeout: timeout, agentLog: agent.process.log)
    }

    /// Waits until every subtask of the task has an outcome.
    func waitForTask(_ id: Int64, timeout: Duration = .seconds(30)) async throws -> Aspire_V1_TaskDetail {
        var detail = try await self.task(id)
        try await eventually(timeout: timeout, "task \(id) to finish: \(detail)") {
            detail = try await self.task(id)
            return detail.task.count > 0 && detail.task.complete >= detail.task.count
        }
        return detail
    }

    func run(_ cmd: String, on sn: String, timeout: Int32 = 0, user: String = "") async throws -> Aspire_V1_CommandResult {
        var request = Aspire_V1_RunCommandRequest()
        request.agentSn = sn
        request.command.method = "sync.bash"
        request.command.bash.cmd = cmd
        request.command.bash.timeout = timeout
        request.command.bash.user = user
        return try await self.admin { try await $0.runCommand(request).result }
    }
}

/// A real `boot` agent process.
struct TestAgent {
    /// An agent of `node`, dialing its address directly.
    static func start(
        in directory: String,
        name: String = "agent",
        connectingTo node: TestNode,
        arguments: [String] = [],
        agentSN: String? = nil
    ) throws -> TestAgent {
        try self.start(
            in: directory, name: name, servers: [node.address.description], caFile: node.caFile,
            tokenFile: node.enrollTokenFile, arguments: arguments, agentSN: agentSN
        )
    }

    let process: TestProcess
    let dataDirectory: String
    let agentSN: String

    static func start(
        in directory: String,
        name: String = "agent",
        servers: [String],
        caFile: String,
        tokenFile: String,
        arguments: [String] = [],
        agentSN: String? = nil
    ) throws -> TestAgent {
        let data = "\(directory)/\(name)"
        let sn = agentSN ?? "sn-\(name)-\(UUID().uuidString.prefix(8).lowercased())"
        let process = try TestProcess.start(
            "boot",
            ["-f", "--data-dir", data, "--plugins-dir", "\(data).plugins", "--control-socket", "\(data).sock", "--ca", caFile, "--token-file", tokenFile, "--agent-sn", sn, "--backoff-cap", "1", "--start-delay", "0", "--log-level", "debug"]
                + servers.flatMap { ["--server", $0] } + arguments,
            log: "\(directory)/\(name).log"
        )
        return TestAgent(process: process, dataDirectory: data, agentSN: sn)
    }
}
