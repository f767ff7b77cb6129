/*
 * cgroup.c - one environment's cgroups: create with limits, add the
 * environment's process, kill everything in it, tell an OOM kill, remove.
 *
 * DESIGN: the probe says, per controller, which hierarchy enforces it here
 * (v1 or v2) and where our own group is; an environment's group is a child
 * of ours in each of those hierarchies (one directory when several
 * controllers share a hierarchy, as on v2 or with cpu,cpuacct co-mounted).
 * Writes are plain file writes; a value a kernel does not offer (v1 memsw
 * without swap accounting) is skipped, a limit that cannot be written fails
 * the create, which then removes what it made.
 * THREADS: blocking file I/O; any thread.
 */
#include "sandbox/sandbox.h"

#include "base/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const controller_names[REALM_SANDBOX_CG_COUNT] = {"memory", "pids", "cpu"};

/* Writes value to dir/file. Returns 0 or a negative errno. */
static int write_file(const char *dir, const char *file, const char *value)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    int rc = n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
    close(fd);
    return rc;
}

static int open_in(const char *dir, const char *file)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    return open(path, O_RDONLY | O_CLOEXEC);
}

static int exists(const char *dir, const char *file)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    return access(path, F_OK) == 0;
}

/* Is dir already used by an earlier controller of g? */
static int seen_before(const realm_sandbox_group_t *g, int upto, const char *dir)
{
    for (int i = 0; i < upto; i++)
        if (g->dirs[i] && strcmp(g->dirs[i], dir) == 0) return 1;
    return 0;
}

static int set_limit(const char *dir, int ctl, realm_sandbox_cg_version_t v,
                     const realm_sandbox_limits_t *lim, char *err, size_t err_len)
{
    char val[32];
    int rc = 0;
    const char *file = "";
    if (ctl == REALM_SANDBOX_CG_MEMORY && lim->memory_bytes) {
        snprintf(val, sizeof(val), "%llu", (unsigned long long)lim->memory_bytes);
        file = v == REALM_SANDBOX_CG_V1 ? "memory.limit_in_bytes" : "memory.max";
        rc = write_file(dir, file, val);
        /* Swap must not let the environment outgrow its memory. */
        if (rc == 0 && v == REALM_SANDBOX_CG_V1 && exists(dir, "memory.memsw.limit_in_bytes"))
            rc = write_file(dir, file = "memory.memsw.limit_in_bytes", val);
        if (rc == 0 && v == REALM_SANDBOX_CG_V2 && exists(dir, "memory.swap.max"))
            rc = write_file(dir, file = "memory.swap.max", "0");
    } else if (ctl == REALM_SANDBOX_CG_PIDS && lim->pids_max) {
        snprintf(val, sizeof(val), "%llu", (unsigned long long)lim->pids_max);
        rc = write_file(dir, file = "pids.max", val);
    } else if (ctl == REALM_SANDBOX_CG_CPU && lim->cpu_weight) {
        uint64_t w = lim->cpu_weight > 10000 ? 10000 : lim->cpu_weight;
        /* v1 shares default to 1024 where v2 weights default to 100. */
        snprintf(val, sizeof(val), "%llu",
                 (unsigned long long)(v == REALM_SANDBOX_CG_V1 ? w * 1024 / 100 : w));
        rc = write_file(dir, file = v == REALM_SANDBOX_CG_V1 ? "cpu.shares" : "cpu.weight", val);
    }
    if (rc != 0) snprintf(err, err_len, "%s/%s: %s", dir, file, strerror(-rc));
    return rc;
}

/*
 * v2: a child group gets a controller only if our group hands it down in
 * cgroup.subtree_control. Enabling it fails (EBUSY) while our own group
 * holds processes and is not the root; the controller then stays
 * unenforced rather than failing every environment.
 */
static int delegated(const char *dir, const char *controller)
{
    char want[16], path[4096], line[512];
    snprintf(want, sizeof(want), "+%s", controller);
    write_file(dir, "cgroup.subtree_control", want);
    snprintf(path, sizeof(path), "%s/cgroup.subtree_control", dir);
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    int found = 0;
    if (fgets(line, sizeof(line), f)) {
        for (char *save = NULL, *tok = strtok_r(line, " \n", &save); tok;
             tok = strtok_r(NULL, " \n", &save))
            if (strcmp(tok, controller) == 0) found = 1;
    }
    fclose(f);
    return found;
}

int realm_sandbox_group_create(realm_sandbox_group_t *g, const realm_sandbox_probe_t *p,
                               const char *name, const realm_sandbox_limits_t *lim, char *err,
                               size_t err_len)
{
    memset(g, 0, sizeof(*g));
    g->oom_fd = g->peak_fd = -1;
    if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        snprintf(err, err_len, "cgroup name '%s' is not one path segment", name);
        return -1;
    }
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++) {
        const realm_sandbox_cgroup_t *cg = &p->cg[i];
        if (cg->version == REALM_SANDBOX_CG_NONE || !cg->dir) continue;
        if (cg->version == REALM_SANDBOX_CG_V2 && !delegated(cg->dir, controller_names[i]))
            continue; /* not ours to hand down: not enforced (see below) */
        size_t len = strlen(cg->dir) + strlen(name) + 2;
        char *dir = realm_malloc(len);
        snprintf(dir, len, "%s/%s", cg->dir, name);
        g->dirs[i] = dir;
        if (!seen_before(g, i, dir)) {
            /* EEXIST: a group of this name left by an earlier process that had
             * our pid (killed before it removed its groups). An empty one is
             * removed and made anew; one with processes in it stays an error. */
            if (mkdir(dir, 0755) != 0 &&
                !(errno == EEXIST && rmdir(dir) == 0 && mkdir(dir, 0755) == 0)) {
                snprintf(err, err_len, "%s: %s", dir, strerror(errno));
                g->dirs[i] = NULL;
                free(dir);
                realm_sandbox_group_destroy(g);
                return -1;
            }
        }
        if (set_limit(dir, i, cg->version, lim, err, err_len) != 0) {
            realm_sandbox_group_destroy(g);
            return -1;
        }
    }
    const char *mem = g->dirs[REALM_SANDBOX_CG_MEMORY];
    if (mem) {
        g->oom_file = exists(mem, "memory.events") ? "memory.events" : "memory.oom_control";
        g->peak_file = exists(mem, "memory.peak") ? "memory.peak" : "memory.max_usage_in_bytes";
        g->oom_fd = open_in(mem, g->oom_file);
        g->peak_fd = open_in(mem, g->peak_file);
    }
    return 0;
}

