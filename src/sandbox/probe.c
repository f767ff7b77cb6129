/*
 * probe.c - what this machine can enforce, found once at start (see
 * sandbox.h, docs/sandbox.md).
 *
 * DESIGN: nothing is assumed from versions or distribution defaults; every
 * capability is tried:
 *   - bubblewrap: found on $PATH or at /usr/bin/bwrap; `--version` gives the
 *     version and `--help` the optional flags the builder may use; then one
 *     real run with exactly the namespaces environments get
 *     (`bwrap --unshare-user ... --ro-bind / / true`) says whether user
 *     namespaces work here (they may be disabled by sysctl, by a container's
 *     seccomp profile or by AppArmor).
 *   - seccomp: the real filter is built and exported (seccomp.c).
 *   - cgroups: /proc/self/mountinfo says which hierarchies are mounted where
 *     (the unified one is not always at /sys/fs/cgroup: hybrid systems put it
 *     at /sys/fs/cgroup/unified), /proc/self/cgroup where our own group is in
 *     each. A controller is usable in v2 when our v2 group lists it in
 *     cgroup.controllers, in v1 when a hierarchy carries it; in both cases
 *     only if we can create (and here at once remove) a child group. v2 is
 *     preferred when it has the controller.
 * The bwrap runs use posix_spawn and a blocking waitpid with a deadline: this
 * runs before the loop exists, and only once.
 *
 * THREADS: realm_sandbox_probe_init blocks and should run on the main thread
 * before the loop starts (it forks). The other functions are pure.
 */
#include "sandbox/sandbox.h"

#include "base/alloc.h"
#include "base/buf.h"

#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define PROBE_OUTPUT_MAX (64 * 1024) /* of one bwrap run's stdout + stderr */
#define PROBE_TIMEOUT_MS 10000

static const char *const controller_names[REALM_SANDBOX_CG_COUNT] = {"memory", "pids", "cpu"};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

/* Is token one of the sep-separated words of the first len bytes of list? */
/* The nobody user: the probe's unprivileged bwrap run. */
#define PROBE_UNPRIVILEGED_UID 65534

static int has_word(const char *list, size_t len, const char *token, char sep)
{
    size_t tlen = strlen(token);
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && list[j] != sep && list[j] != '\n')
            j++;
        if (j - i == tlen && memcmp(list + i, token, tlen) == 0) return 1;
        i = j + 1;
    }
    return 0;
}

static int read_file(const char *path, realm_buf_t *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    for (;;) {
        realm_buf_reserve(out, 4096);
        ssize_t n = read(fd, out->data + out->len, 4096);
        if (n < 0) {
            if (errno == EINTR) continue;
            int rc = -errno;
            close(fd);
            return rc;
        }
        if (n == 0) break;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
    }
    close(fd);
    if (!out->data) realm_buf_appends(out, "");
    return 0;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Runs argv (argv[0] an absolute path) with stdin from /dev/null and stdout
 * and stderr into *out (at most PROBE_OUTPUT_MAX bytes kept). Returns the
 * waitpid status, or a negative errno if it could not be started. Killed
 * after PROBE_TIMEOUT_MS.
 */
static int run_capture_as(char *const argv[], realm_buf_t *out, uid_t uid)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) return -errno;
    pid_t pid;
    int rc = 0;
    if (uid == 0) {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
        rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
    } else {
        /* As an unprivileged user, the way environments' bwrap runs. */
        pid = fork();
        if (pid < 0) rc = errno;
        if (pid == 0) {
            int null = open("/dev/null", O_RDONLY);
            if (null < 0 || dup2(null, 0) < 0 || dup2(pipefd[1], 1) < 0 || dup2(pipefd[1], 2) < 0 ||
                setgroups(0, NULL) != 0 || setresgid(uid, uid, uid) != 0 ||
                setresuid(uid, uid, uid) != 0)
                _exit(126);
            char *no_env[] = {NULL};
            execve(argv[0], argv, no_env);
            _exit(127);
        }
    }
    close(pipefd[1]);
    if (rc != 0) {
        close(pipefd[0]);
        return -rc;
    }

    long deadline = now_ms() + PROBE_TIMEOUT_MS;
    int killed = 0;
    char chunk[4096];
    for (;;) {
        long left = deadline - now_ms();
        if (left <= 0) {
            if (!killed) kill(pid, SIGKILL);
            killed = 1;
            break;
        }
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        int n = poll(&pfd, 1, (int)left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) continue;
        ssize_t r = read(pipefd[0], chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (out->len < PROBE_OUTPUT_MAX) {
            size_t keep = (size_t)r;
            if (keep > PROBE_OUTPUT_MAX - out->len) keep = PROBE_OUTPUT_MAX - out->len;
            realm_buf_append(out, chunk, keep);
        }
    }
    close(pipefd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!out->data) realm_buf_appends(out, "");
    return status;
}

