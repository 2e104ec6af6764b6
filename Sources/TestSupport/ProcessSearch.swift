import Foundation

#if canImport(Glibc)
public import Glibc
#endif

/// Processes found by their command line, for tests and benchmarks that must show some are gone.
public enum ProcessSearch {
    /// The processes with `argument` among their command-line arguments (a unique marker, say
    /// `sleep 5511.123456`).
    public static func withArgument(_ argument: String) -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry in
            guard let pid = pid_t(entry), let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            return data.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == argument } ? pid : nil
        }
    }
}