int realm_sandbox_group_add(const realm_sandbox_group_t *g, int pid)
{
    char val[24];
    snprintf(val, sizeof(val), "%d", pid);
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++) {
        if (!g->dirs[i] || seen_before(g, i, g->dirs[i])) continue;
        int rc = write_file(g->dirs[i], "cgroup.procs", val);
        if (rc != 0) return rc;
    }
    return 0;
}

/* Signals every pid listed in dir/cgroup.procs; returns how many. */
static int kill_listed(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    int n = 0, pid;
    while (fscanf(f, "%d", &pid) == 1)
        if (pid > 0 && kill(pid, SIGKILL) == 0) n++;
    fclose(f);
    return n;
}

int realm_sandbox_group_kill(const realm_sandbox_group_t *g)
{
    int n = 0;
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++) {
        if (!g->dirs[i] || seen_before(g, i, g->dirs[i])) continue;
        /* Twice: a process forked between reading the list and the signal
         * is caught by the second pass (pids.max bounds the race). */
        n += kill_listed(g->dirs[i]);
        n += kill_listed(g->dirs[i]);
    }
    return n;
}

/*
 * Reads a small cgroup file into buf (NUL-terminated) from its descriptor
 * kept open (a read at offset 0 renders the file anew: no path walk per
 * invocation), else by name. Returns its length or -1.
 */
static ssize_t read_small(int fd, const char *dir, const char *file, char *buf, size_t len)
{
    ssize_t n;
    if (fd >= 0) {
        n = pread(fd, buf, len - 1, 0);
    } else {
        if ((fd = open_in(dir, file)) < 0) return -1;
        n = read(fd, buf, len - 1);
        close(fd);
    }
    if (n < 0) return -1;
    buf[n] = '\0';
    return n;
}

int realm_sandbox_group_oom(const realm_sandbox_group_t *g)
{
    const char *dir = g->dirs[REALM_SANDBOX_CG_MEMORY];
    char text[1024];
    if (!dir || !g->oom_file || read_small(g->oom_fd, dir, g->oom_file, text, sizeof(text)) < 0)
        return 0;
    /* Both files are "key value" lines with "oom_kill N". */
    for (const char *line = text; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, "oom_kill ", 9) == 0) return strtoull(line + 9, NULL, 10) > 0;
    return 0;
}

uint64_t realm_sandbox_group_memory_peak(const realm_sandbox_group_t *g)
{
    const char *dir = g->dirs[REALM_SANDBOX_CG_MEMORY];
    char text[64];
    if (!dir || !g->peak_file || read_small(g->peak_fd, dir, g->peak_file, text, sizeof(text)) < 0)
        return 0;
    return strtoull(text, NULL, 10); /* one number of bytes */
}

int realm_sandbox_group_destroy(realm_sandbox_group_t *g)
{
    realm_sandbox_group_kill(g);
    if (g->oom_fd >= 0) close(g->oom_fd);
    if (g->peak_fd >= 0) close(g->peak_fd);
    g->oom_fd = g->peak_fd = -1; /* read by name while a retry waits (-EBUSY) */
    int busy = 0;
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++) {
        if (!g->dirs[i] || seen_before(g, i, g->dirs[i])) continue;
        if (rmdir(g->dirs[i]) != 0 && errno != ENOENT) busy = 1;
    }
    if (busy) return -EBUSY;
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++) {
        free(g->dirs[i]);
        g->dirs[i] = NULL;
    }
    return 0;
}

/* The server pid in "PREFIX<pid>-<n>", or 0 when the name is not one. */
static long owner_pid(const char *name, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0) return 0;
    char *end;
    long pid = strtol(name + pl, &end, 10);
    if (pid <= 0 || *end != '-' || !end[1]) return 0;
    for (const char *c = end + 1; *c; c++)
        if (*c < '0' || *c > '9') return 0;
    return pid;
}

int realm_sandbox_sweep_dead(const realm_sandbox_probe_t *p, const char *prefix)
{
    int swept = 0;
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++) {
        const realm_sandbox_cgroup_t *cg = &p->cg[i];
        if (cg->version == REALM_SANDBOX_CG_NONE || !cg->dir) continue;
        int is_dup = 0;
        for (int j = 0; j < i; j++)
            is_dup = is_dup || (p->cg[j].dir && strcmp(p->cg[j].dir, cg->dir) == 0);
        if (is_dup) continue;
        DIR *d = opendir(cg->dir);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            long pid = owner_pid(e->d_name, prefix);
            if (!pid || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
            char dir[4096];
            snprintf(dir, sizeof(dir), "%s/%s", cg->dir, e->d_name);
            int n = kill_listed(dir);
            n += kill_listed(dir);
            if (n) swept++;
            rmdir(dir); /* busy while the killed exit: the next sweep */
        }
        closedir(d);
    }
    return swept;
}
