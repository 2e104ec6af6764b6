import Foundation
import GRPCCore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RPC
import ServiceLifecycle
import SwiftProtobuf

/// The Run page: pick hosts (AgentSNs, a tag expression, or the hosts ticked on the host list),
/// see the resolved targets before anything is sent, confirm, then follow each host as it runs.
extension Console {
    /// A run's inputs as the form and the URL carry them.
    struct RunForm {
        var agents: [String] = []
        var tag = ""
        var command = ""
        var user = ""
        var timeout: Int32 = 60

        init(query: Query) {
            self.agents = Self.list(query.all("agent") + query.all("agents"))
            self.tag = query.string("tag")
            self.command = query.string("command")
            self.user = query.string("user")
            self.timeout = Int32(query.string("timeout")) ?? 60
        }

        init(form: FormFields) {
            self.agents = Self.list([form["agents"]])
            self.tag = form["tag"].trimmingCharacters(in: .whitespaces)
            self.command = form["command"]
            self.user = form["user"].trimmingCharacters(in: .whitespaces)
            self.timeout = Int32(form["timeout"].trimmingCharacters(in: .whitespaces)) ?? 0
        }

        /// AgentSNs from lines, commas or spaces, in order, once each.
        static func list(_ texts: [String]) -> [String] {
            var seen = Set<String>()
            return texts.flatMap { $0.split(whereSeparator: { $0 == "," || $0.isWhitespace }).map(String.init) }
                .filter { seen.insert($0).inserted }
        }

        /// The tag expression `k=v,k2=v2` (every pair must match).
        func tags() throws(AspireError) -> [String: String] {
            var tags: [String: String] = [:]
            for pair in self.tag.split(whereSeparator: { $0 == "," || $0.isWhitespace }) {
                let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, !parts[0].isEmpty else {
                    throw AspireError(.badRequest, "a tag expression is key=value[,key=value], not '\(pair)'")
                }
                tags[parts[0]] = parts[1]
            }
            return tags
        }

        /// The command as the agent gets it; the form's checks first.
        func bash() throws(AspireError) -> Aspire_V1_BashParams {
            guard !self.command.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw AspireError(.badRequest, "enter a command")
            }
            guard !self.user.isEmpty else {
                throw AspireError(.badRequest, "enter the user the command runs as (root, or a user of the hosts)")
            }
            guard (1 ... 86400).contains(self.timeout) else {
                throw AspireError(.badRequest, "the timeout is 1 to 86400 seconds")
            }
            var bash = Aspire_V1_BashParams()
            bash.cmd = self.command
            bash.user = self.user
            bash.timeout = self.timeout
            return bash
        }

