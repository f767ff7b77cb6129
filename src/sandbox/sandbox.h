/*
 * sandbox.h - what this machine can enforce, and the bubblewrap command line
 * that runs one execution environment (docs/sandbox.md).
 *
 * Three pieces, none of which spawns an environment or touches libuv:
 *   - the probe (probe.c), run once at start, synchronously: is bubblewrap
 *     there and can it create namespaces, is libseccomp usable, which cgroup
 *     hierarchy (v1 or v2) can enforce memory, pids and cpu, and where our own
 *     group is in it. It ends in one summary line for the log.
 *   - the seccomp filter (seccomp.c): built once with libseccomp into BPF
 *     bytes, written to a fresh memfd for every bwrap that loads it.
 *   - the command builder (cmd.c): an environment spec in, bwrap's argv out.
 *     Pure but for existence checks of optional host paths, which go through
 *     a lookup callback that tests replace.
 *
 * THREADS: the probe blocks (it runs bwrap); call it before the loop starts.
 * Everything else is reentrant and may run on any thread.
 */
#ifndef REALM_SANDBOX_SANDBOX_H
#define REALM_SANDBOX_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* ------------------------------------------------------------------------ */
/* Probe                                                                    */
/* ------------------------------------------------------------------------ */

/* bwrap options that not every version has (found in `bwrap --help`). */
#define REALM_SANDBOX_BWRAP_SIZE 0x1u           /* --size before --tmpfs (0.5) */
#define REALM_SANDBOX_BWRAP_CGROUP_TRY 0x2u     /* --unshare-cgroup-try */
#define REALM_SANDBOX_BWRAP_DISABLE_USERNS 0x4u /* --disable-userns (0.8) */
#define REALM_SANDBOX_BWRAP_ALL 0x7u

typedef enum {
    REALM_SANDBOX_CG_NONE = 0, /* not enforceable here */
    REALM_SANDBOX_CG_V1 = 1,   /* a legacy hierarchy with that controller */
    REALM_SANDBOX_CG_V2 = 2,   /* the unified hierarchy */
} realm_sandbox_cg_version_t;

typedef enum {
    REALM_SANDBOX_CG_MEMORY = 0,
    REALM_SANDBOX_CG_PIDS = 1,
    REALM_SANDBOX_CG_CPU = 2,
    REALM_SANDBOX_CG_COUNT = 3,
} realm_sandbox_controller_t;

typedef struct {
    realm_sandbox_cg_version_t version; /* hierarchy that enforces it */
    char *dir; /* owned: our own group there (environments' groups go below it); NULL if NONE */
} realm_sandbox_cgroup_t;

typedef struct {
    char *bwrap_path;           /* owned: absolute path of bwrap; NULL if not found */
    char *bwrap_version;        /* owned: "0.8.0"; NULL if unknown */
    unsigned bwrap_features;    /* REALM_SANDBOX_BWRAP_* its --help lists */
    int is_bwrap_usable;        /* the namespace test run exited 0 (as root: also as nobody) */
    int is_unprivileged_usable; /* bwrap runs as an unprivileged host user (always when we are not
                                   root) */
    char *bwrap_error;          /* owned: why not (first stderr line or exit status); or NULL */
    int has_cgroup_ns;          /* the kernel has cgroup namespaces (/proc/self/ns/cgroup) */
    int has_seccomp;            /* libseccomp built and exported our filter */
    char *seccomp_error;        /* owned: why not; or NULL */
    char *cgroup2_dir;          /* owned: our group in the unified hierarchy; NULL if none */
    char *cgroup2_controllers;  /* owned: its cgroup.controllers; or NULL */
    realm_sandbox_cgroup_t cg[REALM_SANDBOX_CG_COUNT]; /* per controller, the best usable */
    char *summary; /* owned: one line for the log (realm_sandbox_probe_summarize) */
} realm_sandbox_probe_t;

/*
 * Probes this machine (blocking: it runs `bwrap --version`, `bwrap --help`
 * and one namespace test run, creates and removes one empty child cgroup per
 * hierarchy, and builds the seccomp filter). Never fails: what is missing is
 * recorded in *p and in p->summary. bwrap is searched on $PATH, then
 * /usr/bin/bwrap. Release with realm_sandbox_probe_dispose().
 */
void realm_sandbox_probe_init(realm_sandbox_probe_t *p);
/* Frees every owned field and zeroes *p; safe on a zeroed or disposed probe. */
void realm_sandbox_probe_dispose(realm_sandbox_probe_t *p);
/*
 * (Re)builds p->summary from the other fields (realm_sandbox_probe_init calls
 * it). Pure, so tests can summarize a hand-made probe. Example:
 *   "sandbox: bubblewrap 0.8.0 (user, mount, pid, ipc, uts, net, cgroup
 *    namespaces), seccomp on, cgroup v1 memory+pids+cpu"
 * Returns p->summary (borrowed from p).
 */