static int run_capture(char *const argv[], realm_buf_t *out)
{
    return run_capture_as(argv, out, 0);
}

/* A new string: the first non-empty line of s, without "bwrap: ". */
static char *first_line(const char *s)
{
    while (*s == '\n')
        s++;
    if (strncmp(s, "bwrap: ", 7) == 0) s += 7;
    size_t n = strcspn(s, "\n");
    if (n > 200) n = 200;
    return realm_strndup(s, n);
}

/* ------------------------------------------------------------------------ */
/* bubblewrap                                                               */
/* ------------------------------------------------------------------------ */

static char *find_bwrap(void)
{
    const char *path = getenv("PATH");
    if (path) {
        const char *p = path;
        while (*p) {
            size_t n = strcspn(p, ":");
            if (n > 0 && p[0] == '/') {
                realm_buf_t b;
                realm_buf_init(&b);
                realm_buf_append(&b, p, n);
                realm_buf_appends(&b, "/bwrap");
                if (access(b.data, X_OK) == 0) return realm_buf_steal(&b, NULL);
                realm_buf_dispose(&b);
            }
            p += n;
            if (*p == ':') p++;
        }
    }
    if (access("/usr/bin/bwrap", X_OK) == 0) return realm_strdup("/usr/bin/bwrap");
    return NULL;
}

