/*
 * cmd.c - the bubblewrap command line for one execution environment (see
 * sandbox.h, docs/sandbox.md).
 *
 * DESIGN: the sandbox starts from bwrap's empty tmpfs root and gets only:
 *   /usr read-only; /bin, /sbin, /lib, /lib32, /lib64 as on the host - the
 *   same symlinks on a merged-/usr system, read-only binds otherwise, nothing
 *   when absent; the few /etc files that name resolution, TLS, time zones and
 *   the dynamic linker read (each only if it exists on the host); fresh /proc
 *   (of the new pid namespace) and /dev (null, zero, random, tty...); a
 *   private size-limited /tmp; the code at /var/task and the runtime at /opt,
 *   read-only; the environment's own runtime API socket. The root is then
 *   remounted read-only, so /tmp is the only writable place, as on Lambda.
 * Order matters to bwrap: mounts are made in argument order, --size applies
 * to the next --tmpfs only, and --remount-ro / must come after everything
 * mounted below /.
 *
 * Namespaces: user, mount (always, by bwrap), pid, ipc, uts, cgroup (if the
 * kernel has it) and net when the function has no network. Capabilities are
 * all dropped and the process gets no_new_privs (bwrap sets it for seccomp).
 * The environment is cleared and rebuilt from --setenv pairs only.
 *
 * THREADS: any thread; no shared state.
 */
#include "sandbox/sandbox.h"

#include "sandbox/internal.h"

#include "base/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Top-level directories that merged-/usr systems make symlinks into /usr. */
static const char *const usr_merge_dirs[] = {"/bin", "/sbin", "/lib", "/lib32", "/lib64"};

/* Read-only system files and directories a Node or Python runtime reads. */
static const char *const etc_paths[] = {
    "/etc/ssl", /* CA bundle (Python's ssl, OpenSSL) */
    "/etc/ca-certificates",
    "/etc/resolv.conf", /* DNS */
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/localtime",    /* TZ default */
    "/etc/ld.so.cache",  /* the dynamic linker's library index */
    "/etc/alternatives", /* Debian's /usr/bin/<tool> -> /etc/alternatives links */
    "/etc/mime.types",
};

/* procfs entries that change the machine (sysctls, SysRq, IRQ affinity,
 * PCI/USB, file system tunables, pressure triggers): bound read-only over
 * the sandbox's /proc, each only if the host has it. */
static const char *const proc_ro_paths[] = {
    "/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs", "/proc/pressure",
};

/* procfs files that show other processes or the kernel's memory: covered
 * with /dev/null. */
static const char *const proc_hidden_paths[] = {
    "/proc/kcore",       "/proc/keys",          "/proc/key-users", "/proc/timer_list",
    "/proc/sched_debug", "/proc/latency_stats", "/proc/kallsyms",
};

static realm_sandbox_path_kind_t host_lookup(const char *path, int follow, char *target,
                                             size_t target_len, void *data)
{
    struct stat st;
    if ((follow ? stat(path, &st) : lstat(path, &st)) < 0) return REALM_SANDBOX_PATH_MISSING;
    if (S_ISLNK(st.st_mode)) {
        ssize_t n = readlink(path, target, target_len);
        if (n < 0 || (size_t)n >= target_len) return REALM_SANDBOX_PATH_MISSING;
        target[n] = '\0';
        return REALM_SANDBOX_PATH_SYMLINK;
    }
    return S_ISDIR(st.st_mode) ? REALM_SANDBOX_PATH_DIR : REALM_SANDBOX_PATH_FILE;
}

/* ------------------------------------------------------------------------ */
/* A growing argv                                                           */
/* ------------------------------------------------------------------------ */

typedef struct {
    char **v;
    size_t len;
    size_t cap;
} argv_t;

static void push(argv_t *a, const char *s)
{
    if (a->len + 2 > a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->v = realm_realloc(a->v, a->cap * sizeof(*a->v));
    }
    a->v[a->len++] = realm_strdup(s);
    a->v[a->len] = NULL;
}

static void push2(argv_t *a, const char *s1, const char *s2)
{
    push(a, s1);
    push(a, s2);
}

static void push3(argv_t *a, const char *s1, const char *s2, const char *s3)
{
    push(a, s1);
    push(a, s2);
    push(a, s3);
}

