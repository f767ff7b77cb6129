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
 * EVENTS: see events.c (the queue on its worker, submission, the
 * dispatcher). This file keeps resolution, starts, `metadata`,
 * --provisioned, names and logs, and the invoker's life.
 */
#include "invoke/internal.h"

#include "base/alloc.h"
#include "base/log.h"
#include "base/str.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- resolution ---- */

void realm_invoker_resolved_dispose(resolved_t *r)
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
        c->epoch != iv->cache_epoch || strcmp(c->key, key) != 0)
        return 0;
    *v = c->v;
    v->config = json_incref(c->v.config);
    *no_network = c->no_network;
    iv->cache_hits++;
    return 1;
}

static void rcache_put(rcache_t *c, const char *key, uint64_t generation, uint64_t epoch,
                       const realm_fn_version_t *v, int no_network)
{
    rcache_clear(c);
    c->key = realm_strdup(key);
    c->generation = generation;
    c->epoch = epoch;
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
    uint64_t epoch;      /* the invoker's cache epoch when the lookup was made */
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
    /* or a resolution for someone else (realm_invoker_resolve_async) */
    realm_invoker_resolved_cb resolved;
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
    l->qualifier = realm_strdup_opt(qualifier);
    l->key = realm_strdup_opt(key);
    l->pick = (double)(rand() % 1000000) / 1000000.0;
    l->epoch = iv->cache_epoch;
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
    /* Not when another node wrote since the lookup began: it may have read the old rows. */
    if (slot && l->epoch == iv->cache_epoch)
        rcache_put(slot, key, l->generation, l->epoch, &l->v, l->no_network);
    r->v = l->v;
    memset(&l->v, 0, sizeof(l->v));
    resolved_fill(iv, r, tenant, l->no_network);
    return 0;
}

int realm_invoker_cached(realm_invoker_t *iv, const char *tenant, const char *function,
                         const char *qualifier, resolved_t *r)
{
    memset(r, 0, sizeof(*r));
    char key[600];
    int no_network = 0;
    rcache_t *slot = rcache_slot(iv, tenant, function, qualifier, key, sizeof(key));
    if (!slot || !rcache_get(iv, slot, key, &r->v, &no_network)) return 0;
    resolved_fill(iv, r, tenant, no_network);
    return 1;
}

static void resolve_done(void *data, int status)
{
    lookup_t *l = data;
    realm_invoker_t *iv = l->iv;
    if (status != 0) l->rc = realm_error_set(&l->e, status, "%s", realm_err_message(status));
    resolved_t r;
    realm_error_t e;
    memset(&r, 0, sizeof(r));
    if (lookup_take(iv, l, l->tenant, &r, &e) != 0) {
        l->resolved(iv, NULL, &e, l->data);
    } else {
        l->resolved(iv, &r, NULL, l->data);
        realm_invoker_resolved_dispose(&r);
    }
    lookup_free(l);
    free(l);
}

int realm_invoker_resolve_async(realm_invoker_t *iv, const char *tenant, const char *function,
                                const char *qualifier, realm_invoker_resolved_cb done, void *data)
{
    lookup_t *l = realm_malloc(sizeof(*l));
    lookup_init(l, iv, tenant, function, qualifier, NULL);
    l->resolved = done;
    l->data = data;
    int rc = realm_registry_async_submit(iv->o.ra, lookup_work, resolve_done, l);
    if (rc != 0) {
        lookup_free(l);
        free(l);
    }
    return rc;
}