static void probe_bwrap(realm_sandbox_probe_t *p)
{
    p->bwrap_path = find_bwrap();
    if (!p->bwrap_path) {
        p->bwrap_error = realm_strdup("not found on $PATH or at /usr/bin/bwrap");
        return;
    }
    realm_buf_t out;
    realm_buf_init(&out);

    char *version_argv[] = {p->bwrap_path, "--version", NULL};
    int st = run_capture(version_argv, &out);
    if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        /* "bubblewrap 0.8.0" */
        const char *v = strrchr(out.data, ' ');
        v = v ? v + 1 : out.data;
        p->bwrap_version = realm_strndup(v, strcspn(v, "\n"));
    }

    realm_buf_reset(&out);
    char *help_argv[] = {p->bwrap_path, "--help", NULL};
    st = run_capture(help_argv, &out);
    if (st >= 0) {
        if (strstr(out.data, "--size ")) p->bwrap_features |= REALM_SANDBOX_BWRAP_SIZE;
        if (strstr(out.data, "--unshare-cgroup-try"))
            p->bwrap_features |= REALM_SANDBOX_BWRAP_CGROUP_TRY;
        if (strstr(out.data, "--disable-userns"))
            p->bwrap_features |= REALM_SANDBOX_BWRAP_DISABLE_USERNS;
    }

    /* The namespaces every environment gets (the mount namespace is implied). */
    realm_buf_reset(&out);
    char *test_argv[16];
    size_t n = 0;
    test_argv[n++] = p->bwrap_path;
    test_argv[n++] = "--unshare-user";
    test_argv[n++] = "--unshare-ipc";
    test_argv[n++] = "--unshare-pid";
    test_argv[n++] = "--unshare-uts";
    test_argv[n++] = "--unshare-net";
    if (p->bwrap_features & REALM_SANDBOX_BWRAP_CGROUP_TRY) test_argv[n++] = "--unshare-cgroup-try";
    test_argv[n++] = "--die-with-parent";
    test_argv[n++] = "--ro-bind";
    test_argv[n++] = "/";
    test_argv[n++] = "/";
    test_argv[n++] = "true";
    test_argv[n] = NULL;
    st = run_capture(test_argv, &out);
    if (st < 0) {
        realm_buf_t e;
        realm_buf_init(&e);
        realm_buf_appendf(&e, "cannot run: %s", strerror(-st));
        p->bwrap_error = realm_buf_steal(&e, NULL);
    } else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        p->is_bwrap_usable = 1;
        /* As root, environments' bwrap runs as an unprivileged host user:
         * that needs unprivileged user namespaces. */
        if (geteuid() == 0) {
            realm_buf_reset(&out);
            st = run_capture_as(test_argv, &out, PROBE_UNPRIVILEGED_UID);
            if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
                p->is_unprivileged_usable = 1;
            } else {
                p->is_bwrap_usable = 0;
                realm_buf_t e;
                realm_buf_init(&e);
                realm_buf_appendf(&e,
                                  "bwrap cannot run as an unprivileged user (%s): enable "
                                  "unprivileged user namespaces (sysctl user.max_user_namespaces, "
                                  "kernel.unprivileged_userns_clone)",
                                  out.len ? out.data : "no output");
                while (e.len && e.data[e.len - 1] == '\n')
                    e.data[--e.len] = '\0';
                p->bwrap_error = realm_buf_steal(&e, NULL);
            }
        } else {
            p->is_unprivileged_usable = 1;
        }
    } else if (out.len > 0) {
        p->bwrap_error = first_line(out.data);
    } else {
        realm_buf_t e;
        realm_buf_init(&e);
        if (WIFSIGNALED(st))
            realm_buf_appendf(&e, "test run killed by signal %d", WTERMSIG(st));
        else
            realm_buf_appendf(&e, "test run exited with %d", WEXITSTATUS(st));
        p->bwrap_error = realm_buf_steal(&e, NULL);
    }
    realm_buf_dispose(&out);
}

/* ------------------------------------------------------------------------ */
/* cgroups                                                                  */
/* ------------------------------------------------------------------------ */

/* Splits a line into space-separated fields (in place). Returns the count. */
static size_t split_fields(char *line, char **fields, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, " ", &save); tok && n < max; tok = strtok_r(NULL, " ", &save))
        fields[n++] = tok;
    return n;
}

/* Undoes mountinfo's octal escapes (\040 for a space...) in place. */
static void unescape_octal(char *s)
{
    char *w = s;
    for (char *r = s; *r;) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)(((r[1] - '0') << 6) | ((r[2] - '0') << 3) | (r[3] - '0'));
            r += 4;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
}

/* A new string: our path in the hierarchy named by controller (NULL: v2). */
static char *own_path(const char *proc_cgroup, const char *controller)
{
    const char *line = proc_cgroup;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        /* "ID:CONTROLLERS:PATH" */
        const char *c1 = memchr(line, ':', len);
        const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;
        if (c2) {
            const char *ctrls = c1 + 1;
            size_t clen = (size_t)(c2 - ctrls);
            int match = controller ? has_word(ctrls, clen, controller, ',')
                                   : (clen == 0 && c1 - line == 1 && line[0] == '0');
            if (match) return realm_strndup(c2 + 1, len - (size_t)(c2 + 1 - line));
        }
        line = end ? end + 1 : NULL;
    }
    return NULL;
}

