/*
 * invoker.c - deployed functions run through the registry and the engine
 * (see invoker.h).
 *
 * RESOLUTION: the last resolution of an unqualified name ($LATEST) is kept
 * per slot while the registry's write generation stays the same (rcache_t).
 * A cached resolution also keeps the policy read with it (the
 * realm:network tag), so an invocation of a function nobody changed reads
 * no SQL and parses no configuration.
 *
 * EVENTS: the queue (queue/queue.h) is the only copy of an Event
 * invocation. The invoker leases due events, runs them and then removes,
 * reschedules (retry_base_ms, doubling, --event-retries times) or moves
 * them to the failed list. Leases live in memory, so after a crash every
 * unfinished event is due again: at least once, as on Lambda.
 *
 * The dispatcher (events_kick) does bounded work per loop turn, whatever
 * the backlog: it takes at most EVENT_KICK_BUDGET events, then yields (an
 * idle handle brings it back on the next turn, after I/O was polled). A
 * push or an ending event only asks for a kick on a later turn, so 6,000
 * requests in a burst cost one kick per turn, not one each, and an event's
 * end never starts the next one inside its own call stack. An event is
 * resolved before its payload is read: one whose function has reserved
 * concurrency 0 is parked (queue/queue.h) without reading it, and costs
 * nothing more until its function changes (parked_check, at most once a
 * second and only when the registry's generation moved) or it is 6 hours
 * old. An event older than that is dropped to the failed list
 * (EventAgeExceeded), as Lambda drops it.
 */
#include "invoke/invoker.h"

#include "base/alloc.h"
#include "base/log.h"
#include "base/str.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_TENANT ""                    /* the namespace when authentication is off */
#define EVENT_BATCH 16                       /* events taken from the queue at once */
#define THROTTLED_RETRY_MS 1000              /* a throttled event waits this long */
#define EVENT_MAX_AGE_MS (6 * 3600 * 1000LL) /* Lambda keeps an event this long */
#define EVENT_KICK_BUDGET 64                 /* events taken per loop turn at most */
#define PARK_CHECK_MS 1000                   /* parked functions are looked at this often */
#define RCACHE_SLOTS 256                     /* resolutions kept (see rcache_t) */

/*
 * The last resolution of an unqualified function name ($LATEST) per slot,
 * kept while the registry's generation stays the same: an invocation of a
 * function nobody changed reads no SQL and parses no configuration. Direct-
 * mapped by a hash of tenant and name; a collision replaces the entry.
 * Versions and aliases (a weighted alias picks anew each time) are not kept.
 */
typedef struct {
    char *key; /* owned: tenant "\n" name; NULL when the slot is empty */
    uint64_t generation;
    realm_fn_version_t v; /* config: an owned reference */
    int no_network;
} rcache_t;

struct realm_invoker_s {
    realm_invoker_opts_t o;
    realm_queue_t *queue;
    uv_timer_t timer;    /* the next due event (or the next parked check) */
    uv_idle_t kick_idle; /* a kick on the next loop turn */
    size_t events_running;
    uint64_t parked_gen;   /* the registry generation parked functions were checked at */
    int has_parked;        /* some function has parked events */
    int is_parked_checked; /* parked_gen is meaningful */
    int is_draining;
    int is_closing;
    int handles_open; /* timer and kick_idle until they are closed */
    realm_invoker_close_cb on_closed;
    void *closed_data;
    uint64_t cache_hits;
    rcache_t rcache[RCACHE_SLOTS];
};

/* ---- resolution ---- */

typedef struct {
    realm_exec_fn_t fn;
    realm_fn_version_t v;
    char code_dir[4096];
    char **env;
    char arn[256];
} resolved_t;

static void resolved_dispose(resolved_t *r)
{
    if (r->env)
        for (char **e = r->env; *e; e++)
            free(*e);
    free(r->env);
    realm_fn_version_dispose(&r->v);
}

/* The cache slot of an unqualified name, with its key in key; NULL when not cached. */
static rcache_t *rcache_slot(realm_invoker_t *iv, const char *tenant, const char *function,
                             const char *qualifier, char *key, size_t key_len)
{
    if ((qualifier && *qualifier) || strchr(function, ':')) return NULL;
    int n = snprintf(key, key_len, "%s\n%s", tenant, function);
    if (n < 0 || (size_t)n >= key_len) return NULL;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return &iv->rcache[h % RCACHE_SLOTS];
}

static void rcache_clear(rcache_t *c)
{
    free(c->key);
    c->key = NULL;
    realm_fn_version_dispose(&c->v);
}

static int rcache_get(realm_invoker_t *iv, const rcache_t *c, const char *key,
                      realm_fn_version_t *v, int *no_network)
{
    if (!c->key || c->generation != realm_registry_async_generation(iv->o.ra) ||
        strcmp(c->key, key) != 0)
        return 0;
    *v = c->v;
    v->config = json_incref(c->v.config);
    *no_network = c->no_network;
    iv->cache_hits++;
    return 1;
}

