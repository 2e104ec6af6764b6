#define _GNU_SOURCE
#include "CSpawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/// The kernel's `struct clone_args` as of Linux 5.7 (glibc 2.36's headers lack `cgroup`).
struct aspire_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;
    uint64_t set_tid_size;
    uint64_t cgroup;
};

/// What the child tells its parent when it cannot exec: errno and the step. The child shares
/// the parent's memory (CLONE_VM) until its exec, so it writes them in place.
struct failure {
    int error;
    int step;
};

/// The child's whole input: the request and where to report.
struct child_context {
    const aspire_spawn_request *request;
    volatile struct failure *failure;
};

static const char *const steps[] = {"clone3", "setsid", "dup2", "chdir", "setgroups", "setresgid", "setresuid", "execve"};

/// In the child only async-signal-safe calls and no change to memory but the report: it runs
/// in the parent's address space, on a stack of its own, while the parent waits (vfork).
static void fail(volatile struct failure *failure, int step) {
    failure->error = errno;
    failure->step = step;
    _exit(127);
}

/// Makes `fd` the child's `target`, keeping it across the exec.
static int place(int fd, int target) {
    if (fd == target) {
        int flags = fcntl(fd, F_GETFD);
        return flags < 0 ? -1 : fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
    }
    return dup2(fd, target) < 0 ? -1 : 0;
}

/// Every descriptor above 2 closes at the exec (the agent's own, and other commands' pipes).
static void close_others_on_exec(void) {
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
    // Before Linux 5.11: each open descriptor, as /proc lists them.
    int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) return;
    char buffer[4096];
    for (;;) {
        long count = syscall(SYS_getdents64, dir, buffer, sizeof buffer);
        if (count <= 0) break;
        for (long offset = 0; offset < count;) {
            unsigned short length;
            memcpy(&length, buffer + offset + 16, sizeof length);
            const char *name = buffer + offset + 19;
            int fd = 0, digits = 0;
            for (; *name >= '0' && *name <= '9'; name++, digits++) fd = fd * 10 + (*name - '0');
            if (digits > 0 && *name == 0 && fd > 2 && fd != dir) fcntl(fd, F_SETFD, FD_CLOEXEC);
            offset += length;
        }
    }
    close(dir);
}

static void child(void *argument) {
    const struct child_context *context = argument;
    const aspire_spawn_request *request = context->request;
    volatile struct failure *report = context->failure;
    // Back to defaults: the agent ignores SIGPIPE, and its blocked mask came along. By the raw
    // system call: glibc's sigaction refuses its own two signals (32, 33), which an ignoring
    // parent would otherwise hand down. All zeroes is SIG_DFL, no flags, an empty mask, in the
    // kernel's layout on every architecture.
    unsigned long defaults[4] = {0, 0, 0, 0};
    for (int signal = 1; signal < 65; signal++) {
        if (signal != SIGKILL && signal != SIGSTOP) syscall(SYS_rt_sigaction, signal, defaults, NULL, 8);
    }
    unsigned long none = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, 8);

    if (setsid() < 0) fail(report, 1);
    if (request->join_path != NULL) {
        int procs = open(request->join_path, O_WRONLY | O_CLOEXEC);
        if (procs >= 0) {
            ssize_t ignored = write(procs, "0", 1);
            (void)ignored;
            close(procs);
        }
    }
    if (place(request->stdin_fd, 0) < 0 || place(request->stdout_fd, 1) < 0 || place(request->stderr_fd, 2) < 0) fail(report, 2);
    if (request->directory != NULL && chdir(request->directory) < 0) fail(report, 3);
    if (request->switch_ids) {
        if (syscall(SYS_setgroups, request->group_count, request->groups) < 0) fail(report, 4);
        if (syscall(SYS_setresgid, request->gid, request->gid, request->gid) < 0) fail(report, 5);
        if (syscall(SYS_setresuid, request->uid, request->uid, request->uid) < 0) fail(report, 6);
    }
    close_others_on_exec();
    execve(request->path, request->argv, request->envp);
    fail(report, 7);
}

