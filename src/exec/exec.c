/*
 * exec.c - pools of execution environments and the invocations they run
 * (see exec.h).
 *
 * STATES of an environment:
 *   STARTING  spawned; has not asked for work yet (init timeout armed)
 *   IDLE      a `next` is waiting (idle timeout armed)
 *   BUSY      one invocation is open (its deadline armed)
 *   RESTING   answered; its next `next` has not come yet (a short grace
 *             timer: while it runs the environment counts as about to be
 *             idle, so a caller that invokes again right after its answer
 *             reuses it instead of starting another)
 *   STOPPING  killed or exited; off its pool, waiting to be reaped
 * An environment leaves its pool's counts the moment it stops, so the
 * replacement can start before the old process is reaped.
 *
 * LATER: realm_exec_invoke never ends an invocation inside its own call
 * (libuv's callback rule). An invocation refused at once (reserved
 * concurrency 0, a full queue) or one pump could not start an environment
 * for is put on the engine's `later` list and ended from an idle handle on
 * a later loop turn. Each turn ends only what was on the list when the turn
 * began, so a caller that invokes again from on_done (the Event queue does)
 * gets its answer on the next turn, not in a deeper stack frame: the stack
 * stays flat and I/O is polled between turns. A later invocation can still
 * be cancelled; then nothing is reported.
 */
#include "exec/exec.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/str.h"
#include "exec/netstack.h"
#include "exec/spawn.h"
#include "runtimes/runtimes.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <stdarg.h>

#define RESTING_GRACE_MS 250
#define PROVISION_GIVE_UP 3 /* init deaths in a row before provisioning stops */
#define TAIL_KEEP (REALM_EXEC_TAIL_BYTES * 2)
#define SANDBOX_UID 993 /* sbx_user1051, as on Lambda */
#define TENANT_UID_BASE 20000
#define MAX_BINDS 8 /* a function's own read-only binds */

typedef enum { ENV_STARTING, ENV_IDLE, ENV_BUSY, ENV_RESTING, ENV_STOPPING } env_state_t;

typedef struct pool_s pool_t;

struct realm_inv_s {
    realm_exec_t *x;
    pool_t *pool;
    realm_env_t *env;         /* while bound */
    realm_inv_t *prev, *next; /* the pool's queue */
    char request_id[64];
    char *payload;
    size_t payload_len;
    char *invoked_arn;
    char *client_context;
    char trace_id[128];
    realm_inv_sink_t sink;
    void *data;
    int64_t deadline_ms;
    uint64_t queued_at, started_ns;
    realm_buf_t log; /* the tail of this invocation's log */
    /* On the engine's later list (is_ending): how it ends, and the links. */
    realm_inv_t *later_prev, *later_next;
    uint64_t later_seq; /* order on the later list */
    realm_inv_status_t later_status;
    char *later_type; /* owned, or NULL */
    char *later_msg;  /* owned, or NULL */
    unsigned is_queued : 1;
    unsigned is_ending : 1; /* on the later list */
    unsigned is_streaming : 1;
};

struct realm_env_s {
    int refs;
    realm_exec_t *x;
    pool_t *pool;                     /* NULL once stopping */
    realm_env_t *prev, *next;         /* the pool's environments */
    realm_env_t *all_prev, *all_next; /* every environment of the engine */
    env_state_t state;
    char id[48];
    realm_spawn_t *sp;
    uv_timer_t timer;
    realm_inv_t *inv; /* BUSY */
    realm_env_next_cb next_cb;
    void *next_data;
    char *init_error; /* posted to /init/error, or NULL */
    size_t init_error_len;
    char init_error_type[64];
    char stop_reason[96]; /* why we stopped it, for the log */
    uint64_t last_used;
    void *private_listener;     /* from opts.private_listen, or NULL */
    realm_netstack_t *netstack; /* slirp4netns of a private network, or NULL */
    unsigned has_asked : 1;     /* a `next` came at least once (init done) */
    unsigned oom_reported : 1;  /* an invocation already ended with Runtime.OutOfMemory */
    unsigned is_slow : 1;       /* RESTING past its grace */
    unsigned timer_closed : 1;
};

struct pool_s {
    realm_exec_t *x;
    pool_t *prev, *next;
    char *key;
    char *tenant, *name, *version, *arn, *runtime, *handler, *code_dir;
    char **env;
    uint64_t memory_mb, timeout_s;
    int64_t reserved;
    realm_exec_net_t network;
    uint64_t tmp_mb;   /* its /tmp */
    uint32_t uid;      /* inside the sandbox: one per tenant */
    uint32_t host_uid; /* on the host: one per tenant (0: as the server) */
    char **binds;      /* more read-only binds (host, sandbox pairs), NULL-terminated; or NULL */
    uint64_t n_ok, n_error, n_throttled; /* invocations ended, by outcome */
    realm_inv_t *q_head, *q_tail;
    size_t queued;
    realm_env_t *envs;
    size_t n_envs, n_starting, n_idle, n_busy, n_resting_fresh;
    size_t provisioned;
    int init_failures; /* environments in a row that died before asking for work */
    int is_retired;    /* code or configuration changed: no new work */
    FILE *log;
    uint64_t log_bytes;
    char log_path[4096];
    char log_stream[96];
};

struct realm_exec_s {
    realm_exec_opts_t o;
    char *runtimes_dir, *node_modules_dir, *logs_dir, *self_exe, *region;
    realm_buf_t bpf;
    pool_t *pools;
    realm_env_t *all;
    size_t n_envs; /* not stopping */
    uint64_t env_seq;
    realm_exec_stats_t st;
    uint32_t tenants_seen;                /* tenants given a uid so far */
    int warned_uids;                      /* more tenants than host uids, said once */
    uv_idle_t later_idle;                 /* runs while the later list is not empty */
    realm_inv_t *later_head, *later_tail; /* invocations to end on a later turn */
    uint64_t later_seq;                   /* the last seq given on the later list */
    int is_freeing;
    unsigned later_closed : 1;
};

static void pump(pool_t *p);
static void env_stop(realm_env_t *env, const char *why);

/* ---- small things ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *dup_or_null(const char *s)
{
    return s ? realm_strdup(s) : NULL;
}

/* ---- logs ---- */

static void pool_log_open(pool_t *p)
{
    if (p->log || !p->x->logs_dir) return;
    char dir[3900];
    snprintf(dir, sizeof(dir), "%.3000s/%.200s", p->x->logs_dir, p->tenant[0] ? p->tenant : "_");
    mkdir(p->x->logs_dir, 0700);
    mkdir(dir, 0700);
    snprintf(p->log_path, sizeof(p->log_path), "%s/%.65s.log", dir, p->name);
    p->log = fopen(p->log_path, "ae");
    if (!p->log) return;
    struct stat stt;
    p->log_bytes = stat(p->log_path, &stt) == 0 ? (uint64_t)stt.st_size : 0;
}

static void pool_log_write(pool_t *p, const char *bytes, size_t len)
{
    pool_log_open(p);
    if (!p->log) return;
    if (p->log_bytes + len > p->x->o.log_file_bytes) {
        /* One generation kept: NAME.log.1. */
        fclose(p->log);
        p->log = NULL;
        char old[4200];
        snprintf(old, sizeof(old), "%s.1", p->log_path);
        rename(p->log_path, old);
        pool_log_open(p);
        if (!p->log) return;
        p->log_bytes = 0;
    }
    fwrite(bytes, 1, len, p->log);
    fflush(p->log);
    p->log_bytes += len;
}

