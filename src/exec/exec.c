/*
 * exec.c - the scheduler: pools of execution environments, their queues and
 * the invocations they run (see exec.h; internal.h for how exec's files
 * divide the work).
 *
 * LATER: realm_exec_invoke never ends an invocation inside its own call
 * (libuv's callback rule). An invocation refused at once (reserved
 * concurrency 0, a full queue) or one realm_exec_pump could not start an environment
 * for is put on the engine's `later` list and ended from an idle handle on
 * a later loop turn. Each turn ends only what was on the list when the turn
 * began, so a caller that invokes again from on_done (the Event queue does)
 * gets its answer on the next turn, not in a deeper stack frame: the stack
 * stays flat and I/O is polled between turns. A later invocation can still
 * be cancelled; then nothing is reported.
 */
#include "exec/internal.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/str.h"
#include "runtimes/runtimes.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Static_assert(REALM_EXEC_TAIL_BYTES == REALM_FNLOG_TAIL_BYTES, "one tail size");

/* ---- small things ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- logs (the files: fnlog.h) ---- */

void realm_exec_inv_log(realm_inv_t *inv, const char *bytes, size_t len)
{
    realm_fnlog_tail_append(&inv->log, bytes, len);
}

void realm_exec_platform_line(pool_t *p, realm_inv_t *inv, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof(line) - 2) n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    if (inv) realm_exec_inv_log(inv, line, (size_t)n);
    if (p) realm_fnlog_write(p->log, line, (size_t)n);
}

/* ---- invocations ---- */

void realm_exec_q_remove(pool_t *p, realm_inv_t *inv)
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

void realm_exec_inv_free(realm_inv_t *inv)
{
    free(inv->later_type);
    free(inv->later_msg);
    free(inv->payload);
    free(inv->invoked_arn);
    free(inv->client_context);
    free(inv->content_type);
    realm_buf_dispose(&inv->log);
    realm_buf_dispose(&inv->streamed);
    free(inv);
}

/* Ends an invocation: its sink's last event, then it is freed. */
void realm_exec_inv_finish(realm_inv_t *inv, realm_inv_status_t status, const char *payload,
                           size_t len, const char *error_type, const char *error_message)
{
    if (inv->pool) realm_exec_q_remove(inv->pool, inv);
    if (inv->env && inv->env->inv == inv) inv->env->inv = NULL;
    inv->env = NULL;
    const char *tail;
    size_t tail_len;
    realm_fnlog_tail_view(&inv->log, &tail, &tail_len);
    realm_inv_result_t r = {
        .status = status,
        .request_id = inv->request_id,
        .payload = payload ? payload : "",
        .payload_len = payload ? len : 0,
        .error_type = error_type,
        .error_message = error_message,
        .log_tail = tail,
        .log_tail_len = tail_len,
        .was_streamed = inv->is_streaming && inv->sink.on_chunk,
        .content_type = inv->is_streaming ? inv->content_type : NULL,
        .error_code = status == REALM_INV_FAILED ? inv->error_code : 0,
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
    realm_exec_inv_free(inv);
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
        realm_exec_inv_finish(inv, inv->later_status, NULL, 0, inv->later_type, inv->later_msg);
    }
    if (!x->later_head) {
        uv_idle_stop(&x->later_idle);
        realm_exec_close_maybe(x);
    }
}

/*
 * Ends an invocation that has no environment on a later loop turn (with
 * no payload): off its pool's queue now, its sink's on_done later.
 */