char *realm_sandbox_cgroup_find(const char *mountinfo, const char *proc_cgroup,
                                const char *controller)
{
    char *path = own_path(proc_cgroup, controller);
    if (!path || path[0] != '/') {
        free(path);
        return NULL;
    }
    char *result = NULL;
    const char *line = mountinfo;
    while (!result && line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *copy = realm_strndup(line, len);
        char *f[64];
        size_t n = split_fields(copy, f, 64);
        /* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
        size_t dash = 6;
        while (dash < n && strcmp(f[dash], "-") != 0)
            dash++;
        if (n >= 6 && dash + 1 < n) {
            const char *fstype = f[dash + 1];
            const char *superopts = dash + 3 < n ? f[dash + 3] : "";
            int match = controller ? strcmp(fstype, "cgroup") == 0 &&
                                         has_word(superopts, strlen(superopts), controller, ',')
                                   : strcmp(fstype, "cgroup2") == 0;
            if (match) {
                char *root = f[3], *mnt = f[4];
                unescape_octal(root);
                unescape_octal(mnt);
                size_t rlen = strcmp(root, "/") == 0 ? 0 : strlen(root);
                /* Our group must be at or below the mount's root. */
                if (strncmp(path, root, rlen) == 0 && (path[rlen] == '/' || path[rlen] == '\0')) {
                    const char *rest = path + rlen;
                    realm_buf_t b;
                    realm_buf_init(&b);
                    int has_rest = rest[0] != '\0' && strcmp(rest, "/") != 0;
                    /* A hierarchy mounted at "/" itself would give "//x". */
                    if (!has_rest || strcmp(mnt, "/") != 0) realm_buf_appends(&b, mnt);
                    if (has_rest) realm_buf_appends(&b, rest);
                    result = realm_buf_steal(&b, NULL);
                }
            }
        }
        free(copy);
        line = end ? end + 1 : NULL;
    }
    free(path);
    return result;
}

/* Can we create a child group in dir? (Creates and removes one.) */
static int can_create_child(const char *dir)
{
    realm_buf_t b;
    realm_buf_init(&b);
    realm_buf_appendf(&b, "%s/realm-probe-%ld", dir, (long)getpid());
    int ok = mkdir(b.data, 0755) == 0 || errno == EEXIST;
    if (ok) rmdir(b.data);
    realm_buf_dispose(&b);
    return ok;
}

static void probe_cgroups(realm_sandbox_probe_t *p)
{
    realm_buf_t mi, pc;
    realm_buf_init(&mi);
    realm_buf_init(&pc);
    if (read_file("/proc/self/mountinfo", &mi) < 0 || read_file("/proc/self/cgroup", &pc) < 0)
        goto done;

    int v2_writable = 0;
    p->cgroup2_dir = realm_sandbox_cgroup_find(mi.data, pc.data, NULL);
    if (p->cgroup2_dir) {
        realm_buf_t path, ctrls;
        realm_buf_init(&path);
        realm_buf_init(&ctrls);
        realm_buf_appendf(&path, "%s/cgroup.controllers", p->cgroup2_dir);
        if (read_file(path.data, &ctrls) == 0) {
            while (ctrls.len > 0 && ctrls.data[ctrls.len - 1] == '\n')
                ctrls.data[--ctrls.len] = 0;
            p->cgroup2_controllers = realm_buf_steal(&ctrls, NULL);
        }
        realm_buf_dispose(&ctrls);
        realm_buf_dispose(&path);
        v2_writable = can_create_child(p->cgroup2_dir);
    }

    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++) {
        const char *name = controller_names[i];
        realm_sandbox_cgroup_t *cg = &p->cg[i];
        if (v2_writable && p->cgroup2_controllers &&
            has_word(p->cgroup2_controllers, strlen(p->cgroup2_controllers), name, ' ')) {
            cg->version = REALM_SANDBOX_CG_V2;
            cg->dir = realm_strdup(p->cgroup2_dir);
            continue;
        }
        char *dir = realm_sandbox_cgroup_find(mi.data, pc.data, name);
        if (dir && can_create_child(dir)) {
            cg->version = REALM_SANDBOX_CG_V1;
            cg->dir = dir;
        } else {
            free(dir);
        }
    }
done:
    realm_buf_dispose(&mi);
    realm_buf_dispose(&pc);
}

/* ------------------------------------------------------------------------ */
/* Probe                                                                    */
/* ------------------------------------------------------------------------ */

