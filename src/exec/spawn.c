/*
 * spawn.c - one sandboxed process on the loop (see spawn.h).
 */
#include "exec/spawn.h"

#include "base/alloc.h"
#include "base/log.h"

#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK 65536
#define REMOVE_RETRY_MS 10
#define REMOVE_TRIES 200 /* 2 s */

struct realm_spawn_s {
    uv_process_t proc;
    uv_pipe_t out, err;
    uv_pipe_t info, block; /* wait_ready: bwrap's --info-fd and --block-fd */
    realm_buf_t info_text;
    uv_timer_t timer; /* retries removing the cgroups */
    realm_spawn_cb_t cb;
    void *data;
    realm_sandbox_group_t group;
    int open_handles; /* closes pending before the memory can go */
    int tries;
    unsigned is_running : 1;
    unsigned is_freed : 1;
    unsigned has_group : 1;
    unsigned has_ready_pipes : 1;
    unsigned is_ready : 1;
    unsigned is_gone : 1; /* the go-ahead was given (or the pipes closed) */
};

static void maybe_release(realm_spawn_t *sp)
{
    if (sp->open_handles == 0 && sp->is_freed && !sp->has_group) {
        realm_buf_dispose(&sp->info_text);
        free(sp);
    }
}

static void on_closed(uv_handle_t *h)
{
    realm_spawn_t *sp = h->data;
    sp->open_handles--;
    maybe_release(sp);
}

static void close_handle(realm_spawn_t *sp, uv_handle_t *h)
{
    if (uv_is_closing(h)) return;
    sp->open_handles++;
    uv_close(h, on_closed);
}

/* ---- output ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = realm_malloc(READ_CHUNK);
    buf->len = READ_CHUNK;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    realm_spawn_t *sp = s->data;
    int stream = s == (uv_stream_t *)&sp->out ? 1 : 2;
    if (n > 0 && sp->cb.on_output && !sp->is_freed)
        sp->cb.on_output(sp, stream, buf->base, (size_t)n, sp->data);
    free(buf->base);
    if (n < 0) uv_read_stop(s);
}

void realm_spawn_drain(realm_spawn_t *sp)
{
    if (sp->is_freed || !sp->is_running) return;
    uv_pipe_t *pipes[2] = {&sp->out, &sp->err};
    char chunk[READ_CHUNK];
    for (int i = 0; i < 2; i++) {
        uv_os_fd_t fd;
        if (uv_is_closing((uv_handle_t *)pipes[i]) || uv_fileno((uv_handle_t *)pipes[i], &fd) != 0)
            continue;
        /* libuv's pipe is non-blocking: this stops at EAGAIN, and the
         * loop's own read later finds nothing or what came after. */
        for (int rounds = 0; rounds < 64; rounds++) {
            ssize_t n = read(fd, chunk, sizeof(chunk));
            if (n <= 0) break;
            if (sp->cb.on_output) sp->cb.on_output(sp, i + 1, chunk, (size_t)n, sp->data);
            if (sp->is_freed) return;
        }
    }
}

/* ---- ready (bwrap's info, then the go-ahead) ---- */

static void ready_done(realm_spawn_t *sp)
{
    sp->is_gone = 1;
    close_handle(sp, (uv_handle_t *)&sp->info);
    close_handle(sp, (uv_handle_t *)&sp->block);
}

static void on_info(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    realm_spawn_t *sp = s->data;
    if (n > 0) realm_buf_append(&sp->info_text, buf->base, (size_t)n);
    free(buf->base);
    if (sp->is_ready || sp->is_freed) return;
    /* bwrap writes one JSON object: {"child-pid": N, ...namespaces}. */
    json_t *j =
        sp->info_text.len ? json_loadb(sp->info_text.data, sp->info_text.len, 0, NULL) : NULL;
    json_int_t pid = json_integer_value(json_object_get(j, "child-pid"));
    json_decref(j);
    if (pid > 0) {
        sp->is_ready = 1;
        uv_read_stop(s);
        int hold = sp->cb.on_ready ? sp->cb.on_ready(sp, (int)pid, sp->data) : 0;
        if (!hold) realm_spawn_go(sp);
    } else if (n < 0) {
        /* No info: bwrap failed; its exit says why. */
        uv_read_stop(s);
        ready_done(sp);
    }
}