const char *realm_sandbox_probe_summarize(realm_sandbox_probe_t *p);

/*
 * Finds our own group for a controller from the text of /proc/self/mountinfo
 * and /proc/self/cgroup. controller is "memory", "pids", "cpu"... for a v1
 * hierarchy that lists it among its super options, or NULL for the cgroup2
 * mount. Pure. Returns a new string (free() it): mount point + our path below
 * the mount's root, e.g. "/sys/fs/cgroup/memory/process_api/abc"; or NULL if
 * no such hierarchy is mounted or we are outside its mounted part.
 */
char *realm_sandbox_cgroup_find(const char *mountinfo, const char *proc_cgroup,
                                const char *controller);

/* ------------------------------------------------------------------------ */
/* Cgroups of one environment (cgroup.c)                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    uint64_t memory_bytes; /* memory (and swap) limit; 0: none */
    uint64_t pids_max;     /* most processes and threads; 0: none */
    uint64_t cpu_weight;   /* 1..10000, 100 is the default share; 0: default */
} realm_sandbox_limits_t;

typedef struct {
    /* owned: the environment's group per controller, below our own group
     * there; NULL where the probe found no way to enforce it. Controllers
     * of one hierarchy share a directory. */
    char *dirs[REALM_SANDBOX_CG_COUNT];
    /* Static names of the memory group's files, chosen once at create (each
     * invocation reads them); NULL without a memory group. */
    const char *oom_file;  /* v2 memory.events, v1 memory.oom_control */
    const char *peak_file; /* v2 memory.peak (5.19+), v1 memory.max_usage_in_bytes */
    int oom_fd, peak_fd;   /* owned: those files, open until destroy (pread at 0); or -1 */
} realm_sandbox_group_t;

/*
 * Creates the groups named name (one path segment) below our own group in
 * each enforcing hierarchy (a v2 controller our group cannot hand down to a
 * child is left out: its dirs[] entry stays NULL) and writes the limits: v1 memory.limit_in_bytes
 * and memory.memsw.limit_in_bytes (no swap escape), pids.max, cpu.shares;
 * v2 memory.max, memory.swap.max 0, pids.max, cpu.weight. Blocking (a few
 * small writes). Returns 0, or -1 with a message in err and nothing left.
 */
int realm_sandbox_group_create(realm_sandbox_group_t *g, const realm_sandbox_probe_t *p,
                               const char *name, const realm_sandbox_limits_t *lim, char *err,
                               size_t err_len);
/* Moves pid into every group (cgroup.procs). Returns 0 or a negative errno. */
int realm_sandbox_group_add(const realm_sandbox_group_t *g, int pid);
/* SIGKILLs every process in the groups; returns how many were signalled. */
int realm_sandbox_group_kill(const realm_sandbox_group_t *g);
/* 1 if the kernel OOM-killed a process of the group (memory limit), else 0. */
int realm_sandbox_group_oom(const realm_sandbox_group_t *g);
/* Highest memory use of the group so far in bytes, or 0 when not measured. */
uint64_t realm_sandbox_group_memory_peak(const realm_sandbox_group_t *g);
/*
 * Kills what is left and removes the groups. Returns 0 (g is freed), or
 * -EBUSY while killed processes have not exited yet (g is kept: call again
 * once the environment's process has been reaped).
 */
int realm_sandbox_group_destroy(realm_sandbox_group_t *g);
/*
 * Groups named prefix + "<pid>-<n>" (prefix "env-": exec's environments)
 * whose server pid no longer runs: what a server killed before it could
 * stop its environments left. Their processes are SIGKILLed and the empty
 * groups removed (a group still busy is tried again at the next sweep).
 * Groups of servers that run are never touched. Returns how many group
 * directories (one per controller) had processes to kill.
 */
int realm_sandbox_sweep_dead(const realm_sandbox_probe_t *p, const char *prefix);

/*
 * Is the peer of an accepted loopback TCP connection a process of the group?
 * fd is our accepted IPv4 socket. The peer's socket is found in
 * /proc/net/tcp (its local address is our remote one and the other way
 * round), then looked for among the file descriptors of the processes in
 * the group's cgroup.procs. This is how a per-environment runtime API port
 * refuses processes Realm did not start in that environment. Returns 1 yes,
 * 0 no, or a negative errno when it cannot tell (treat as no).
 */
int realm_sandbox_peer_in_group(const realm_sandbox_group_t *g, int fd);
/*
 * The two halves of realm_sandbox_peer_in_group, for a caller that asks of
 * many groups: the inode of the peer's socket (0 if not found: not an IPv4
 * loopback peer of this host), and whether a process of the group holds it
 * (1 yes, 0 no, negative errno when it cannot tell).
 */