int64_t realm_invoker_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs what resolve found; the sink's on_done comes later (exec.h). */
realm_inv_t *realm_invoker_start_resolved(realm_invoker_t *iv, resolved_t *r, const char *qualifier,
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
        realm_inv_t *inv =
            realm_invoker_start_resolved(iv, &r, l->qualifier, &l->req, &l->sink, l->data);
        l->req.payload_owned = NULL; /* the engine took it */
        realm_invoker_resolved_dispose(&r);
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
    resolved_t r;
    if (realm_invoker_cached(iv, tenant, function, qualifier, &r)) {
        if (executed_version) snprintf(executed_version, 24, "%s", r.v.version);
        *inv = realm_invoker_start_resolved(iv, &r, qualifier, req, sink, data);
        realm_invoker_resolved_dispose(&r);
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
    l->invoked_arn = realm_strdup_opt(req->invoked_arn);
    l->client_context = realm_strdup_opt(req->client_context);
    l->trace_id = realm_strdup_opt(req->trace_id);
    l->request_id = realm_strdup_opt(req->request_id);
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

typedef struct {
    size_t count;
    int is_quiet; /* a change of one function: not found is no news */
    char fn[300];
} provision_t;

static void provision_found(realm_invoker_t *iv, resolved_t *r, const realm_error_t *e, void *data)
{
    provision_t *pv = data;
    if (!r) {
        if (!pv->is_quiet && e->code != REALM_ERR_SHUTTING_DOWN)
            realm_info("provisioned: %s: %s (applied once it exists)", pv->fn, e->message);
    } else if (!iv->is_draining) {
        realm_exec_provision(iv->o.exec, &r->fn, pv->count);
        realm_info("provisioned: %zu warm environment%s of %s:%s", pv->count,
                   pv->count == 1 ? "" : "s", r->v.name, r->v.version);
    }
    free(pv);
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
        provision_t *pv = realm_calloc(1, sizeof(*pv));
        pv->count = count;
        pv->is_quiet = only != NULL;
        snprintf(pv->fn, sizeof(pv->fn), "%s", fn);
        if (realm_invoker_resolve_async(iv, tenant, fn, qualifier, provision_found, pv) != 0)
            free(pv);
    }
}

/* ---- names and logs ---- */

typedef struct {
    realm_invoker_named_cb cb;
    void *data;
    char name[65];
} named_t;

static void named_found(realm_invoker_t *iv, resolved_t *r, const realm_error_t *e, void *data)
{
    (void)iv;
    named_t *n = data;
    n->cb(r ? n->name : NULL, r ? NULL : e, n->data);
    free(n);
}

int realm_invoker_plain_name(realm_invoker_t *iv, const char *tenant, const char *function,
                             realm_invoker_named_cb cb, void *data, realm_error_t *e)
{
    named_t *n = realm_calloc(1, sizeof(*n));
    n->cb = cb;
    n->data = data;
    char q[129];
    if (realm_registry_parse_name(realm_registry_async_registry(iv->o.ra), tenant,
                                  function ? function : "", 0, n->name, q, e) != 0) {
        free(n);
        return -1;
    }
    int rc = realm_invoker_resolve_async(iv, tenant, n->name, NULL, named_found, n);
    if (rc != 0) {
        free(n);
        return realm_error_set(e, rc, "%s", realm_err_message(rc));
    }
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

void realm_invoker_set_logs_gather(realm_invoker_t *iv, realm_invoker_logs_gather_cb gather,
                                   void *data)
{
    iv->logs_gather = gather;
    iv->logs_gather_data = data;
}

int realm_invoker_gather_logs(realm_invoker_t *iv, const char *tenant, const char *name, long tail,
                              realm_invoker_logs_cb done, void *done_data)
{
    if (!iv->logs_gather) return -1;
    return iv->logs_gather(tenant, name, tail, done, done_data, iv->logs_gather_data);
}

void realm_invoker_forget_cached(realm_invoker_t *iv)
{
    iv->cache_epoch++;
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
    if (realm_invoker_events_open(iv, err, err_len) != 0) {
        free(iv);
        return NULL;
    }
    uv_timer_init(o->loop, &iv->timer);
    iv->timer.data = iv;
    uv_idle_init(o->loop, &iv->kick_idle);
    iv->kick_idle.data = iv;
    iv->handles_open = 3; /* the timer, the idle handle and the events worker */
    return iv;
}

void realm_invoker_begin(realm_invoker_t *iv)
{
    realm_invoker_provision(iv, NULL);
    realm_invoker_events_begin(iv);
}

void realm_invoker_drain(realm_invoker_t *iv)
{
    iv->is_draining = 1;
    realm_invoker_events_stop(iv);
}

static void one_closed(realm_invoker_t *iv)
{
    if (--iv->handles_open > 0) return;
    realm_invoker_close_cb cb = iv->on_closed;
    void *data = iv->closed_data;
    free(iv);
    if (cb) cb(data);
}

static void on_handle_closed(uv_handle_t *h)
{
    one_closed(h->data);
}

void realm_invoker_close(realm_invoker_t *iv, realm_invoker_close_cb cb, void *data)
{
    if (!iv || iv->is_closing) return;
    iv->is_closing = 1;
    iv->on_closed = cb;
    iv->closed_data = data;
    iv->is_draining = 1;
    realm_invoker_events_stop(iv);
    for (size_t i = 0; i < RCACHE_SLOTS; i++)
        rcache_clear(&iv->rcache[i]);
    uv_close((uv_handle_t *)&iv->timer, on_handle_closed);
    uv_close((uv_handle_t *)&iv->kick_idle, on_handle_closed);
    /* The events worker finishes what it was given (outcomes of events that
     * ended), then the queue closes on it. */
    realm_invoker_events_close(iv, one_closed);
}

int realm_invoker_forget_if_stale(realm_invoker_t *iv, const char *tenant, const char *function,
                                  const char *revision)
{
    resolved_t r;
    if (!revision || !realm_invoker_cached(iv, tenant, function, NULL, &r)) return 0;
    const char *rev = json_string_value(json_object_get(r.v.config, "RevisionId"));
    int is_stale = !rev || strcmp(rev, revision) != 0;
    realm_invoker_resolved_dispose(&r);
    if (is_stale) realm_invoker_forget_cached(iv);
    return is_stale;
}
