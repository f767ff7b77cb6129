/*
 * test_sandbox.c - unit tests for sandbox/: the bwrap command builder (over a
 * fake host file system), cgroup discovery from mountinfo text, the probe
 * summary, the seccomp filter, and - when this machine can run bubblewrap -
 * end-to-end runs of built command lines checking what the sandboxed process
 * really sees: its uid, no capabilities, read-only code, read-only root, a
 * size-limited /tmp, only the given environment, and the seccomp filter
 * refusing unshare and mount (with a control run without the filter, so the
 * check cannot pass for the wrong reason).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fixture.h"

#include "sandbox/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *path;
    realm_sandbox_path_kind_t kind; /* as lstat sees it */
    const char *target;             /* for symlinks */
    realm_sandbox_path_kind_t followed;
} fake_path_t;

/* A merged-/usr host without /lib32, /lib64, /etc/resolv.conf or /etc/ssl. */
static const fake_path_t merged_host[] = {
    {"/bin", REALM_SANDBOX_PATH_SYMLINK, "usr/bin", REALM_SANDBOX_PATH_DIR},
    {"/sbin", REALM_SANDBOX_PATH_SYMLINK, "usr/sbin", REALM_SANDBOX_PATH_DIR},
    {"/lib", REALM_SANDBOX_PATH_SYMLINK, "usr/lib", REALM_SANDBOX_PATH_DIR},
    {"/etc/hosts", REALM_SANDBOX_PATH_FILE, NULL, REALM_SANDBOX_PATH_FILE},
    {"/etc/localtime", REALM_SANDBOX_PATH_SYMLINK, "/usr/share/zoneinfo/UTC",
     REALM_SANDBOX_PATH_FILE},
    {"/etc/ld.so.cache", REALM_SANDBOX_PATH_FILE, NULL, REALM_SANDBOX_PATH_FILE},
    {"/etc/nsswitch.conf", REALM_SANDBOX_PATH_SYMLINK, "/nowhere", REALM_SANDBOX_PATH_MISSING},
    {NULL, 0, NULL, 0},
};

/* An older layout: real /bin, /lib and /lib64 directories. */
static const fake_path_t split_host[] = {
    {"/bin", REALM_SANDBOX_PATH_DIR, NULL, REALM_SANDBOX_PATH_DIR},
    {"/lib", REALM_SANDBOX_PATH_DIR, NULL, REALM_SANDBOX_PATH_DIR},
    {"/lib64", REALM_SANDBOX_PATH_DIR, NULL, REALM_SANDBOX_PATH_DIR},
    {"/etc/ssl", REALM_SANDBOX_PATH_DIR, NULL, REALM_SANDBOX_PATH_DIR},
    {"/etc/resolv.conf", REALM_SANDBOX_PATH_FILE, NULL, REALM_SANDBOX_PATH_FILE},
    {NULL, 0, NULL, 0},
};

static realm_sandbox_path_kind_t fake_lookup(const char *path, int follow, char *target,
                                             size_t target_len, void *data)
{
    for (const fake_path_t *f = data; f->path; f++) {
        if (strcmp(f->path, path) != 0) continue;
        if (follow) return f->followed;
        if (f->kind == REALM_SANDBOX_PATH_SYMLINK) snprintf(target, target_len, "%s", f->target);
        return f->kind;
    }
    return REALM_SANDBOX_PATH_MISSING;
}

/* Index of the first run of n arguments equal to want[0..n-1], or -1. */
static long find_seq(const realm_sandbox_cmd_t *cmd, const char *const *want, size_t n)
{
    for (size_t i = 0; i + n <= cmd->argc; i++) {
        size_t k = 0;
        while (k < n && strcmp(cmd->argv[i + k], want[k]) == 0)
            k++;
        if (k == n) return (long)i;
    }
    return -1;
}