/// clone3 that runs `fn(argument)` in the child on the stack `args` names, as glibc's own
/// clone3 does (glibc 2.36 does not export it): the child must not return into the parent's
/// frames, which it shares under CLONE_VM. Returns the child's pid (or -errno) in the parent.
static long clone3_running(struct aspire_clone_args *args, void (*fn)(void *), void *argument) {
#if defined(__x86_64__)
    long result;
    register void (*function)(void *) __asm__("r12") = fn;
    register void *context __asm__("r13") = argument;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "xor %%ebp, %%ebp\n\t"
        "mov %%r13, %%rdi\n\t"
        "call *%%r12\n\t"
        "mov $127, %%edi\n\t"
        "mov $60, %%eax\n\t"
        "syscall\n\t"
        "hlt\n"
        "1:\n\t"
        : "=a"(result)
        : "0"((long)SYS_clone3), "D"(args), "S"(sizeof *args), "r"(function), "r"(context)
        : "rcx", "r11", "memory");
    return result;
#elif defined(__aarch64__)
    register long x0 __asm__("x0") = (long)args;
    register long x1 __asm__("x1") = (long)sizeof *args;
    register long x8 __asm__("x8") = SYS_clone3;
    register void (*function)(void *) __asm__("x19") = fn;
    register void *context __asm__("x20") = argument;
    __asm__ volatile(
        "svc #0\n\t"
        "cbnz x0, 1f\n\t"
        "mov x29, xzr\n\t"
        "mov x30, xzr\n\t"
        "mov x0, x20\n\t"
        "blr x19\n\t"
        "mov x0, #127\n\t"
        "mov x8, #93\n\t"
        "svc #0\n"
        "1:\n\t"
        : "+r"(x0)
        : "r"(x1), "r"(x8), "r"(function), "r"(context)
        : "x30", "memory");
    return x0;
#else
    (void)args;
    (void)fn;
    (void)argument;
    return -ENOSYS;
#endif
}

/// The child's stack: its setup needs little (the descriptor listing's 4 KiB at most).
enum { child_stack_size = 64 * 1024 };

pid_t aspire_spawn(const aspire_spawn_request *request, int *pidfd, const char **failed_step) {
    *failed_step = steps[0];
    // A guard page below it, so an overflow faults instead of writing over the agent's memory.
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *stack = mmap(NULL, child_stack_size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return -1;
    mprotect(stack, page, PROT_NONE);

    volatile struct failure failure = {0, -1};
    struct child_context context = {request, &failure};

    // No signal handler of the agent's may run in the child before its reset.
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);

    // CLONE_VM | CLONE_VFORK, as posix_spawn: no copy of the agent's page tables (a fork's
    // copy, and the copy-on-write faults after it, cost more than the exec), and this thread
    // waits until the child has exec'd or died.
    int descriptor = -1;
    struct aspire_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD;
    args.pidfd = (uint64_t)(uintptr_t)&descriptor;
    args.exit_signal = SIGCHLD;
    args.stack = (uint64_t)(uintptr_t)(stack + page);
    args.stack_size = child_stack_size;
    if (request->cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)request->cgroup_fd;
    }
    long pid = clone3_running(&args, child, &context);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    munmap(stack, child_stack_size + page);
    if (pid < 0) {
        errno = (int)-pid;
        return -1;
    }
    if (failure.step >= 0) {
        siginfo_t info;
        while (waitid(P_PIDFD, (id_t)descriptor, &info, WEXITED) < 0 && errno == EINTR) {}
        close(descriptor);
        *failed_step = steps[failure.step < 8 ? failure.step : 7];
        errno = failure.error;
        return -1;
    }
    *pidfd = descriptor;
    return (pid_t)pid;
}

int aspire_spawn_reap(int pidfd, int *code, int *signaled) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int rc;
    do {
        rc = waitid(P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOHANG);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) return -1;
    if (info.si_pid == 0) return 0;
    *signaled = info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED;
    *code = info.si_status;
    return 1;
}

int aspire_pipe(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int aspire_spawn_actions_closefrom(posix_spawn_file_actions_t *actions, int lowest) {
    return posix_spawn_file_actions_addclosefrom_np(actions, lowest);
}