static void rcache_put(rcache_t *c, const char *key, uint64_t generation,
                       const realm_fn_version_t *v, int no_network)
{
    rcache_clear(c);
    c->key = realm_strdup(key);
    c->generation = generation;
    c->v = *v;
    c->v.config = json_incref(v->config);
    c->no_network = no_network;
}

/* The unqualified ARN: FunctionArn of a version ends in ":N". */
static void unqualified_arn(const realm_fn_version_t *v, char *out, size_t len)
{
    const char *fa = json_string_value(json_object_get(v->config, "FunctionArn"));
    snprintf(out, len, "%s", fa ? fa : v->name);
    if (strcmp(v->version, "$LATEST") != 0) {
        char *colon = strrchr(out, ':');
        if (colon && strcmp(colon + 1, v->version) == 0) *colon = '\0';
    }
}

/*
 * A lookup in the registry, on its worker: the version that runs and its
 * policy (the realm:network tag takes the network away: docs/execution.md).
 * For an asynchronous start it also carries the call until it can start.
 */
typedef struct {
    realm_invoker_t *iv;
    char *tenant, *function, *qualifier, *key;
    double pick;
    /* results (worker) */
    uint64_t generation; /* the registry's, read before resolving */
    int rc;
    realm_fn_version_t v;
    int no_network;
    realm_error_t e;
    /* an asynchronous start */
    realm_inv_req_t req; /* payload_owned taken; strings below */
    char *invoked_arn, *client_context, *trace_id, *request_id;
    realm_inv_sink_t sink;
    void *data;
    char *executed_version;
    realm_invoker_started_cb started;
} lookup_t;

static void lookup_work(realm_registry_t *reg, void *data)
{
    lookup_t *l = data;
    l->generation = realm_registry_generation(reg);
    l->rc =
        realm_registry_resolve(reg, l->tenant, l->function, l->qualifier, l->pick, &l->v, &l->e);
    if (l->rc != 0) return;
    /* The code, from the database when this server's data dir lacks it
     * (another server took it, or the data dir is new): hash checked. */
    char err[300];
    if (realm_registry_code_fetch(reg, l->iv->o.store, l->v.code_hex, err, sizeof(err)) != 0) {
        realm_error("function %s: %s", l->v.name, err);
        l->rc = realm_error_set(&l->e, REALM_ERR_STORE_UNAVAILABLE,
                                "The function's code package could not be fetched; retry shortly");
        realm_fn_version_dispose(&l->v);
        return;
    }
    char arn[256];
    unqualified_arn(&l->v, arn, sizeof(arn));
    realm_error_t te;
    json_t *tags = realm_registry_list_tags(reg, l->tenant, arn, &te);
    const char *net =
        json_string_value(json_object_get(json_object_get(tags, "Tags"), "realm:network"));
    if (net && (strcasecmp(net, "none") == 0 || strcasecmp(net, "off") == 0 ||
                strcasecmp(net, "false") == 0))
        l->no_network = 1;
    json_decref(tags);
}

static void lookup_free(lookup_t *l)
{
    free(l->tenant);
    free(l->function);
    free(l->qualifier);
    free(l->key);
    free(l->req.payload_owned);
    free(l->invoked_arn);
    free(l->client_context);
    free(l->trace_id);
    free(l->request_id);
    realm_fn_version_dispose(&l->v);
}

static void lookup_init(lookup_t *l, realm_invoker_t *iv, const char *tenant, const char *function,
                        const char *qualifier, const char *key)
{
    memset(l, 0, sizeof(*l));
    l->iv = iv;
    l->tenant = realm_strdup(tenant);
    l->function = realm_strdup(function);
    l->qualifier = qualifier ? realm_strdup(qualifier) : NULL;
    l->key = key ? realm_strdup(key) : NULL;
    l->pick = (double)(rand() % 1000000) / 1000000.0;
}

