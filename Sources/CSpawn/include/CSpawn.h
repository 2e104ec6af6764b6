#ifndef ASPIRE_CSPAWN_H
#define ASPIRE_CSPAWN_H

#include <spawn.h>
#include <stddef.h>
#include <sys/types.h>

/// What `aspire_spawn` starts: one command's first process.
typedef struct aspire_spawn_request {
    /// The executable (an absolute path: no PATH search).
    const char *path;
    /// Arguments and environment, NULL-terminated.
    char *const *argv;
    char *const *envp;
    /// The working directory, or NULL to keep the agent's.
    const char *directory;
    /// A cgroup v2 directory the process is born in (clone3's CLONE_INTO_CGROUP), or -1.
    int cgroup_fd;
    /// Else a `cgroup.procs` (or v1 `tasks`) file the process writes itself into before it
    /// execs anything, or NULL. A failed move is not an error: the command keeps its session.
    const char *join_path;
    /// Descriptors that become the process's 0, 1 and 2.
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    /// Non-zero: set these real, effective and saved ids and supplementary groups before the
    /// exec (raw system calls, so glibc never waits for threads the child does not have).
    int switch_ids;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t group_count;
} aspire_spawn_request;

/// Starts the process in a new session (its pid is its process group) with every signal at
/// its default and unblocked, and no descriptor but 0, 1 and 2. Returns its pid and sets
/// `*pidfd` (close-on-exec); or -1 with errno, from clone3 or from the child's setup or exec
/// (`*failed_step` then names the step: "clone3", "setsid", "dup2", "chdir", "setgroups",
/// "setresgid", "setresuid", "execve"). ENOSYS or EINVAL from "clone3": the kernel lacks
/// clone3, pidfds or CLONE_INTO_CGROUP (before Linux 5.7).
pid_t aspire_spawn(const aspire_spawn_request *request, int *pidfd, const char **failed_step);

/// The exit of a process started by `aspire_spawn`, without waiting: 0 while it runs, 1 with
/// `*code` and `*signaled` set once it has ended (and is reaped), -1 with errno.
int aspire_spawn_reap(int pidfd, int *code, int *signaled);

/// A pipe, both ends close-on-exec from the start (pipe2: no other thread's child may inherit it).
int aspire_pipe(int fds[2]);

/// Adds to `actions` the closing of every descriptor from `lowest` up, in the child before it
/// runs the program: glibc's posix_spawn_file_actions_addclosefrom_np (2.34), which Swift does
/// not see (it is under _GNU_SOURCE).
int aspire_spawn_actions_closefrom(posix_spawn_file_actions_t *actions, int lowest);

#endif