void realm_exec_inv_end_later(realm_inv_t *inv, realm_inv_status_t status, const char *error_type,
                              const char *error_message)
{
    realm_exec_t *x = inv->x;
    if (inv->pool) realm_exec_q_remove(inv->pool, inv);
    inv->later_status = status;
    inv->later_type = realm_strdup_opt(error_type);
    inv->later_msg = realm_strdup_opt(error_message);
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
void realm_exec_inv_fail(realm_inv_t *inv, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void realm_exec_inv_fail(realm_inv_t *inv, const char *type, const char *fmt, ...)
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
    realm_exec_platform_line(p, inv, "%s", full);
    realm_exec_inv_finish(inv, REALM_INV_FN_ERROR, body, strlen(body), type, full);
    free(body);
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
    realm_exec_env_stop(best, "evicted for another function");
    return 1;
}

/* Environments of one tenant: each tenant is an account with its own limit. */
static size_t tenant_envs(const realm_exec_t *x, const char *tenant)
{
    size_t n = 0;
    for (const pool_t *q = x->pools; q; q = q->next)
        if (strcmp(q->tenant, tenant) == 0) n += q->n_envs + q->n_leasing;
    return n;
}

static int can_start(pool_t *p)
{
    realm_exec_t *x = p->x;
    if (p->n_envs + p->n_leasing >= pool_cap(p)) return 0;
    if (tenant_envs(x, p->tenant) < x->o.concurrency_limit) return 1;
    return evict_one(x, p);
}

static void deliver(realm_env_t *env, realm_inv_t *inv)
{
    pool_t *p = env->pool;
    realm_exec_t *x = p->x;
    realm_exec_q_remove(p, inv);
    env->inv = inv;
    inv->env = env;
    realm_exec_env_set_state(env, ENV_BUSY);
    inv->started_ns = uv_hrtime();
    inv->deadline_ms = now_ms() + (int64_t)p->timeout_s * 1000;
    x->st.invocations_total++;
    uv_timer_start(&env->timer, realm_exec_on_env_timer, p->timeout_s * 1000, 0);
    realm_exec_platform_line(p, inv, "START RequestId: %s Version: %s", inv->request_id,
                             p->version);
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

/* Environments about to take an invocation from p's queue. */
static size_t coming(const pool_t *p)
{
    return p->n_starting + p->n_resting_fresh + p->n_leasing;
}

/* ---- cluster leases (exec.h) ---- */

typedef struct {
    pool_t *pool;
} lease_wait_t;

/* Invocations nobody is about to take end now (a lease was refused). */
static void refuse_uncovered(pool_t *p, realm_inv_status_t status, const char *type,
                             const char *msg)
{
    while (p->q_tail && p->queued > coming(p))
        realm_exec_inv_end_later(p->q_tail, status, type, msg);
}

static void on_lease(int64_t lease, void *token)
{
    lease_wait_t *w = token;
    pool_t *p = w->pool;
    realm_exec_t *x = p->x;
    free(w);
    p->n_leasing--;
    x->n_leasing--;
    if (x->is_freeing || p->is_retired) {
        if (lease > 0 && x->leases.drop) x->leases.drop(x->leases_ud, lease);
        if (!x->is_freeing) realm_exec_pump(p);
        realm_exec_close_maybe(x);
        return;
    }
    if (lease > 0) {
        char err[512], msg[600];
        int is_wanted = p->queued > coming(p) || p->n_envs < p->provisioned;
        if (!is_wanted) {
            if (x->leases.drop) x->leases.drop(x->leases_ud, lease);
        } else if (realm_exec_env_spawn(p, lease, err, sizeof(err)) != 0) {
            if (x->leases.drop) x->leases.drop(x->leases_ud, lease);
            if (p->q_head) {
                snprintf(msg, sizeof(msg), "could not start an execution environment: %s", err);
                realm_exec_inv_end_later(p->q_head, REALM_INV_FAILED, "ServiceException", msg);
            }
        }
    } else if (lease == REALM_EXEC_LEASE_UNAVAILABLE) {
        refuse_uncovered(p, REALM_INV_FAILED, "ServiceException",
                         "the cluster's concurrency leases are unavailable (its database)");
    } else {
        /* The cluster is at the function's reserved concurrency or the
         * tenant's limit: a throttle, as past either on one server. */
        refuse_uncovered(p, REALM_INV_THROTTLED,
                         lease == REALM_EXEC_LEASE_FN_FULL
                             ? "ReservedFunctionConcurrentInvocationLimitExceeded"
                             : "ConcurrentInvocationLimitExceeded",
                         "Rate Exceeded.");
        if (p->n_envs < p->provisioned) p->init_failures = PROVISION_GIVE_UP;
        return; /* pumping again would only ask again */
    }
    realm_exec_pump(p);
}

/* Starts an environment of p, after its lease in a cluster: 0, or -1 with err. */
static int start_env(pool_t *p, char *err, size_t err_len)
{
    realm_exec_t *x = p->x;
    if (!x->leases.take) return realm_exec_env_spawn(p, 0, err, err_len);
    lease_wait_t *w = realm_calloc(1, sizeof(*w));
    w->pool = p;
    p->n_leasing++;
    x->n_leasing++;
    uint64_t lim = x->o.concurrency_limit;
    int64_t fn_cap = p->reserved >= 0 && (uint64_t)p->reserved < lim ? p->reserved : -1;
    x->leases.take(x->leases_ud, p->tenant, p->name, fn_cap, (int64_t)lim, on_lease, w);
    return 0;
}

void realm_exec_set_leases(realm_exec_t *x, const realm_exec_leases_t *hooks, void *ud)
{
    if (hooks)
        x->leases = *hooks;
    else
        memset(&x->leases, 0, sizeof(x->leases));
    x->leases_ud = hooks ? ud : NULL;
}

void realm_exec_lease_lost(realm_exec_t *x, int64_t lease)
{
    for (realm_env_t *e = x->all; e; e = e->all_next)
        if (e->pool && e->lease == lease) {
            e->lease = 0; /* ended already: nothing to drop */
            realm_exec_env_fence(e);
            return;
        }
}

int realm_exec_yield_idle(realm_exec_t *x, const char *tenant, const char *name)
{
    realm_env_t *best = NULL;
    for (realm_env_t *e = x->all; e; e = e->all_next)
        if (e->pool && e->lease && e->state == ENV_IDLE && strcmp(e->pool->tenant, tenant) == 0 &&
            (!name || strcmp(e->pool->name, name) == 0) &&
            (!best || e->last_used < best->last_used))
            best = e;
    if (!best) return 0;
    realm_exec_env_stop(best, "its lease is wanted by another node");
    return 1;
}

void realm_exec_pump(pool_t *p)
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
    size_t n_coming = coming(p);
    while (p->queued > n_coming && can_start(p)) {
        char err[512], msg[600];
        if (start_env(p, err, sizeof(err)) != 0) {
            realm_inv_t *inv = p->q_head;
            snprintf(msg, sizeof(msg), "could not start an execution environment: %s", err);
            realm_exec_inv_end_later(inv, REALM_INV_FAILED, "ServiceException", msg);
            continue;
        }
        n_coming++;
    }
    /* Provisioned environments stay up (unless they cannot even start). */
    while (p->n_envs + p->n_leasing < p->provisioned && p->init_failures < PROVISION_GIVE_UP &&
           can_start(p)) {
        char err[512];
        if (start_env(p, err, sizeof(err)) != 0) break;
    }
}

static void on_pump(uv_idle_t *h)
{
    realm_exec_t *x = h->data;
    uv_idle_stop(h);
    for (pool_t *p = x->pools; p; p = p->next) {
        if (!p->is_pump_due) continue;
        p->is_pump_due = 0;
        if (!x->is_freeing) realm_exec_pump(p);
    }
}

void realm_exec_pump_soon(pool_t *p)
{
    if (p->is_pump_due) return;
    p->is_pump_due = 1;
    uv_idle_start(&p->x->pump_idle, on_pump);
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

char *realm_exec_pool_key(const realm_exec_fn_t *fn)
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
    realm_fnlog_free(p->log);
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
            if (e->state == ENV_IDLE || e->state == ENV_RESTING)
                realm_exec_env_stop(e, "new revision");
        }
    }
}

