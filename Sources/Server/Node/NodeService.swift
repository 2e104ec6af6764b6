public import GRPCCore
import Logging
public import ServiceLifecycle
import Synchronization

/// One long-lived part of a node as its ServiceGroup runs it. A part that uses the store waits
/// for `gate` (the store migrated) before it starts; each says when it stops, so the log shows
/// the order of a graceful shutdown.
struct NodeService: Service, CustomStringConvertible {
    let name: String
    let gate: StartGate?
    let logger: Logger
    let body: @Sendable () async throws -> Void

    init(_ name: String, after gate: StartGate? = nil, logger: Logger, _ body: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.gate = gate
        self.logger = logger
        self.body = body
    }

    var description: String { self.name }

    func run() async throws {
        if let gate {
            do {
                try await cancelWhenGracefulShutdown { try await gate.wait() }
            } catch is CancellationError {
                // Stopped before the store was ready: nothing ran, nothing to stop.
                return
            }
        }
        self.logger.debug("node service running", metadata: ["node.service": "\(self.name)"])
        do {
            try await self.body()
        } catch is CancellationError {
            // Loops stopped by a graceful shutdown end this way: a clean stop, not a failure
            // (which would make the group cancel the services still to stop in order).
        }
        self.logger.notice("node service stopped", metadata: ["node.service": "\(self.name)"])
    }
}

/// Opens once, when the store is migrated; the node's other services wait for it. A store that
/// cannot be opened fails every waiter with its error.
final class StartGate: Sendable {
    private enum State {
        case closed(waiters: [Int: CheckedContinuation<Void, any Error>], next: Int)
        case open
        case failed(any Error)
    }

    private let state = Mutex(State.closed(waiters: [:], next: 0))

    init() {}

    func open() {
        self.finish(.open)
    }

    func fail(_ error: any Error) {
        self.finish(.failed(error))
    }

    private func finish(_ outcome: State) {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            guard case .closed(let waiters, _) = state else { return [] }
            state = outcome
            return Array(waiters.values)
        }
        for waiter in waiters {
            if case .failed(let error) = outcome { waiter.resume(throwing: error) } else { waiter.resume() }
        }
    }

    /// Returns once the gate is open; throws its failure, or CancellationError when cancelled.
    func wait() async throws {
        let id = self.state.withLock { state -> Int? in
            guard case .closed(let waiters, let next) = state else { return nil }
            state = .closed(waiters: waiters, next: next + 1)
            return next
        }
        guard let id else { return try self.outcome() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let early: Result<Void, any Error>? = self.state.withLock { state in
                    switch state {
                    case .closed(var waiters, let next):
                        if Task.isCancelled { return .failure(CancellationError()) }
                        waiters[id] = continuation
                        state = .closed(waiters: waiters, next: next)
                        return nil
                    case .open: return .success(())
                    case .failed(let error): return .failure(error)
                    }
                }
                if let early { continuation.resume(with: early) }
            }
        } onCancel: {
            let waiter = self.state.withLock { state -> CheckedContinuation<Void, any Error>? in
                guard case .closed(var waiters, let next) = state, let waiter = waiters.removeValue(forKey: id) else { return nil }
                state = .closed(waiters: waiters, next: next)
                return waiter
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    private func outcome() throws {
        try self.state.withLock { state in
            if case .failed(let error) = state { throw error }
        }
    }
}

/// Serves a gRPC server until a graceful shutdown, which it passes on to the server.
public struct GRPCServerService<Transport: ServerTransport>: Service {
    let server: GRPCServer<Transport>
    let onShutdown: @Sendable () -> Void

    public init(server: GRPCServer<Transport>, onShutdown: @escaping @Sendable () -> Void = {}) {
        self.server = server
        self.onShutdown = onShutdown
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await self.server.serve()
        } onGracefulShutdown: {
            self.onShutdown()
            self.server.beginGracefulShutdown()
        }
    }
}

/// Runs a gRPC client's connections for as long as the service group runs.
public struct GRPCClientService<Transport: ClientTransport>: Service {
    let client: GRPCClient<Transport>

    public init(client: GRPCClient<Transport>) {
        self.client = client
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await self.client.runConnections()
        } onGracefulShutdown: {
            self.client.beginGracefulShutdown()
        }
    }
}

/// Runs `pass` every `interval` until a graceful shutdown: the node's sweeps (the distributor's,
/// the rollouts').
func repeatEvery(_ interval: Duration, _ pass: @escaping @Sendable () async -> Void) async throws {
    try await cancelWhenGracefulShutdown {
        while !Task.isCancelled {
            try await Task.sleep(for: interval)
            await pass()
        }
    }
}
