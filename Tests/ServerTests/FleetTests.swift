import Fleet
import Foundation
import GRPCCore
import RPC
import SwiftProtobuf
import Synchronization
import Testing
import TestSupport

/// The fleet simulator against a real node: it holds its agents, answers a task, and after the
/// node dies under a task and comes back, every agent returns and no subtask is lost.
@Suite("Fleet simulator", .serialized, .stopsChildProcesses)
struct FleetTests {
    @Test("Simulated agents connect, answer a task, and come back after a node restart without losing a subtask")
    func fleetSurvivesRestart() async throws {
        let directory = try makeTemporaryDirectory("aspire-fleet")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let binary = "\(TestProcess.binDirectory)/aspire-server"
        let first = try await NodeProcess.start(
            binary: binary, dataDirectory: "\(directory)/node", listen: HostPort(host: "127.0.0.36", port: 0), log: "\(directory)/node.log"
        )
        var configuration = Fleet.Configuration(server: first.address, security: .tls(caFile: first.caFile), token: try first.enrollToken)
        configuration.spread = false
        configuration.prefix = "fleet"
        // Answers take a second, so the node can die with every command received and none
        // answered: the commands die with their streams, as on a broken connection.
        configuration.answerDelay = .seconds(1)
        let fleet = Fleet(configuration: configuration, count: 40)
        let node = try await fleet.run(window: 8) { fleet in
            try await fleet.waitOnline(timeout: .seconds(60))
            #expect(try await first.withAdmin { try await $0.listAgents(.init()).agents.count } == 40)

            var request = Aspire_V1_CreateTaskRequest()
            request.command = "sync.bash"
            request.agents = fleet.agentSNs
            request.parameters = try Google_Protobuf_Struct(jsonString: #"{"cmd": "true"}"#)
            let done = try await first.withAdmin { admin in
                let id = try await admin.createTask(request).task.id
                return try await Self.waitForTask(id, admin)
            }
            #expect(done.status == "done" && done.complete == 40)
            #expect(fleet.counters.results.load(ordering: .relaxed) == 40)

            // The node dies once every agent holds a command of a second task, before any
            // answer; a new node starts on its port and data. Redelivery on the new streams
            // must bring every command back well before the 60 s redelivery timer would.
            let received = fleet.counters.commands.load(ordering: .relaxed)
            let second = try await first.withAdmin { try await $0.createTask(request).task.id }
            try await eventually(timeout: .seconds(20), "every agent to receive the second task") {
                fleet.counters.commands.load(ordering: .relaxed) >= received + 40
            }
            await first.process.kill()
            let node = try await NodeProcess.start(
                binary: binary, dataDirectory: "\(directory)/node", listen: first.address, log: "\(directory)/node2.log"
            )
            try await fleet.waitOnline(timeout: .seconds(60))
            let task = try await node.withAdmin { try await Self.waitForTask(second, $0, timeout: .seconds(30)) }
            #expect(task.complete == 40 && task.failed == 0, "every subtask of the interrupted task finished")
            return node
        }
        await node.process.stop()
    }

    @Test("A benchmark past its time limit exits with status 3, and the nodes it started die with it, as they do when it is SIGKILLed")
    func benchmarkChildrenDieWithIt() async throws {
        let directory = try makeTemporaryDirectory("aspire-bench-lifeline")
        defer { try? FileManager.default.removeItem(atPath: directory) }

        // The idle benchmark holds its node for seconds; a 2 s limit stops it partway.
        let limited = try TestProcess.start(
            "aspire-bench", ["idle", "--quick", "--time-limit", "2", "--work-dir", "\(directory)/limited", "--keep"],
            log: "\(directory)/limited.log"
        )
        let status = try await limited.wait(timeout: .seconds(60))
        #expect(status >> 8 == 3, "exit status 3, got wait status \(status)")
        #expect(limited.log.contains("did not finish within"), "says why: \(limited.log)")
        try await eventually(timeout: .seconds(10), "the limited run's node to die") {
            Self.processes(mentioning: "\(directory)/limited/idle/node").isEmpty
        }

        let killed = try TestProcess.start(
            "aspire-bench", ["idle", "--quick", "--work-dir", "\(directory)/killed", "--keep"], log: "\(directory)/killed.log"
        )
        // The node's data directory is on its command line; the benchmark's own is not.
        let node = "\(directory)/killed/idle/node"
        // Listening, not just spawned: between posix_spawn and telling the guardian about the
        // child there is a moment a SIGKILL would leave the node unknown to it.
        try await eventually(timeout: .seconds(30), "the benchmark's node to listen") {
            !Self.processes(mentioning: node).isEmpty && FileManager.default.fileExists(atPath: "\(node)/grpc.addr")
        }
        await killed.kill()
        try await eventually(timeout: .seconds(10), "the SIGKILLed run's node to die") {
            Self.processes(mentioning: node).isEmpty
        }
    }

    /// Live processes whose command line mentions `text` (a zombie's is empty).
    static func processes(mentioning text: String) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { $0.allSatisfy(\.isNumber) }.filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return String(decoding: data, as: UTF8.self).contains(text)
        }
    }

    static func waitForTask(
        _ id: Int64,
        _ admin: Aspire_V1_Admin.Client<some ClientTransport>,
        timeout: Duration = .seconds(60)
    ) async throws -> Aspire_V1_Task {
        var request = Aspire_V1_GetTaskRequest()
        request.id = id
        var task = Aspire_V1_Task()
        try await eventually(timeout: timeout, "task \(id) to finish: \(task)") {
            task = try await admin.getTask(request).task
            return task.count > 0 && task.complete >= task.count
        }
        return task
    }
}