static pool_t *pool_get(realm_exec_t *x, const realm_exec_fn_t *fn)
{
    char *key = realm_exec_pool_key(fn);
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
    p->handler = realm_strdup_opt(fn->handler);
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
    p->log = realm_fnlog_new(x->logs_dir, p->tenant, p->name, x->o.log_file_bytes);
    realm_fnlog_stream_name(p->log_stream, sizeof(p->log_stream), p->version);
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
    if (req->payload_owned) {
        inv->payload = req->payload_owned;
    } else {
        inv->payload = realm_malloc(req->payload_len + 1);
        if (req->payload_len) memcpy(inv->payload, req->payload, req->payload_len);
        inv->payload[req->payload_len] = '\0';
    }
    inv->payload_len = req->payload_len;
    inv->invoked_arn = realm_strdup_opt(req->invoked_arn);
    inv->client_context = realm_strdup_opt(req->client_context);
    realm_buf_init(&inv->log);
    realm_buf_init(&inv->streamed);
    inv->waits_past_reserved = req->waits_past_reserved != 0;
    inv->queued_at = uv_now(x->o.loop);

    if (x->is_freeing) {
        realm_exec_inv_end_later(inv, REALM_INV_FAILED, "ServiceException",
                                 "the server is shutting down");
        return inv;
    }
    if (p->reserved == 0) {
        realm_exec_inv_end_later(inv, REALM_INV_THROTTLED,
                                 "ReservedFunctionConcurrentInvocationLimitExceeded",
                                 "Rate Exceeded. The function's reserved concurrency is 0.");
        return inv;
    }
    /* None here is about to take it: another node may (placed.c). */
    inv->must_place = req->must_place != 0;
    if ((inv->must_place || !realm_exec_is_warm(p)) && !req->no_placement &&
        realm_exec_try_place(p, inv, fn, sink))
        return inv;
    if (inv->must_place) {
        inv->error_code = REALM_ERR_NO_MODEL;
        realm_exec_inv_end_later(inv, REALM_INV_FAILED, "ServiceException",
                                 "no node of the cluster can run it now (its model is not loaded "
                                 "on any node up)");
        return inv;
    }
    realm_exec_admit(p, inv);
    return inv;
}