        var values: [String: Any] {
            ["agents": self.agents.joined(separator: "\n"), "tag": self.tag, "command": self.command, "user": self.user, "timeout": self.timeout]
        }
    }

    func runPage(_ visit: Visit) async throws -> Response {
        try visit.require("RunCommandStream", to: "run commands")
        return self.views.page("run", tab: .run, session: visit.session, ["title": "Run a command", "form": RunForm(query: visit.query).values])
    }

    /// The dry run: the hosts the command would reach, nothing sent.
    func previewRun(_ visit: Visit, form fields: FormFields) async throws -> Response {
        try visit.require("RunCommandStream", to: "run commands")
        let form = RunForm(form: fields)
        var data: [String: Any] = ["title": "Run a command", "form": form.values]
        do {
            _ = try form.bash()
            let targets = try await self.resolve(form, metadata: visit.metadata)
            let online = targets.filter { $0.status == "online" }
            data["preview"] = [
                "count": targets.count, "online": online.count, "left": targets.count - online.count, "hasLeft": targets.count > online.count,
                "hosts": targets.map { ["sn": $0.sn, "hostname": $0.hostname, "status": $0.status, "runs": $0.status == "online"] },
                "targets": online.map(\.sn).joined(separator: "\n"),
                "any": !online.isEmpty,
            ]
        } catch let error as AspireError {
            data["error"] = error.cause
            return self.views.page("run", tab: .run, session: visit.session, data, status: HTTPResponse.Status(code: error.code.httpStatus))
        }
        return self.views.page("run", tab: .run, session: visit.session, data)
    }

    struct Target {
        let sn: String
        let hostname: String
        let status: String
    }

    /// The hosts a run's form names: its AgentSNs (each looked up), or the hosts carrying its tags.
    func resolve(_ form: RunForm, metadata: Metadata) async throws -> [Target] {
        if !form.agents.isEmpty {
            guard form.tag.isEmpty else { throw AspireError(.badRequest, "name hosts by AgentSN or by tag, not both") }
            guard form.agents.count <= ConsoleRuns.maxHosts else {
                throw AspireError(.badRequest, "a run from the console reaches at most \(ConsoleRuns.maxHosts) hosts; use a task for more")
            }
            for sn in form.agents { try AgentIdentity.validate(agentSN: sn) }
            return try await withThrowingTaskGroup(of: (Int, Target).self) { group in
                for (index, sn) in form.agents.enumerated() {
                    group.addTask {
                        do {
                            let host = try await self.admin.getHost(.with { $0.agentSn = sn }, metadata: metadata)
                            return (index, Target(sn: sn, hostname: host.hostname, status: host.status))
                        } catch let error as RPCError where error.code == .notFound {
                            return (index, Target(sn: sn, hostname: "", status: "unknown"))
                        }
                    }
                }
                var found: [(Int, Target)] = []
                for try await item in group { found.append(item) }
                return found.sorted { $0.0 < $1.0 }.map(\.1)
            }
        }
        let tags = try form.tags()
        guard !tags.isEmpty else { throw AspireError(.badRequest, "name the hosts: AgentSNs, or a tag expression such as role=web") }
        var request = Aspire_V1_ListHostsRequest()
        request.tags = tags
        request.limit = 1000
        let answer = try await self.admin.listHosts(request, metadata: metadata)
        guard answer.count <= ConsoleRuns.maxHosts else {
            throw AspireError(
                .badRequest, "\(answer.count) hosts carry \(form.tag); a run from the console reaches at most \(ConsoleRuns.maxHosts): narrow it, or use a task"
            )
        }
        return answer.hosts.map { Target(sn: $0.agentSn, hostname: $0.hostname, status: $0.status) }
    }

    /// Confirmed: each previewed online host gets the command; the page follows them.
    func startRun(_ visit: Visit, form fields: FormFields) async throws -> Response {
        try visit.require("RunCommandStream", to: "run commands")
        let form = RunForm(form: fields)
        let bash = try form.bash()
        let hosts = RunForm.list([fields["targets"]])
        guard !hosts.isEmpty else { throw AspireError(.badRequest, "no host to run on: preview the targets first") }
        guard hosts.count <= ConsoleRuns.maxHosts else { throw AspireError(.badRequest, "at most \(ConsoleRuns.maxHosts) hosts") }
        for sn in hosts { try AgentIdentity.validate(agentSN: sn) }
        let run = await self.runs.create(owner: visit.session.name, command: form.command, user: form.user, timeout: form.timeout, hosts: hosts)
        self.logger.notice(
            "console: run started", metadata: ["operator": "\(visit.session.name)", "run": "\(run.id)", "hosts": "\(hosts.count)"]
        )
        self.launch(run, bash: bash, metadata: visit.metadata)
        return Response.redirect(to: "/runs/\(run.id)", type: .normal)
    }

    /// Sends the command to the run's hosts, a few at a time, each as a followed direct command.
    func launch(_ run: ConsoleRuns.Run, bash: Aspire_V1_BashParams, metadata: Metadata) {
        Task {
            await withTaskGroup(of: Void.self) { group in
                var pending = run.order.makeIterator()
                for _ in 0 ..< 32 {
                    guard let sn = pending.next() else { break }
                    group.addTask { await self.runOne(run.id, sn: sn, bash: bash, metadata: metadata) }
                }
                while await group.next() != nil {
                    if let sn = pending.next() {
                        group.addTask { await self.runOne(run.id, sn: sn, bash: bash, metadata: metadata) }
                    }
                }
            }
            await self.runs.finish(run.id)
        }
    }

    private func runOne(_ id: String, sn: String, bash: Aspire_V1_BashParams, metadata: Metadata) async {
        var request = Aspire_V1_RunCommandRequest()
        request.agentSn = sn
        request.command.method = CommandMethod.bash.name
        request.command.bash = bash
        let runs = self.runs
        do {
            let ended = try await self.admin.runCommandStream(request, metadata: metadata) { response in
                var ended = false
                for try await event in response.messages {
                    switch event.body {
                    case .accepted(let accepted)?:
                        await runs.update(id, sn) {
                            $0.state = .running
                            $0.taskID = accepted.taskID
                            $0.node = accepted.heldBy
                        }
                    case .output(let output)?:
                        await runs.output(id, sn, stderr: output.stream == .stderr, text: String(decoding: output.chunk, as: UTF8.self))
                    case .lostChunks(let count)?:
                        await runs.output(id, sn, stderr: true, text: "\n[\(count) pieces of output were lost on the way]\n")
                    case .result(let result)?:
                        ended = true
                        await runs.update(id, sn) { host in
                            host.code = result.retcode
                            host.message = result.message
                            host.state = result.resp == .success && result.retcode == 0 ? .ok : .failed
                            if host.output.isEmpty {
                                host.output = String(decoding: result.data + result.stderr, as: UTF8.self)
                                host.truncated = result.truncated
                            }
                        }
                    case nil:
                        break
                    }
                }
                return ended
            }
            if !ended {
                await runs.update(id, sn) {
                    $0.state = .error
                    $0.message = "no result in time; the command may still end: see task \($0.taskID)"
                }
            }
        } catch {
            await runs.update(id, sn) {
                $0.state = .error
                $0.message = ErrorMiddleware.aspireError(error).cause
            }
        }
    }

    func runStatusPage(_ visit: Visit, id: String) async throws -> Response {
        guard let run = await self.runs.run(id, owner: visit.session.name) else {
            throw AspireError(.notFound, "no run \(id) of yours on this node (runs are kept in the memory of the node that started them)")
        }
        return self.views.page("runstatus", tab: .run, session: visit.session, Self.runValues(run))
    }

    static func runValues(_ run: ConsoleRuns.Run) -> [String: Any] {
        let hosts = run.order.compactMap { run.hosts[$0] }
        let failed = run.failed
        var again = ["command=\(ConsoleText.encoded(run.command))", "user=\(ConsoleText.encoded(run.user))", "timeout=\(run.timeout)"]
        again.append("agents=\(ConsoleText.encoded(failed.joined(separator: ",")))")
        return [
            "title": "Run", "id": run.id, "command": run.command, "user": run.user, "timeout": run.timeout,
            "started": ConsoleText.time(Int64(run.created.timeIntervalSince1970 * 1000)),
            "finished": run.finished, "live": !run.finished,
            "count": hosts.count,
            "ok": hosts.filter { $0.state == .ok }.count,
            "failedCount": failed.count,
            "again": failed.isEmpty ? "" : "/run?" + again.joined(separator: "&"),
            "hosts": hosts.map(Self.hostRunValues),
        ]
    }

    static func hostRunValues(_ host: ConsoleHostRun) -> [String: Any] {
        [
            "sn": host.sn, "href": "/hosts/\(ConsoleText.encoded(host.sn))", "state": host.state.rawValue, "task": host.taskID == 0 ? "" : "\(host.taskID)",
            "node": host.node, "output": host.output, "truncated": host.truncated, "code": host.code.map { "\($0)" } ?? "",
            "message": host.message, "bad": host.state == .failed || host.state == .error,
        ]
    }

    /// The run's events as Server-Sent Events: every host as it is now, then each change and
    /// each piece of output as it comes, `done` last. One stream per open page, ended when the
    /// page goes (the write fails) or the run ends.
    func runEvents(_ visit: Visit, id: String) async throws -> Response {
        guard let (run, events) = await self.runs.follow(id, owner: visit.session.name) else {
            throw AspireError(.notFound, "no run \(id) of yours on this node")
        }
        let (runs, owner) = (self.runs, visit.session.name)
        return ConsoleEvents.response { out in
            for sn in run.order {
                guard let host = run.hosts[sn] else { continue }
                out.yield(ConsoleEvents.encode("host", Self.hostEvent(host, withOutput: true)))
            }
            if run.finished {
                out.yield(ConsoleEvents.encode("done", ["failed": run.failed]))
            }
            for await event in events {
                switch event {
                case .host(let host):
                    out.yield(ConsoleEvents.encode("host", Self.hostEvent(host, withOutput: false)))
                case .output(let sn, let stderr, let text):
                    out.yield(ConsoleEvents.encode("output", ["sn": sn, "stream": stderr ? "stderr" : "stdout", "text": text]))
                case .done:
                    let failed = await runs.run(id, owner: owner)?.failed ?? []
                    out.yield(ConsoleEvents.encode("done", ["failed": failed]))
                }
            }
        }
    }

    static func hostEvent(_ host: ConsoleHostRun, withOutput: Bool) -> [String: Any] {
        var object: [String: Any] = [
            "sn": host.sn, "state": host.state.rawValue, "task": host.taskID, "node": host.node, "message": host.message,
            "truncated": host.truncated,
        ]
        if let code = host.code { object["code"] = Int(code) }
        if withOutput { object["output"] = host.output }
        return object
    }
}

/// Server-Sent Events of the console's live pages.
enum ConsoleEvents {
    /// An event stream whose events `produce` makes, until it returns, the page goes (a write
    /// fails, which cancels it) or the node stops (graceful shutdown cancels it too).
    static func response(
        _ produce: @escaping @Sendable (AsyncStream<ByteBuffer>.Continuation) async throws -> Void
    ) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            let (events, continuation) = AsyncStream.makeStream(of: ByteBuffer.self, bufferingPolicy: .bufferingOldest(1024))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    defer { continuation.finish() }
                    try? await cancelWhenGracefulShutdown { try await produce(continuation) }
                }
                defer { group.cancelAll() }
                for await event in events { try await writer.write(event) }
            }
            try await writer.finish(nil)
        })
    }

    /// One event: its name and a JSON object as its data.
    static func encode(_ name: String, _ object: [String: Any]) -> ByteBuffer {
        var json = (try? JSONWriter.encode(untyped: object)) ?? ByteBuffer(string: "{}")
        var buffer = ByteBuffer(string: "event: \(name)\ndata: ")
        buffer.writeBuffer(&json)
        buffer.writeString("\n\n")
        return buffer
    }
}