#define SEQ(cmd, ...)                                                                              \
    find_seq((cmd), (const char *const[]){__VA_ARGS__},                                            \
             sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static int mentions(const realm_sandbox_cmd_t *cmd, const char *s)
{
    for (size_t i = 0; i < cmd->argc; i++)
        if (strstr(cmd->argv[i], s)) return 1;
    return 0;
}

static const char *const test_env[] = {"AWS_REGION=eu-west-1", "SECRET=a=b c", "EMPTY=", NULL};
static const char *const test_cmd[] = {"/var/task/bootstrap", "--flag", NULL};

static realm_sandbox_spec_t base_spec(const fake_path_t *host)
{
    realm_sandbox_spec_t s = {
        .bwrap_path = "/usr/bin/bwrap",
        .bwrap_features = REALM_SANDBOX_BWRAP_ALL,
        .code_dir = "/data/packages/abc",
        .runtime_dir = "/data/runtimes/node20",
        .tmp_mb = 64,
        .runtime_socket = "/data/run/env-1.sock",
        .env = test_env,
        .has_network = 1,
        .argv = test_cmd,
        .uid = 993,
        .gid = 994,
        .seccomp_fd = 3,
        .lookup = fake_lookup,
        .lookup_data = (void *)host,
    };
    return s;
}

/* ------------------------------------------------------------------------ */
/* Command builder                                                          */
/* ------------------------------------------------------------------------ */

static void test_cmd_network_on(void **state)
{
    realm_sandbox_spec_t spec = base_spec(merged_host);
    realm_sandbox_cmd_t cmd;
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), 0);
    assert_string_equal(cmd.argv[0], "/usr/bin/bwrap");
    assert_null(cmd.argv[cmd.argc]);
    for (const char *const *f =
             (const char *const[]){"--unshare-user", "--unshare-ipc", "--unshare-pid",
                                   "--unshare-uts", "--unshare-cgroup-try", "--disable-userns",
                                   "--die-with-parent", "--new-session", "--clearenv", NULL};
         *f; f++)
        assert_cmp_int(SEQ(&cmd, *f), >, 0);
    assert_int_equal(SEQ(&cmd, "--unshare-net"), -1);
    assert_int_equal(SEQ(&cmd, "--share-net"), -1);
    assert_cmp_int(SEQ(&cmd, "--cap-drop", "ALL"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--uid", "993"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--gid", "994"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--ro-bind", "/usr", "/usr"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--proc", "/proc"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--dev", "/dev"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--size", "67108864", "--tmpfs", "/tmp"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--ro-bind", "/data/packages/abc", "/var/task"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--ro-bind", "/data/runtimes/node20", "/opt"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--ro-bind", "/data/run/env-1.sock", REALM_SANDBOX_RUNTIME_SOCKET), >,
                   0);
    assert_cmp_int(SEQ(&cmd, "--chdir", "/var/task"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--seccomp", "3"), >, 0);
    /* The root goes read-only after everything below it is mounted. */
    long ro = SEQ(&cmd, "--remount-ro", "/");
    assert_cmp_int(ro, >,
                   SEQ(&cmd, "--ro-bind", "/data/run/env-1.sock", REALM_SANDBOX_RUNTIME_SOCKET));
    assert_cmp_int(ro, >, SEQ(&cmd, "--tmpfs", "/tmp"));
    /* The command comes last, after "--". */
    long dd = SEQ(&cmd, "--", "/var/task/bootstrap", "--flag");
    assert_int_equal(dd, (long)cmd.argc - 3);
    realm_sandbox_cmd_dispose(&cmd);
    realm_sandbox_cmd_dispose(&cmd); /* twice is fine */
}

static void test_cmd_network_off(void **state)
{
    realm_sandbox_spec_t spec = base_spec(merged_host);
    spec.has_network = 0;
    realm_sandbox_cmd_t cmd;
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), 0);
    assert_cmp_int(SEQ(&cmd, "--unshare-net"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--unshare-net"), <, SEQ(&cmd, "--"));
    realm_sandbox_cmd_dispose(&cmd);
}

static void test_cmd_merged_usr_and_missing_paths(void **state)
{
    realm_sandbox_spec_t spec = base_spec(merged_host);
    realm_sandbox_cmd_t cmd;
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), 0);
    assert_cmp_int(SEQ(&cmd, "--symlink", "usr/bin", "/bin"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--symlink", "usr/sbin", "/sbin"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--symlink", "usr/lib", "/lib"), >, 0);
    assert_int_equal(SEQ(&cmd, "--ro-bind", "/bin", "/bin"), -1);
    /* Missing on the host: not mentioned at all. */
    assert_false(mentions(&cmd, "/lib64"));
    assert_false(mentions(&cmd, "/lib32"));
    assert_false(mentions(&cmd, "/etc/resolv.conf"));
    assert_false(mentions(&cmd, "/etc/ssl"));
    /* A dangling symlink counts as missing. */
    assert_false(mentions(&cmd, "/etc/nsswitch.conf"));
    /* Present: bound read-only (a symlink through to its target). */
    assert_cmp_int(SEQ(&cmd, "--ro-bind", "/etc/hosts", "/etc/hosts"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--ro-bind", "/etc/localtime", "/etc/localtime"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"), >, 0);
    /* Nothing else of /etc. */
    assert_false(mentions(&cmd, "/etc/passwd"));
    assert_int_equal(SEQ(&cmd, "--ro-bind", "/etc", "/etc"), -1);
    realm_sandbox_cmd_dispose(&cmd);
}

