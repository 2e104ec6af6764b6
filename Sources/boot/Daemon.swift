import Agent
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RPC

#if canImport(Glibc)
import Glibc
#endif

/// Detaching, log file and PID file, as a daemon does them.
enum Daemon {
    /// Starts this program again with `-f` in a new session, detached from the terminal, and
    /// exits. A threaded process must not fork and go on; it re-executes itself instead.
    static func detach() throws -> Never {
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let pid: pid_t
        do {
            pid = try DetachedProcess.spawn(executable, [executable] + CommandLine.arguments.dropFirst() + ["-f"])
        } catch {
            throw DaemonError("cannot start the background agent: \(error.cause)")
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
                let other = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmed() ?? "?"
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