/* Fills what runs from a resolved version (on the loop). */
static void resolved_fill(realm_invoker_t *iv, resolved_t *r, const char *tenant, int no_network)
{
    json_t *c = r->v.config;
    realm_pkg_store_tree_path(iv->o.store, r->v.code_hex, r->code_dir, sizeof(r->code_dir));
    json_t *vars = json_object_get(json_object_get(c, "Environment"), "Variables");
    r->env = realm_calloc(json_object_size(vars) + 1, sizeof(char *));
    size_t n = 0;
    const char *k;
    json_t *val;
    json_object_foreach(vars, k, val)
    {
        realm_buf_t b;
        realm_buf_init(&b);
        realm_buf_appendf(&b, "%s=%s", k, json_string_value(val) ? json_string_value(val) : "");
        r->env[n++] = realm_buf_steal(&b, NULL);
    }
    unqualified_arn(&r->v, r->arn, sizeof(r->arn));
    r->fn = (realm_exec_fn_t){
        .tenant = tenant,
        .name = r->v.name,
        .version = r->v.version,
        .revision = json_string_value(json_object_get(c, "RevisionId")),
        .arn = r->arn,
        .runtime = json_string_value(json_object_get(c, "Runtime")),
        .handler = json_string_value(json_object_get(c, "Handler")),
        .code_dir = r->code_dir,
        .env = (const char *const *)r->env,
        .memory_mb = (uint64_t)json_integer_value(json_object_get(c, "MemorySize")),
        .timeout_s = (uint64_t)json_integer_value(json_object_get(c, "Timeout")),
        .tmp_mb = (uint64_t)json_integer_value(
            json_object_get(json_object_get(c, "EphemeralStorage"), "Size")),
        .reserved = r->v.reserved,
        .no_network = no_network,
    };
}

/* A lookup's answer on the loop: cached (unqualified names) and moved into
 * r, whose fn.tenant is tenant (it must outlive r). */
static int lookup_take(realm_invoker_t *iv, lookup_t *l, const char *tenant, resolved_t *r,
                       realm_error_t *e)
{
    if (l->rc != 0) {
        *e = l->e;
        return -1;
    }
    char key[600];
    rcache_t *slot = rcache_slot(iv, l->tenant, l->function, l->qualifier, key, sizeof(key));
    if (slot) rcache_put(slot, key, l->generation, &l->v, l->no_network);
    r->v = l->v;
    memset(&l->v, 0, sizeof(l->v));
    resolved_fill(iv, r, tenant, l->no_network);
    return 0;
}

/*
 * Resolves now: from the cache, else through the registry's worker, WAITING
 * for it (registry/async.h: the paths not yet asynchronous).
 */
static int resolve(realm_invoker_t *iv, const char *tenant, const char *function,
                   const char *qualifier, resolved_t *r, realm_error_t *e)
{
    memset(r, 0, sizeof(*r));
    char key[600];
    int no_network = 0;
    rcache_t *slot = rcache_slot(iv, tenant, function, qualifier, key, sizeof(key));
    if (slot && rcache_get(iv, slot, key, &r->v, &no_network)) {
        resolved_fill(iv, r, tenant, no_network);
        return 0;
    }
    lookup_t l;
    lookup_init(&l, iv, tenant, function, qualifier, NULL);
    int rc = realm_registry_async_call(iv->o.ra, lookup_work, &l);
    if (rc != 0) realm_error_set(&l.e, rc, "%s", realm_err_message(rc)), l.rc = -1;
    rc = lookup_take(iv, &l, tenant, r, e);
    lookup_free(&l);
    return rc;
}

/* Runs what resolve found; the sink's on_done comes later (exec.h). */
static realm_inv_t *start_resolved(realm_invoker_t *iv, resolved_t *r, const char *qualifier,
                                   const realm_inv_req_t *req, const realm_inv_sink_t *sink,
                                   void *data)
{
    /* The ARN as invoked: qualified when a qualifier was given. */
    char invoked[400];
    if (qualifier && qualifier[0])
        snprintf(invoked, sizeof(invoked), "%s:%s", r->arn, qualifier);
    else
        snprintf(invoked, sizeof(invoked), "%s", r->arn);
    realm_inv_req_t rq = *req;
    if (!rq.invoked_arn) rq.invoked_arn = invoked;
    return realm_exec_invoke(iv->o.exec, &r->fn, &rq, sink, data);
}

static char *dup_opt(const char *v)
{
    return v ? realm_strdup(v) : NULL;
}

static void start_done(void *data, int status)
{
    lookup_t *l = data;
    realm_invoker_t *iv = l->iv;
    if (status != 0) l->rc = realm_error_set(&l->e, status, "%s", realm_err_message(status));
    resolved_t r;
    realm_error_t e;
    memset(&r, 0, sizeof(r));
    if (lookup_take(iv, l, l->tenant, &r, &e) != 0) {
        l->started(NULL, &e, l->data);
    } else {
        if (l->executed_version) snprintf(l->executed_version, 24, "%s", r.v.version);
        l->req.invoked_arn = l->invoked_arn;
        l->req.client_context = l->client_context;
        l->req.trace_id = l->trace_id;
        l->req.request_id = l->request_id;
        realm_inv_t *inv = start_resolved(iv, &r, l->qualifier, &l->req, &l->sink, l->data);
        l->req.payload_owned = NULL; /* the engine took it */
        resolved_dispose(&r);
        l->started(inv, NULL, l->data);
    }
    lookup_free(l);
    free(l);
}