static void test_cmd_split_usr_old_bwrap(void **state)
{
    realm_sandbox_spec_t spec = base_spec(split_host);
    spec.bwrap_features = 0;
    spec.runtime_dir = NULL;
    spec.runtime_socket = NULL;
    spec.seccomp_fd = -1;
    spec.bwrap_path = NULL;
    realm_sandbox_cmd_t cmd;
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), 0);
    assert_string_equal(cmd.argv[0], "bwrap");
    assert_cmp_int(SEQ(&cmd, "--ro-bind", "/bin", "/bin"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--ro-bind", "/lib64", "/lib64"), >, 0);
    assert_int_equal(SEQ(&cmd, "--symlink"), -1);
    assert_false(mentions(&cmd, "/sbin"));
    assert_cmp_int(SEQ(&cmd, "--ro-bind", "/etc/ssl", "/etc/ssl"), >, 0);
    assert_cmp_int(SEQ(&cmd, "--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"), >, 0);
    /* Features the bwrap lacks are not used. */
    assert_int_equal(SEQ(&cmd, "--size"), -1);
    assert_int_equal(SEQ(&cmd, "--unshare-cgroup-try"), -1);
    assert_int_equal(SEQ(&cmd, "--disable-userns"), -1);
    assert_cmp_int(SEQ(&cmd, "--tmpfs", "/tmp"), >, 0);
    /* Optional parts left out. */
    assert_int_equal(SEQ(&cmd, "--seccomp"), -1);
    assert_false(mentions(&cmd, "/opt"));
    assert_false(mentions(&cmd, REALM_SANDBOX_RUNTIME_SOCKET));
    realm_sandbox_cmd_dispose(&cmd);
}

static void test_cmd_env_only_via_setenv(void **state)
{
    realm_sandbox_spec_t spec = base_spec(merged_host);
    realm_sandbox_cmd_t cmd;
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), 0);
    long clear = SEQ(&cmd, "--clearenv");
    assert_cmp_int(clear, >, 0);
    long a = SEQ(&cmd, "--setenv", "AWS_REGION", "eu-west-1");
    long b = SEQ(&cmd, "--setenv", "SECRET", "a=b c");
    long c = SEQ(&cmd, "--setenv", "EMPTY", "");
    assert_cmp_int(a, >, clear);
    assert_cmp_int(b, >, a);
    assert_cmp_int(c, >, b);
    size_t setenvs = 0;
    for (size_t i = 0; i < cmd.argc; i++) {
        if (strcmp(cmd.argv[i], "--setenv") == 0) setenvs++;
        /* No "NAME=value" string anywhere: nothing is passed by inheritance. */
        assert_null(strstr(cmd.argv[i], "AWS_REGION="));
        assert_null(strstr(cmd.argv[i], "SECRET="));
    }
    assert_int_equal(setenvs, 3);
    realm_sandbox_cmd_dispose(&cmd);

    spec.env = NULL;
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), 0);
    assert_cmp_int(SEQ(&cmd, "--clearenv"), >, 0);
    assert_int_equal(SEQ(&cmd, "--setenv"), -1);
    realm_sandbox_cmd_dispose(&cmd);
}