int realm_exec_is_warm(const pool_t *p)
{
    for (realm_env_t *e = p->envs; e; e = e->next)
        if (e->state == ENV_IDLE && e->next_cb) return 1;
    return p->queued < coming(p);
}

void realm_exec_admit(pool_t *p, realm_inv_t *inv)
{
    realm_exec_t *x = p->x;
    size_t n_coming = coming(p);
    int room = realm_exec_is_warm(p);
    if (!room && p->n_envs + p->n_leasing < pool_cap(p)) {
        room = tenant_envs(x, p->tenant) < x->o.concurrency_limit;
        /* Another function's idle environment (same tenant) can make room. */
        for (realm_env_t *e = x->all; e && !room; e = e->all_next)
            room = e->pool && e->pool != p && strcmp(e->pool->tenant, p->tenant) == 0 &&
                   e->state == ENV_IDLE;
    }
    int by_reserved = p->reserved >= 0 && (uint64_t)p->reserved < x->o.concurrency_limit;
    if (!room && by_reserved && p->n_envs + p->n_leasing >= pool_cap(p) &&
        !inv->waits_past_reserved) {
        /* Lambda throttles a synchronous call past reserved concurrency at
         * once; only waits for the server's own capacity are queued. */
        realm_exec_inv_end_later(inv, REALM_INV_THROTTLED,
                                 "ReservedFunctionConcurrentInvocationLimitExceeded",
                                 "Rate Exceeded.");
        return;
    }
    if (!room && p->queued - n_coming >= x->o.queue_depth) {
        realm_exec_inv_end_later(inv, REALM_INV_THROTTLED,
                                 by_reserved ? "ReservedFunctionConcurrentInvocationLimitExceeded"
                                             : "ConcurrentInvocationLimitExceeded",
                                 "Rate Exceeded.");
        return;
    }
    q_push(p, inv);
    realm_exec_pump(p); /* ends nothing now: an environment that cannot start fails it later */
}

void realm_inv_cancel(realm_inv_t *inv)
{
    if (inv->is_placed) {
        realm_exec_placed_cancel(inv);
        return;
    }
    realm_env_t *env = inv->env;
    pool_t *p = inv->pool;
    if (inv->is_ending) later_unlink(inv->x, inv);
    if (inv->is_queued) realm_exec_q_remove(p, inv);
    if (env) {
        env->inv = NULL;
        inv->env = NULL;
        realm_exec_report(env, inv);
        realm_exec_env_stop(env, "invocation cancelled");
    }
    realm_exec_inv_free(inv);
}

const char *realm_inv_request_id(const realm_inv_t *inv)
{
    return inv->request_id;
}

void realm_exec_provision(realm_exec_t *x, const realm_exec_fn_t *fn, size_t n)
{
    pool_t *p = pool_get(x, fn);
    p->provisioned = n;
    realm_exec_pump(p);
}

