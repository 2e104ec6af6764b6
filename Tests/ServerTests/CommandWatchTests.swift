import Foundation
import Logging
import RPC
@testable import Server
import Testing

@Suite("Command watches and the command's task form")
struct CommandWatchTests {
    static func chunk(_ seq: Int) -> Aspire_V1_CommandOutput {
        var output = Aspire_V1_CommandOutput()
        output.id = "c1"
        output.seq = UInt64(seq)
        output.chunk = Data("line \(seq)\n".utf8)
        return output
    }

    @Test("A reader that falls behind loses the oldest chunks, reads one marker saying how many, and always gets the result")
    func boundedBacklog() async throws {
        let registry = SessionRegistry(logger: .init(label: "test"))
        let watch = registry.watch("c1", of: "host-1", follow: true)
        let total = CommandWatch.capacity + 40
        for seq in 0 ..< total { registry.output(Self.chunk(seq), from: "host-1") }
        // Another host naming the same command id is not this command.
        var foreign = Aspire_V1_CommandResult()
        foreign.id = "c1"
        foreign.message = "forged"
        #expect(!registry.complete(foreign, from: "host-2"))
        var result = Aspire_V1_CommandResult()
        result.id = "c1"
        result.message = "done"
        #expect(registry.complete(result, from: "host-1"))

        guard case .lost(let lost)? = await watch.next() else {
            Issue.record("the first event is the loss marker")
            return
        }
        #expect(lost == 40)
        var seqs: [UInt64] = []
        var final: Aspire_V1_CommandResult?
        while let event = await watch.next() {
            switch event {
            case .output(let output): seqs.append(output.seq)
            case .result(let answer): final = answer
            case .lost: Issue.record("one marker only")
            }
        }
        #expect(seqs == (40 ..< UInt64(total)).map { $0 })
        #expect(final?.message == "done")
        registry.unwatch(watch)
        #expect(!registry.complete(result, from: "host-1"))
    }

    @Test("Without follow only the result is kept; a reader parked before it arrives gets it; a finished watch ends its reader")
    func resultOnly() async throws {
        let registry = SessionRegistry(logger: .init(label: "test"))
        let watch = registry.watch("c2", of: "host-1", follow: false)
        registry.output(Self.chunk(1), from: "host-1")
        async let next = watch.next()
        try await Task.sleep(for: .milliseconds(50))
        var result = Aspire_V1_CommandResult()
        result.id = "c2"
        registry.complete(result, from: "host-1")
        guard case .result(let answer)? = await next else {
            Issue.record("the result, and nothing before it")
            return
        }
        #expect(answer.id == "c2")
        #expect(await watch.next() == nil)

        let waiting = registry.watch("c3", of: "host-1", follow: true)
        async let ended = waiting.next()
        try await Task.sleep(for: .milliseconds(50))
        registry.unwatch(waiting)
        #expect(await ended == nil)
    }

    @Test("Every task method's typed command goes to its task form and back unchanged; server-only methods are refused")
    func taskForm() throws {
        var bash = Aspire_V1_BashParams()
        (bash.cmd, bash.timeout, bash.user, bash.group) = ("id -un", 30, "nobody", "nogroup")
        var subAgent = Aspire_V1_SubAgentParams()
        (subAgent.name, subAgent.version, subAgent.url) = ("MiniAgent", "1.2", "aspire://package/linux/x86_64/MiniAgent-1.2.tar.gz")
        subAgent.checksum = "SHA256:" + String(repeating: "ab", count: 32)
        subAgent.envs = ["A": "1"]
        (subAgent.limits.cpu, subAgent.limits.memory, subAgent.limits.pids) = ("10%", "20M", "64")
        (subAgent.user, subAgent.group) = ("nobody", "nogroup")
        var config = Aspire_V1_ConfigParams()
        (config.svrlist, config.step, config.tags) = ("a.example:8443", 60, ["svc": "ecs"])
        var run = Aspire_V1_PluginParams()
        (run.name, run.timeout, run.param) = ("disk", 10, "-v")
        var disable = Aspire_V1_PluginParams()
        (disable.name, disable.disableSeconds) = ("disk", 3600)
        var getinfo = Aspire_V1_GetInfoParams()
        getinfo.args = "-U root"
        let commands: [Aspire_V1_Command] = [
            Aspire_V1_Command(.bash, .bash(bash)), Aspire_V1_Command(.getInfo(.users), .getinfo(getinfo)),
            Aspire_V1_Command(.getInfo(.os), nil), Aspire_V1_Command(.subAgent(.upgrade), .subagent(subAgent)),
            Aspire_V1_Command(.config, .config(config)), Aspire_V1_Command(.plugin(.run), .plugins(run)),
            Aspire_V1_Command(.plugin(.disable), .plugins(disable)), Aspire_V1_Command(.plugin(.list), .plugins(.init())),
        ]
        for command in commands {
            let (method, parameters) = try CommandParameters.task(of: command)
            var back = try CommandParameters.command(method: method, parameters: parameters)
            if command.params == nil, case .getinfo(let empty)? = back.params, empty == .init() { back.params = nil }
            #expect(back == command, "\(command.method)")
        }
        #expect(throws: AspireError.self) { try CommandParameters.task(of: Aspire_V1_Command(.plugin(.set), .plugins(.init()))) }
        var unsafe = bash
        unsafe.user = "../root"
        #expect(throws: AspireError.self) {
            let (method, parameters) = try CommandParameters.task(of: Aspire_V1_Command(.bash, .bash(unsafe)))
            _ = try CommandParameters.command(method: method, parameters: parameters)
        }
    }
}
