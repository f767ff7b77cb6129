/*
 * invoke.c - deployed functions run through the registry and the engine
 * (see invoke.h).
 *
 * Invoke (POST /2015-03-31/functions/{name}/invocations):
 *   RequestResponse  200 with the function's payload; a function error is
 *                    200 with X-Amz-Function-Error: Unhandled and the error
 *                    JSON; throttles are 429 TooManyRequestsException.
 *   Event            202 once the event is in the durable queue.
 *   DryRun           204 when the function could be invoked.
 * X-Amz-Log-Type: Tail adds X-Amz-Log-Result (the last 4 KB, base64).
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
#include "api/invoke.h"

#include "api/control.h"

#include "base/alloc.h"
#include "base/log.h"
#include "base/str.h"
#include "proto/evstream.h"
#include "queue/queue.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#define DEFAULT_TENANT ""                    /* the namespace when authentication is off */
#define SYNC_LIMIT 6291456u                  /* 6 MB: RequestResponse payloads */
#define ASYNC_LIMIT 262144u                  /* 256 KB: Event payloads */
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
    int handles_open; /* timer and kick_idle until they are closed */
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
    if (!c->key || c->generation != realm_registry_generation(iv->o.reg) ||
        strcmp(c->key, key) != 0)
        return 0;
    *v = c->v;
    v->config = json_incref(c->v.config);
    *no_network = c->no_network;
    return 1;
}

static void rcache_put(realm_invoker_t *iv, rcache_t *c, const char *key,
                       const realm_fn_version_t *v, int no_network)
{
    rcache_clear(c);
    c->key = realm_strdup(key);
    c->generation = realm_registry_generation(iv->o.reg);
    c->v = *v;
    c->v.config = json_incref(v->config);
    c->no_network = no_network;
}

