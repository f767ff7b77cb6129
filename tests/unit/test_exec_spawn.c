/*
 * test_exec_spawn.c - sandboxed processes on a real loop: output of both
 * streams, exit status, kill, the memory limit's OOM kill, the environment
 * passed only through bwrap, and no cgroup left behind. The test binary is
 * its own trampoline (`test_exec_spawn __spawn ...`), as `realm` is for the
 * server. Skipped where bubblewrap cannot run.
 */
#include "exec/spawn.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "fixture.h"

static realm_sandbox_probe_t probe;
static realm_buf_t bpf;
static char self[4096];
static char code_dir[64];

typedef struct {
    realm_buf_t out, err;
    int exited;
    int64_t status;
    int signal;
    int oom;
    realm_spawn_t *sp;
    int kill_on_output;
    int no_network; /* a private network namespace, held until on_ready */
    int ready_pid;
    int ready_fd; /* the listener made inside the sandbox's namespace */
} run_t;

static int on_ready(realm_spawn_t *sp, int pid, void *ud)
{
    (void)sp;
    run_t *r = ud;
    r->ready_pid = pid;
    assert_int_equal(realm_sandbox_netns_listen(pid, 9001, &r->ready_fd), 0);
    return 0;
}

static void on_output(realm_spawn_t *sp, int stream, const char *data, size_t len, void *ud)
{
    run_t *r = ud;
    realm_buf_append(stream == 1 ? &r->out : &r->err, data, len);
    if (r->kill_on_output && stream == 1) realm_spawn_kill(sp);
}

static void on_exit_(realm_spawn_t *sp, int64_t status, int sig, int oom, void *ud)
{
    (void)sp;
    run_t *r = ud;
    r->exited = 1;
    r->status = status;
    r->signal = sig;
    r->oom = oom;
}

static int setup(void **state)
{
    (void)state;
    realm_sandbox_probe_init(&probe);
    realm_buf_init(&bpf);
    if (probe.has_seccomp) realm_sandbox_seccomp_build(&bpf, NULL);
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) return -1;
    self[n] = '\0';
    if (fx_tmpdir_make(code_dir, sizeof(code_dir), "spawn") != 0) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fx_tmpdir_remove(code_dir);
    realm_buf_dispose(&bpf);
    realm_sandbox_probe_dispose(&probe);
    return 0;
}

/* Runs argv in a sandbox to its end; fills r. */
static void run(run_t *r, const char *const *argv, const char *const *env, uint64_t memory)
{
    if (!probe.is_bwrap_usable) {
        print_message("bubblewrap cannot run here: %s\n", probe.summary);
        skip();
    }
    static int seq;
    char name[64];
    snprintf(name, sizeof(name), "realm-test-spawn-%d-%d", (int)getpid(), seq++);
    uv_loop_t loop;
    uv_loop_init(&loop);
    realm_spawn_opts_t o = {
        .self_exe = self,
        .probe = &probe,
        .bpf = bpf.data,
        .bpf_len = bpf.len,
        .spec = {.bwrap_features = probe.bwrap_features,
                 .code_dir = code_dir,
                 .tmp_mb = 16,
                 .env = env,
                 .has_network = !r->no_network,
                 .argv = argv,
                 .uid = 993,
                 .gid = 993},
        .limits = {.memory_bytes = memory, .pids_max = 64},
        .name = name,
        .wait_ready = r->no_network,
    };
    realm_spawn_cb_t cb = {on_output, on_exit_, on_ready};
    char err[256];
    if (realm_spawn_start(&loop, &o, &cb, r, &r->sp, err, sizeof(err)) != 0)
        fail_msg("start: %s", err);
    while (!r->exited)
        uv_run(&loop, UV_RUN_ONCE);
    realm_spawn_free(r->sp);
    uv_run(&loop, UV_RUN_DEFAULT); /* handles close, cgroups go */
    assert_int_equal(uv_loop_close(&loop), 0);
    /* Nothing is left in the cgroup hierarchies. */
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++) {
        if (!probe.cg[i].dir) continue;
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", probe.cg[i].dir, name);
        assert_int_equal(access(path, F_OK), -1);
    }
}