int realm_invoker_start(realm_invoker_t *iv, const char *tenant, const char *function,
                        const char *qualifier, const realm_inv_req_t *req,
                        const realm_inv_sink_t *sink, void *data, char *executed_version,
                        realm_invoker_started_cb started, realm_inv_t **inv, realm_error_t *e)
{
    e->code = 0;
    *inv = NULL;
    char key[600];
    int no_network = 0;
    resolved_t r;
    memset(&r, 0, sizeof(r));
    rcache_t *slot = rcache_slot(iv, tenant, function, qualifier, key, sizeof(key));
    if (slot && rcache_get(iv, slot, key, &r.v, &no_network)) {
        resolved_fill(iv, &r, tenant, no_network);
        if (executed_version) snprintf(executed_version, 24, "%s", r.v.version);
        *inv = start_resolved(iv, &r, qualifier, req, sink, data);
        resolved_dispose(&r);
        return 1;
    }
    /* Not cached: the registry's worker looks it up; the call starts in start_done. */
    lookup_t *l = realm_malloc(sizeof(*l));
    lookup_init(l, iv, tenant, function, qualifier, NULL);
    l->req = *req;
    if (!req->payload_owned) {
        l->req.payload_owned = realm_malloc(req->payload_len + 1);
        if (req->payload_len) memcpy(l->req.payload_owned, req->payload, req->payload_len);
        l->req.payload_owned[req->payload_len] = '\0';
    }
    l->invoked_arn = dup_opt(req->invoked_arn);
    l->client_context = dup_opt(req->client_context);
    l->trace_id = dup_opt(req->trace_id);
    l->request_id = dup_opt(req->request_id);
    l->sink = *sink;
    l->data = data;
    l->executed_version = executed_version;
    l->started = started;
    int rc = realm_registry_async_submit(iv->o.ra, lookup_work, start_done, l);
    if (rc != 0) {
        lookup_free(l);
        free(l);
        realm_error_set(e, rc, "%s", realm_err_message(rc));
        return -1;
    }
    return 0;
}

typedef struct {
    char *tenant;
    json_t *out;
    void (*done)(json_t *fns, void *ctx);
    void *ctx;
} describe_t;

/* On the registry's worker: every function of the tenant, page by page. */
static void describe_work(realm_registry_t *reg, void *data)
{
    describe_t *d = data;
    const char *tenant = d->tenant;
    json_t *out = d->out;
    char marker[256] = "";
    for (;;) {
        realm_error_t e;
        json_t *page =
            realm_registry_list_functions(reg, tenant, marker[0] ? marker : NULL, 50, 0, &e);
        if (!page) break;
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(page, "Functions"), i, f)
        {
            const char *name = json_string_value(json_object_get(f, "FunctionName"));
            const char *desc = json_string_value(json_object_get(f, "Description"));
            /* Called by name, the call's params are the event ($LATEST; name it
             * NAME:QUALIFIER, or use `invoke`, for a version or alias). */
            json_t *params = json_array();
            json_array_append_new(
                out,
                json_pack(
                    "{s:s, s:s, s:o, s:s, s:b, s:s, s:O*, s:O*, s:O*, s:O*}", "name",
                    name ? name : "", "description",
                    desc && desc[0] ? desc : "A deployed Lambda function: its params are its event",
                    "params", params, "kind", "lambda", "streaming", 1, "result", "any", "runtime",
                    json_object_get(f, "Runtime"), "handler", json_object_get(f, "Handler"),
                    "memory_mb", json_object_get(f, "MemorySize"), "timeout_s",
                    json_object_get(f, "Timeout")));
        }
        const char *next = json_string_value(json_object_get(page, "NextMarker"));
        if (!next) {
            json_decref(page);
            break;
        }
        snprintf(marker, sizeof(marker), "%s", next);
        json_decref(page);
    }
}

static void describe_done(void *data, int status)
{
    (void)status; /* cancelled at shutdown: the list is empty */
    describe_t *d = data;
    d->done(d->out, d->ctx);
    free(d->tenant);
    free(d);
}

int realm_invoker_describe(realm_invoker_t *iv, const char *tenant,
                           void (*done)(json_t *fns, void *ctx), void *ctx)
{
    describe_t *d = realm_malloc(sizeof(*d));
    *d =
        (describe_t){.tenant = realm_strdup(tenant), .out = json_array(), .done = done, .ctx = ctx};
    if (realm_registry_async_submit(iv->o.ra, describe_work, describe_done, d) == 0) return 0;
    json_decref(d->out);
    free(d->tenant);
    free(d);
    return -1;
}

/* ---- provisioned concurrency (--provisioned NAME[:QUALIFIER]=N,...) ---- */

int realm_invoker_check_provisioned(const char *spec, char *err, size_t err_len)
{
    if (!spec || strcmp(spec, "none") == 0) return 0;
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        char *num_end = NULL;
        long v = eq ? strtol(eq + 1, &num_end, 10) : -1;
        if (!eq || eq == p || num_end != p + n || v < 0 || v > 1000) {
            snprintf(err, err_len,
                     "--provisioned: '%.*s' is not NAME[:QUALIFIER]=N (N from 0 to 1000)", (int)n,
                     p);
            return -1;
        }
        p += n;
        if (*p == ',') p++;
    }
    return 0;
}