static void inv_log(realm_inv_t *inv, const char *bytes, size_t len)
{
    realm_buf_append(&inv->log, bytes, len);
    if (inv->log.len > TAIL_KEEP)
        realm_buf_consume(&inv->log, inv->log.len - REALM_EXEC_TAIL_BYTES);
}

/* A platform line (START, END, REPORT...) to the invocation and the file. */
static void platform_line(pool_t *p, realm_inv_t *inv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void platform_line(pool_t *p, realm_inv_t *inv, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof(line) - 2) n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    if (inv) inv_log(inv, line, (size_t)n);
    if (p) pool_log_write(p, line, (size_t)n);
}

/* ---- invocations ---- */

static void q_remove(pool_t *p, realm_inv_t *inv)
{
    if (!inv->is_queued) return;
    if (inv->prev)
        inv->prev->next = inv->next;
    else
        p->q_head = inv->next;
    if (inv->next)
        inv->next->prev = inv->prev;
    else
        p->q_tail = inv->prev;
    inv->prev = inv->next = NULL;
    inv->is_queued = 0;
    p->queued--;
}

static void q_push(pool_t *p, realm_inv_t *inv)
{
    inv->prev = p->q_tail;
    inv->next = NULL;
    if (p->q_tail)
        p->q_tail->next = inv;
    else
        p->q_head = inv;
    p->q_tail = inv;
    inv->is_queued = 1;
    p->queued++;
}

static void inv_free(realm_inv_t *inv)
{
    free(inv->later_type);
    free(inv->later_msg);
    free(inv->payload);
    free(inv->invoked_arn);
    free(inv->client_context);
    realm_buf_dispose(&inv->log);
    free(inv);
}

/* Ends an invocation: its sink's last event, then it is freed. */
static void inv_finish(realm_inv_t *inv, realm_inv_status_t status, const char *payload, size_t len,
                       const char *error_type, const char *error_message)
{
    if (inv->pool) q_remove(inv->pool, inv);
    if (inv->env && inv->env->inv == inv) inv->env->inv = NULL;
    inv->env = NULL;
    const char *tail = inv->log.data ? inv->log.data : "";
    size_t tail_len = inv->log.len;
    if (tail_len > REALM_EXEC_TAIL_BYTES) {
        tail += tail_len - REALM_EXEC_TAIL_BYTES;
        tail_len = REALM_EXEC_TAIL_BYTES;
    }
    realm_inv_result_t r = {
        .status = status,
        .request_id = inv->request_id,
        .payload = payload ? payload : "",
        .payload_len = payload ? len : 0,
        .error_type = error_type,
        .error_message = error_message,
        .log_tail = tail,
        .log_tail_len = tail_len,
        .was_streamed = inv->is_streaming,
    };
    if (status == REALM_INV_THROTTLED) inv->x->st.throttles_total++;
    if (inv->pool) {
        if (status == REALM_INV_OK)
            inv->pool->n_ok++;
        else if (status == REALM_INV_THROTTLED)
            inv->pool->n_throttled++;
        else
            inv->pool->n_error++;
    }
    inv->sink.on_done(inv, &r, inv->data);
    inv_free(inv);
}

/* ---- ending later (see LATER above) ---- */

static void later_unlink(realm_exec_t *x, realm_inv_t *inv)
{
    if (inv->later_prev)
        inv->later_prev->later_next = inv->later_next;
    else
        x->later_head = inv->later_next;
    if (inv->later_next)
        inv->later_next->later_prev = inv->later_prev;
    else
        x->later_tail = inv->later_prev;
    inv->later_prev = inv->later_next = NULL;
    inv->is_ending = 0;
}

static void on_later(uv_idle_t *h)
{
    realm_exec_t *x = h->data;
    /* Only what was there when this turn began: what on_done adds waits a turn. */
    uint64_t last = x->later_seq;
    while (x->later_head && x->later_head->later_seq <= last) {
        realm_inv_t *inv = x->later_head;
        later_unlink(x, inv);
        inv_finish(inv, inv->later_status, NULL, 0, inv->later_type, inv->later_msg);
    }
    if (!x->later_head) uv_idle_stop(&x->later_idle);
}

/*
 * Ends an invocation that has no environment on a later loop turn (with
 * no payload): off its pool's queue now, its sink's on_done later.
 */
static void inv_end_later(realm_inv_t *inv, realm_inv_status_t status, const char *error_type,
                          const char *error_message)
{
    realm_exec_t *x = inv->x;
    if (inv->pool) q_remove(inv->pool, inv);
    inv->later_status = status;
    inv->later_type = dup_or_null(error_type);
    inv->later_msg = dup_or_null(error_message);
    inv->later_seq = ++x->later_seq;
    inv->later_prev = x->later_tail;
    inv->later_next = NULL;
    if (x->later_tail)
        x->later_tail->later_next = inv;
    else
        x->later_head = inv;
    x->later_tail = inv;
    inv->is_ending = 1;
    uv_idle_start(&x->later_idle, on_later);
}