static void run_init(run_t *r)
{
    memset(r, 0, sizeof(*r));
    realm_buf_init(&r->out);
    realm_buf_init(&r->err);
}

static void run_dispose(run_t *r)
{
    realm_buf_dispose(&r->out);
    realm_buf_dispose(&r->err);
}

static void test_output_and_status(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    const char *argv[] = {"/bin/sh", "-c", "echo out; echo err >&2; echo $GREETING; exit 3", NULL};
    const char *env[] = {"GREETING=hello", "PATH=/usr/bin:/bin", NULL};
    run(&r, argv, env, 0);
    assert_int_equal(r.status, 3);
    assert_int_equal(r.signal, 0);
    assert_string_equal(r.out.data, "out\nhello\n");
    assert_string_equal(r.err.data, "err\n");
    run_dispose(&r);
}

static void test_kill(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    r.kill_on_output = 1;
    /* A child that would outlive bwrap's own process must die too. */
    const char *argv[] = {"/bin/sh", "-c", "sleep 600 & echo started; sleep 600", NULL};
    run(&r, argv, NULL, 0);
    assert_int_equal(r.signal, 9);
    assert_string_equal(r.out.data, "started\n");
    run_dispose(&r);
}

/*
 * Without the host's network, the sandbox waits until Realm has made a
 * listener inside its namespace: the command's first connect to
 * 127.0.0.1:9001 reaches it, and nothing of the host's loopback is there.
 */
static void test_private_network_listener(void **state)
{
    (void)state;
    run_t r;
    run_init(&r);
    r.no_network = 1;
    r.ready_fd = -1;
    /* A host listener the sandbox must not reach. */
    int host = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(host, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(host, 4), 0);
    socklen_t alen = sizeof(a);
    getsockname(host, (struct sockaddr *)&a, &alen);
    char script[512];
    snprintf(script, sizeof(script),
             "import socket\n"
             "s = socket.create_connection(('127.0.0.1', 9001), timeout=5); s.sendall(b'hi')\n"
             "try:\n"
             "    socket.create_connection(('127.0.0.1', %d), timeout=2); print('host reached')\n"
             "except OSError as e:\n"
             "    print('host unreachable')\n",
             ntohs(a.sin_port));
    const char *argv[] = {"/usr/bin/python3", "-c", script, NULL};
    run(&r, argv, NULL, 0);
    close(host);
    assert_true(r.ready_pid > 0);
    assert_true(r.ready_fd >= 0);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out.data, "host unreachable\n");
    int c = accept(r.ready_fd, NULL, NULL);
    assert_true(c >= 0);
    char buf[8] = {0};
    assert_int_equal(recv(c, buf, sizeof(buf), 0), 2);
    assert_string_equal(buf, "hi");
    close(c);
    close(r.ready_fd);
    run_dispose(&r);
}

static void test_memory_limit_oom(void **state)
{
    (void)state;
    if (probe.cg[REALM_SANDBOX_CG_MEMORY].version == REALM_SANDBOX_CG_NONE) skip();
    run_t r;
    run_init(&r);
    const char *argv[] = {"/usr/bin/python3", "-c", "x = bytearray(256 << 20); print('survived')",
                          NULL};
    run(&r, argv, NULL, 48 << 20);
    assert_int_equal(r.oom, 1);
    assert_null(strstr(r.out.data ? r.out.data : "", "survived"));
    run_dispose(&r);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "__spawn") == 0)
        return realm_spawn_trampoline_main(argc - 2, argv + 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_and_status),
        cmocka_unit_test(test_kill),
        cmocka_unit_test(test_memory_limit_oom),
        cmocka_unit_test(test_private_network_listener),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