void realm_invoker_provision(realm_invoker_t *iv, const char *only)
{
    const char *spec = iv->o.cfg->provisioned;
    if (!spec || strcmp(spec, "none") == 0) return;
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        char ref[300];
        snprintf(ref, sizeof(ref), "%.*s", (int)(eq - p), p);
        size_t count = (size_t)strtol(eq + 1, NULL, 10);
        p += n;
        if (*p == ',') p++;
        /* [ACCOUNT/]NAME[:QUALIFIER]: a tenant's function is named with its account id. */
        char *fn = ref;
        const char *tenant = DEFAULT_TENANT;
        char *slash = strchr(ref, '/');
        if (slash) {
            *slash = '\0';
            tenant = ref;
            fn = slash + 1;
        }
        char *colon = strchr(fn, ':');
        const char *qualifier = NULL;
        if (colon) {
            *colon = '\0';
            qualifier = colon + 1;
        }
        if (only && strcmp(only, fn) != 0) continue;
        resolved_t r;
        realm_error_t e;
        if (resolve(iv, tenant, fn, qualifier, &r, &e) != 0) {
            if (!only) realm_info("provisioned: %s: %s (applied once it exists)", fn, e.message);
            continue;
        }
        realm_exec_provision(iv->o.exec, &r.fn, count);
        realm_info("provisioned: %zu warm environment%s of %s:%s", count, count == 1 ? "" : "s",
                   r.v.name, r.v.version);
        resolved_dispose(&r);
    }
}

/* ---- Event ---- */

static void events_kick(realm_invoker_t *iv);
static void events_kick_soon(realm_invoker_t *iv);

typedef struct {
    realm_invoker_t *iv;
    realm_queue_item_t item;
} event_t;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void event_retry_or_fail(realm_invoker_t *iv, const realm_queue_item_t *it, const char *type,
                                const char *msg)
{
    int64_t delay;
    if (realm_invoker_event_verdict(iv->o.cfg, it->attempts, &delay) == REALM_EVENT_RETRY) {
        realm_queue_retry(iv->queue, it->id, wall_ms() + delay, msg);
        realm_info("event %" PRId64 " of %s failed (%s); retry %d of %" PRIu64 " in %" PRId64 " ms",
                   it->id, it->function, type, it->attempts + 1, iv->o.cfg->event_retries, delay);
    } else {
        realm_queue_fail(iv->queue, it->id, type, msg, wall_ms());
        realm_warn("event %" PRId64 " of %s failed for good after %d attempts: %s", it->id,
                   it->function, it->attempts + 1, type);
    }
}

/* An event past Lambda's maximum age is dropped to the failed list. 1 if it was. */
static int event_expired(realm_invoker_t *iv, const realm_queue_item_t *it, int64_t now)
{
    if (!realm_invoker_event_is_expired(it->enqueued_ms, now)) return 0;
    realm_queue_fail(iv->queue, it->id, "EventAgeExceeded",
                     "The event was not run within 6 hours (throttled or reserved concurrency 0).",
                     now);
    realm_warn("event %" PRId64 " of %s dropped: older than 6 hours", it->id, it->function);
    return 1;
}

static void on_event_chunk(realm_inv_t *inv, const void *bytes, size_t len, void *data)
{
    (void)inv;
    (void)bytes;
    (void)len;
    (void)data;
}

static void on_event_done(realm_inv_t *inv, const realm_inv_result_t *r, void *data)
{
    (void)inv;
    event_t *ev = data;
    realm_invoker_t *iv = ev->iv;
    iv->events_running--;
    switch (r->status) {
    case REALM_INV_OK:
        realm_queue_done(iv->queue, ev->item.id);
        break;
    case REALM_INV_THROTTLED:
        /* Not the function's fault: try again later without counting it, for
         * as long as Lambda keeps an event (6 hours). */
        if (!event_expired(iv, &ev->item, wall_ms()))
            realm_queue_defer(iv->queue, ev->item.id, wall_ms() + THROTTLED_RETRY_MS);
        break;
    case REALM_INV_FN_ERROR: {
        realm_buf_t msg;
        realm_buf_init(&msg);
        realm_buf_append(&msg, r->payload, r->payload_len > 1024 ? 1024 : r->payload_len);
        event_retry_or_fail(iv, &ev->item, r->error_type ? r->error_type : "Unhandled",
                            msg.data ? msg.data : "");
        realm_buf_dispose(&msg);
        break;
    }
    default:
        if (iv->is_draining)
            realm_queue_release(iv->queue, ev->item.id);
        else
            event_retry_or_fail(iv, &ev->item, "ServiceException",
                                r->error_message ? r->error_message : "");
    }
    realm_queue_item_dispose(&ev->item);
    free(ev);
    if (!iv->is_draining) events_kick_soon(iv);
}

