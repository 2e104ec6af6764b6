import Synchronization

/// Group commit: callers hand in one item each and wait; one of them at a time writes every
/// item queued so far in a single batch, then wakes the others with their answers and hands
/// the writing on to the first caller that queued meanwhile.
///
/// An idle writer adds no delay (a lone item is written at once), and under load the batch
/// grows by itself with the number of callers waiting — so ten thousand agents answering at
/// once cost a few transactions, not ten thousand fsyncs. There is no background task: whoever
/// waits writes, so nothing depends on a service loop running.
final class GroupCommit<Item: Sendable, Answer: Sendable>: Sendable {
    typealias Write = @Sendable ([Item]) async -> [Answer]

    private enum Turn {
        case answered(Answer)
        /// Write a batch: this caller's own item and whatever else is queued.
        case lead
    }

    private struct Waiting {
        var item: Item
        var continuation: CheckedContinuation<Turn, Never>
    }

    private struct State {
        var queue: [Waiting] = []
        var writing = false
    }

    private let state = Mutex(State())
    private let maxBatch: Int
    private let write: Write

    /// `write` gets at most `maxBatch` items and returns one answer per item, in order.
    init(maxBatch: Int, write: @escaping Write) {
        precondition(maxBatch >= 1)
        self.maxBatch = maxBatch
        self.write = write
    }

    func submit(_ item: Item) async -> Answer {
        let turn = await withCheckedContinuation { (continuation: CheckedContinuation<Turn, Never>) in
            let lead: Bool = self.state.withLock { state in
                if state.writing {
                    state.queue.append(Waiting(item: item, continuation: continuation))
                    return false
                }
                state.writing = true
                return true
            }
            if lead { continuation.resume(returning: .lead) }
        }
        switch turn {
        case .answered(let answer):
            return answer
        case .lead:
            return await self.writeBatch(leading: item)
        }
    }

    private func writeBatch(leading item: Item) async -> Answer {
        let others: [Waiting] = self.state.withLock { state in
            let taken = Array(state.queue.prefix(self.maxBatch - 1))
            state.queue.removeFirst(taken.count)
            return taken
        }
        let answers = await self.write([item] + others.map(\.item))
        precondition(answers.count == others.count + 1, "a group commit write must answer every item")
        for (waiting, answer) in zip(others, answers.dropFirst()) {
            waiting.continuation.resume(returning: .answered(answer))
        }
        let next: Waiting? = self.state.withLock { state in
            guard !state.queue.isEmpty else {
                state.writing = false
                return nil
            }
            return state.queue.removeFirst()
        }
        next?.continuation.resume(returning: .lead)
        return answers[0]
    }
}