unsigned long realm_sandbox_peer_inode(int fd);
int realm_sandbox_group_holds(const realm_sandbox_group_t *g, unsigned long inode);

/*
 * A TCP socket listening on 127.0.0.1:port inside the network namespace of
 * process pid (a sandbox without the host's network), bound before that
 * namespace's loopback is up (IP_FREEBIND; bwrap brings it up). The namespace switch happens on a
 * short-lived thread, so the caller's own namespace never changes. Returns 0 and the fd
 * (non-blocking, close-on-exec), or a negative errno. Blocking (a thread
 * start and join).
 */
int realm_sandbox_netns_listen(int pid, int port, int *fd_out);

/* ------------------------------------------------------------------------ */
/* The stage: root's preparation in a spawned child (stage.c)               */
/* ------------------------------------------------------------------------ */

/* Where staged paths live, in the child's own mount namespace (a tmpfs
 * mounted over /tmp there; bwrap's own working directory goes there too). */
#define REALM_SANDBOX_STAGE_DIR "/tmp/.realm"
#define REALM_SANDBOX_STAGE_MAX_BINDS 16

typedef struct {
    const char *src; /* host path, resolved with root's rights */
    const char *dst; /* where it appears, below REALM_SANDBOX_STAGE_DIR */
} realm_sandbox_stage_bind_t;

typedef struct {
    const realm_sandbox_stage_bind_t *binds; /* borrowed */
    size_t n_binds;                          /* at most REALM_SANDBOX_STAGE_MAX_BINDS */
    /* A disk for /tmp: a copy of an empty ext4 image of scratch_mb MiB
     * (made once per size in scratch_dir with mkfs.ext4), loop-mounted at
     * scratch_dst, owned by uid:gid, mode 1777. NULL: none. */
    const char *scratch_dir;
    uint64_t scratch_mb;
    const char *scratch_dst;
    const char *file_dst;  /* a small file to write (resolv.conf); or NULL */
    const char *file_text; /* its text */
    int tun;               /* a /dev/net/tun node the unprivileged user can open */
    uint32_t uid, gid;     /* become this host user at the end; 0: stay */
} realm_sandbox_stage_t;

/*
 * Run in a spawned child, as root, just before exec: makes a private mount
 * namespace (slave of the host's, so nothing mounted here is seen outside),
 * covers /tmp with a small tmpfs, binds each source at its staged path (so
 * that an unprivileged bwrap can reach sources below directories only
 * root may enter), mounts the scratch disk, writes the file, makes the tun
 * node, then drops to uid:gid for good (no supplementary groups). Nothing
 * is done in the namespace when the stage has nothing to mount. Returns 0,
 * or -1 with a message in err.
 */
int realm_sandbox_stage_apply(const realm_sandbox_stage_t *st, char *err, size_t err_len);
/* 1 if this process can give environments a scratch disk: it is root, and
 * mkfs.ext4 and /dev/loop-control are there. */
int realm_sandbox_scratch_usable(void);

/* ------------------------------------------------------------------------ */
/* Seccomp                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Builds the environments' seccomp filter for the native architecture and
 * appends its BPF program to *bpf. Default allow; EPERM for mount, umount2,
 * pivot_root, swapon/off, reboot, kexec_*, module loading, ptrace, keyrings,
 * bpf, perf_event_open, userfaultfd, *_handle_at, setns, unshare, acct,
 * quotactl, lookup_dcookie, iopl/ioperm (and a few more, see seccomp.c),
 * clone with any CLONE_NEW* flag, and personality() setting any flag but
 * UNAME26 (the 0xffffffff query is allowed); ENOSYS for clone3 (its flags
 * are behind a pointer; libc falls back to clone). Syscalls of a foreign ABI
 * (i386, x32) kill the process. Returns 0, or a negative errno from
 * libseccomp; *err (may be NULL) then gets a borrowed static message.
 */
int realm_sandbox_seccomp_build(realm_buf_t *bpf, const char **err);
/*
 * Writes a BPF program to a new memfd (close-on-exec, offset 0) for one bwrap
 * `--seccomp FD`: bwrap reads it from the current offset, so each spawn needs
 * its own. The spawner maps it to the child's fd number it names in the spec.
 * Returns 0 and the fd in *fd_out (caller closes), or a negative errno.
 */
int realm_sandbox_seccomp_memfd(const void *bpf, size_t len, int *fd_out);

/* ------------------------------------------------------------------------ */
/* Command builder                                                          */
/* ------------------------------------------------------------------------ */