/*
 * Runs one taken event, or parks, fails or defers it. The payload is read
 * only once the event is about to run.
 */
static void run_event(realm_invoker_t *iv, realm_queue_item_t *it, int64_t now)
{
    if (event_expired(iv, it, now)) {
        realm_queue_item_dispose(it);
        return;
    }
    const char *qualifier = it->qualifier && it->qualifier[0] ? it->qualifier : NULL;
    resolved_t r;
    realm_error_t e;
    if (resolve(iv, it->tenant, it->function, qualifier, &r, &e) != 0) {
        if (realm_err_http_status(e.code) == 503) /* the registry is out of reach: later */
            realm_queue_defer(iv->queue, it->id, now + THROTTLED_RETRY_MS);
        else
            realm_queue_fail(iv->queue, it->id, realm_err_aws_type(e.code), e.message, now);
        realm_queue_item_dispose(it);
        return;
    }
    if (r.v.reserved == 0) {
        /* It may not run at all: asleep until its function changes or it expires. */
        realm_queue_park(iv->queue, it->id, it->enqueued_ms + EVENT_MAX_AGE_MS);
        iv->has_parked = 1;
        resolved_dispose(&r);
        realm_queue_item_dispose(it);
        return;
    }
    if (realm_queue_load_payload(iv->queue, it) != 0) {
        /* Gone meanwhile (forgotten: a no-op) or a storage error: later, not in a loop. */
        realm_queue_defer(iv->queue, it->id, now + THROTTLED_RETRY_MS);
        resolved_dispose(&r);
        realm_queue_item_dispose(it);
        return;
    }
    event_t *ev = realm_calloc(1, sizeof(*ev));
    ev->iv = iv;
    ev->item = *it;
    /* Lambda queues an Event past reserved concurrency: it waits its turn. */
    realm_inv_req_t req = {
        .payload = it->payload, .payload_len = it->payload_len, .waits_past_reserved = 1};
    /* A streamed answer is read to its end and dropped, as a whole one is. */
    static const realm_inv_sink_t sink = {.on_chunk = on_event_chunk, .on_done = on_event_done};
    iv->events_running++;
    start_resolved(iv, &r, qualifier, &req, &sink, ev); /* ends in on_event_done, later */
    resolved_dispose(&r);
}

/*
 * Wakes the parked events of functions that may run again (their reserved
 * concurrency changed, or they are gone). Reads the short list of parked
 * functions only when the registry changed since the last look.
 */
static void parked_check(realm_invoker_t *iv, int64_t now)
{
    uint64_t gen = realm_registry_async_generation(iv->o.ra);
    if (iv->is_parked_checked && gen == iv->parked_gen) return;
    json_t *list = realm_queue_parked(iv->queue);
    if (!list) return; /* a storage error (logged): look again next time */
    iv->is_parked_checked = 1;
    iv->parked_gen = gen;
    iv->has_parked = 0;
    size_t i;
    json_t *pair;
    json_array_foreach(list, i, pair)
    {
        const char *tenant = json_string_value(json_array_get(pair, 0));
        const char *fn = json_string_value(json_array_get(pair, 1));
        resolved_t r;
        realm_error_t e;
        int is_still = 0;
        if (resolve(iv, tenant, fn, NULL, &r, &e) == 0) {
            is_still = r.v.reserved == 0;
            resolved_dispose(&r);
        }
        if (is_still) {
            iv->has_parked = 1;
            continue;
        }
        int64_t n = realm_queue_unpark(iv->queue, tenant, fn, now);
        if (n > 0)
            realm_info("%" PRId64 " parked event%s of %s may run again", n, n == 1 ? "" : "s", fn);
    }
    json_decref(list);
}

static void on_event_timer(uv_timer_t *t)
{
    events_kick(t->data);
}

static void on_kick_idle(uv_idle_t *h)
{
    realm_invoker_t *iv = h->data;
    uv_idle_stop(&iv->kick_idle);
    events_kick(iv);
}

/* A kick on the next loop turn (many requests in one turn share it). */
static void events_kick_soon(realm_invoker_t *iv)
{
    if (!iv->is_draining) uv_idle_start(&iv->kick_idle, on_kick_idle);
}

/*
 * Runs what is due, EVENT_KICK_BUDGET events at most (the rest on the next
 * turn), and sets the timer for the next due event, or for the next look at
 * parked functions.
 */
