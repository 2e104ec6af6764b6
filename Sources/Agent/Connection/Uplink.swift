#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
public import GRPCCore
public import GRPCNIOTransportHTTP2
public import Logging
public import RPC
import SystemPackage
import Synchronization

/// Where the agent's parts send what the server must hear, made before them and handed to each
/// at init: messages on the open stream (dropped while none is open), results through the
/// outbox (kept until acknowledged), plugin metrics in batches, a fresh status report when
/// something changed, and the connection store packages come over.
public final class Uplink: Sendable {
    let state: AgentState
    let metrics = MetricQueue()
    private let logger: Logger
    /// The stream now open, if any.
    private let sink = Mutex<AsyncStream<Aspire_V1_AgentMessage>.Continuation?>(nil)
    /// The connection of the open stream.
    private let client = Mutex<GRPCClient<HTTP2ClientTransport.Posix>?>(nil)
    /// Results the outbox could not keep (the agent's disk full), by id: held here until the
    /// server acknowledges them, and put in the outbox once it can take them.
    private let unsaved = Mutex<[String: Aspire_V1_CommandResult]>([:])
    /// Asks for a status report; many asks before it is sent make one report.
    let statusWanted: AsyncStream<Void>
    private let statusInput: AsyncStream<Void>.Continuation
    /// Yields each time a stream is attached (a node welcomed the agent).
    let attachments: AsyncStream<Void>
    private let attachmentInput: AsyncStream<Void>.Continuation

    init(state: AgentState, logger: Logger) {
        self.state = state
        self.logger = logger
        (self.statusWanted, self.statusInput) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        (self.attachments, self.attachmentInput) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Sends a message on the open stream; false when none is open and it was dropped.
    @discardableResult
    func send(_ body: Aspire_V1_AgentMessage.OneOf_Body) -> Bool {
        var message = Aspire_V1_AgentMessage()
        message.body = body
        return self.sink.withLock { sink in
            guard let sink, case .enqueued = sink.yield(message) else { return false }
            return true
        }
    }

    func event(_ event: Aspire_V1_Event) {
        self.send(.event(event))
    }

    /// Something the status report shows changed: the server hears of it now, not at the next step.
    func statusChanged() {
        self.statusInput.yield()
    }

    /// Puts a result in the outbox (where it waits for the server's acknowledgement), then sends
    /// it on the open stream, if any.
    func deliver(_ result: Aspire_V1_CommandResult, logger: Logger) {
        do {
            try self.state.finish(result)
        } catch {
            logger.error("cannot store the result in the outbox: it is kept in memory until acknowledged", metadata: ["error": "\(error)"])
            self.unsaved.withLock { $0[result.id] = result }
        }
        self.send(.result(result))
    }

    /// Every result the server has not acknowledged: the outbox's, and those it could not keep.
    func pendingResults() -> [Aspire_V1_CommandResult] {
        let unsaved = self.unsaved.withLock { Array($0.values) }
        return (self.state.pendingResults() + unsaved).sorted { $0.finishedUnixMs < $1.finishedUnixMs }
    }

    /// The server stored these results.
    func acknowledged(_ ids: [String]) {
        self.state.acknowledge(ids)
        self.unsaved.withLock { unsaved in
            for id in ids { unsaved[id] = nil }
        }
    }

    /// Sends again the results the server has not acknowledged though they were sent at least
    /// `age` ago (it could not store them: its disk was full, say), and puts in the outbox those
    /// it can take now. The server stores a result once, however often it comes.
    @discardableResult
    func resendUnacknowledged(olderThan age: Duration) -> Int {
        for result in self.unsaved.withLock({ Array($0.values) }) where (try? self.state.finish(result)) != nil {
            self.unsaved.withLock { $0[result.id] = nil }
        }
        let cutoff = Date().unixMilliseconds - age.milliseconds
        let stale = self.pendingResults().filter { $0.finishedUnixMs <= cutoff }
        guard !stale.isEmpty, self.isConnected else { return 0 }
        self.logger.info("re-sending results the server has not acknowledged", metadata: ["count": "\(stale.count)"])
        for result in stale { self.send(.result(result)) }
        return stale.count
    }

    var isConnected: Bool { self.sink.withLock { $0 != nil } }

    /// Makes `continuation` the stream messages go to, and re-sends every unacknowledged result.
    func attach(_ continuation: AsyncStream<Aspire_V1_AgentMessage>.Continuation, client: GRPCClient<HTTP2ClientTransport.Posix>) {
        self.sink.withLock { $0 = continuation }
        self.client.withLock { $0 = client }
        let pending = self.pendingResults()
        if !pending.isEmpty {
            self.logger.info("re-sending unacknowledged results", metadata: ["count": "\(pending.count)"])
        }
        for result in pending {
            var message = Aspire_V1_AgentMessage()
            message.result = result
            continuation.yield(message)
        }
        self.attachmentInput.yield()
    }

    func detach() {
        self.sink.withLock { $0 = nil }
        self.client.withLock { $0 = nil }
    }

    /// Fetches a file of the server's package store (OS/ARCH/FILE) over the open connection.
    var storeDownload: PackageFetcher.StoreDownload {
        { path, handle throws(AspireError) in try await self.download(path, into: handle) }
    }

    private func download(_ path: String, into handle: PackageFetcher.Destination) async throws(AspireError) {
        guard let client = self.client.withLock({ $0 }) else {
            throw AspireError(.downloadFailed, "not connected to a server: cannot fetch aspire://package/\(path)")
        }
        var request = Aspire_V1_DownloadRequest()
        request.path = path
        do {
            try await Aspire_V1_PackageStore.Client(wrapping: client).download(request) { response in
                for try await chunk in response.messages {
                    _ = try handle.writeAll(chunk.data)
                }
            }
        } catch let error as RPCError {
            throw AspireError(.downloadFailed, "cannot fetch aspire://package/\(path) from the server: \(error.message)")
        } catch {
            throw AspireError(.downloadFailed, "cannot fetch aspire://package/\(path) from the server: \(error)")
        }
    }

    /// Sends queued plugin metrics every second while a stream is open.
    func shipMetrics() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            while true {
                let (batch, dropped) = self.metrics.take()
                if dropped > 0 {
                    self.logger.warning("plugin metrics dropped: too many waiting for a connection", metadata: ["count": "\(dropped)"])
                }
                guard !batch.isEmpty else { break }
                var metrics = Aspire_V1_MetricBatch()
                metrics.metrics = batch
                guard self.send(.metrics(metrics)) else {
                    self.metrics.putBack(batch)
                    break
                }
            }
        }
    }
}