/* Where things appear inside every sandbox. */
#define REALM_SANDBOX_TASK_DIR "/var/task"
#define REALM_SANDBOX_RUNTIME_DIR "/opt"
#define REALM_SANDBOX_RUNTIME_SOCKET "/run/realm/runtime.sock"
/* With ready_fds: bwrap writes its JSON info (the sandbox's pid) to this child
 * fd and waits for a byte on the next before it runs the command. */
#define REALM_SANDBOX_INFO_FD 5
#define REALM_SANDBOX_BLOCK_FD 6

typedef enum {
    REALM_SANDBOX_PATH_MISSING = 0,
    REALM_SANDBOX_PATH_DIR = 1,
    REALM_SANDBOX_PATH_FILE = 2, /* anything else that exists */
    REALM_SANDBOX_PATH_SYMLINK = 3,
} realm_sandbox_path_kind_t;

/*
 * Looks up a host path. With follow set it must follow symlinks (stat) and
 * never answer SYMLINK (a dangling link is MISSING); without, it must not
 * (lstat) and for a SYMLINK copy the link's target, NUL-terminated, into
 * target (target_len bytes; a target that does not fit is MISSING).
 */
typedef realm_sandbox_path_kind_t (*realm_sandbox_lookup_cb)(const char *path, int follow,
                                                             char *target, size_t target_len,
                                                             void *data);

typedef struct {
    const char *bwrap_path;  /* borrowed: argv[0]; NULL means "bwrap" */
    unsigned bwrap_features; /* REALM_SANDBOX_BWRAP_* (from the probe) */
    const char *code_dir;    /* borrowed: host dir, read-only at /var/task (required) */
    const char *runtime_dir; /* borrowed: host dir, read-only at /opt; or NULL */
    size_t tmp_mb;           /* size limit of the private /tmp; 0: no --size */
    const char *tmp_dir;     /* borrowed: host dir bound writable at /tmp instead of a tmpfs;
                                or NULL */
    const char *resolv_conf; /* borrowed: host file at /etc/resolv.conf instead of the host's;
                                or NULL */
    const char
        *runtime_socket; /* borrowed: host unix socket, at REALM_SANDBOX_RUNTIME_SOCKET; or NULL */
    const char *const *env; /* borrowed: NULL-terminated "NAME=value" list; or NULL */
    /* borrowed: more read-only binds, HOST, SANDBOX_PATH pairs, NULL-terminated;
     * or NULL. A sandbox path must not lie below another read-only bind. */
    const char *const *ro_binds;
    int has_network;         /* 0: a new, empty network namespace */
    const char *const *argv; /* borrowed: NULL-terminated command; argv[0] is a sandbox path */
    uint32_t uid;            /* uid inside the sandbox */
    uint32_t gid;            /* gid inside the sandbox */
    int seccomp_fd;          /* the child's fd number of the BPF memfd; -1 for none */
    int ready_fds; /* 1: --info-fd REALM_SANDBOX_INFO_FD --block-fd REALM_SANDBOX_BLOCK_FD */
    realm_sandbox_lookup_cb lookup; /* NULL: stat/lstat on this host */
    void *lookup_data;              /* passed to lookup */
} realm_sandbox_spec_t;

typedef struct {
    char **argv;       /* owned, NULL-terminated: argv[0] is the bwrap path */
    size_t argc;       /* entries before the NULL */
    size_t command_at; /* index of the sandboxed command (argv[command_at - 1] is "--") */
} realm_sandbox_cmd_t;

/*
 * Builds bwrap's argv for spec into *cmd (caller's storage). Environment
 * variables reach the sandbox only as --clearenv + --setenv pairs. Optional
 * host system paths (/lib64, /etc/resolv.conf...) that the lookup says are
 * missing are left out; /bin, /sbin, /lib* that are symlinks on the host
 * (merged /usr) become the same symlinks inside.
 * Returns 0, or -EINVAL (nothing to free) for a missing code_dir or argv, a
 * relative path, or an env entry without '=' or with an empty name.
 */
int realm_sandbox_cmd_init(realm_sandbox_cmd_t *cmd, const realm_sandbox_spec_t *spec);
/* Frees argv; safe on a zeroed or disposed cmd. */
void realm_sandbox_cmd_dispose(realm_sandbox_cmd_t *cmd);
/*
 * Host argv of a command is readable by every host user (/proc/PID/cmdline),
 * and --setenv values may be secrets. This writes bwrap's options,
 * argv[1 .. command_at - 2], NUL-separated to a new memfd (close-on-exec,
 * offset 0) so that the spawner can run, with the memfd as child fd N:
 *   argv[0] --args N -- argv[command_at] ...
 * (bwrap ignores a command inside --args data). Returns 0 and the fd
 * (caller closes), or a negative errno.
 */
int realm_sandbox_cmd_args_memfd(const realm_sandbox_cmd_t *cmd, int *fd_out);

#endif
