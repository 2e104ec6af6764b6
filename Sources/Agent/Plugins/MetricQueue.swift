#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RPC
import Synchronization

/// Plugin metrics on their way to the server: queued as they come, sent in batches while a
/// stream is open, kept (up to `capacity`, oldest dropped first) while none is. Metrics are
/// measurements, not results: a batch lost with a broken stream is not sent again.
final class MetricQueue: Sendable {
    let capacity: Int
    let batchSize: Int
    private let state = Mutex<(queued: [Aspire_V1_Metric], dropped: Int)>(([], 0))

    init(capacity: Int = 100_000, batchSize: Int = 1000) {
        self.capacity = capacity
        self.batchSize = batchSize
    }

    func append(_ metrics: [PluginMetric]) {
        let points = metrics.map { metric in
            var point = Aspire_V1_Metric()
            point.name = metric.name
            point.timestamp = metric.timestamp
            point.tags = metric.tags
            point.value = metric.value
            point.text = metric.text ?? ""
            return point
        }
        self.state.withLock { state in
            state.queued += points
            let excess = state.queued.count - self.capacity
            if excess > 0 {
                state.queued.removeFirst(excess)
                state.dropped += excess
            }
        }
    }

    var count: Int { self.state.withLock { $0.queued.count } }

    /// Takes the next batch, and how many metrics were dropped for room since the last call.
    func take() -> (batch: [Aspire_V1_Metric], dropped: Int) {
        self.state.withLock { state in
            let batch = Array(state.queued.prefix(self.batchSize))
            state.queued.removeFirst(batch.count)
            defer { state.dropped = 0 }
            return (batch, state.dropped)
        }
    }

    /// Puts a batch that could not be sent back in front.
    func putBack(_ batch: [Aspire_V1_Metric]) {
        self.state.withLock { state in
            state.queued = Array((batch + state.queued).suffix(self.capacity))
        }
    }
}