static void events_kick(realm_invoker_t *iv)
{
    if (iv->is_draining) return;
    int64_t now = wall_ms();
    parked_check(iv, now);
    size_t cap = (size_t)iv->o.cfg->concurrency_limit;
    size_t budget = EVENT_KICK_BUDGET;
    int is_more = 0;
    while (iv->events_running < cap) {
        if (budget == 0) {
            is_more = 1;
            break;
        }
        realm_queue_item_t items[EVENT_BATCH];
        size_t want = cap - iv->events_running;
        if (want > EVENT_BATCH) want = EVENT_BATCH;
        if (want > budget) want = budget;
        size_t n = realm_queue_take_due(iv->queue, now, items, want);
        budget -= n;
        for (size_t i = 0; i < n; i++)
            run_event(iv, &items[i], now);
        if (n < want) break;
    }
    if (iv->events_running >= cap) {
        uv_timer_stop(&iv->timer); /* an ending event kicks again */
        return;
    }
    if (is_more) {
        uv_timer_stop(&iv->timer);
        events_kick_soon(iv);
        return;
    }
    int64_t next = realm_queue_next_due(iv->queue);
    int64_t wait = next < 0 ? -1 : next - wall_ms(); /* -1: nothing pending */
    if (next >= 0 && wait < 0) wait = 0;
    if (iv->has_parked && (wait < 0 || wait > PARK_CHECK_MS)) wait = PARK_CHECK_MS;
    if (wait < 0) {
        uv_timer_stop(&iv->timer);
    } else if (wait == 0) {
        /* Due already (time moved on): a turn later, not a 0 ms timer run in this pass. */
        uv_timer_stop(&iv->timer);
        events_kick_soon(iv);
    } else {
        uv_timer_start(&iv->timer, on_event_timer, (uint64_t)wait, 0);
    }
}

/* ---- Event submission ---- */

int realm_invoker_submit(realm_invoker_t *iv, realm_invoker_mode_t mode, const char *tenant,
                         const char *function, const char *qualifier, const char *payload,
                         size_t len, char version[24], realm_error_t *e)
{
    resolved_t r;
    if (resolve(iv, tenant, function, qualifier, &r, e) != 0) return -1;
    char name[65], q[129] = "";
    snprintf(version, 24, "%s", r.v.version);
    snprintf(name, sizeof(name), "%s", r.v.name);
    resolved_dispose(&r);
    if (mode == REALM_INVOKER_DRY_RUN) return 0;
    /* Queued under the function's own name, with the qualifier however it was
     * given (InvokeAsync: none, it runs $LATEST). */
    if (mode == REALM_INVOKER_EVENT &&
        realm_registry_parse_name(realm_registry_async_registry(iv->o.ra), tenant, function, 1,
                                  name, q, e) != 0)
        q[0] = '\0';
    const char *queued_q = mode == REALM_INVOKER_EVENT && qualifier ? qualifier : q;
    char err[256];
    int64_t id = realm_queue_push(iv->queue, tenant, name, queued_q, payload, len, wall_ms(), err,
                                  sizeof(err));
    if (id == REALM_QUEUE_FULL) {
        realm_error_set(e, REALM_ERR_EVENT_QUEUE_FULL, "%s", err);
        return -1;
    }
    if (id < 0) {
        /* Not acknowledged: a 202 the database cannot back is never sent. */
        if (realm_queue_unreachable(iv->queue))
            realm_error_set(e, REALM_ERR_STORE_UNAVAILABLE,
                            "The event queue's database is unavailable; retry shortly");
        else
            realm_error_set(e, REALM_ERR_INTERNAL_ERROR, "%s", err);
        return -1;
    }
    events_kick_soon(iv);
    return 0;
}

const char *realm_invoker_throttle_reason(int code)
{
    return code == REALM_ERR_EVENT_QUEUE_FULL ? "EventQueueFull" : "";
}

size_t realm_invoker_events_pending(realm_invoker_t *iv)
{
    return iv->queue ? realm_queue_pending(iv->queue) : 0;
}

json_t *realm_invoker_failed_events(realm_invoker_t *iv, const char *tenant, const char *name,
                                    int64_t *pending)
{
    json_t *list = realm_queue_list_failed(iv->queue, tenant, name, 100);
    *pending = (int64_t)realm_queue_pending_of(iv->queue, tenant, name);
    return list ? list : json_array();
}

realm_event_verdict_t realm_invoker_event_verdict(const realm_config_t *cfg, int attempts,
                                                  int64_t *delay_ms)
{
    if ((uint64_t)attempts < cfg->event_retries) {
        *delay_ms = (int64_t)cfg->event_retry_base_ms << attempts;
        return REALM_EVENT_RETRY;
    }
    *delay_ms = 0;
    return REALM_EVENT_FAIL;
}

int realm_invoker_event_is_expired(int64_t enqueued_ms, int64_t now_ms)
{
    return now_ms - enqueued_ms >= EVENT_MAX_AGE_MS;
}

/* ---- names and logs ---- */