static void test_cmd_invalid_spec(void **state)
{
    realm_sandbox_cmd_t cmd;
    realm_sandbox_spec_t spec = base_spec(merged_host);
    spec.env = (const char *const[]){"OK=1", "NOEQUALS", NULL};
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), -EINVAL);
    assert_null(cmd.argv);
    spec.env = (const char *const[]){"=value", NULL};
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), -EINVAL);

    spec = base_spec(merged_host);
    spec.code_dir = NULL;
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), -EINVAL);
    spec.code_dir = "relative/dir";
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), -EINVAL);

    spec = base_spec(merged_host);
    spec.argv = (const char *const[]){NULL};
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), -EINVAL);
    spec.argv = NULL;
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), -EINVAL);

    spec = base_spec(merged_host);
    spec.runtime_socket = "sock";
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), -EINVAL);
    realm_sandbox_cmd_dispose(&cmd);
}

static void test_cmd_args_memfd(void **state)
{
    realm_sandbox_spec_t spec = base_spec(merged_host);
    realm_sandbox_cmd_t cmd;
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), 0);
    int fd = -1;
    assert_int_equal(realm_sandbox_cmd_args_memfd(&cmd, &fd), 0);
    assert_cmp_int(fd, >=, 0);
    assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    char buf[8192];
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    assert_cmp_int(n, >, 0);
    /* The options, argv[1..] up to "--", NUL-separated, each with its NUL. */
    assert_string_equal(cmd.argv[cmd.command_at - 1], "--");
    assert_string_equal(cmd.argv[cmd.command_at], "/var/task/bootstrap");
    size_t off = 0;
    for (size_t i = 1; i + 1 < cmd.command_at; i++) {
        assert_cmp_size(off, <, (size_t)n);
        assert_string_equal(buf + off, cmd.argv[i]);
        off += strlen(cmd.argv[i]) + 1;
    }
    assert_int_equal(off, (size_t)n);
    realm_sandbox_cmd_dispose(&cmd);
}

/* ------------------------------------------------------------------------ */
/* cgroups                                                                  */
/* ------------------------------------------------------------------------ */

/* This machine's layout when the tests were written: hybrid v1 + v2. */
static const char hybrid_mountinfo[] =
    "23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
static const char hybrid_cgroup[] = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/ac15\n"
                                    "3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";

static void expect_find(const char *mi, const char *pc, const char *ctrl, const char *want)
{
    char *got = realm_sandbox_cgroup_find(mi, pc, ctrl);
    if (!want) {
        if (got) fail_msg("%s: expected nothing, got %s", ctrl ? ctrl : "v2", got);
        return;
    }
    if (!got) fail_msg("%s: expected %s, got nothing", ctrl ? ctrl : "v2", want);
    assert_string_equal(got, want);
    free(got);
}

static void test_cgroup_find_hybrid(void **state)
{
    expect_find(hybrid_mountinfo, hybrid_cgroup, "memory",
                "/sys/fs/cgroup/memory/process_api/ac15");
    expect_find(hybrid_mountinfo, hybrid_cgroup, "pids", "/sys/fs/cgroup/pids");
    /* "cpu" is not "cpuset" nor "cpuacct". */
    expect_find(hybrid_mountinfo, hybrid_cgroup, "cpu", "/sys/fs/cgroup/cpu");
    expect_find(hybrid_mountinfo, hybrid_cgroup, NULL, "/sys/fs/cgroup/unified");
    expect_find(hybrid_mountinfo, hybrid_cgroup, "hugetlb", NULL);
}