void realm_spawn_go(realm_spawn_t *sp)
{
    if (!sp->has_ready_pipes || sp->is_gone || !sp->is_ready) return;
    sp->is_gone = 1;
    if (!sp->is_freed) {
        uv_buf_t go = uv_buf_init("1", 1);
        uv_try_write((uv_stream_t *)&sp->block, &go, 1);
    }
    ready_done(sp);
}

/* ---- the end ---- */

static void on_remove_tick(uv_timer_t *t)
{
    realm_spawn_t *sp = t->data;
    if (realm_sandbox_group_destroy(&sp->group) == 0 || ++sp->tries >= REMOVE_TRIES) {
        if (sp->tries >= REMOVE_TRIES) realm_warn("spawn: cgroups of an environment stay behind");
        sp->has_group = 0;
        uv_timer_stop(t);
        close_handle(sp, (uv_handle_t *)t);
    }
}

/* Closes the handles and starts removing the cgroups; memory goes after. */
static void finish(realm_spawn_t *sp)
{
    close_handle(sp, (uv_handle_t *)&sp->proc);
    close_handle(sp, (uv_handle_t *)&sp->out);
    close_handle(sp, (uv_handle_t *)&sp->err);
    if (sp->has_ready_pipes) ready_done(sp);
    if (sp->has_group) {
        /* Members may still be exiting: retry until the groups go. */
        uv_timer_start(&sp->timer, on_remove_tick, 0, REMOVE_RETRY_MS);
    } else {
        close_handle(sp, (uv_handle_t *)&sp->timer);
    }
}

static void on_exit_cb(uv_process_t *p, int64_t status, int term_signal)
{
    realm_spawn_t *sp = p->data;
    sp->is_running = 0;
    int oom = sp->has_group && realm_sandbox_group_oom(&sp->group);
    /* bwrap is gone; whatever it left in the groups goes too. */
    if (sp->has_group) realm_sandbox_group_kill(&sp->group);
    if (sp->is_freed) {
        finish(sp); /* freed while running: the end was all we waited for */
        return;
    }
    if (sp->cb.on_exit) sp->cb.on_exit(sp, status, term_signal, oom, sp->data);
}

/* ---- start ---- */

static void dispose_cmd_fds(realm_sandbox_cmd_t *cmd, int fd1, int fd2)
{
    realm_sandbox_cmd_dispose(cmd);
    if (fd1 >= 0) close(fd1);
    if (fd2 >= 0) close(fd2);
}

/* Staged paths: what the trampoline binds where (see stage.c). */
typedef struct {
    char dst[REALM_SANDBOX_STAGE_MAX_BINDS][64];
    const char *src[REALM_SANDBOX_STAGE_MAX_BINDS];
    size_t n;
    const char *binds[2 * REALM_SANDBOX_STAGE_MAX_BINDS + 1];
    char scratch_mb[24];
} stage_t;

static const char *stage_path(stage_t *st, const char *src)
{
    if (!src || st->n >= REALM_SANDBOX_STAGE_MAX_BINDS) return src;
    snprintf(st->dst[st->n], sizeof(st->dst[0]), "%s/%zu", REALM_SANDBOX_STAGE_DIR, st->n);
    st->src[st->n] = src;
    return st->dst[st->n++];
}

/* Rewrites the spec's host paths to staged ones, for an unprivileged bwrap. */
static void stage_spec(stage_t *st, realm_sandbox_spec_t *spec, const realm_spawn_opts_t *o)
{
    spec->code_dir = stage_path(st, spec->code_dir);
    spec->runtime_dir = stage_path(st, spec->runtime_dir);
    size_t nb = 0;
    if (spec->ro_binds) {
        for (const char *const *b = spec->ro_binds; *b && nb + 2 < sizeof(st->binds) / sizeof(char *);
             b += 2) {
            st->binds[nb++] = stage_path(st, b[0]);
            st->binds[nb++] = b[1];
        }
        st->binds[nb] = NULL;
        spec->ro_binds = st->binds;
    }
    if (o->scratch_dir) {
        spec->tmp_dir = REALM_SANDBOX_STAGE_DIR "/tmp";
        snprintf(st->scratch_mb, sizeof(st->scratch_mb), "%zu", spec->tmp_mb ? spec->tmp_mb : 512);
    }
    if (o->resolv_text) spec->resolv_conf = REALM_SANDBOX_STAGE_DIR "/resolv.conf";
}