void realm_exec_forget(realm_exec_t *x, const char *tenant, const char *name)
{
    for (pool_t *p = x->pools; p; p = p->next) {
        if (strcmp(p->tenant, tenant ? tenant : "") != 0 || strcmp(p->name, name) != 0) continue;
        p->provisioned = 0;
        p->is_retired = 1;
        for (realm_env_t *e = p->envs, *n; e; e = n) {
            n = e->next;
            if (e->state != ENV_BUSY) realm_exec_env_stop(e, "function changed");
        }
    }
}

int realm_exec_uses_code(const realm_exec_t *x, const char *code_dir)
{
    for (const pool_t *p = x->pools; p; p = p->next)
        if ((p->envs || p->q_head) && strcmp(p->code_dir, code_dir) == 0) return 1;
    return 0;
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

/* ---- life ---- */

realm_exec_t *realm_exec_new(const realm_exec_opts_t *opts)
{
    realm_exec_t *x = realm_calloc(1, sizeof(*x));
    x->o = *opts;
    x->runtimes_dir = realm_strdup(opts->runtimes_dir ? opts->runtimes_dir : "runtimes");
    x->node_modules_dir = realm_strdup_opt(opts->node_modules_dir);
    x->logs_dir = realm_strdup_opt(opts->logs_dir);
    x->self_exe = realm_strdup(opts->self_exe ? opts->self_exe : "/proc/self/exe");
    x->region = realm_strdup(opts->region ? opts->region : "us-east-1");
    x->o.runtimes_dir = x->o.node_modules_dir = x->o.logs_dir = x->o.self_exe = x->o.region = NULL;
    if (x->o.probe) {
        /* What servers killed before they could stop their environments left. */
        int n = realm_sandbox_sweep_dead(x->o.probe, "env-");
        if (n)
            realm_info("sandbox: killed what a killed server's environments left (%d cgroups)", n);
    }
    if (!x->o.concurrency_limit) x->o.concurrency_limit = 100;
    if (!x->o.idle_ms) x->o.idle_ms = 300000;
    if (!x->o.init_timeout_ms) x->o.init_timeout_ms = 10000;
    if (!x->o.log_file_bytes) x->o.log_file_bytes = 1024 * 1024;
    if (!x->o.pids_max) x->o.pids_max = 1024;
    uv_idle_init(x->o.loop, &x->later_idle);
    x->later_idle.data = x;
    uv_idle_init(x->o.loop, &x->pump_idle);
    x->pump_idle.data = x;
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
    realm_exec_placed_shutdown(x);
    for (pool_t *p = x->pools; p; p = p->next) {
        while (p->q_head)
            realm_exec_inv_finish(p->q_head, REALM_INV_FAILED, NULL, 0, "ServiceException",
                                  "the server is shutting down");
        for (realm_env_t *e = p->envs, *n; e; e = n) {
            n = e->next;
            if (e->inv)
                realm_exec_inv_finish(e->inv, REALM_INV_FAILED, NULL, 0, "ServiceException",
                                      "the server is shutting down");
            realm_exec_env_stop(e, "server stopping");
        }
    }
}

/* The last handle is closed: everything goes, then the caller hears. */
static void on_later_closed(uv_handle_t *h)
{
    realm_exec_t *x = h->data;
    realm_exec_close_cb cb = x->close_cb;
    void *data = x->close_data;
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
    if (cb) cb(data);
}

void realm_exec_close_maybe(realm_exec_t *x)
{
    if (!x->is_closing || x->is_idle_closing || x->all || x->later_head || x->n_timers ||
        x->n_leasing)
        return;
    x->is_idle_closing = 1;
    uv_close((uv_handle_t *)&x->pump_idle, NULL);
    uv_close((uv_handle_t *)&x->later_idle, on_later_closed); /* called after pump_idle's */
}

void realm_exec_close(realm_exec_t *x, realm_exec_close_cb cb, void *data)
{
    realm_exec_shutdown(x);
    x->is_closing = 1;
    x->close_cb = cb;
    x->close_data = data;
    /* Environments reaped (their exits close the timers) and the later
     * list delivered; the idle's close defers cb past this call. */
    realm_exec_close_maybe(x);
}