static void test_cgroup_find_other_layouts(void **state)
{
    /* Pure v2 with a nested group. */
    const char *mi = "30 22 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
    const char *pc = "0::/system.slice/realm.service\n";
    expect_find(mi, pc, NULL, "/sys/fs/cgroup/system.slice/realm.service");
    expect_find(mi, pc, "memory", NULL);

    /* cpu and cpuacct co-mounted; a container that sees only part of the tree. */
    mi = "40 31 0:40 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw master:1 - cgroup cgroup "
         "rw,cpu,cpuacct\n"
         "41 31 0:41 /docker/abc /sys/fs/cgroup/mem\\040ory rw - cgroup cgroup rw,memory\n";
    pc = "5:cpu,cpuacct:/docker/abc/sub\n4:memory:/docker/abc\n";
    expect_find(mi, pc, "cpu", "/sys/fs/cgroup/cpu,cpuacct/sub");
    expect_find(mi, pc, "cpuacct", "/sys/fs/cgroup/cpu,cpuacct/sub");
    expect_find(mi, pc, "memory", "/sys/fs/cgroup/mem ory");
    /* Our group outside the mounted subtree (and not a prefix match). */
    pc = "5:cpu,cpuacct:/docker/abcdef\n";
    expect_find(mi, pc, "cpu", NULL);
    expect_find("", "", NULL, NULL);
}

/* ------------------------------------------------------------------------ */
/* Probe and seccomp                                                        */
/* ------------------------------------------------------------------------ */

static void test_probe_summary_handmade(void **state)
{
    realm_sandbox_probe_t p;
    memset(&p, 0, sizeof(p));
    p.bwrap_path = strdup("/usr/bin/bwrap");
    p.bwrap_version = strdup("0.8.0");
    p.is_bwrap_usable = 1;
    p.bwrap_features = REALM_SANDBOX_BWRAP_ALL;
    p.has_cgroup_ns = 1;
    p.has_seccomp = 1;
    p.cg[REALM_SANDBOX_CG_MEMORY].version = REALM_SANDBOX_CG_V1;
    p.cg[REALM_SANDBOX_CG_PIDS].version = REALM_SANDBOX_CG_V1;
    p.cg[REALM_SANDBOX_CG_CPU].version = REALM_SANDBOX_CG_V1;
    assert_string_equal(realm_sandbox_probe_summarize(&p),
                        "sandbox: bubblewrap 0.8.0 (user, mount, pid, ipc, uts, net, cgroup "
                        "namespaces), seccomp on, cgroup v1 memory+pids+cpu");

    p.cg[REALM_SANDBOX_CG_MEMORY].version = REALM_SANDBOX_CG_V2;
    p.cg[REALM_SANDBOX_CG_CPU].version = REALM_SANDBOX_CG_NONE;
    p.has_seccomp = 0;
    p.seccomp_error = strdup("seccomp_init failed: Cannot allocate memory");
    p.bwrap_features = 0;
    assert_string_equal(realm_sandbox_probe_summarize(&p),
                        "sandbox: bubblewrap 0.8.0 (user, mount, pid, ipc, uts, net namespaces), "
                        "/tmp size not enforced (bwrap has no --size), seccomp off "
                        "(seccomp_init failed: Cannot allocate memory), cgroup v2 memory, "
                        "v1 pids (not enforced: cpu)");

    p.is_bwrap_usable = 0;
    p.bwrap_error = strdup("No permissions to create new namespace");
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++)
        p.cg[i].version = REALM_SANDBOX_CG_NONE;
    const char *s = realm_sandbox_probe_summarize(&p);
    assert_non_null(strstr(s, "cannot create namespaces here (No permissions"));
    assert_non_null(strstr(s, "cgroup none (not enforced: memory+pids+cpu)"));

    free(p.bwrap_path);
    p.bwrap_path = NULL;
    s = realm_sandbox_probe_summarize(&p);
    assert_non_null(strstr(s, "bubblewrap not found"));
    realm_sandbox_probe_dispose(&p);
    realm_sandbox_probe_dispose(&p);
}

static void test_probe_this_machine(void **state)
{
    realm_sandbox_probe_t p;
    realm_sandbox_probe_init(&p);
    assert_non_null(p.summary);
    assert_prefix(p.summary, "sandbox: ");
    assert_cmp_size(strlen(p.summary), >, 20);
    assert_null(strchr(p.summary, '\n'));
    fprintf(stderr, "    probe: %s\n", p.summary);
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++)
        if (p.cg[i].dir) fprintf(stderr, "    cgroup v%d %s\n", p.cg[i].version, p.cg[i].dir);
    if (p.is_bwrap_usable) {
        assert_non_null(p.bwrap_path);
        assert_non_null(p.bwrap_version);
    }
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++)
        assert_true((p.cg[i].version == REALM_SANDBOX_CG_NONE) == (p.cg[i].dir == NULL));
    realm_sandbox_probe_dispose(&p);
}