/* A function error in AWS's shape: {"errorType","errorMessage"}. */
static void inv_fail_platform(realm_inv_t *inv, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void inv_fail_platform(realm_inv_t *inv, const char *type, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char full[700];
    snprintf(full, sizeof(full), "RequestId: %s Error: %s", inv->request_id, msg);
    json_t *o = json_pack("{s:s, s:s}", "errorType", type, "errorMessage", full);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    pool_t *p = inv->pool;
    platform_line(p, inv, "%s", full);
    inv_finish(inv, REALM_INV_FN_ERROR, body, strlen(body), type, full);
    free(body);
}

/* END and REPORT lines once an invocation is over in its environment. */
static void report(realm_env_t *env, realm_inv_t *inv)
{
    pool_t *p = env->pool ? env->pool : inv->pool;
    double ms = (double)(uv_hrtime() - inv->started_ns) / 1e6;
    uint64_t peak = env->sp ? realm_sandbox_group_memory_peak(realm_spawn_group(env->sp)) : 0;
    /* What the runtime wrote before it answered may still wait in the pipes
     * (the answer's socket can be read first in the same loop turn): it
     * belongs before END. */
    if (env->sp) {
        realm_inv_t *was = env->inv;
        env->inv = inv; /* on_spawn_output logs to env->inv */
        realm_spawn_drain(env->sp);
        env->inv = was;
    }
    platform_line(p, inv, "END RequestId: %s", inv->request_id);
    platform_line(p, inv,
                  "REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %.0f ms\tMemory Size: "
                  "%" PRIu64 " MB\tMax Memory Used: %" PRIu64 " MB",
                  inv->request_id, ms, ms < 1 ? 1 : ms + 0.5, p ? p->memory_mb : 0,
                  (peak + (1024 * 1024) - 1) / (1024 * 1024)); /* whole MB, rounded up */
}

/* ---- environments ---- */

static void env_release(realm_env_t *env)
{
    free(env->init_error);
    free(env);
}

void realm_env_ref(realm_env_t *env)
{
    env->refs++;
}

void realm_env_unref(realm_env_t *env)
{
    if (--env->refs == 0) env_release(env);
}

static void on_env_timer_closed(uv_handle_t *h)
{
    realm_env_unref(h->data);
}

static void pool_count(pool_t *p, env_state_t s, int delta)
{
    size_t *c = s == ENV_STARTING ? &p->n_starting
                : s == ENV_IDLE   ? &p->n_idle
                : s == ENV_BUSY   ? &p->n_busy
                                  : NULL;
    if (c) *c = (size_t)((long)*c + delta);
}

static void env_set_state(realm_env_t *env, env_state_t s)
{
    pool_t *p = env->pool;
    if (p) {
        pool_count(p, env->state, -1);
        if (env->state == ENV_RESTING && !env->is_slow) p->n_resting_fresh--;
        pool_count(p, s, +1);
        if (s == ENV_RESTING) p->n_resting_fresh++;
    }
    env->is_slow = 0;
    env->state = s;
}

/* Takes the environment off its pool (it is going away). */
static void env_detach(realm_env_t *env)
{
    pool_t *p = env->pool;
    if (!p) return;
    env_set_state(env, ENV_STOPPING);
    if (env->prev)
        env->prev->next = env->next;
    else
        p->envs = env->next;
    if (env->next) env->next->prev = env->prev;
    env->prev = env->next = NULL;
    p->n_envs--;
    env->x->n_envs--;
    env->pool = NULL;
    env->x->st.stopped_total++;
    /* A waiting `next` hears that no work will come (its connection can close). */
    realm_env_next_cb cb = env->next_cb;
    void *data = env->next_data;
    env->next_cb = NULL;
    env->next_data = NULL;
    if (cb) cb(env, NULL, data);
}

static void env_unlink_all(realm_env_t *env)
{
    realm_exec_t *x = env->x;
    if (env->all_prev)
        env->all_prev->all_next = env->all_next;
    else if (x->all == env)
        x->all = env->all_next;
    if (env->all_next) env->all_next->all_prev = env->all_prev;
    env->all_prev = env->all_next = NULL;
}

static void exit_text(char *out, size_t n, int64_t status, int sig)
{
    /* bwrap, as pid 1 of the sandbox, reports a runtime killed by a signal as 128 + signal. */
    if (sig == 0 && status > 128 && status < 128 + 32) sig = (int)(status - 128);
    if (sig > 0) {
        const char *name = sig == 9    ? "killed"
                           : sig == 11 ? "segmentation fault"
                           : sig == 6  ? "aborted"
                           : sig == 15 ? "terminated"
                                       : NULL;
        if (name)
            snprintf(out, n, "Runtime exited with error: signal: %s", name);
        else
            snprintf(out, n, "Runtime exited with error: signal: %d", sig);
    } else if (status == 0) {
        snprintf(out, n, "Runtime exited without providing a reason");
    } else {
        snprintf(out, n, "Runtime exited with error: exit status %" PRId64, status);
    }
}

static void on_spawn_exit(realm_spawn_t *sp, int64_t status, int sig, int oom, void *data)
{
    realm_env_t *env = data;
    pool_t *p = env->pool;
    realm_exec_t *x = env->x;
    char why[160];
    exit_text(why, sizeof(why), status, sig);
    int was_starting = env->state == ENV_STARTING;
    realm_inv_t *inv = env->inv;
    if (!inv && was_starting && p && p->q_head && !env->stop_reason[0]) {
        /* Init failed: the oldest waiting invocation hears why, as on Lambda. */
        inv = p->q_head;
        q_remove(p, inv);
        inv->env = env;
        inv->started_ns = uv_hrtime();
    }
    /* An OOM already reported at the answer (oom_ends) is not counted again. */
    if (oom && !env->oom_reported)
        x->st.oom_total++;
    else if (!oom && !env->stop_reason[0])
        x->st.crashes_total++;
    if (was_starting && p && !env->stop_reason[0] && ++p->init_failures == PROVISION_GIVE_UP)
        realm_warn("%s:%s: %d environments in a row died during init; provisioned ones are not "
                   "restarted until the function changes",
                   p->name, p->version, PROVISION_GIVE_UP);
    if (env->stop_reason[0])
        realm_debug("environment %s stopped (%s)", env->id, env->stop_reason);
    else
        realm_info("environment %s of %s exited: %s%s", env->id, p ? p->name : "?", why,
                   oom ? " (out of memory)" : "");
    if (p) platform_line(p, inv, "%s%s", why, oom ? " (memory limit)" : "");
    env_detach(env);
    uv_timer_stop(&env->timer);
    if (inv) {
        env->inv = NULL;
        if (env->init_error) {
            inv_finish(inv, REALM_INV_FN_ERROR, env->init_error, env->init_error_len,
                       env->init_error_type[0] ? env->init_error_type : "Runtime.InitError", NULL);
        } else if (oom) {
            inv_fail_platform(inv, "Runtime.OutOfMemory", "%s", why);
        } else {
            inv_fail_platform(inv, "Runtime.ExitError", "%s", why);
        }
    }
    if (env->private_listener) {
        x->o.private_close(env->private_listener, x->o.hook_data);
        env->private_listener = NULL;
    }
    realm_netstack_free(env->netstack);
    env->netstack = NULL;
    realm_spawn_free(sp);
    env->sp = NULL;
    env_unlink_all(env);
    if (!env->timer_closed) {
        env->timer_closed = 1;
        uv_close((uv_handle_t *)&env->timer, on_env_timer_closed);
    }
    if (p && !x->is_freeing) pump(p);
}

static void on_spawn_output(realm_spawn_t *sp, int stream, const char *bytes, size_t len,
                            void *data)
{
    (void)sp;
    (void)stream;
    realm_env_t *env = data;
    if (env->inv) inv_log(env->inv, bytes, len);
    if (env->pool) pool_log_write(env->pool, bytes, len);
}

static void on_netstack_ready(realm_netstack_t *ns, int ok, void *data)
{
    (void)ns;
    realm_env_t *env = data;
    if (!ok) realm_error("environment %s: its network stack failed: no network", env->id);
    if (env->sp) realm_spawn_go(env->sp);
}

/* The sandbox is up and waits: its runtime API goes inside its namespace,
 * and with a private network, slirp4netns is attached before it runs. */
static int on_spawn_ready(realm_spawn_t *sp, int pid, void *data)
{
    (void)sp;
    realm_env_t *env = data;
    realm_exec_t *x = env->x;
    int fd = -1;
    int rc = realm_sandbox_netns_listen(pid, REALM_EXEC_PRIVATE_PORT, &fd);
    if (rc != 0) {
        realm_error("environment %s: runtime API in its network namespace: %s", env->id,
                    strerror(-rc));
        return 0; /* it will fail to connect and exit; its invocation hears why */
    }
    pool_t *p = env->pool;
    int wants_stack = p && p->network == REALM_EXEC_NET_PRIVATE && x->o.slirp_path;
    /* A socket in the namespace, for the stack to see when `lo` is up. */
    int lo_fd = wants_stack ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    env->private_listener = x->o.private_listen(env, fd, x->o.hook_data);
    if (!wants_stack) return 0;
    if (lo_fd < 0) {
        realm_error("environment %s: network stack: %s", env->id, strerror(errno));
        return 0;
    }
    realm_netstack_opts_t no = {.self_exe = x->self_exe,
                                .slirp_path = x->o.slirp_path,
                                .pid = pid,
                                .uid = p->host_uid,
                                .gid = p->host_uid,
                                .lo_fd = lo_fd};
    char err[256];
    if (realm_netstack_start(x->o.loop, &no, on_netstack_ready, env, &env->netstack, err,
                             sizeof(err)) != 0) {
        close(lo_fd);
        realm_error("environment %s: network stack: %s", env->id, err);
        return 0;
    }
    return 1; /* on_netstack_ready lets it go */
}

/* Kills the environment; its end comes through on_spawn_exit. */
static void env_stop(realm_env_t *env, const char *why)
{
    if (env->state == ENV_STOPPING && !env->pool) return;
    snprintf(env->stop_reason, sizeof(env->stop_reason), "%s", why);
    pool_t *p = env->pool;
    env_detach(env);
    uv_timer_stop(&env->timer);
    if (env->sp) realm_spawn_kill(env->sp);
    if (p && !env->x->is_freeing) pump(p);
}

static void on_env_timer(uv_timer_t *t)
{
    realm_env_t *env = t->data;
    realm_exec_t *x = env->x;
    switch (env->state) {
    case ENV_STARTING: {
        pool_t *p = env->pool;
        realm_inv_t *inv = p ? p->q_head : NULL;
        if (inv) {
            q_remove(p, inv);
            inv->started_ns = uv_hrtime();
            inv_fail_platform(inv, "Runtime.InitError",
                              "Runtime did not ask for an invocation within %.2f seconds",
                              (double)x->o.init_timeout_ms / 1000.0);
        }
        env_stop(env, "init timeout");
        break;
    }
    case ENV_BUSY: {
        realm_inv_t *inv = env->inv;
        pool_t *p = env->pool;
        x->st.timeouts_total++;
        env->inv = NULL;
        if (inv) {
            report(env, inv);
            inv_fail_platform(inv, "Sandbox.Timedout", "Task timed out after %.2f seconds",
                              (double)(p ? p->timeout_s : 0));
        }
        env_stop(env, "timeout");
        break;
    }
    case ENV_RESTING:
        if (env->is_slow) {
            /* It never asked again: it holds a slot for nothing. */
            env_stop(env, "did not ask for the next invocation");
        } else if (env->pool) {
            /* Past its grace: no longer counted on to take the queue. */
            env->pool->n_resting_fresh--;
            env->is_slow = 1;
            uv_timer_start(&env->timer, on_env_timer, env->pool->timeout_s * 1000 + 1000, 0);
            pump(env->pool);
        }
        break;
    case ENV_IDLE:
        if (env->pool && env->pool->n_envs <= env->pool->provisioned) break;
        env_stop(env, "idle");
        break;
    default:
        break;
    }
}

static void env_push(char ***v, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void env_push(char ***v, size_t *n, const char *fmt, ...)
{
    *v = realm_realloc(*v, (*n + 2) * sizeof(char *));
    va_list ap;
    va_start(ap, fmt);
    realm_buf_t b;
    realm_buf_init(&b);
    realm_buf_vappendf(&b, fmt, ap);
    va_end(ap);
    (*v)[(*n)++] = realm_buf_steal(&b, NULL);
    (*v)[*n] = NULL;
}

/* Starts an environment of p; 0, or -1 with why in err (also logged). */
static int env_spawn(pool_t *p, char *err, size_t err_len)
{
    realm_exec_t *x = p->x;
    /* How it starts: the runtime table's row (runtimes/runtimes.h). */
    const realm_runtimes_entry_t *rt = realm_runtimes_find(p->runtime);
    if (!rt) rt = realm_runtimes_fallback();
    char rdir[4200] = "";
    /* The function's own binds, then the runtime's: pairs, NULL-terminated. */
    const char *binds[2 * MAX_BINDS + 3] = {NULL};
    size_t nb = 0;
    for (size_t i = 0; p->binds && p->binds[i] && nb < 2 * MAX_BINDS; i++)
        binds[nb++] = p->binds[i];
    if (rt->dir) snprintf(rdir, sizeof(rdir), "%s/%s", x->runtimes_dir, rt->dir);
    if (rt->binds_node_modules && x->node_modules_dir) {
        binds[nb++] = x->node_modules_dir;
        binds[nb++] = "/var/runtime/node_modules";
    }

    realm_env_t *env = realm_calloc(1, sizeof(*env));
    env->refs = 1; /* the timer handle's */
    env->x = x;
    snprintf(env->id, sizeof(env->id), "env-%d-%" PRIu64, (int)getpid(), ++x->env_seq);

    char **ev = NULL;
    size_t en = 0;
    env_push(&ev, &en, "PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin");
    env_push(&ev, &en, "LANG=C.UTF-8");
    env_push(&ev, &en, "TZ=:UTC");
    env_push(&ev, &en, "LD_LIBRARY_PATH=/var/task:/var/task/lib:/opt/lib");
    int is_private = p->network != REALM_EXEC_NET_HOST && x->o.private_listen;
    int has_stack = is_private && p->network == REALM_EXEC_NET_PRIVATE && x->o.slirp_path;
    env_push(&ev, &en, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:%d",
             is_private ? REALM_EXEC_PRIVATE_PORT : x->o.runtime_port);
    env_push(&ev, &en, "_HANDLER=%s", p->handler ? p->handler : "");
    env_push(&ev, &en, "LAMBDA_TASK_ROOT=/var/task");
    env_push(&ev, &en, "LAMBDA_RUNTIME_DIR=/opt");
    env_push(&ev, &en, "AWS_EXECUTION_ENV=AWS_Lambda_%s", p->runtime);
    env_push(&ev, &en, "AWS_LAMBDA_FUNCTION_NAME=%s", p->name);
    env_push(&ev, &en, "AWS_LAMBDA_FUNCTION_VERSION=%s", p->version);
    env_push(&ev, &en, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%" PRIu64, p->memory_mb);
    env_push(&ev, &en, "AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/%s", p->name);
    env_push(&ev, &en, "AWS_LAMBDA_LOG_STREAM_NAME=%s", p->log_stream);
    env_push(&ev, &en, "AWS_LAMBDA_INITIALIZATION_TYPE=on-demand");
    env_push(&ev, &en, "AWS_REGION=%s", x->region);
    env_push(&ev, &en, "AWS_DEFAULT_REGION=%s", x->region);
    for (size_t i = 0; i < sizeof(rt->env) / sizeof(rt->env[0]) && rt->env[i]; i++)
        env_push(&ev, &en, "%s", rt->env[i]);
    if (p->env)
        for (char **e = p->env; *e; e++)
            env_push(&ev, &en, "%s", *e);

    realm_spawn_opts_t so = {
        .self_exe = x->self_exe,
        .probe = x->o.probe,
        .bpf = x->bpf.data,
        .bpf_len = x->bpf.len,
        .spec =
            {
                .bwrap_features = x->o.probe->bwrap_features,
                .code_dir = p->code_dir,
                .runtime_dir = rdir[0] ? rdir : NULL,
                .tmp_mb = p->tmp_mb,
                .env = (const char *const *)ev,
                .ro_binds = binds[0] ? binds : NULL,
                /* HOST shares ours; the others get their own namespace. */
                .has_network = p->network == REALM_EXEC_NET_HOST || !is_private,
                .argv = rt->argv,
                .uid = p->uid,
                .gid = p->uid,
            },
        .limits =
            {
                .memory_bytes = p->memory_mb * 1024 * 1024,
                .pids_max = x->o.pids_max,
                .cpu_weight = p->memory_mb * 100 / 1024 ? p->memory_mb * 100 / 1024 : 1,
            },
        .name = env->id,
        .wait_ready = is_private,
        .host_uid = p->host_uid,
        .host_gid = p->host_uid,
        .scratch_dir = x->o.scratch_dir,
        .resolv_text = has_stack ? REALM_NETSTACK_RESOLV_CONF : NULL,
    };
    if (so.limits.cpu_weight > 10000) so.limits.cpu_weight = 10000;
    realm_spawn_cb_t cb = {
        .on_output = on_spawn_output, .on_exit = on_spawn_exit, .on_ready = on_spawn_ready};
    int rc = realm_spawn_start(x->o.loop, &so, &cb, env, &env->sp, err, err_len);
    for (size_t i = 0; i < en; i++)
        free(ev[i]);
    free(ev);
    if (rc != 0) {
        realm_error("environment of %s: %s", p->name, err);
        free(env);
        return -1;
    }
    uv_timer_init(x->o.loop, &env->timer);
    env->timer.data = env;
    env->pool = p;
    env->state = ENV_STARTING;
    p->n_starting++;
    env->next = p->envs;
    if (p->envs) p->envs->prev = env;
    p->envs = env;
    p->n_envs++;
    env->all_next = x->all;
    if (x->all) x->all->all_prev = env;
    x->all = env;
    x->n_envs++;
    x->st.started_total++;
    env->last_used = uv_now(x->o.loop);
    uv_timer_start(&env->timer, on_env_timer, x->o.init_timeout_ms, 0);
    realm_debug("environment %s of %s:%s starting", env->id, p->name, p->version);
    return 0;
}

/* ---- scheduling ---- */

static uint64_t pool_cap(const pool_t *p)
{
    uint64_t lim = p->x->o.concurrency_limit;
    if (p->reserved >= 0 && (uint64_t)p->reserved < lim) return (uint64_t)p->reserved;
    return lim;
}

/* Stops the least recently used idle environment of another pool. */
static int evict_one(realm_exec_t *x, const pool_t *except)
{
    realm_env_t *best = NULL;
    for (realm_env_t *e = x->all; e; e = e->all_next)
        if (e->pool && e->pool != except && strcmp(e->pool->tenant, except->tenant) == 0 &&
            e->state == ENV_IDLE && (!best || e->last_used < best->last_used))
            best = e;
    if (!best) return 0;
    env_stop(best, "evicted for another function");
    return 1;
}

/* Environments of one tenant: each tenant is an account with its own limit. */
static size_t tenant_envs(const realm_exec_t *x, const char *tenant)
{
    size_t n = 0;
    for (const pool_t *q = x->pools; q; q = q->next)
        if (strcmp(q->tenant, tenant) == 0) n += q->n_envs;
    return n;
}

static int can_start(pool_t *p)
{
    realm_exec_t *x = p->x;
    if (p->n_envs >= pool_cap(p)) return 0;
    if (tenant_envs(x, p->tenant) < x->o.concurrency_limit) return 1;
    return evict_one(x, p);
}

static void deliver(realm_env_t *env, realm_inv_t *inv)
{
    pool_t *p = env->pool;
    realm_exec_t *x = p->x;
    q_remove(p, inv);
    env->inv = inv;
    inv->env = env;
    env_set_state(env, ENV_BUSY);
    inv->started_ns = uv_hrtime();
    inv->deadline_ms = now_ms() + (int64_t)p->timeout_s * 1000;
    x->st.invocations_total++;
    uv_timer_start(&env->timer, on_env_timer, p->timeout_s * 1000, 0);
    platform_line(p, inv, "START RequestId: %s Version: %s", inv->request_id, p->version);
    realm_env_next_cb cb = env->next_cb;
    void *data = env->next_data;
    env->next_cb = NULL;
    env->next_data = NULL;
    realm_env_work_t w = {
        .request_id = inv->request_id,
        .payload = inv->payload,
        .payload_len = inv->payload_len,
        .deadline_ms = inv->deadline_ms,
        .invoked_arn = inv->invoked_arn ? inv->invoked_arn : p->arn,
        .trace_id = inv->trace_id,
        .client_context = inv->client_context,
    };
    cb(env, &w, data);
}

static void pump(pool_t *p)
{
    /* Idle environments take the queue first. */
    while (p->q_head) {
        realm_env_t *idle = NULL;
        for (realm_env_t *e = p->envs; e; e = e->next)
            if (e->state == ENV_IDLE && e->next_cb) {
                idle = e;
                break;
            }
        if (!idle) break;
        deliver(idle, p->q_head);
    }
    /* Then new ones, one per invocation nobody is about to take. */
    size_t coming = p->n_starting + p->n_resting_fresh;
    while (p->queued > coming && can_start(p)) {
        char err[512], msg[600];
        if (env_spawn(p, err, sizeof(err)) != 0) {
            realm_inv_t *inv = p->q_head;
            snprintf(msg, sizeof(msg), "could not start an execution environment: %s", err);
            inv_end_later(inv, REALM_INV_FAILED, "ServiceException", msg);
            continue;
        }
        coming++;
    }
    /* Provisioned environments stay up (unless they cannot even start). */
    while (p->n_envs < p->provisioned && p->init_failures < PROVISION_GIVE_UP && can_start(p)) {
        char err[512];
        if (env_spawn(p, err, sizeof(err)) != 0) break;
    }
}

/*
 * The uid a tenant's environments run as: Lambda's 993 for the default
 * namespace, and a uid of its own (from 20000, in order of first use) for
 * each tenant, so no two tenants' processes share an identity.
 */
static uint32_t tenant_uid(realm_exec_t *x, const char *tenant)
{
    if (!tenant[0]) return SANDBOX_UID;
    for (const pool_t *q = x->pools; q; q = q->next)
        if (strcmp(q->tenant, tenant) == 0) return q->uid;
    return TENANT_UID_BASE + (uint32_t)(++x->tenants_seen);
}

/*
 * Its host uid (and gid): the first of the configured range for the
 * default namespace, then first + (tenant uid - 20000), so each tenant is
 * a host user of its own; tenants beyond the range share its last uid
 * (logged once). 0 when the server is not root: bwrap then maps the
 * sandbox to the server's own unprivileged user.
 */
static uint32_t tenant_host_uid(realm_exec_t *x, uint32_t uid)
{
    if (!x->o.host_uid_first || geteuid() != 0) return 0;
    uint64_t off = uid == SANDBOX_UID ? 0 : (uint64_t)(uid - TENANT_UID_BASE);
    uint64_t h = (uint64_t)x->o.host_uid_first + off;
    if (h > x->o.host_uid_last) {
        if (!x->warned_uids) realm_warn("more tenants than host uids: the last one is shared");
        x->warned_uids = 1;
        h = x->o.host_uid_last;
    }
    return (uint32_t)h;
}

static char *pool_key(const realm_exec_fn_t *fn)
{
    realm_buf_t b;
    realm_buf_init(&b);
    realm_buf_appendf(&b, "%s\n%s\n%s\n%s\n%d\n%" PRIu64, fn->tenant ? fn->tenant : "", fn->name,
                      fn->version, fn->revision ? fn->revision : "", fn->no_network, fn->tmp_mb);
    return realm_buf_steal(&b, NULL);
}

static void pool_free(pool_t *p)
{
    free(p->key);
    free(p->tenant);
    free(p->name);
    free(p->version);
    free(p->arn);
    free(p->runtime);
    free(p->handler);
    free(p->code_dir);
    if (p->env)
        for (char **e = p->env; *e; e++)
            free(*e);
    free(p->env);
    if (p->binds)
        for (char **b = p->binds; *b; b++)
            free(*b);
    free(p->binds);
    if (p->log) fclose(p->log);
    free(p);
}

/* Pools of older revisions of the same function stop their idle environments. */
static void retire_others(realm_exec_t *x, const pool_t *keep)
{
    for (pool_t *p = x->pools; p; p = p->next) {
        if (p == keep || strcmp(p->tenant, keep->tenant) != 0 || strcmp(p->name, keep->name) != 0 ||
            strcmp(p->version, keep->version) != 0)
            continue;
        p->provisioned = 0;
        for (realm_env_t *e = p->envs, *n; e; e = n) {
            n = e->next;
            if (e->state == ENV_IDLE || e->state == ENV_RESTING) env_stop(e, "new revision");
        }
    }
}

static pool_t *pool_get(realm_exec_t *x, const realm_exec_fn_t *fn)
{
    char *key = pool_key(fn);
    for (pool_t *p = x->pools; p; p = p->next)
        if (!p->is_retired && strcmp(p->key, key) == 0) {
            free(key);
            return p;
        }
    pool_t *p = realm_calloc(1, sizeof(*p));
    p->x = x;
    p->key = key;
    p->tenant = realm_strdup(fn->tenant ? fn->tenant : "");
    p->name = realm_strdup(fn->name);
    p->version = realm_strdup(fn->version);
    p->arn = realm_strdup(fn->arn ? fn->arn : fn->name);
    p->runtime = realm_strdup(fn->runtime ? fn->runtime : realm_runtimes_fallback()->name);
    p->handler = dup_or_null(fn->handler);
    p->code_dir = realm_strdup(fn->code_dir);
    size_t n = 0;
    if (fn->env)
        while (fn->env[n])
            n++;
    p->env = realm_calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        p->env[i] = realm_strdup(fn->env[i]);
    p->memory_mb = fn->memory_mb ? fn->memory_mb : 128;
    p->timeout_s = fn->timeout_s ? fn->timeout_s : 3;
    p->reserved = fn->reserved;
    p->network = fn->no_network ? REALM_EXEC_NET_NONE : x->o.network;
    p->tmp_mb = fn->tmp_mb ? fn->tmp_mb : x->o.tmp_mb;
    size_t nbinds = 0;
    while (fn->ro_binds && fn->ro_binds[nbinds] && nbinds < 2 * MAX_BINDS)
        nbinds++;
    if (nbinds) {
        p->binds = realm_calloc(nbinds + 1, sizeof(char *));
        for (size_t i = 0; i < nbinds; i++)
            p->binds[i] = realm_strdup(fn->ro_binds[i]);
    }
    p->uid = tenant_uid(x, p->tenant);
    p->host_uid = tenant_host_uid(x, p->uid);
    /* 2024/01/31/[$LATEST]<32 hex>, as Lambda names log streams. */
    char uuid[37], hex[33];
    realm_str_uuid4(uuid);
    size_t h = 0;
    for (const char *c = uuid; *c && h < 32; c++)
        if (*c != '-') hex[h++] = *c;
    hex[h] = '\0';
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(p->log_stream, sizeof(p->log_stream), "%04d/%02d/%02d/[%s]%s", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, p->version, hex);
    p->next = x->pools;
    if (x->pools) x->pools->prev = p;
    x->pools = p;
    retire_others(x, p);
    return p;
}

/* ---- public: callers ---- */

realm_inv_t *realm_exec_invoke(realm_exec_t *x, const realm_exec_fn_t *fn,
                               const realm_inv_req_t *req, const realm_inv_sink_t *sink, void *data)
{
    pool_t *p = pool_get(x, fn);
    p->reserved = fn->reserved;
    realm_inv_t *inv = realm_calloc(1, sizeof(*inv));
    inv->x = x;
    inv->pool = p;
    inv->sink = *sink;
    inv->data = data;
    if (req->request_id && req->request_id[0]) {
        snprintf(inv->request_id, sizeof(inv->request_id), "%s", req->request_id);
    } else {
        realm_str_uuid4(inv->request_id);
    }
    if (req->trace_id && req->trace_id[0]) {
        snprintf(inv->trace_id, sizeof(inv->trace_id), "%s", req->trace_id);
    } else {
        /* Root=1-<8 hex epoch s>-<24 hex>;Parent=<16 hex>;Sampled=0 */
        char u1[37], u2[37];
        realm_str_uuid4(u1);
        realm_str_uuid4(u2);
        char r[25], par[17];
        size_t k = 0;
        for (const char *c = u1; *c && k < 24; c++)
            if (*c != '-') r[k++] = *c;
        r[k] = '\0';
        k = 0;
        for (const char *c = u2; *c && k < 16; c++)
            if (*c != '-') par[k++] = *c;
        par[k] = '\0';
        snprintf(inv->trace_id, sizeof(inv->trace_id), "Root=1-%08lx-%s;Parent=%s;Sampled=0",
                 (unsigned long)time(NULL), r, par);
    }
    inv->payload = realm_malloc(req->payload_len + 1);
    if (req->payload_len) memcpy(inv->payload, req->payload, req->payload_len);
    inv->payload[req->payload_len] = '\0';
    inv->payload_len = req->payload_len;
    inv->invoked_arn = dup_or_null(req->invoked_arn);
    inv->client_context = dup_or_null(req->client_context);
    realm_buf_init(&inv->log);
    inv->queued_at = uv_now(x->o.loop);

    if (x->is_freeing) {
        inv_end_later(inv, REALM_INV_FAILED, "ServiceException", "the server is shutting down");
        return inv;
    }
    if (p->reserved == 0) {
        inv_end_later(inv, REALM_INV_THROTTLED, "ReservedFunctionConcurrentInvocationLimitExceeded",
                      "Rate Exceeded. The function's reserved concurrency is 0.");
        return inv;
    }
    int has_idle = 0;
    for (realm_env_t *e = p->envs; e && !has_idle; e = e->next)
        has_idle = e->state == ENV_IDLE && e->next_cb;
    size_t coming = p->n_starting + p->n_resting_fresh;
    int room = has_idle || p->queued < coming;
    if (!room && p->n_envs < pool_cap(p)) {
        room = tenant_envs(x, p->tenant) < x->o.concurrency_limit;
        /* Another function's idle environment (same tenant) can make room. */
        for (realm_env_t *e = x->all; e && !room; e = e->all_next)
            room = e->pool && e->pool != p && strcmp(e->pool->tenant, p->tenant) == 0 &&
                   e->state == ENV_IDLE;
    }
    if (!room && p->queued - coming >= x->o.queue_depth) {
        int by_reserved = p->reserved >= 0 && (uint64_t)p->reserved < x->o.concurrency_limit;
        inv_end_later(inv, REALM_INV_THROTTLED,
                      by_reserved ? "ReservedFunctionConcurrentInvocationLimitExceeded"
                                  : "ConcurrentInvocationLimitExceeded",
                      "Rate Exceeded.");
        return inv;
    }
    q_push(p, inv);
    pump(p); /* ends nothing now: an environment that cannot start fails it later */
    return inv;
}

void realm_inv_cancel(realm_inv_t *inv)
{
    realm_env_t *env = inv->env;
    pool_t *p = inv->pool;
    if (inv->is_ending) later_unlink(inv->x, inv);
    if (inv->is_queued) q_remove(p, inv);
    if (env) {
        env->inv = NULL;
        inv->env = NULL;
        report(env, inv);
        env_stop(env, "invocation cancelled");
    }
    inv_free(inv);
}

const char *realm_inv_request_id(const realm_inv_t *inv)
{
    return inv->request_id;
}

void realm_exec_provision(realm_exec_t *x, const realm_exec_fn_t *fn, size_t n)
{
    pool_t *p = pool_get(x, fn);
    p->provisioned = n;
    pump(p);
}

void realm_exec_forget(realm_exec_t *x, const char *tenant, const char *name)
{
    for (pool_t *p = x->pools; p; p = p->next) {
        if (strcmp(p->tenant, tenant ? tenant : "") != 0 || strcmp(p->name, name) != 0) continue;
        p->provisioned = 0;
        p->is_retired = 1;
        for (realm_env_t *e = p->envs, *n; e; e = n) {
            n = e->next;
            if (e->state != ENV_BUSY) env_stop(e, "function changed");
        }
    }
}

void realm_exec_stats(const realm_exec_t *x, realm_exec_stats_t *out)
{
    *out = x->st;
    out->environments = x->n_envs;
    out->busy = out->idle = out->starting = out->queued = 0;
    for (pool_t *p = x->pools; p; p = p->next) {
        out->busy += p->n_busy;
        out->idle += p->n_idle;
        out->starting += p->n_starting;
        out->queued += p->queued;
    }
}

void realm_exec_tenant_stats(const realm_exec_t *x, realm_exec_tenant_cb cb, void *data)
{
    for (const pool_t *p = x->pools; p; p = p->next) {
        int seen = 0;
        for (const pool_t *q = x->pools; q != p && !seen; q = q->next)
            seen = strcmp(q->tenant, p->tenant) == 0;
        if (seen) continue;
        uint64_t ok = 0, err = 0, thr = 0;
        for (const pool_t *q = p; q; q = q->next) {
            if (strcmp(q->tenant, p->tenant) != 0) continue;
            ok += q->n_ok;
            err += q->n_error;
            thr += q->n_throttled;
        }
        cb(p->tenant, ok, err, thr, data);
    }
}

size_t realm_exec_env_count(const realm_exec_t *x, const char *tenant, const char *name)
{
    size_t n = 0;
    for (pool_t *p = x->pools; p; p = p->next)
        if (strcmp(p->tenant, tenant ? tenant : "") == 0 && strcmp(p->name, name) == 0)
            n += p->n_envs;
    return n;
}

/* ---- public: the runtime side ---- */

realm_env_t *realm_exec_env_for_fd(realm_exec_t *x, int fd)
{
    unsigned long inode = realm_sandbox_peer_inode(fd);
    if (!inode) return NULL;
    for (realm_env_t *e = x->all; e; e = e->all_next) {
        if (!e->pool || !e->sp) continue;
        if (realm_sandbox_group_holds(realm_spawn_group(e->sp), inode) == 1) {
            realm_env_ref(e);
            return e;
        }
    }
    return NULL;
}

int realm_env_is_alive(const realm_env_t *env)
{
    return env->pool != NULL;
}

const char *realm_env_id(const realm_env_t *env)
{
    return env->id;
}

const char *realm_env_function(const realm_env_t *env)
{
    return env->pool ? env->pool->name : "";
}

int realm_env_next(realm_env_t *env, realm_env_next_cb cb, void *data)
{
    pool_t *p = env->pool;
    if (!p) return REALM_ERR_ENV_GONE;
    if (env->state == ENV_BUSY || env->state == ENV_IDLE) return REALM_ERR_INVALID_STATE_TRANSITION;
    env->has_asked = 1;
    p->init_failures = 0;
    env->next_cb = cb;
    env->next_data = data;
    env->last_used = uv_now(env->x->o.loop);
    env_set_state(env, ENV_IDLE);
    uv_timer_start(&env->timer, on_env_timer, env->x->o.idle_ms, 0);
    pump(p);
    return 0;
}

void realm_env_next_abort(realm_env_t *env, void *data)
{
    if (env->state != ENV_IDLE || env->next_data != data) return;
    env->next_cb = NULL;
    env->next_data = NULL;
    /* It will ask again on a new connection: count it as about to. */
    env_set_state(env, ENV_RESTING);
    uv_timer_start(&env->timer, on_env_timer, RESTING_GRACE_MS, 0);
}

/* The current invocation if request_id names it; else an error code. */
static int current(realm_env_t *env, const char *request_id, realm_inv_t **out)
{
    if (!env->pool) return REALM_ERR_ENV_GONE;
    if (!request_id || !env->inv || strcmp(env->inv->request_id, request_id) != 0)
        return REALM_ERR_INVALID_REQUEST_ID;
    *out = env->inv;
    return 0;
}

/*
 * The memory limit killed a process of the environment (say a child the
 * runtime started) while it ran the invocation: Lambda's answer is
 * Runtime.OutOfMemory and a fresh environment. 1 if so (inv is ended).
 */
static int oom_ends(realm_env_t *env, realm_inv_t *inv)
{
    if (!env->sp || !realm_sandbox_group_oom(realm_spawn_group(env->sp))) return 0;
    env->x->st.oom_total++;
    report(env, inv);
    env->inv = NULL;
    inv->env = NULL;
    inv_fail_platform(inv, "Runtime.OutOfMemory",
                      "Runtime exited with error: signal: killed (memory limit)");
    env->oom_reported = 1;
    env_stop(env, "out of memory");
    return 1;
}

/* The invocation is answered: the environment rests until its next `next`. */
static void env_answered(realm_env_t *env, realm_inv_t *inv)
{
    report(env, inv);
    env->inv = NULL;
    inv->env = NULL;
    if (env->pool && env->pool->is_retired && !env->pool->q_head) {
        env_stop(env, "function changed");
        return;
    }
    env_set_state(env, ENV_RESTING);
    uv_timer_start(&env->timer, on_env_timer, RESTING_GRACE_MS, 0);
}

int realm_env_respond(realm_env_t *env, const char *request_id, const void *body, size_t len)
{
    realm_inv_t *inv;
    int rc = current(env, request_id, &inv);
    if (rc != 0) return rc;
    if (inv->is_streaming) return REALM_ERR_INVALID_STATE_TRANSITION;
    if (oom_ends(env, inv)) return 0;
    env_answered(env, inv);
    if (len > REALM_EXEC_MAX_RESPONSE) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "Response payload size (%zu bytes) exceeded maximum allowed payload size "
                 "(%u bytes).",
                 len, REALM_EXEC_MAX_RESPONSE);
        json_t *o = json_pack("{s:s, s:s}", "errorType", "Function.ResponseSizeTooLarge",
                              "errorMessage", msg);
        char *b = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        inv_finish(inv, REALM_INV_FN_ERROR, b, strlen(b), "Function.ResponseSizeTooLarge", msg);
        free(b);
        return REALM_ERR_RESPONSE_TOO_LARGE;
    }
    inv_finish(inv, REALM_INV_OK, body, len, NULL, NULL);
    return 0;
}

/* The errorType of an error body, else fallback. */
static void error_type_of(const void *body, size_t len, const char *header, char *out, size_t n)
{
    out[0] = '\0';
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *t = json_string_value(json_object_get(j, "errorType"));
    if (t && t[0])
        snprintf(out, n, "%s", t);
    else if (header && header[0])
        snprintf(out, n, "%s", header);
    else
        snprintf(out, n, "Unhandled");
    json_decref(j);
}

int realm_env_fail(realm_env_t *env, const char *request_id, const char *type, const void *body,
                   size_t len)
{
    realm_inv_t *inv;
    int rc = current(env, request_id, &inv);
    if (rc != 0) return rc;
    if (inv->is_streaming) return REALM_ERR_INVALID_STATE_TRANSITION;
    if (oom_ends(env, inv)) return 0;
    char et[128];
    error_type_of(body, len, type, et, sizeof(et));
    env_answered(env, inv);
    if (len > REALM_EXEC_MAX_RESPONSE) len = REALM_EXEC_MAX_RESPONSE;
    inv_finish(inv, REALM_INV_FN_ERROR, body, len, et, NULL);
    return 0;
}

int realm_env_init_error(realm_env_t *env, const char *type, const void *body, size_t len)
{
    if (!env->pool) return REALM_ERR_ENV_GONE;
    if (env->state != ENV_STARTING || env->init_error) return REALM_ERR_INVALID_STATE_TRANSITION;
    if (len > 64 * 1024) len = 64 * 1024;
    env->init_error = realm_malloc(len + 1);
    memcpy(env->init_error, body, len);
    env->init_error[len] = '\0';
    env->init_error_len = len;
    error_type_of(body, len, type, env->init_error_type, sizeof(env->init_error_type));
    /* The runtime exits by itself; the exit hands the error to a waiting invocation. */
    return 0;
}

int realm_env_stream_begin(realm_env_t *env, const char *request_id, const char *content_type)
{
    realm_inv_t *inv;
    int rc = current(env, request_id, &inv);
    if (rc != 0) return rc;
    if (inv->is_streaming) return REALM_ERR_INVALID_STATE_TRANSITION;
    inv->is_streaming = 1;
    if (inv->sink.on_stream)
        inv->sink.on_stream(
            inv, content_type && content_type[0] ? content_type : "application/octet-stream",
            inv->data);
    return 0;
}

int realm_env_stream_write(realm_env_t *env, const char *request_id, const void *data, size_t len)
{
    realm_inv_t *inv;
    int rc = current(env, request_id, &inv);
    if (rc != 0) return rc;
    if (!inv->is_streaming) return REALM_ERR_INVALID_STATE_TRANSITION;
    if (len && inv->sink.on_chunk) inv->sink.on_chunk(inv, data, len, inv->data);
    return 0;
}

int realm_env_stream_end(realm_env_t *env, const char *request_id, const char *error_type,
                         const void *error_body, size_t error_len)
{
    realm_inv_t *inv;
    int rc = current(env, request_id, &inv);
    if (rc != 0) return rc;
    if (!inv->is_streaming) return REALM_ERR_INVALID_STATE_TRANSITION;
    if (oom_ends(env, inv)) return 0;
    env_answered(env, inv);
    if (error_type || error_body) {
        char et[128];
        error_type_of(error_body ? error_body : "", error_body ? error_len : 0, error_type, et,
                      sizeof(et));
        inv_finish(inv, REALM_INV_FN_ERROR, error_body, error_body ? error_len : 0, et, NULL);
    } else {
        inv_finish(inv, REALM_INV_OK, NULL, 0, NULL, NULL);
    }
    return 0;
}

/* ---- life ---- */

realm_exec_t *realm_exec_new(const realm_exec_opts_t *opts)
{
    realm_exec_t *x = realm_calloc(1, sizeof(*x));
    x->o = *opts;
    x->runtimes_dir = realm_strdup(opts->runtimes_dir ? opts->runtimes_dir : "runtimes");
    x->node_modules_dir = dup_or_null(opts->node_modules_dir);
    x->logs_dir = dup_or_null(opts->logs_dir);
    x->self_exe = realm_strdup(opts->self_exe ? opts->self_exe : "/proc/self/exe");
    x->region = realm_strdup(opts->region ? opts->region : "us-east-1");
    x->o.runtimes_dir = x->o.node_modules_dir = x->o.logs_dir = x->o.self_exe = x->o.region = NULL;
    if (!x->o.concurrency_limit) x->o.concurrency_limit = 100;
    if (!x->o.idle_ms) x->o.idle_ms = 300000;
    if (!x->o.init_timeout_ms) x->o.init_timeout_ms = 10000;
    if (!x->o.log_file_bytes) x->o.log_file_bytes = 1024 * 1024;
    if (!x->o.pids_max) x->o.pids_max = 1024;
    uv_idle_init(x->o.loop, &x->later_idle);
    x->later_idle.data = x;
    realm_buf_init(&x->bpf);
    if (opts->probe && opts->probe->has_seccomp) {
        const char *err = NULL;
        if (realm_sandbox_seccomp_build(&x->bpf, &err) != 0) {
            realm_warn("seccomp filter: %s; environments run without it", err ? err : "failed");
            realm_buf_dispose(&x->bpf);
        }
    }
    return x;
}

void realm_exec_set_runtime_port(realm_exec_t *x, int port)
{
    x->o.runtime_port = port;
}

void realm_exec_shutdown(realm_exec_t *x)
{
    if (!x || x->is_freeing) return;
    x->is_freeing = 1;
    for (pool_t *p = x->pools; p; p = p->next) {
        while (p->q_head)
            inv_finish(p->q_head, REALM_INV_FAILED, NULL, 0, "ServiceException",
                       "the server is shutting down");
        for (realm_env_t *e = p->envs, *n; e; e = n) {
            n = e->next;
            if (e->inv)
                inv_finish(e->inv, REALM_INV_FAILED, NULL, 0, "ServiceException",
                           "the server is shutting down");
            env_stop(e, "server stopping");
        }
    }
}

static void on_later_closed(uv_handle_t *h)
{
    realm_exec_t *x = h->data;
    x->later_closed = 1;
}

void realm_exec_free(realm_exec_t *x)
{
    if (!x) return;
    realm_exec_shutdown(x);
    /* Reap them: their exits close the timers and drop the last references;
     * invocations on the later list get their end (the idle keeps the loop going). */
    while (x->all || x->later_head)
        uv_run(x->o.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&x->later_idle, on_later_closed);
    while (!x->later_closed)
        uv_run(x->o.loop, UV_RUN_ONCE);
    uv_run(x->o.loop, UV_RUN_NOWAIT);
    for (pool_t *p = x->pools, *n; p; p = n) {
        n = p->next;
        pool_free(p);
    }
    realm_buf_dispose(&x->bpf);
    free(x->runtimes_dir);
    free(x->node_modules_dir);
    free(x->logs_dir);
    free(x->self_exe);
    free(x->region);
    free(x);
}
