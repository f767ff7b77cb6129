/*
 * test_sandbox_cgroup.c - an environment's cgroups on this machine: limits
 * written, a process added and killed, an OOM kill seen, groups removed.
 * Skipped where the probe finds no enforceable controller (no cgroup access).
 */
#include "sandbox/sandbox.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static realm_sandbox_probe_t probe;

static int setup(void **state)
{
    (void)state;
    realm_sandbox_probe_init(&probe);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    realm_sandbox_probe_dispose(&probe);
    return 0;
}

static void need(int ctl)
{
    if (probe.cg[ctl].version == REALM_SANDBOX_CG_NONE) {
        print_message("no enforceable cgroup controller %d here: %s\n", ctl, probe.summary);
        skip();
    }
}

/* Creates the group realm-test-WHAT-PID with lim, or fails the test. */
static void make_group(realm_sandbox_group_t *g, const char *what, realm_sandbox_limits_t lim)
{
    char name[64], err[256];
    snprintf(name, sizeof(name), "realm-test-%s-%d", what, (int)getpid());
    if (realm_sandbox_group_create(g, &probe, name, &lim, err, sizeof(err)) != 0)
        fail_msg("create: %s", err);
}

static unsigned long long read_value(const char *dir, const char *file)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot read %s", path);
    unsigned long long v = 0;
    if (fscanf(f, "%llu", &v) != 1) v = 0;
    fclose(f);
    return v;
}

static int listed(const char *dir, pid_t pid)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int p, found = 0;
    while (fscanf(f, "%d", &p) == 1)
        if (p == pid) found = 1;
    fclose(f);
    return found;
}

static void test_limits_add_kill_remove(void **state)
{
    (void)state;
    need(REALM_SANDBOX_CG_MEMORY);
    realm_sandbox_group_t g;
    make_group(
        &g, "basic",
        (realm_sandbox_limits_t){.memory_bytes = 64 << 20, .pids_max = 32, .cpu_weight = 50});
    const char *mem = g.dirs[REALM_SANDBOX_CG_MEMORY];
    if (!mem) {
        realm_sandbox_group_destroy(&g);
        print_message("memory not delegated to child groups here\n");
        skip();
    }
    if (probe.cg[REALM_SANDBOX_CG_MEMORY].version == REALM_SANDBOX_CG_V1)
        assert_int_equal(read_value(mem, "memory.limit_in_bytes"), 64 << 20);
    else
        assert_int_equal(read_value(mem, "memory.max"), 64 << 20);
    if (g.dirs[REALM_SANDBOX_CG_PIDS])
        assert_int_equal(read_value(g.dirs[REALM_SANDBOX_CG_PIDS], "pids.max"), 32);
    if (g.dirs[REALM_SANDBOX_CG_CPU] &&
        probe.cg[REALM_SANDBOX_CG_CPU].version == REALM_SANDBOX_CG_V1)
        assert_int_equal(read_value(g.dirs[REALM_SANDBOX_CG_CPU], "cpu.shares"), 512);

    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        pause();
        _exit(0);
    }
    assert_int_equal(realm_sandbox_group_add(&g, child), 0);
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++)
        if (g.dirs[i]) assert_true(listed(g.dirs[i], child));
    /* Busy while the process lives. */
    assert_true(realm_sandbox_group_kill(&g) >= 1);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_equal(realm_sandbox_group_oom(&g), 0);
    assert_int_equal(realm_sandbox_group_destroy(&g), 0);
    assert_int_equal(access(mem, F_OK), -1);
}

static void test_oom_kill_is_seen(void **state)
{
    (void)state;
    need(REALM_SANDBOX_CG_MEMORY);
    realm_sandbox_group_t g;
    make_group(&g, "oom", (realm_sandbox_limits_t){.memory_bytes = 32 << 20});
    if (!g.dirs[REALM_SANDBOX_CG_MEMORY]) {
        realm_sandbox_group_destroy(&g);
        skip();
    }
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) != 1) _exit(2);
        /* Touch 256 MiB, far past the limit: the kernel must kill us. */
        for (int i = 0; i < 256; i++) {
            char *p = malloc(1 << 20);
            if (!p) _exit(3);
            memset(p, i, 1 << 20);
        }
        _exit(0);
    }
    close(go[0]);
    assert_int_equal(realm_sandbox_group_add(&g, child), 0);
    assert_int_equal(write(go[1], "x", 1), 1); /* start only once inside the group */
    close(go[1]);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_equal(realm_sandbox_group_oom(&g), 1);
    assert_int_equal(realm_sandbox_group_destroy(&g), 0);
}

static int connect_to(const struct sockaddr_in *addr)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (const struct sockaddr *)addr, sizeof(*addr)) != 0) return -1;
    return c;
}

