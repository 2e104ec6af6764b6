#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CSpawn
public import RPC

#if canImport(Glibc)
import Glibc
#endif

/// Starting a program that outlives its parent: the background agent, an upgrade's watchdog, the
/// old binary the watchdog brings back.
public enum DetachedProcess {
    /// glibc's POSIX_SPAWN_SETSID (0x80), which Swift does not see: it is under _GNU_SOURCE.
    private static let spawnSetSID: Int16 = 0x80

    /// Starts `arguments` (the first is the program's name) in a session of its own, away from
    /// any terminal, its standard streams on /dev/null; its pid. A threaded process must not
    /// fork and go on: it spawns instead.
    @discardableResult
    public static func spawn(_ executable: String, _ arguments: [String]) throws(AspireError) -> Int32 {
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
        // Nothing else of the parent's: a descriptor left open would live as long as the child
        // (a file held open for writing cannot be run: ETXTBSY; a socket would not close).
        aspire_spawn_actions_closefrom(&actions, 3)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &actions, &attributes, &argv, environ)
        guard status == 0 else { throw AspireError(.agentInternal, "cannot start \(executable): \(String(cString: strerror(status)))") }
        return pid
    }
}