static void test_seccomp_build(void **state)
{
    realm_buf_t bpf;
    realm_buf_init(&bpf);
    const char *err = NULL;
    int rc = realm_sandbox_seccomp_build(&bpf, &err);
    if (rc != 0) fail_msg("seccomp_build: %d %s", rc, err ? err : "");
    /* struct sock_filter is 8 bytes; a deny list is tens of instructions. */
    assert_int_equal(bpf.len % 8, 0);
    assert_cmp_size(bpf.len / 8, >, 30);

    int fd = -1;
    assert_int_equal(realm_sandbox_seccomp_memfd(bpf.data, bpf.len, &fd), 0);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal((size_t)st.st_size, bpf.len);
    close(fd);
    realm_buf_dispose(&bpf);
}

/* ------------------------------------------------------------------------ */
/* End to end (skipped when bubblewrap cannot run here)                     */
/* ------------------------------------------------------------------------ */

typedef struct {
    realm_sandbox_probe_t probe;
    char tmp[64];  /* mkdtemp directory */
    char code[96]; /* tmp/code: one file, "handler.js" */
    char opt[96];  /* tmp/opt: empty */
    char sock[96]; /* tmp/rt.sock: a listening unix socket */
    int listen_fd;
    realm_buf_t bpf;
} e2e_t;

