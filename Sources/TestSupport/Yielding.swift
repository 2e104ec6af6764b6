/// Gives the other tests' jobs their turn every `period` rounds of a CPU-bound loop.
///
/// Swift concurrency runs every test on one cooperative pool of as many threads as cores: two on the CI
/// machines. A property test of thousands of generated cases is seconds of CPU in a debug build, and two of
/// them at once held both threads for as long: every other test's awaits (a process started, a socket
/// answered) waited behind them, and waits with deadlines failed. `Task.yield()` puts the loop's job at the
/// back of the queue, so the pool is shared between rounds.
public func yieldingEvery(_ period: Int, _ round: Int) async {
    if round % period == period - 1 { await Task.yield() }
}