void realm_sandbox_probe_init(realm_sandbox_probe_t *p)
{
    memset(p, 0, sizeof(*p));
    probe_bwrap(p);
    p->has_cgroup_ns = access("/proc/self/ns/cgroup", F_OK) == 0;

    realm_buf_t bpf;
    realm_buf_init(&bpf);
    const char *err = NULL;
    int rc = realm_sandbox_seccomp_build(&bpf, &err);
    if (rc == 0 && bpf.len > 0) {
        p->has_seccomp = 1;
    } else {
        realm_buf_t e;
        realm_buf_init(&e);
        realm_buf_appendf(&e, "%s: %s", err ? err : "empty filter",
                          strerror(rc < 0 ? -rc : EINVAL));
        p->seccomp_error = realm_buf_steal(&e, NULL);
    }
    realm_buf_dispose(&bpf);

    probe_cgroups(p);
    realm_sandbox_probe_summarize(p);
}

void realm_sandbox_probe_dispose(realm_sandbox_probe_t *p)
{
    free(p->bwrap_path);
    free(p->bwrap_version);
    free(p->bwrap_error);
    free(p->seccomp_error);
    free(p->cgroup2_dir);
    free(p->cgroup2_controllers);
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++)
        free(p->cg[i].dir);
    free(p->summary);
    memset(p, 0, sizeof(*p));
}

/* Appends "v1 memory+pids" for the controllers enforced by version. */
static int append_version(realm_buf_t *b, const realm_sandbox_probe_t *p,
                          realm_sandbox_cg_version_t v, int first)
{
    int any = 0;
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++) {
        if (p->cg[i].version != v) continue;
        if (!any)
            realm_buf_appendf(b, "%sv%d ", first ? "" : ", ", (int)v);
        else
            realm_buf_appends(b, "+");
        realm_buf_appends(b, controller_names[i]);
        any = 1;
    }
    return any;
}

const char *realm_sandbox_probe_summarize(realm_sandbox_probe_t *p)
{
    realm_buf_t b;
    realm_buf_init(&b);
    realm_buf_appends(&b, "sandbox: ");
    if (!p->bwrap_path) {
        realm_buf_appends(&b, "bubblewrap not found (no isolation)");
    } else if (!p->is_bwrap_usable) {
        realm_buf_appendf(&b,
                          "bubblewrap %s at %s cannot create namespaces here (%s; no isolation)",
                          p->bwrap_version ? p->bwrap_version : "(unknown version)", p->bwrap_path,
                          p->bwrap_error ? p->bwrap_error : "unknown error");
    } else {
        realm_buf_appendf(&b, "bubblewrap %s (user, mount, pid, ipc, uts, net%s namespaces)",
                          p->bwrap_version ? p->bwrap_version : "(unknown version)",
                          p->has_cgroup_ns && (p->bwrap_features & REALM_SANDBOX_BWRAP_CGROUP_TRY)
                              ? ", cgroup"
                              : "");
        if (!(p->bwrap_features & REALM_SANDBOX_BWRAP_SIZE))
            realm_buf_appends(&b, ", /tmp size not enforced (bwrap has no --size)");
    }

    if (p->has_seccomp)
        realm_buf_appends(&b, ", seccomp on");
    else
        realm_buf_appendf(&b, ", seccomp off (%s)",
                          p->seccomp_error ? p->seccomp_error : "unknown");

    realm_buf_appends(&b, ", cgroup ");
    int any = append_version(&b, p, REALM_SANDBOX_CG_V2, 1);
    any |= append_version(&b, p, REALM_SANDBOX_CG_V1, !any);
    if (!any) realm_buf_appends(&b, "none");
    int missing = 0;
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++) {
        if (p->cg[i].version != REALM_SANDBOX_CG_NONE) continue;
        realm_buf_appendf(&b, "%s%s", missing ? "+" : " (not enforced: ", controller_names[i]);
        missing = 1;
    }
    if (missing) realm_buf_appends(&b, ")");

    free(p->summary);
    p->summary = realm_buf_steal(&b, NULL);
    return p->summary;
}
