/*
 * spawn.h - one sandboxed process on the loop: bubblewrap started inside
 * the environment's cgroups, its stdout and stderr read as they come, its
 * end reported with the exit status and whether the kernel OOM-killed it.
 *
 * DESIGN: the process must be in its cgroups before bwrap forks its own
 * children, and libuv has no pre-exec hook, so the program spawned is a
 * trampoline: this binary again (self_exe), in the `__spawn` mode that
 * writes its own pid into each group's cgroup.procs and then execs bwrap
 * (realm_spawn_trampoline_main, called by main() for `realm __spawn`).
 * The seccomp program and bwrap's options (which carry the environment
 * variables, so they stay off the host's /proc/PID/cmdline) travel as
 * memfds at child fds 3 and 4.
 *
 * LIFETIME: realm_spawn_start -> callbacks -> on_exit (always, exactly once
 * unless realm_spawn_free comes first) -> realm_spawn_free. Freeing a live
 * process kills it first. The cgroups are removed after the process is
 * gone (retried on a timer while killed members are still exiting).
 * THREADS: loop thread only.
 */
#ifndef REALM_EXEC_SPAWN_H
#define REALM_EXEC_SPAWN_H

#include "sandbox/sandbox.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct realm_spawn_s realm_spawn_t;

#define REALM_SPAWN_SECCOMP_FD 3 /* the child's fd of the BPF memfd */
#define REALM_SPAWN_ARGS_FD 4    /* the child's fd of bwrap's --args memfd */

typedef struct {
    /* Output of the process: stream 1 (stdout) or 2 (stderr); data borrowed. */
    void (*on_output)(realm_spawn_t *sp, int stream, const char *bytes, size_t len, void *data);
    /* It ended: exit_status, or term_signal > 0; oom 1 if the memory limit killed it. */
    void (*on_exit)(realm_spawn_t *sp, int64_t exit_status, int term_signal, int oom, void *data);
    /* With opts.wait_ready: the sandbox exists (pid: its first process, in the
     * host's pid namespace) and waits. Return 0 to run the command at once,
     * or 1 to hold it until realm_spawn_go. */
    int (*on_ready)(realm_spawn_t *sp, int pid, void *data);
} realm_spawn_cb_t;

typedef struct {
    const char *self_exe;               /* this binary, for the trampoline (/proc/self/exe) */
    const realm_sandbox_probe_t *probe; /* borrowed; must outlive the spawn */
    const void *bpf;                    /* the seccomp program (realm_sandbox_seccomp_build) */
    size_t bpf_len;                     /* 0: no seccomp filter */
    realm_sandbox_spec_t spec;          /* seccomp_fd is set by start */
    realm_sandbox_limits_t limits;
    const char *name; /* cgroup name, one path segment, unique */
    int wait_ready;   /* hold the command until on_ready has run */
    /* Only when we are root (ignored otherwise): bwrap runs as this
     * unprivileged host user, its bind sources staged by the trampoline
     * (realm_sandbox_stage_apply); 0: bwrap runs as we do. */
    uint32_t host_uid, host_gid;
    const char *scratch_dir; /* root only: /tmp is a disk of spec.tmp_mb made here; NULL: tmpfs */
    const char *resolv_text; /* root only: the sandbox's resolv.conf; NULL: the host's */
} realm_spawn_opts_t;

/* Starts it. Returns 0 and *out, or -1 with a message in err (nothing left). */
int realm_spawn_start(uv_loop_t *loop, const realm_spawn_opts_t *o, const realm_spawn_cb_t *cb,
                      void *data, realm_spawn_t **out, char *err, size_t err_len);
/* Lets a sandbox held by on_ready run its command (once; later calls do nothing). */
void realm_spawn_go(realm_spawn_t *sp);
/* Reads what its stdout and stderr hold right now (without waiting) and
 * hands it to on_output at once. */
void realm_spawn_drain(realm_spawn_t *sp);
/* SIGKILLs the process and everything in its cgroups (on_exit follows). */
void realm_spawn_kill(realm_spawn_t *sp);
/* Host pid of the spawned trampoline/bwrap. */
int realm_spawn_pid(const realm_spawn_t *sp);
/* The environment's cgroups (borrowed; for realm_sandbox_group_holds). */
const realm_sandbox_group_t *realm_spawn_group(const realm_spawn_t *sp);
/* Kills if still running, closes handles, removes the cgroups, frees. */
void realm_spawn_free(realm_spawn_t *sp);

/*
 * `realm __spawn [--cgroup PROCS_FILE]... [--bind SRC DST]... [--scratch DIR
 * MB DST] [--file DST TEXT] [--tun] [--user UID:GID] -- PROGRAM ARG...`:
 * writes this process's pid to each cgroup.procs file, applies the stage
 * (realm_sandbox_stage_apply: binds, scratch disk, file, tun node, then the
 * unprivileged user), then execs PROGRAM with an empty environment.
 * Returns only on error (exit code 127).
 */
int realm_spawn_trampoline_main(int argc, char **argv);

#endif
