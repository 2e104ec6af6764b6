import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Detaching, log file and PID file, as a daemon does them.
enum Daemon {
    /// glibc's POSIX_SPAWN_SETSID (0x80), which Swift does not see: it is under _GNU_SOURCE.
    private static let spawnSetSID: Int16 = 0x80

    /// Starts this program again with `-f` in a new session, detached from the terminal, and
    /// exits. A threaded process must not fork and go on; it re-executes itself instead.
    static func detach() throws -> Never {
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let arguments = [executable] + CommandLine.arguments.dropFirst() + ["-f"]
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Self.spawnSetSID)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd: Int32 in 0 ... 2 {
            posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0)
        }
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &actions, &attributes, &argv, environ)
        guard status == 0 else {
            throw DaemonError("cannot start the background agent: \(String(cString: strerror(status)))")
        }
        print("boot: running in the background as pid \(pid)")
        exit(0)
    }

    /// Sends standard output and standard error to `path` (appended).
    static func redirectOutput(to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw DaemonError("cannot open log file \(path): \(String(cString: strerror(errno)))")
        }
        dup2(fd, STDOUT_FILENO)
        dup2(fd, STDERR_FILENO)
        close(fd)
    }

    /// Fails when `path` cannot be opened for appending.
    static func checkWritable(_ path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw DaemonError("cannot open log file \(path): \(String(cString: strerror(errno)))")
        }
        close(fd)
    }

    /// A PID file held under an exclusive lock for the life of the process.
    final class PIDFile {
        /// Fails when another process holds the lock on `path`.
        static func checkFree(path: String) throws {
            let file = try PIDFile(path: path, write: false)
            file.release()
        }

        let path: String
        private let fd: Int32

        init(path: String, write: Bool = true) throws {
            self.path = path
            self.fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard self.fd >= 0 else {
                throw DaemonError("cannot open PID file \(path): \(String(cString: strerror(errno)))")
            }
            guard flock(self.fd, LOCK_EX | LOCK_NB) == 0 else {
                let other = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
                close(self.fd)
                throw DaemonError("another agent holds \(path) (pid \(other)); not starting a second one")
            }
            guard write else { return }
            ftruncate(self.fd, 0)
            let text = "\(getpid())\n"
            _ = text.withCString { Glibc.write(self.fd, $0, strlen($0)) }
        }

        /// Unlocks without removing the file.
        func release() {
            close(self.fd)
        }

        func remove() {
            unlink(self.path)
            close(self.fd)
        }
    }
}

struct DaemonError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