/* ------------------------------------------------------------------------ */
/* Builder                                                                  */
/* ------------------------------------------------------------------------ */

static int check_spec(const realm_sandbox_spec_t *spec)
{
    if (!spec->code_dir || spec->code_dir[0] != '/') return -EINVAL;
    if (spec->runtime_dir && spec->runtime_dir[0] != '/') return -EINVAL;
    if (spec->runtime_socket && spec->runtime_socket[0] != '/') return -EINVAL;
    if (spec->tmp_dir && spec->tmp_dir[0] != '/') return -EINVAL;
    if (spec->resolv_conf && spec->resolv_conf[0] != '/') return -EINVAL;
    if (spec->ro_binds)
        for (const char *const *b = spec->ro_binds; *b; b += 2)
            if ((*b)[0] != '/' || !b[1] || b[1][0] != '/') return -EINVAL;
    if (!spec->argv || !spec->argv[0] || !spec->argv[0][0]) return -EINVAL;
    if (spec->env)
        for (const char *const *e = spec->env; *e; e++) {
            const char *eq = strchr(*e, '=');
            if (!eq || eq == *e) return -EINVAL;
        }
    return 0;
}

int realm_sandbox_cmd_init(realm_sandbox_cmd_t *cmd, const realm_sandbox_spec_t *spec)
{
    memset(cmd, 0, sizeof(*cmd));
    int rc = check_spec(spec);
    if (rc < 0) return rc;

    realm_sandbox_lookup_cb lookup = spec->lookup ? spec->lookup : host_lookup;
    unsigned feat = spec->bwrap_features;
    argv_t a = {0};
    char num[32];
    char target[PATH_MAX];

    push(&a, spec->bwrap_path ? spec->bwrap_path : "bwrap");

    /* Namespaces and process attributes. */
    push(&a, "--unshare-user");
    push(&a, "--unshare-ipc");
    push(&a, "--unshare-pid");
    push(&a, "--unshare-uts");
    if (feat & REALM_SANDBOX_BWRAP_CGROUP_TRY) push(&a, "--unshare-cgroup-try");
    if (!spec->has_network) push(&a, "--unshare-net");
    /* Nested user namespaces: max_user_namespaces=0 inside (seccomp also denies). */
    if (feat & REALM_SANDBOX_BWRAP_DISABLE_USERNS) push(&a, "--disable-userns");
    push(&a, "--die-with-parent");
    push(&a, "--new-session");
    push2(&a, "--cap-drop", "ALL");
    snprintf(num, sizeof(num), "%u", (unsigned)spec->uid);
    push2(&a, "--uid", num);
    snprintf(num, sizeof(num), "%u", (unsigned)spec->gid);
    push2(&a, "--gid", num);
    push2(&a, "--hostname", "realm");

    /* Environment: only what the spec lists. */
    push(&a, "--clearenv");
    if (spec->env)
        for (const char *const *e = spec->env; *e; e++) {
            const char *eq = strchr(*e, '=');
            char *name = realm_strndup(*e, (size_t)(eq - *e));
            push3(&a, "--setenv", name, eq + 1);
            free(name);
        }

    /* System directories. */
    push3(&a, "--ro-bind", "/usr", "/usr");
    for (size_t i = 0; i < sizeof(usr_merge_dirs) / sizeof(usr_merge_dirs[0]); i++) {
        const char *d = usr_merge_dirs[i];
        switch (lookup(d, 0, target, sizeof(target), spec->lookup_data)) {
        case REALM_SANDBOX_PATH_SYMLINK:
            push3(&a, "--symlink", target, d);
            break;
        case REALM_SANDBOX_PATH_DIR:
            push3(&a, "--ro-bind", d, d);
            break;
        default:
            break;
        }
    }
    for (size_t i = 0; i < sizeof(etc_paths) / sizeof(etc_paths[0]); i++) {
        const char *p = etc_paths[i];
        if (spec->resolv_conf && strcmp(p, "/etc/resolv.conf") == 0) {
            push3(&a, "--ro-bind", spec->resolv_conf, p);
            continue;
        }
        if (lookup(p, 1, target, sizeof(target), spec->lookup_data) != REALM_SANDBOX_PATH_MISSING)
            push3(&a, "--ro-bind", p, p);
    }
    push2(&a, "--proc", "/proc");
    /* The parts of procfs that act on the whole machine, read-only; the
     * timer list (other processes' names and pids) hidden. */
    for (size_t i = 0; i < sizeof(proc_ro_paths) / sizeof(proc_ro_paths[0]); i++) {
        const char *p = proc_ro_paths[i];
        if (lookup(p, 1, target, sizeof(target), spec->lookup_data) != REALM_SANDBOX_PATH_MISSING)
            push3(&a, "--ro-bind", p, p);
    }
    for (size_t i = 0; i < sizeof(proc_hidden_paths) / sizeof(proc_hidden_paths[0]); i++) {
        const char *p = proc_hidden_paths[i];
        if (lookup(p, 1, target, sizeof(target), spec->lookup_data) == REALM_SANDBOX_PATH_FILE)
            push3(&a, "--ro-bind", "/dev/null", p);
    }
    push2(&a, "--dev", "/dev");

    /* Private /tmp: a disk of its own, or a size-limited tmpfs. */
    if (spec->tmp_dir) {
        push3(&a, "--bind", spec->tmp_dir, "/tmp");
    } else {
        if (spec->tmp_mb && (feat & REALM_SANDBOX_BWRAP_SIZE)) {
            snprintf(num, sizeof(num), "%llu",
                     (unsigned long long)spec->tmp_mb * 1024ull * 1024ull);
            push2(&a, "--size", num);
        }
        push2(&a, "--tmpfs", "/tmp");
    }

    /* The function. */
    push3(&a, "--ro-bind", spec->code_dir, REALM_SANDBOX_TASK_DIR);
    if (spec->runtime_dir) push3(&a, "--ro-bind", spec->runtime_dir, REALM_SANDBOX_RUNTIME_DIR);
    if (spec->runtime_socket)
        push3(&a, "--ro-bind", spec->runtime_socket, REALM_SANDBOX_RUNTIME_SOCKET);
    if (spec->ro_binds)
        for (const char *const *b = spec->ro_binds; *b; b += 2)
            push3(&a, "--ro-bind", b[0], b[1]);

    /* Everything is mounted: nothing but /tmp stays writable (bwrap's /dev
     * is a tmpfs of its own; there is no /dev/shm on Lambda either). */
    push2(&a, "--remount-ro", "/dev");
    push2(&a, "--remount-ro", "/");
    push2(&a, "--chdir", REALM_SANDBOX_TASK_DIR);
    if (spec->seccomp_fd >= 0) {
        snprintf(num, sizeof(num), "%d", spec->seccomp_fd);
        push2(&a, "--seccomp", num);
    }
    if (spec->ready_fds) {
        snprintf(num, sizeof(num), "%d", REALM_SANDBOX_INFO_FD);
        push2(&a, "--info-fd", num);
        snprintf(num, sizeof(num), "%d", REALM_SANDBOX_BLOCK_FD);
        push2(&a, "--block-fd", num);
    }

    push(&a, "--");
    cmd->command_at = a.len;
    for (const char *const *p = spec->argv; *p; p++)
        push(&a, *p);

    cmd->argv = a.v;
    cmd->argc = a.len;
    return 0;
}

void realm_sandbox_cmd_dispose(realm_sandbox_cmd_t *cmd)
{
    if (cmd->argv)
        for (size_t i = 0; i < cmd->argc; i++)
            free(cmd->argv[i]);
    free(cmd->argv);
    cmd->argv = NULL;
    cmd->argc = 0;
    cmd->command_at = 0;
}

int realm_sandbox_cmd_args_memfd(const realm_sandbox_cmd_t *cmd, int *fd_out)
{
    if (cmd->command_at < 2) return -EINVAL;
    realm_buf_t b;
    realm_buf_init(&b);
    for (size_t i = 1; i + 1 < cmd->command_at; i++)
        realm_buf_append(&b, cmd->argv[i], strlen(cmd->argv[i]) + 1); /* with its NUL */
    int rc = realm_sandbox_memfd("realm-bwrap-args", b.data, b.len, fd_out);
    realm_buf_dispose(&b);
    return rc;
}