int realm_spawn_start(uv_loop_t *loop, const realm_spawn_opts_t *o, const realm_spawn_cb_t *cb,
                      void *data, realm_spawn_t **out, char *err, size_t err_len)
{
    realm_sandbox_spec_t spec = o->spec;
    int is_root = geteuid() == 0;
    int staged = is_root && (o->host_uid || o->scratch_dir || o->resolv_text);
    stage_t st;
    memset(&st, 0, sizeof(st));
    if (staged) stage_spec(&st, &spec, o);
    /* The trampoline execs without a PATH search. */
    if (!spec.bwrap_path) spec.bwrap_path = o->probe->bwrap_path;
    if (!spec.bwrap_path) {
        snprintf(err, err_len, "bubblewrap (bwrap) was not found");
        return -1;
    }
    spec.seccomp_fd = o->bpf_len ? REALM_SPAWN_SECCOMP_FD : -1;
    spec.ready_fds = o->wait_ready ? 1 : 0;
    realm_sandbox_cmd_t cmd = {0};
    int bpf_fd = -1, args_fd = -1, rc;
    if ((rc = realm_sandbox_cmd_init(&cmd, &spec)) != 0) {
        snprintf(err, err_len, "sandbox command: %s", strerror(-rc));
        return -1;
    }
    if (o->bpf_len && (rc = realm_sandbox_seccomp_memfd(o->bpf, o->bpf_len, &bpf_fd)) != 0) {
        snprintf(err, err_len, "seccomp memfd: %s", strerror(-rc));
        dispose_cmd_fds(&cmd, -1, -1);
        return -1;
    }
    if ((rc = realm_sandbox_cmd_args_memfd(&cmd, &args_fd)) != 0) {
        snprintf(err, err_len, "bwrap --args memfd: %s", strerror(-rc));
        dispose_cmd_fds(&cmd, bpf_fd, -1);
        return -1;
    }
    realm_spawn_t *sp = realm_calloc(1, sizeof(*sp));
    sp->cb = *cb;
    sp->data = data;
    if (realm_sandbox_group_create(&sp->group, o->probe, o->name, &o->limits, err, err_len) != 0) {
        dispose_cmd_fds(&cmd, bpf_fd, args_fd);
        free(sp);
        return -1;
    }
    sp->has_group = 1;

    /* argv: [self __spawn --cgroup procs... stage... --] bwrap --args 4 -- command... */
    size_t cmd_argc = cmd.argc - cmd.command_at;
    const char **argv = realm_calloc(2 * REALM_SANDBOX_CG_COUNT + 3 * st.n + 24 + cmd_argc,
                                     sizeof(char *));
    char user[48];
    snprintf(user, sizeof(user), "%u:%u", (unsigned)o->host_uid, (unsigned)o->host_gid);
    char procs[REALM_SANDBOX_CG_COUNT][4200];
    size_t n = 0, groups = 0;
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT; i++) {
        if (!sp->group.dirs[i]) continue;
        int dup_dir = 0;
        for (int j = 0; j < i; j++)
            if (sp->group.dirs[j] && strcmp(sp->group.dirs[j], sp->group.dirs[i]) == 0) dup_dir = 1;
        if (dup_dir) continue;
        snprintf(procs[groups], sizeof(procs[groups]), "%s/cgroup.procs", sp->group.dirs[i]);
        groups++;
    }
    if (groups || staged) {
        argv[n++] = o->self_exe;
        argv[n++] = "__spawn";
        for (size_t i = 0; i < groups; i++) {
            argv[n++] = "--cgroup";
            argv[n++] = procs[i];
        }
        for (size_t i = 0; i < st.n; i++) {
            argv[n++] = "--bind";
            argv[n++] = st.src[i];
            argv[n++] = st.dst[i];
        }
        if (staged && o->scratch_dir) {
            argv[n++] = "--scratch";
            argv[n++] = o->scratch_dir;
            argv[n++] = st.scratch_mb;
            argv[n++] = spec.tmp_dir;
        }
        if (staged && o->resolv_text) {
            argv[n++] = "--file";
            argv[n++] = spec.resolv_conf;
            argv[n++] = o->resolv_text;
        }
        if (staged && o->host_uid) {
            argv[n++] = "--user";
            argv[n++] = user;
        }
        argv[n++] = "--";
    }
    char args_num[16];
    snprintf(args_num, sizeof(args_num), "%d", REALM_SPAWN_ARGS_FD);
    argv[n++] = cmd.argv[0];
    argv[n++] = "--args";
    argv[n++] = args_num;
    argv[n++] = "--";
    for (size_t i = cmd.command_at; i < cmd.argc; i++)
        argv[n++] = cmd.argv[i];
    argv[n] = NULL;

    uv_pipe_init(loop, &sp->out, 0);
    uv_pipe_init(loop, &sp->err, 0);
    uv_timer_init(loop, &sp->timer);
    sp->proc.data = sp->out.data = sp->err.data = sp->timer.data = sp;
    uv_stdio_container_t stdio[7];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&sp->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&sp->err;
    /* Without a filter, fd 3 is /dev/null's place-holder: ignored. */
    stdio[3].flags = bpf_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE;
    stdio[3].data.fd = bpf_fd;
    stdio[4].flags = UV_INHERIT_FD;
    stdio[4].data.fd = args_fd;
    uv_process_options_t po = {0};
    po.exit_cb = on_exit_cb;
    po.file = argv[0];
    po.args = (char **)argv;
    po.stdio = stdio;
    po.stdio_count = 5;
    realm_buf_init(&sp->info_text);
    if (o->wait_ready) {
        uv_pipe_init(loop, &sp->info, 0);
        uv_pipe_init(loop, &sp->block, 0);
        sp->info.data = sp->block.data = sp;
        sp->has_ready_pipes = 1;
        stdio[REALM_SANDBOX_INFO_FD].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[REALM_SANDBOX_INFO_FD].data.stream = (uv_stream_t *)&sp->info;
        stdio[REALM_SANDBOX_BLOCK_FD].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
        stdio[REALM_SANDBOX_BLOCK_FD].data.stream = (uv_stream_t *)&sp->block;
        po.stdio_count = 7;
    }
    /* The environment is in the --args memfd; the host process gets none. */
    char *no_env[] = {NULL};
    po.env = no_env;
    rc = uv_spawn(loop, &sp->proc, &po);
    free(argv);
    dispose_cmd_fds(&cmd, bpf_fd, args_fd);
    if (rc != 0) {
        snprintf(err, err_len, "spawn %s: %s", po.file, uv_strerror(rc));
        sp->is_freed = 1;
        close_handle(sp, (uv_handle_t *)&sp->out);
        close_handle(sp, (uv_handle_t *)&sp->err);
        close_handle(sp, (uv_handle_t *)&sp->timer);
        if (sp->has_ready_pipes) ready_done(sp);
        /* The process handle was never active: nothing to close for it. */
        realm_sandbox_group_destroy(&sp->group);
        sp->has_group = 0;
        return -1;
    }
    sp->is_running = 1;
    uv_read_start((uv_stream_t *)&sp->out, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&sp->err, on_alloc, on_read);
    if (sp->has_ready_pipes) uv_read_start((uv_stream_t *)&sp->info, on_alloc, on_info);
    *out = sp;
    return 0;
}

void realm_spawn_kill(realm_spawn_t *sp)
{
    if (!sp->is_running) return;
    if (sp->has_group) realm_sandbox_group_kill(&sp->group);
    uv_process_kill(&sp->proc, SIGKILL);
}

int realm_spawn_pid(const realm_spawn_t *sp)
{
    return sp->proc.pid;
}

const realm_sandbox_group_t *realm_spawn_group(const realm_spawn_t *sp)
{
    return &sp->group;
}

void realm_spawn_free(realm_spawn_t *sp)
{
    if (!sp || sp->is_freed) return;
    sp->is_freed = 1;
    /* A running process is killed and reaped first (closing its handle now
     * would leave a zombie): on_exit_cb finishes. */
    if (sp->is_running)
        realm_spawn_kill(sp);
    else
        finish(sp);
}