int realm_invoker_plain_name(realm_invoker_t *iv, const char *tenant, const char *function,
                             char name[65], realm_error_t *e)
{
    char q[129];
    resolved_t r;
    if (realm_registry_parse_name(realm_registry_async_registry(iv->o.ra), tenant,
                                  function ? function : "", 0, name, q, e) != 0 ||
        resolve(iv, tenant, name, NULL, &r, e) != 0)
        return -1;
    resolved_dispose(&r);
    return 0;
}

/* Appends the last `tail` bytes of a file (nothing if it is missing). */
static void read_tail(const char *path, long tail, realm_buf_t *out)
{
    FILE *f = fopen(path, "re");
    if (!f) return;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        long from = size > tail ? size - tail : 0;
        if (size > 0 && fseek(f, from, SEEK_SET) == 0) {
            realm_buf_reserve(out, (size_t)(size - from));
            out->len += fread(out->data + out->len, 1, (size_t)(size - from), f);
            out->data[out->len] = '\0';
        }
    }
    fclose(f);
}

void realm_invoker_read_log(realm_invoker_t *iv, const char *tenant, const char *name, long tail,
                            realm_buf_t *out)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/logs/%s/%s.log", iv->o.cfg->data_dir, tenant[0] ? tenant : "_",
             name);
    /* The older file first when the current one holds less than asked for. */
    realm_buf_t cur;
    realm_buf_init(&cur);
    read_tail(path, tail, &cur);
    if ((long)cur.len < tail) {
        char old[4300];
        snprintf(old, sizeof(old), "%s.1", path);
        read_tail(old, tail - (long)cur.len, out);
    }
    realm_buf_append(out, cur.data ? cur.data : "", cur.len);
    realm_buf_dispose(&cur);
}

uint64_t realm_invoker_cache_hits(const realm_invoker_t *iv)
{
    return iv->cache_hits;
}

/* ---- life ---- */

realm_invoker_t *realm_invoker_new(const realm_invoker_opts_t *o, char *err, size_t err_len)
{
    realm_invoker_t *iv = realm_calloc(1, sizeof(*iv));
    iv->o = *o;
    char path[4096];
    /* The queue lives where the registry does (--db): the data dir's
     * events.db, or the shared PostgreSQL database. */
    if (o->cfg->db && strcmp(o->cfg->db, "sqlite") != 0)
        snprintf(path, sizeof(path), "%s", o->cfg->db);
    else
        snprintf(path, sizeof(path), "%s/events.db", o->cfg->data_dir);
    iv->queue = realm_queue_open(path, err, err_len);
    if (!iv->queue) {
        free(iv);
        return NULL;
    }
    realm_queue_set_lease(iv->queue, (int64_t)o->cfg->event_lease_ms);
    realm_queue_set_limits(iv->queue, o->cfg->event_queue_max_per_function,
                           o->cfg->event_queue_max_per_tenant);
    uv_timer_init(o->loop, &iv->timer);
    iv->timer.data = iv;
    uv_idle_init(o->loop, &iv->kick_idle);
    iv->kick_idle.data = iv;
    iv->handles_open = 2;
    return iv;
}

void realm_invoker_begin(realm_invoker_t *iv)
{
    realm_invoker_provision(iv, NULL);
    /* Reads the counts, not the events; the first kick comes on the loop's first turn. */
    size_t pending = realm_queue_pending(iv->queue);
    if (pending)
        realm_info("%zu queued event invocation%s to run", pending, pending == 1 ? "" : "s");
    events_kick_soon(iv);
}

realm_queue_t *realm_invoker_queue(realm_invoker_t *iv)
{
    return iv->queue;
}

void realm_invoker_forget(realm_invoker_t *iv, const char *tenant, const char *name)
{
    realm_queue_forget(iv->queue, tenant, name);
}

void realm_invoker_drain(realm_invoker_t *iv)
{
    iv->is_draining = 1;
    uv_timer_stop(&iv->timer);
    uv_idle_stop(&iv->kick_idle);
}

static void on_handle_closed(uv_handle_t *h)
{
    realm_invoker_t *iv = h->data;
    if (--iv->handles_open > 0) return;
    realm_invoker_close_cb cb = iv->on_closed;
    void *data = iv->closed_data;
    free(iv);
    if (cb) cb(data);
}

void realm_invoker_close(realm_invoker_t *iv, realm_invoker_close_cb cb, void *data)
{
    if (!iv || iv->is_closing) return;
    iv->is_closing = 1;
    iv->on_closed = cb;
    iv->closed_data = data;
    iv->is_draining = 1;
    realm_queue_close(iv->queue);
    iv->queue = NULL;
    for (size_t i = 0; i < RCACHE_SLOTS; i++)
        rcache_clear(&iv->rcache[i]);
    uv_close((uv_handle_t *)&iv->timer, on_handle_closed);
    uv_close((uv_handle_t *)&iv->kick_idle, on_handle_closed);
}
