#if canImport(Glibc)
import Glibc
#endif

/// The descriptor budget of a node: each agent's connection is one descriptor, and a process
/// that runs out of them does not fail gracefully (libdispatch's worker monitor crashes the
/// process when it cannot open /proc/<tid>/stat).
public enum OpenFiles {
    /// Descriptors kept for everything that is not an agent: listeners, the database and its
    /// pool, admin and REST clients, package files, the runtime's own.
    public static let reserve = 512

    /// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.
    @discardableResult
    public static func raiseSoftLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }

    /// How many agents fit in `limit` descriptors after the reserve (at least one).
    public static func agentCapacity(limit: Int) -> Int {
        max(1, limit - self.reserve)
    }
}
