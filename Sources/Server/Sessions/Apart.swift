/// Runs `work` in a child task that ends with it.
///
/// A task keeps every slab of memory its deepest chain of calls ever needed until the task ends
/// (Swift's task allocator frees none sooner), and an agent's stream holds its tasks as long as
/// the agent stays: storing its Hello or a report, a dispatch pass, goes many calls
/// deep, and that depth would stay with each of tens of thousands of idle streams. Run apart,
/// it is freed when done (bench/README.md, "P1 memory").
func apart<Result: Sendable>(_ work: @escaping @Sendable () async throws -> Result) async throws -> Result {
    async let result = work()
    return try await result
}