static int e2e_setup(void **state)
{
    e2e_t *e = calloc(1, sizeof(*e));
    *state = e; /* so the teardown runs on a half-built fixture too */
    realm_sandbox_probe_init(&e->probe);
    realm_buf_init(&e->bpf);
    e->listen_fd = -1;
    if (fx_tmpdir_make(e->tmp, sizeof(e->tmp), "sandbox") != 0) return -1;
    chmod(e->tmp, 0755);
    snprintf(e->code, sizeof(e->code), "%s/code", e->tmp);
    snprintf(e->opt, sizeof(e->opt), "%s/opt", e->tmp);
    snprintf(e->sock, sizeof(e->sock), "%s/rt.sock", e->tmp);
    if (mkdir(e->code, 0755) < 0 || mkdir(e->opt, 0755) < 0) return -1;
    char path[160];
    snprintf(path, sizeof(path), "%s/handler.js", e->code);
    if (fx_write_file(path, "exports.handler = async () => 1;\n") != 0) return -1;
    e->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", e->sock);
    if (bind(e->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(e->listen_fd, 4) < 0)
        return -1;
    if (realm_sandbox_seccomp_build(&e->bpf, NULL) < 0) return -1;
    return 0;
}

static int e2e_teardown(void **state)
{
    e2e_t *e = *state;
    if (e->listen_fd >= 0) close(e->listen_fd);
    fx_tmpdir_remove(e->tmp); /* code/, opt/, rt.sock, and whatever a sandbox leaked */
    realm_buf_dispose(&e->bpf);
    realm_sandbox_probe_dispose(&e->probe);
    free(e);
    return 0;
}

/*
 * Runs the command (argv, or `bwrap --args 4` when use_args_fd) with the
 * seccomp program at fd 3 if with_seccomp, output into *out. Returns the
 * exit code (or 128 + signal).
 */
static int e2e_run(e2e_t *e, const char *script, int with_seccomp, int use_args_fd,
                   unsigned features, realm_buf_t *out)
{
    const char *env[] = {"PATH=/usr/bin:/bin", "FOO=bar baz", NULL};
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    realm_sandbox_spec_t spec = {
        .bwrap_path = e->probe.bwrap_path,
        .bwrap_features = features,
        .code_dir = e->code,
        .runtime_dir = e->opt,
        .tmp_mb = 1,
        .runtime_socket = e->sock,
        .env = env,
        .has_network = 0,
        .argv = argv,
        .uid = 993,
        .gid = 994,
        .seccomp_fd = with_seccomp ? 3 : -1,
    };
    realm_sandbox_cmd_t cmd;
    assert_int_equal(realm_sandbox_cmd_init(&cmd, &spec), 0);

    int sfd = -1, afd = -1, pipefd[2];
    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    if (with_seccomp) {
        assert_int_equal(realm_sandbox_seccomp_memfd(e->bpf.data, e->bpf.len, &sfd), 0);
        posix_spawn_file_actions_adddup2(&fa, sfd, 3);
    }
    char *args_argv[16] = {cmd.argv[0], "--args", "4", "--", NULL};
    for (size_t i = cmd.command_at, k = 4; i < cmd.argc && k < 15; i++, k++)
        args_argv[k] = cmd.argv[i];
    if (use_args_fd) {
        assert_int_equal(realm_sandbox_cmd_args_memfd(&cmd, &afd), 0);
        posix_spawn_file_actions_adddup2(&fa, afd, 4);
    }
    pid_t pid;
    int rc = posix_spawn(&pid, cmd.argv[0], &fa, NULL, use_args_fd ? args_argv : cmd.argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    if (sfd >= 0) close(sfd);
    if (afd >= 0) close(afd);
    assert_int_equal(rc, 0);
    char chunk[4096];
    ssize_t n;
    while ((n = read(pipefd[0], chunk, sizeof(chunk))) > 0)
        realm_buf_append(out, chunk, (size_t)n);
    close(pipefd[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!out->data) realm_buf_appends(out, "");
    realm_sandbox_cmd_dispose(&cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#define E2E_SKIP_UNLESS_USABLE(e)                                                                  \
    do {                                                                                           \
        if (!(e)->probe.is_bwrap_usable) {                                                         \
            fprintf(stderr, "    skipped: %s\n", (e)->probe.summary);                              \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static void expect_line(const realm_buf_t *out, const char *line)
{
    char want[256];
    snprintf(want, sizeof(want), "\n%s\n", line);
    realm_buf_t b;
    realm_buf_init(&b);
    realm_buf_appendf(&b, "\n%s", out->data);
    if (!strstr(b.data, want)) fail_msg("no line \"%s\" in output:\n%s", line, out->data);
    realm_buf_dispose(&b);
}

static void test_e2e_isolation(void **state)
{
    e2e_t *e = *state;
    E2E_SKIP_UNLESS_USABLE(e);
    const char *script = "id -u; id -g; grep CapEff /proc/self/status; ls /var/task;"
                         "echo x > /var/task/y 2>/dev/null; echo task_write=$?;"
                         "touch /newfile 2>/dev/null; echo root_write=$?;"
                         "echo x > /tmp/ok; echo tmp_write=$?;"
                         "head -c 2000000 /dev/zero > /tmp/big 2>/dev/null; echo tmp_big=$?;"
                         "test -S " REALM_SANDBOX_RUNTIME_SOCKET "; echo sock=$?;"
                         "test -e /root -o -e /home -o -e /work; echo host=$?;"
                         "echo pid1=$(cat /proc/1/comm); echo host=$(hostname);"
                         "echo argv_env=$(tr '\\0' ' ' < /proc/1/cmdline | grep -c 'set[e]nv');"
                         "echo env=$(env | grep -v -e ^PWD= -e ^SHLVL= -e ^_= | sort | tr '\\n' ,)";
    realm_buf_t out;
    realm_buf_init(&out);
    int code = e2e_run(e, script, 1, 0, e->probe.bwrap_features, &out);
    fprintf(stderr, "%s", out.data);
    assert_int_equal(code, 0);
    expect_line(&out, "993");
    expect_line(&out, "994");
    expect_line(&out, "CapEff:\t0000000000000000");
    expect_line(&out, "handler.js");
    expect_line(&out, "task_write=2"); /* sh: redirection failed (read-only) */
    expect_line(&out, "root_write=1");
    expect_line(&out, "tmp_write=0");
    expect_line(&out, "tmp_big=1"); /* /tmp holds 1 MB */
    expect_line(&out, "sock=0");
    expect_line(&out, "host=1");
    expect_line(&out, "pid1=bwrap"); /* bwrap's reaper: a pid namespace of our own */
    expect_line(&out, "host=realm");
    expect_line(&out, "argv_env=1"); /* the control for test_e2e_args_fd_and_network */
    expect_line(&out, "env=FOO=bar baz,PATH=/usr/bin:/bin,");
    char path[160];
    snprintf(path, sizeof(path), "%s/y", e->code);
    assert_int_equal(access(path, F_OK), -1);
    realm_buf_dispose(&out);
}

static void test_e2e_seccomp_denies(void **state)
{
    e2e_t *e = *state;
    E2E_SKIP_UNLESS_USABLE(e);
    /* unshare -U inside is allowed by the kernel but not by us; same for a
     * mount in that new namespace (where the caller would be root). */
    const char *script =
        "unshare -U true 2>/dev/null; echo unshare=$?;"
        "unshare -Urm sh -c 'mount -t tmpfs x /tmp' 2>/dev/null; echo mount=$?;"
        "unshare -U sh -c 'echo in_userns' 2>&1 | grep -c 'Operation not permitted';"
        "setarch -R true 2>/dev/null; echo aslr_off=$?;"
        "setarch --uname-2.6 true; echo uname26=$?;"
        "python3 -c 'import ctypes; "
        "print(\"query=%d\" % (ctypes.CDLL(None).personality(0xffffffff) >= 0))'";
    realm_buf_t out;
    realm_buf_init(&out);
    /* Control: without the filter (and without --disable-userns) it works. */
    e2e_run(e, script, 0, 0, e->probe.bwrap_features & ~REALM_SANDBOX_BWRAP_DISABLE_USERNS, &out);
    fprintf(stderr, "    without seccomp: %s", out.data);
    expect_line(&out, "unshare=0");
    expect_line(&out, "mount=0");
    expect_line(&out, "aslr_off=0");
    realm_buf_reset(&out);
    e2e_run(e, script, 1, 0, e->probe.bwrap_features & ~REALM_SANDBOX_BWRAP_DISABLE_USERNS, &out);
    fprintf(stderr, "    with seccomp: %s", out.data);
    expect_line(&out, "unshare=1");
    expect_line(&out, "mount=1");
    expect_line(&out, "1"); /* EPERM, not some other failure */
    expect_line(&out, "aslr_off=1");
    expect_line(&out, "uname26=0");
    expect_line(&out, "query=1");
    realm_buf_dispose(&out);
}

static void test_e2e_args_fd_and_network(void **state)
{
    e2e_t *e = *state;
    E2E_SKIP_UNLESS_USABLE(e);
    /* Through --args the environment is not on bwrap's command line. */
    const char *script = "echo foo=$FOO; cat /proc/net/dev | grep -c ':';"
                         "echo leaked=$(tr '\\0' ' ' < /proc/1/cmdline | grep -c 'set[e]nv')";
    realm_buf_t out;
    realm_buf_init(&out);
    int code = e2e_run(e, script, 1, 1, e->probe.bwrap_features, &out);
    fprintf(stderr, "%s", out.data);
    assert_int_equal(code, 0);
    expect_line(&out, "foo=bar baz");
    expect_line(&out, "1"); /* network off: only lo */
    expect_line(&out, "leaked=0");
    realm_buf_dispose(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmd_network_on),
        cmocka_unit_test(test_cmd_network_off),
        cmocka_unit_test(test_cmd_merged_usr_and_missing_paths),
        cmocka_unit_test(test_cmd_split_usr_old_bwrap),
        cmocka_unit_test(test_cmd_env_only_via_setenv),
        cmocka_unit_test(test_cmd_invalid_spec),
        cmocka_unit_test(test_cmd_args_memfd),
        cmocka_unit_test(test_cgroup_find_hybrid),
        cmocka_unit_test(test_cgroup_find_other_layouts),
        cmocka_unit_test(test_probe_summary_handmade),
        cmocka_unit_test(test_probe_this_machine),
        cmocka_unit_test(test_seccomp_build),
        cmocka_unit_test_setup_teardown(test_e2e_isolation, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_e2e_seccomp_denies, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_e2e_args_fd_and_network, e2e_setup, e2e_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