static int resolve(realm_invoker_t *iv, const char *tenant, const char *function,
                   const char *qualifier, resolved_t *r, realm_reg_err_t *e)
{
    memset(r, 0, sizeof(*r));
    char key[600];
    int no_network = 0;
    rcache_t *slot = rcache_slot(iv, tenant, function, qualifier, key, sizeof(key));
    int is_cached = slot && rcache_get(iv, slot, key, &r->v, &no_network);
    if (!is_cached) {
        double pick = (double)(rand() % 1000000) / 1000000.0;
        if (realm_registry_resolve(iv->o.reg, tenant, function, qualifier, pick, &r->v, e) != 0)
            return -1;
    }
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
    /* The unqualified ARN: FunctionArn of a version ends in ":N". */
    const char *fa = json_string_value(json_object_get(c, "FunctionArn"));
    snprintf(r->arn, sizeof(r->arn), "%s", fa ? fa : r->v.name);
    if (strcmp(r->v.version, "$LATEST") != 0) {
        char *colon = strrchr(r->arn, ':');
        if (colon && strcmp(colon + 1, r->v.version) == 0) *colon = '\0';
    }
    /* The tag realm:network=none takes the network away (docs/execution.md). */
    if (!is_cached) {
        realm_reg_err_t te;
        json_t *tags = realm_registry_list_tags(iv->o.reg, tenant, r->arn, &te);
        const char *net =
            json_string_value(json_object_get(json_object_get(tags, "Tags"), "realm:network"));
        if (net && (strcasecmp(net, "none") == 0 || strcasecmp(net, "off") == 0 ||
                    strcasecmp(net, "false") == 0))
            no_network = 1;
        json_decref(tags);
        if (slot) rcache_put(iv, slot, key, &r->v, no_network);
    }
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
    return 0;
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

realm_inv_t *realm_invoker_start(realm_invoker_t *iv, const char *tenant, const char *function,
                                 const char *qualifier, const realm_inv_req_t *req,
                                 const realm_inv_sink_t *sink, void *data, char *executed_version,
                                 realm_reg_err_t *e)
{
    resolved_t r;
    e->status = 0;
    if (resolve(iv, tenant, function, qualifier, &r, e) != 0) return NULL;
    if (executed_version) snprintf(executed_version, 24, "%s", r.v.version);
    realm_inv_t *inv = start_resolved(iv, &r, qualifier, req, sink, data);
    resolved_dispose(&r);
    return inv;
}

json_t *realm_invoker_describe(realm_invoker_t *iv, const char *tenant)
{
    json_t *out = json_array();
    char marker[256] = "";
    for (;;) {
        realm_reg_err_t e;
        json_t *page =
            realm_registry_list_functions(iv->o.reg, tenant, marker[0] ? marker : NULL, 50, 0, &e);
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
    return out;
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
        realm_reg_err_t e;
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

/* ---- HTTP helpers ---- */

static void amz_error(realm_http_res_t *res, int status, const char *type, const char *msg)
{
    realm_control_send_error(res, status, type, msg);
}

static void reg_error(realm_http_res_t *res, const realm_reg_err_t *e)
{
    amz_error(res, e->status, e->type, e->message);
}

static void throttled(realm_http_res_t *res, const char *reason, const char *msg)
{
    char rid[37];
    realm_str_uuid4(rid);
    realm_http_res_header(res, "x-amzn-RequestId", rid);
    realm_http_res_header(res, "x-amzn-ErrorType", "TooManyRequestsException");
    realm_http_res_header(res, "Retry-After", "1");
    json_t *body =
        json_pack("{s:s, s:s, s:s, s:s}", "Type", "User", "message", msg ? msg : "Rate Exceeded.",
                  "Reason", reason ? reason : "", "retryAfterSeconds", "1");
    realm_http_res_send_json(res, 429, body);
}

static const char *req_query(realm_http_req_t *req, const char *name, char *buf, size_t len)
{
    return realm_http_query_param(req->query, name, 0, buf, len) >= 0 ? buf : NULL;
}

static void set_err(realm_reg_err_t *e, int status, const char *type, const char *msg)
{
    e->status = status;
    e->type = type;
    snprintf(e->message, sizeof(e->message), "%s", msg);
}

/* The decoded X-Amz-Client-Context into out: 0, or -1 with e (400). */
static int client_context(const realm_http_req_t *req, realm_buf_t *out, realm_reg_err_t *e)
{
    const char *cc = realm_http_req_header(req, "X-Amz-Client-Context");
    if (!cc || !cc[0]) return 0;
    json_t *j = NULL;
    if (strlen(cc) <= 3583 && realm_str_b64_decode(cc, strlen(cc), out) == 0)
        j = json_loadb(out->data ? out->data : "", out->len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        set_err(e, 400, "InvalidRequestContentException",
                "Client context must be a valid Base64-encoded JSON object of at most 3583 "
                "bytes encoded.");
        return -1;
    }
    json_decref(j);
    return 0;
}

/* The body as the event: valid JSON, "{}" when empty. 0, or -1 with e (413, 400). */
static int event_payload(const realm_http_req_t *req, size_t limit, const char *op,
                         const char **payload, size_t *len, realm_reg_err_t *e)
{
    if (req->body.len > limit) {
        char msg[160];
        snprintf(msg, sizeof(msg), "Request must be smaller than %zu bytes for the %s operation",
                 limit, op);
        set_err(e, 413, "RequestTooLargeException", msg);
        return -1;
    }
    if (req->body.len == 0) {
        *payload = "{}";
        *len = 2;
        return 0;
    }
    json_error_t jerr;
    json_t *j = json_loadb(req->body.data, req->body.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!j) {
        char msg[300];
        snprintf(msg, sizeof(msg), "Could not parse request body into json: %s", jerr.text);
        set_err(e, 400, "InvalidRequestContentException", msg);
        return -1;
    }
    json_decref(j);
    *payload = req->body.data;
    *len = req->body.len;
    return 0;
}

/* ---- Invoke (RequestResponse) ---- */

typedef struct {
    realm_http_res_t *res; /* NULL once the client went away */
    realm_inv_t *inv;
    int want_tail;
    int is_stream; /* InvokeWithResponseStream */
    int has_begun;
    char version[24];
    realm_buf_t frame;
} call_t;

static void call_aborted(realm_http_res_t *res, void *data)
{
    (void)res;
    call_t *c = data;
    /* The function keeps running, as on Lambda; its answer goes nowhere. */
    c->res = NULL;
}

static void add_tail(call_t *c, const realm_inv_result_t *r)
{
    if (!c->want_tail) return;
    realm_buf_t b;
    realm_buf_init(&b);
    realm_str_b64_encode(r->log_tail, r->log_tail_len, &b);
    realm_http_res_header(c->res, "X-Amz-Log-Result", b.data ? b.data : "");
    realm_buf_dispose(&b);
}

static void answer_failed(realm_http_res_t *res, const realm_inv_result_t *r)
{
    if (r->status == REALM_INV_THROTTLED)
        throttled(res, r->error_type, r->error_message);
    else
        amz_error(res, 500, "ServiceException", r->error_message ? r->error_message : "failed");
}

static void on_sync_done(realm_inv_t *inv, const realm_inv_result_t *r, void *data)
{
    (void)inv;
    call_t *c = data;
    realm_http_res_t *res = c->res;
    realm_buf_dispose(&c->frame);
    if (res) {
        realm_http_res_on_abort(res, NULL, NULL);
        if (r->status == REALM_INV_OK || r->status == REALM_INV_FN_ERROR) {
            realm_http_res_header(res, "x-amzn-RequestId", r->request_id);
            realm_http_res_header(res, "X-Amz-Executed-Version", c->version);
            if (r->status == REALM_INV_FN_ERROR)
                realm_http_res_header(res, "X-Amz-Function-Error", "Unhandled");
            add_tail(c, r);
            realm_http_res_send(res, 200, "application/json", r->payload, r->payload_len);
        } else {
            answer_failed(res, r);
        }
    }
    free(c);
}

/* ---- InvokeWithResponseStream ---- */

static void stream_begin(call_t *c, const char *content_type, const char *request_id)
{
    if (c->has_begun || !c->res) return;
    c->has_begun = 1;
    realm_http_res_header(c->res, "x-amzn-RequestId", request_id);
    realm_http_res_header(c->res, "X-Amz-Executed-Version", c->version);
    realm_http_res_begin(c->res, 200, content_type);
}

static void stream_frame_chunk(call_t *c, const void *bytes, size_t len)
{
    if (!c->res || !len) return;
    realm_buf_reset(&c->frame);
    realm_evstream_chunk(&c->frame, bytes, len);
    realm_http_res_write(c->res, c->frame.data, c->frame.len);
}

static void on_stream_start(realm_inv_t *inv, const char *content_type, void *data)
{
    stream_begin(data, content_type, realm_inv_request_id(inv));
}

static void on_stream_chunk(realm_inv_t *inv, const void *bytes, size_t len, void *data)
{
    call_t *c = data;
    stream_begin(c, "application/octet-stream", realm_inv_request_id(inv));
    stream_frame_chunk(c, bytes, len);
}

static void on_stream_done(realm_inv_t *inv, const realm_inv_result_t *r, void *data)
{
    (void)inv;
    call_t *c = data;
    if (c->res) {
        realm_http_res_on_abort(c->res, NULL, NULL);
        if (!c->has_begun && r->status != REALM_INV_OK && r->status != REALM_INV_FN_ERROR) {
            answer_failed(c->res, r);
        } else {
            stream_begin(c, "application/json", r->request_id);
            if (r->status == REALM_INV_OK) stream_frame_chunk(c, r->payload, r->payload_len);
            realm_buf_t tail;
            realm_buf_init(&tail);
            if (c->want_tail) realm_str_b64_encode(r->log_tail, r->log_tail_len, &tail);
            char *details = NULL;
            if (r->status == REALM_INV_FN_ERROR) {
                json_t *ej = json_loadb(r->payload, r->payload_len, 0, NULL);
                const char *m = json_string_value(json_object_get(ej, "errorMessage"));
                details = realm_strdup(m ? m : (r->payload_len ? r->payload : ""));
                json_decref(ej);
            }
            realm_buf_reset(&c->frame);
            realm_evstream_complete(&c->frame,
                                    r->status == REALM_INV_FN_ERROR ? r->error_type : NULL, details,
                                    c->want_tail ? (tail.data ? tail.data : "") : NULL);
            realm_http_res_write(c->res, c->frame.data, c->frame.len);
            realm_http_res_end(c->res, NULL);
            free(details);
            realm_buf_dispose(&tail);
        }
    }
    realm_buf_dispose(&c->frame);
    free(c);
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
    uint64_t retries = iv->o.cfg->event_retries;
    if ((uint64_t)it->attempts < retries) {
        int64_t delay = (int64_t)iv->o.cfg->event_retry_base_ms << it->attempts;
        realm_queue_retry(iv->queue, it->id, wall_ms() + delay, msg);
        realm_info("event %" PRId64 " of %s failed (%s); retry %d of %" PRIu64 " in %" PRId64 " ms",
                   it->id, it->function, type, it->attempts + 1, retries, delay);
    } else {
        realm_queue_fail(iv->queue, it->id, type, msg, wall_ms());
        realm_warn("event %" PRId64 " of %s failed for good after %d attempts: %s", it->id,
                   it->function, it->attempts + 1, type);
    }
}

/* An event past Lambda's maximum age is dropped to the failed list. 1 if it was. */
static int event_expired(realm_invoker_t *iv, const realm_queue_item_t *it, int64_t now)
{
    if (now - it->enqueued_ms < EVENT_MAX_AGE_MS) return 0;
    realm_queue_fail(iv->queue, it->id, "EventAgeExceeded",
                     "The event was not run within 6 hours (throttled or reserved concurrency 0).",
                     now);
    realm_warn("event %" PRId64 " of %s dropped: older than 6 hours", it->id, it->function);
    return 1;
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
    realm_reg_err_t e;
    if (resolve(iv, it->tenant, it->function, qualifier, &r, &e) != 0) {
        realm_queue_fail(iv->queue, it->id, e.type, e.message, now);
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
    realm_inv_req_t req = {.payload = it->payload, .payload_len = it->payload_len};
    static const realm_inv_sink_t sink = {.on_done = on_event_done};
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
    uint64_t gen = realm_registry_generation(iv->o.reg);
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
        realm_reg_err_t e;
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

/* ---- routes ---- */

int realm_invoker_parse(const realm_http_req_t *req, int is_stream, realm_invoke_req_t *ir,
                        realm_reg_err_t *e)
{
    memset(ir, 0, sizeof(*ir));
    realm_buf_init(&ir->cc);
    ir->tenant = req->principal;
    ir->fn = realm_http_req_param(req, "FunctionName");
    ir->qualifier = realm_http_query_param(req->query, "Qualifier", 0, ir->q, sizeof(ir->q)) >= 0
                        ? ir->q
                        : NULL;
    ir->type = realm_http_req_header(req, "X-Amz-Invocation-Type");
    const char *log_type = realm_http_req_header(req, "X-Amz-Log-Type");
    if (!ir->type || !ir->type[0]) ir->type = "RequestResponse";
    int is_event = strcmp(ir->type, "Event") == 0;
    if ((strcmp(ir->type, "RequestResponse") != 0 && strcmp(ir->type, "DryRun") != 0 &&
         !is_event) ||
        (is_event && is_stream)) {
        set_err(e, 400, "InvalidParameterValueException",
                is_stream ? "X-Amz-Invocation-Type must be RequestResponse or DryRun"
                          : "X-Amz-Invocation-Type must be RequestResponse, Event or DryRun");
        return -1;
    }
    if (log_type && strcmp(log_type, "None") != 0 && strcmp(log_type, "Tail") != 0) {
        set_err(e, 400, "InvalidParameterValueException", "X-Amz-Log-Type must be None or Tail");
        return -1;
    }
    ir->want_tail = log_type && strcmp(log_type, "Tail") == 0;
    const char *op = is_stream  ? "InvokeWithResponseStream"
                     : is_event ? "InvokeAsync"
                                : "InvokeFunction";
    if (event_payload(req, is_event ? ASYNC_LIMIT : SYNC_LIMIT, op, &ir->payload, &ir->len, e) !=
            0 ||
        client_context(req, &ir->cc, e) != 0) {
        realm_buf_dispose(&ir->cc);
        return -1;
    }
    return 0;
}

void realm_invoke_req_dispose(realm_invoke_req_t *ir)
{
    realm_buf_dispose(&ir->cc);
}

int realm_invoker_submit(realm_invoker_t *iv, const realm_invoke_req_t *ir, char version[24],
                         realm_reg_err_t *e)
{
    resolved_t r;
    if (resolve(iv, ir->tenant, ir->fn, ir->qualifier, &r, e) != 0) return -1;
    char name[65], q[129];
    snprintf(version, 24, "%s", r.v.version);
    snprintf(name, sizeof(name), "%s", r.v.name);
    resolved_dispose(&r);
    if (strcmp(ir->type, "DryRun") == 0) return 0;
    /* Queued under the function's own name, with the qualifier however it was given. */
    if (realm_registry_parse_name(iv->o.reg, ir->tenant, ir->fn, 1, name, q, e) != 0) q[0] = '\0';
    const char *qualifier = ir->qualifier ? ir->qualifier : q;
    char err[256];
    int64_t id = realm_queue_push(iv->queue, ir->tenant, name, qualifier, ir->payload, ir->len,
                                  wall_ms(), err, sizeof(err));
    if (id == REALM_QUEUE_FULL) {
        set_err(e, 429, "EventQueueFull", err);
        return -1;
    }
    if (id < 0) {
        set_err(e, 500, "ServiceException", err);
        return -1;
    }
    events_kick_soon(iv);
    return 0;
}

/* DryRun and Event only need the function to exist: answers 204 or queues (202). */
static void invoke_without_running(realm_invoker_t *iv, realm_http_res_t *res,
                                   const realm_invoke_req_t *ir)
{
    char version[24];
    realm_reg_err_t e;
    if (realm_invoker_submit(iv, ir, version, &e) != 0) {
        if (e.status == 429)
            throttled(res, e.type, e.message);
        else
            reg_error(res, &e);
        return;
    }
    char rid[37];
    realm_str_uuid4(rid);
    realm_http_res_header(res, "x-amzn-RequestId", rid);
    if (strcmp(ir->type, "DryRun") == 0) {
        realm_http_res_header(res, "X-Amz-Executed-Version", version);
        realm_http_res_send(res, 204, NULL, NULL, 0);
        return;
    }
    realm_http_res_send(res, 202, NULL, NULL, 0);
}

static void invoke_http(realm_http_req_t *req, realm_http_res_t *res, realm_invoker_t *iv,
                        int is_stream)
{
    realm_invoke_req_t ir;
    realm_reg_err_t e;
    if (realm_invoker_parse(req, is_stream, &ir, &e) != 0) {
        reg_error(res, &e);
        return;
    }
    if (strcmp(ir.type, "RequestResponse") != 0) {
        invoke_without_running(iv, res, &ir);
        realm_buf_dispose(&ir.cc);
        return;
    }
    call_t *c = realm_calloc(1, sizeof(*c));
    c->res = res;
    c->is_stream = is_stream;
    c->want_tail = ir.want_tail;
    realm_buf_init(&c->frame);
    realm_inv_req_t rq = {.payload = ir.payload,
                          .payload_len = ir.len,
                          .client_context = ir.cc.len ? ir.cc.data : NULL};
    static const realm_inv_sink_t sync_sink = {.on_done = on_sync_done};
    static const realm_inv_sink_t stream_sink = {
        .on_stream = on_stream_start, .on_chunk = on_stream_chunk, .on_done = on_stream_done};
    realm_http_res_on_abort(res, call_aborted, c);
    realm_inv_t *inv =
        realm_invoker_start(iv, ir.tenant, ir.fn, ir.qualifier, &rq,
                            is_stream ? &stream_sink : &sync_sink, c, c->version, &e);
    realm_buf_dispose(&ir.cc);
    if (!inv) { /* nothing to run; else it answers in its sink, later */
        realm_http_res_on_abort(res, NULL, NULL);
        realm_buf_dispose(&c->frame);
        free(c);
        reg_error(res, &e);
    }
}

static void on_invoke(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    invoke_http(req, res, data, 0);
}

static void on_invoke_stream(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    invoke_http(req, res, data, 1);
}

/* InvokeAsync (deprecated): POST /2014-11-13/functions/{name}/invoke-async/ -> 202 {"Status":202}.
 */
static void on_invoke_async(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_invoker_t *iv = data;
    const char *fn = realm_http_req_param(req, "FunctionName");
    const char *payload;
    size_t len;
    resolved_t r;
    realm_reg_err_t e;
    if (event_payload(req, ASYNC_LIMIT, "InvokeAsync", &payload, &len, &e) != 0) {
        reg_error(res, &e);
        return;
    }
    if (resolve(iv, req->principal, fn, NULL, &r, &e) != 0) {
        reg_error(res, &e);
        return;
    }
    char err[256];
    int64_t id = realm_queue_push(iv->queue, req->principal, r.v.name, "", payload, len, wall_ms(),
                                  err, sizeof(err));
    resolved_dispose(&r);
    if (id == REALM_QUEUE_FULL) {
        throttled(res, "EventQueueFull", err);
        return;
    }
    if (id < 0) {
        amz_error(res, 500, "ServiceException", err);
        return;
    }
    char rid[37];
    realm_str_uuid4(rid);
    realm_http_res_header(res, "x-amzn-RequestId", rid);
    realm_http_res_send_json(res, 202, json_pack("{s:i}", "Status", 202));
    events_kick_soon(iv);
}

/* The function's name (no qualifier) from the path, or NULL after answering. */
static const char *plain_name(realm_invoker_t *iv, realm_http_req_t *req, realm_http_res_t *res,
                              char name[65])
{
    char q[129];
    realm_reg_err_t e;
    resolved_t r;
    const char *fn = realm_http_req_param(req, "FunctionName");
    if (realm_registry_parse_name(iv->o.reg, req->principal, fn ? fn : "", 0, name, q, &e) != 0 ||
        resolve(iv, req->principal, name, NULL, &r, &e) != 0) {
        reg_error(res, &e);
        return NULL;
    }
    resolved_dispose(&r);
    return name;
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

/* GET /realm/v1/functions/{name}/logs[?tail=BYTES]: the function's log, text. */
static void on_logs(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_invoker_t *iv = data;
    char name[65], buf[32];
    if (!plain_name(iv, req, res, name)) return;
    long tail = 64 * 1024;
    if (req_query(req, "tail", buf, sizeof(buf))) {
        char *end;
        tail = strtol(buf, &end, 10);
        if (!buf[0] || *end || tail < 1 || tail > 16 * 1024 * 1024) {
            amz_error(res, 400, "InvalidParameterValueException",
                      "tail must be a byte count from 1 to 16777216");
            return;
        }
    }
    char path[4200];
    snprintf(path, sizeof(path), "%s/logs/%s/%s.log", iv->o.cfg->data_dir,
             req->principal[0] ? req->principal : "_", name);
    /* The older file first when the current one holds less than asked for. */
    realm_buf_t cur, out;
    realm_buf_init(&cur);
    realm_buf_init(&out);
    read_tail(path, tail, &cur);
    if ((long)cur.len < tail) {
        char old[4300];
        snprintf(old, sizeof(old), "%s.1", path);
        read_tail(old, tail - (long)cur.len, &out);
    }
    realm_buf_append(&out, cur.data ? cur.data : "", cur.len);
    realm_buf_dispose(&cur);
    char rid[37];
    realm_str_uuid4(rid);
    realm_http_res_header(res, "x-amzn-RequestId", rid);
    realm_http_res_send(res, 200, "text/plain; charset=utf-8", out.data ? out.data : "", out.len);
    realm_buf_dispose(&out);
}

size_t realm_invoker_events_pending(realm_invoker_t *iv)
{
    return iv->queue ? realm_queue_pending(iv->queue) : 0;
}

/* GET /realm/v1/functions/{name}/failed-events: Event invocations that failed for good. */
static void on_failed_events(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_invoker_t *iv = data;
    char name[65];
    if (!plain_name(iv, req, res, name)) return;
    json_t *list = realm_queue_list_failed(iv->queue, req->principal, name, 100);
    char rid[37];
    realm_str_uuid4(rid);
    realm_http_res_header(res, "x-amzn-RequestId", rid);
    realm_http_res_send_json(res, 200,
                             json_pack("{s:o, s:I}", "FailedEvents", list ? list : json_array(),
                                       "Pending",
                                       (json_int_t)realm_queue_pending_of(iv->queue,
                                                                          req->principal, name)));
}

void realm_invoker_routes(realm_invoker_t *iv, realm_http_server_t *http)
{
    /* Above the payload limits, so that the answer is AWS's own 413. */
    uint64_t body = SYNC_LIMIT + 1024 * 1024;
    realm_http_server_route(http, "POST", "/2015-03-31/functions/{FunctionName}/invocations", body,
                            on_invoke, iv);
    realm_http_server_route(http, "POST",
                            "/2021-11-15/functions/{FunctionName}/response-streaming-invocations",
                            body, on_invoke_stream, iv);
    realm_http_server_route(http, "POST", "/2014-11-13/functions/{FunctionName}/invoke-async/",
                            body, on_invoke_async, iv);
    realm_http_server_route(http, "POST", "/2014-11-13/functions/{FunctionName}/invoke-async", body,
                            on_invoke_async, iv);
    realm_http_server_route(http, "GET", "/realm/v1/functions/{FunctionName}/logs", 1, on_logs, iv);
    realm_http_server_route(http, "GET", "/realm/v1/functions/{FunctionName}/failed-events", 1,
                            on_failed_events, iv);
}

/* ---- life ---- */

realm_invoker_t *realm_invoker_new(const realm_invoker_opts_t *o, char *err, size_t err_len)
{
    realm_invoker_t *iv = realm_calloc(1, sizeof(*iv));
    iv->o = *o;
    char path[4096];
    snprintf(path, sizeof(path), "%s/events.db", o->cfg->data_dir);
    iv->queue = realm_queue_open(path, err, err_len);
    if (!iv->queue) {
        free(iv);
        return NULL;
    }
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
    iv->handles_open--;
}

void realm_invoker_free(realm_invoker_t *iv)
{
    if (!iv) return;
    iv->is_draining = 1;
    uv_close((uv_handle_t *)&iv->timer, on_handle_closed);
    uv_close((uv_handle_t *)&iv->kick_idle, on_handle_closed);
    while (iv->handles_open > 0)
        uv_run(iv->o.loop, UV_RUN_ONCE);
    realm_queue_close(iv->queue);
    for (size_t i = 0; i < RCACHE_SLOTS; i++)
        rcache_clear(&iv->rcache[i]);
    free(iv);
}