static void test_peer_in_group(void **state)
{
    (void)state;
    need(REALM_SANDBOX_CG_PIDS);
    realm_sandbox_group_t g;
    make_group(&g, "peer", (realm_sandbox_limits_t){0});
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(addr);
    assert_int_equal(bind(l, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(l, 4), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&addr, &alen), 0);
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) != 1) _exit(2);
        if (connect_to(&addr) < 0) _exit(3);
        pause();
        _exit(0);
    }
    close(go[0]);
    assert_int_equal(realm_sandbox_group_add(&g, child), 0);
    assert_int_equal(write(go[1], "x", 1), 1);
    close(go[1]);
    /* The child, in the group, connects: accepted as one of its own. */
    int a = accept(l, NULL, NULL);
    assert_true(a >= 0);
    assert_int_equal(realm_sandbox_peer_in_group(&g, a), 1);
    /* We are not in the group: the same port refuses us. */
    int mine = connect_to(&addr);
    assert_true(mine >= 0);
    int b = accept(l, NULL, NULL);
    assert_true(b >= 0);
    assert_int_equal(realm_sandbox_peer_in_group(&g, b), 0);
    close(a);
    close(b);
    close(mine);
    close(l);
    realm_sandbox_group_kill(&g);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_int_equal(realm_sandbox_group_destroy(&g), 0);
}

/* A group left behind under our name (an earlier process with our pid was
 * killed before removing it) is taken over when empty. */
static void test_stale_group_is_replaced(void **state)
{
    (void)state;
    need(REALM_SANDBOX_CG_PIDS);
    char name[64], stale[4096];
    snprintf(name, sizeof(name), "realm-test-stale-%d", (int)getpid());
    snprintf(stale, sizeof(stale), "%s/%s", probe.cg[REALM_SANDBOX_CG_PIDS].dir, name);
    assert_int_equal(mkdir(stale, 0755), 0);
    realm_sandbox_group_t g;
    make_group(&g, "stale", (realm_sandbox_limits_t){.pids_max = 8});
    assert_int_equal(access(stale, F_OK), 0);
    if (g.dirs[REALM_SANDBOX_CG_PIDS])
        assert_int_equal(read_value(g.dirs[REALM_SANDBOX_CG_PIDS], "pids.max"), 8);
    assert_int_equal(realm_sandbox_group_destroy(&g), 0);
    assert_int_equal(access(stale, F_OK), -1);
}

/* Groups of a server that no longer runs are swept (their processes
 * killed, the groups removed); a running server's are not. The prefix is the
 * test's own, so environments of servers running beside it are never
 * touched. */
static void test_sweep_dead_servers_groups(void **state)
{
    (void)state;
    need(REALM_SANDBOX_CG_PIDS);
    /* A pid no process can have (pids stay below pid_max): a server that is gone. */
    long dead = (long)read_value("/proc/sys/kernel", "pid_max");
    assert_true(dead > 1 && kill((pid_t)dead, 0) != 0);
    char prefix[64], name[96], live_name[96], err[256];
    snprintf(prefix, sizeof(prefix), "realm-sweep-%d-", (int)getpid());
    snprintf(name, sizeof(name), "%s%ld-1", prefix, dead);
    snprintf(live_name, sizeof(live_name), "%s%d-1", prefix, (int)getpid());
    realm_sandbox_limits_t lim = {.pids_max = 8};
    realm_sandbox_group_t g, live;
    assert_int_equal(realm_sandbox_group_create(&g, &probe, name, &lim, err, sizeof(err)), 0);
    assert_int_equal(realm_sandbox_group_create(&live, &probe, live_name, &lim, err, sizeof(err)),
                     0);
    pid_t left = fork(); /* an environment's process its server never stopped */
    assert_true(left >= 0);
    if (left == 0) {
        pause();
        _exit(0);
    }
    assert_int_equal(realm_sandbox_group_add(&g, left), 0);
    pid_t kept = fork();
    assert_true(kept >= 0);
    if (kept == 0) {
        pause();
        _exit(0);
    }
    assert_int_equal(realm_sandbox_group_add(&live, kept), 0);
    assert_true(realm_sandbox_sweep_dead(&probe, prefix) >= 1);
    int status;
    assert_int_equal(waitpid(left, &status, 0), left);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    realm_sandbox_sweep_dead(&probe, prefix); /* removes it once its process is gone */
    assert_int_equal(access(g.dirs[REALM_SANDBOX_CG_PIDS], F_OK), -1);
    assert_true(listed(live.dirs[REALM_SANDBOX_CG_PIDS], kept));
    kill(kept, SIGKILL);
    assert_int_equal(waitpid(kept, &status, 0), kept);
    assert_int_equal(realm_sandbox_group_destroy(&live), 0);
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++)
        free(g.dirs[i]);
}

static void test_bad_name(void **state)
{
    (void)state;
    char err[256];
    realm_sandbox_limits_t lim = {0};
    realm_sandbox_group_t g;
    assert_int_equal(realm_sandbox_group_create(&g, &probe, "../escape", &lim, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "path segment"));
    assert_int_equal(realm_sandbox_group_create(&g, &probe, "", &lim, err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits_add_kill_remove),
        cmocka_unit_test(test_oom_kill_is_seen),
        cmocka_unit_test(test_peer_in_group),
        cmocka_unit_test(test_bad_name),
        cmocka_unit_test(test_stale_group_is_replaced),
        cmocka_unit_test(test_sweep_dead_servers_groups),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
