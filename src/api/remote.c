/*
 * remote.c - calls placed on other nodes of a cluster (see remote.h).
 *
 * The origin side keeps an ocall per placed invocation (looked up by id
 * when its messages come to the inbox token "c<id>"); the running side an
 * rcall per call it accepted. One timer per side: the origin's sweeps for
 * silent calls, the runner's sends heartbeats.
 */
#include "api/remote.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "base/str.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CALL_SUBJECT "realm.node.%s.call"
#define CANCEL_SUBJECT "realm.node.%s.cancel"
#define BUCKETS 256

typedef struct ocall_s ocall_t;
typedef struct rcall_s rcall_t;

struct realm_remote_s {
    uv_loop_t *loop;
    realm_remote_config_t c;
    char self[64];
    uint64_t next_id;
    ocall_t *calls[BUCKETS]; /* placed here, by id */
    rcall_t *running;        /* run here for others */
    uv_timer_t sweep;        /* the origin's watchdog */
    uint64_t swept_ms;       /* its last run */
    uv_timer_t beat;         /* the runner's heartbeats */
    int timers_closing;
    size_t pending; /* answers still to come: offers in flight, calls resolving */
    int is_closed;
    realm_remote_stats_t st;
};

/* ---- messages: a JSON header, "\n", bytes ---- */

static void send_msg(realm_bus_t *bus, const char *subject, json_t *head, const void *bytes,
                     size_t len)
{
    char *h = json_dumps(head, JSON_COMPACT);
    json_decref(head);
    realm_buf_t b;
    realm_buf_init(&b);
    realm_buf_append(&b, h, strlen(h));
    realm_buf_append(&b, "\n", 1);
    if (len) realm_buf_append(&b, bytes, len);
    realm_bus_publish(bus, subject, NULL, b.data, b.len);
    realm_buf_dispose(&b);
    free(h);
}

/* Splits a message into its header (a new object, or NULL) and bytes. */
static json_t *parse_msg(const char *data, size_t len, const char **bytes, size_t *n)
{
    const char *nl = memchr(data, '\n', len);
    if (!nl) return NULL;
    *bytes = nl + 1;
    *n = len - (size_t)(nl + 1 - data);
    json_t *h = json_loadb(data, (size_t)(nl - data), 0, NULL);
    if (h && !json_is_object(h)) {
        json_decref(h);
        return NULL;
    }
    return h;
}

static uint64_t hash64(const char *a, const char *b)
{
    uint64_t h = 14695981039346656037ull;
    for (const char *s = a; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *s = b; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    /* a final mix, so that near ids spread */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* ==== the origin: invocations placed elsewhere ==== */

struct ocall_s {
    realm_remote_t *r;
    ocall_t *next; /* in its bucket */
    uint64_t id;
    realm_inv_t *inv; /* NULL once cancelled */
    char *offer;      /* the request (header + payload), kept for the next candidate */
    size_t offer_len;
    char cands[REALM_REMOTE_MAX_CANDIDATES][64];
    size_t n_cands, tried;
    char node[64]; /* the one that accepted */
    uint64_t next_seq;
    uint64_t heard_ms;
    realm_buf_t payload; /* the result's parts */
    int is_offering;     /* a request is in flight */
    int is_accepted;
};

static ocall_t **bucket(realm_remote_t *r, uint64_t id)
{
    return &r->calls[id % BUCKETS];
}

static ocall_t *find_call(realm_remote_t *r, uint64_t id)
{
    for (ocall_t *o = *bucket(r, id); o; o = o->next)
        if (o->id == id) return o;
    return NULL;
}

static void drop_call(ocall_t *o)
{
    for (ocall_t **p = bucket(o->r, o->id); *p; p = &(*p)->next)
        if (*p == o) {
            *p = o->next;
            break;
        }
    free(o->offer);
    realm_buf_dispose(&o->payload);
    free(o);
}

static void send_cancel(realm_remote_t *r, const char *node, uint64_t id)
{
    char subject[128], to[160];
    snprintf(subject, sizeof(subject), CANCEL_SUBJECT, node);
    snprintf(to, sizeof(to), "%sc%" PRIu64, realm_bus_inbox(r->c.bus), id);
    json_t *m = json_pack("{s:s}", "to", to);
    char *text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    realm_bus_publish(r->c.bus, subject, NULL, text, strlen(text));
    free(text);
}

/* Ends a placed call that is running elsewhere with a platform error. */
static void call_lost(ocall_t *o, const char *why)
{
    realm_remote_t *r = o->r;
    r->st.lost_total++;
    send_cancel(r, o->node, o->id);
    char msg[300];
    snprintf(msg, sizeof(msg), "node %s running the invocation was lost: %s", o->node, why);
    realm_warn("cluster: call %" PRIu64 ": %s", o->id, msg);
    realm_inv_result_t res = {.status = REALM_INV_FAILED,
                              .request_id = realm_inv_request_id(o->inv),
                              .payload = "",
                              .error_type = "ServiceException",
                              .error_message = msg,
                              .error_code = REALM_ERR_NODE_LOST};
    realm_inv_t *inv = o->inv;
    drop_call(o);
    realm_exec_placed_done(inv, &res);
}

static void offer_next(ocall_t *o);
static void free_maybe(realm_remote_t *r);

static void on_offer_answer(int status, const char *data, size_t len, void *ud)
{
    ocall_t *o = ud;
    realm_remote_t *r = o->r;
    o->is_offering = 0;
    r->pending--;
    if (r->is_closed) { /* off the table already */
        free(o->offer);
        realm_buf_dispose(&o->payload);
        free(o);
        free_maybe(r);
        return;
    }
    const char *node = o->cands[o->tried - 1];
    int accepted = status == 0 && len == 6 && memcmp(data, "accept", 6) == 0;
    if (!o->inv) { /* cancelled while offered */
        if (accepted) send_cancel(r, node, o->id);
        drop_call(o);
        return;
    }
    if (accepted) {
        o->is_accepted = 1;
        snprintf(o->node, sizeof(o->node), "%s", node);
        o->heard_ms = uv_now(r->loop);
        free(o->offer);
        o->offer = NULL;
        r->st.placed_total++;
        return;
    }
    realm_debug("cluster: node %s did not take call %" PRIu64 " (%s)", node, o->id,
                status ? realm_err_code(status) : "busy");
    offer_next(o);
}

/* Offers the call to the next candidate; after the last, it runs here. */
static void offer_next(ocall_t *o)
{
    realm_remote_t *r = o->r;
    while (o->tried < o->n_cands) {
        const char *node = o->cands[o->tried++];
        char subject[128];
        snprintf(subject, sizeof(subject), CALL_SUBJECT, node);
        if (realm_bus_request(r->c.bus, subject, o->offer, o->offer_len, REALM_REMOTE_OFFER_MS,
                              on_offer_answer, o) == 0) {
            o->is_offering = 1;
            r->pending++;
            return;
        }
    }
    realm_inv_t *inv = o->inv;
    drop_call(o);
    r->st.returned_total++;
    realm_inv_req_t req;
    realm_inv_describe(inv, &req);
    if (req.must_place) { /* nobody took it, and it cannot run here */
        realm_inv_result_t res = {.status = REALM_INV_FAILED,
                                  .request_id = realm_inv_request_id(inv),
                                  .payload = "",
                                  .error_type = "ServiceException",
                                  .error_message = "no node with the model took the call (busy or "
                                                   "unreachable); retry shortly",
                                  .error_code = REALM_ERR_NO_MODEL};
        realm_exec_placed_done(inv, &res);
        return;
    }
    realm_exec_placed_here(inv);
}

typedef struct {
    const char *id;
    uint64_t score;
    long idle;
    int has_room;
} cand_t;

static int by_idle_then_score(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->idle != y->idle) return x->idle > y->idle ? -1 : 1;
    return x->score > y->score ? -1 : x->score < y->score ? 1 : 0;
}

static int by_score(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    return x->score > y->score ? -1 : x->score < y->score ? 1 : 0;
}

static int lists(const json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i,
                       v) if (json_is_string(v) && strcmp(json_string_value(v), s) == 0) return 1;
    return 0;
}

/* The nodes to offer key's call to, in order (see remote.h): how many. A
 * generation (model not NULL) only to nodes with its model, never here. */
static size_t candidates(realm_remote_t *r, const char *key, const char *model, ocall_t *o)
{
    json_t *nodes = realm_cluster_nodes(r->c.cluster);
    size_t n = json_array_size(nodes), k = 0;
    cand_t *cs = realm_calloc(n ? n : 1, sizeof(*cs));
    size_t i;
    json_t *nd;
    json_array_foreach(nodes, i, nd)
    {
        const char *id = json_string_value(json_object_get(nd, "id"));
        if (!id || json_is_true(json_object_get(nd, "draining"))) continue;
        if (model && (strcmp(id, r->self) == 0 || !lists(json_object_get(nd, "models"), model)))
            continue;
        json_t *env = json_object_get(nd, "environments");
        json_int_t limit = json_integer_value(json_object_get(env, "limit"));
        json_int_t used = json_integer_value(json_object_get(env, "busy")) +
                          json_integer_value(json_object_get(env, "queued"));
        cs[k].id = id;
        cs[k].score = hash64(id, key);
        cs[k].idle = (long)json_integer_value(json_object_get(json_object_get(nd, "idle"), key));
        cs[k].has_room = used < limit;
        k++;
    }
    o->n_cands = 0;
    /* 1. Nodes with an idle environment of the revision (this one has none). */
    qsort(cs, k, sizeof(*cs), by_idle_then_score);
    for (i = 0; i < k && cs[i].idle > 0 && o->n_cands < REALM_REMOTE_MAX_CANDIDATES; i++)
        if (strcmp(cs[i].id, r->self) != 0)
            snprintf(o->cands[o->n_cands++], sizeof(o->cands[0]), "%s", cs[i].id);
    /* 2. The revision's home among the nodes with room, down to this one. */
    if (o->n_cands == 0) {
        qsort(cs, k, sizeof(*cs), by_score);
        for (i = 0; i < k && o->n_cands < REALM_REMOTE_MAX_CANDIDATES; i++) {
            if (!cs[i].has_room) continue;
            if (strcmp(cs[i].id, r->self) == 0) break;
            snprintf(o->cands[o->n_cands++], sizeof(o->cands[0]), "%s", cs[i].id);
        }
    }
    free(cs);
    json_decref(nodes);
    return o->n_cands;
}

static int on_place(void *ud, realm_inv_t *inv, const realm_exec_fn_t *fn, int wants_chunks)
{
    realm_remote_t *r = ud;
    realm_inv_req_t req;
    realm_inv_describe(inv, &req);
    if (r->is_closed || !realm_bus_is_connected(r->c.bus) ||
        req.payload_len > REALM_REMOTE_MAX_PAYLOAD)
        return 0;
    /* A generation runs where its model is: here unless it must not. */
    const char *model = NULL;
    size_t pl = strlen(REALM_GENERATE_ARN_PREFIX);
    if (fn->arn && strncmp(fn->arn, REALM_GENERATE_ARN_PREFIX, pl) == 0) {
        if (!req.must_place) return 0;
        model = fn->arn + pl;
    }
    char key[17];
    realm_exec_fn_key(fn, key);
    ocall_t *o = realm_calloc(1, sizeof(*o));
    size_t nc = candidates(r, key, model, o);
    realm_debug("cluster: %s (%s): %zu candidates%s%s", fn->name, key, nc, nc ? ", first " : "",
                nc ? o->cands[0] : "");
    if (nc == 0) {
        free(o);
        return 0;
    }
    o->r = r;
    o->id = ++r->next_id;
    o->inv = inv;
    realm_buf_init(&o->payload);
    char to[160];
    snprintf(to, sizeof(to), "%sc%" PRIu64, realm_bus_inbox(r->c.bus), o->id);
    json_t *h = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:b}", "to", to, "from",
                          r->self, "tenant", fn->tenant ? fn->tenant : "", "function", fn->name,
                          "version", fn->version, "request_id", req.request_id, "trace_id",
                          req.trace_id ? req.trace_id : "", "chunks", wants_chunks, "waits",
                          req.waits_past_reserved);
    if (fn->revision) json_object_set_new(h, "revision", json_string(fn->revision));
    if (model) json_object_set_new(h, "generate", json_string(model));
    if (req.invoked_arn) json_object_set_new(h, "invoked_arn", json_string(req.invoked_arn));
    if (req.client_context)
        json_object_set_new(h, "client_context", json_string(req.client_context));
    char *head = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    size_t hl = strlen(head);
    o->offer_len = hl + 1 + req.payload_len;
    o->offer = realm_malloc(o->offer_len);
    memcpy(o->offer, head, hl);
    o->offer[hl] = '\n';
    if (req.payload_len) memcpy(o->offer + hl + 1, req.payload, req.payload_len);
    free(head);
    o->next = *bucket(r, o->id);
    *bucket(r, o->id) = o;
    realm_inv_set_placed(inv, o);
    offer_next(o);
    /* offer_next may have handed it back already (no request could go). */
    return 1;
}

static void on_placed_cancel(void *ud, realm_inv_t *inv)
{
    (void)ud;
    ocall_t *o = realm_inv_placed(inv);
    if (!o) return;
    o->inv = NULL;
    if (o->is_offering) return; /* its answer frees it (and cancels an accept) */
    if (o->is_accepted) send_cancel(o->r, o->node, o->id);
    drop_call(o);
}

/* A message of a call running elsewhere. */
static void on_call_msg(realm_remote_t *r, uint64_t id, const char *data, size_t len)
{
    ocall_t *o = find_call(r, id);
    const char *bytes;
    size_t n;
    json_t *h = parse_msg(data, len, &bytes, &n);
    const char *from = json_string_value(json_object_get(h, "from"));
    if (!o || !o->inv || !o->is_accepted || !from || strcmp(from, o->node) != 0) {
        /* A node that accepted after the call was given up on (or moved on):
         * it must not run it too. */
        if (from && json_integer_value(json_object_get(h, "seq")) == 0) send_cancel(r, from, id);
        json_decref(h);
        return;
    }
    if (!h || json_integer_value(json_object_get(h, "seq")) != (json_int_t)o->next_seq) {
        json_decref(h);
        call_lost(o, "a message is missing");
        return;
    }
    o->next_seq++;
    o->heard_ms = uv_now(r->loop);
    const char *k = json_string_value(json_object_get(h, "k"));
    if (!k) k = "";
    if (strcmp(k, "s") == 0) {
        realm_exec_placed_stream(o->inv, json_string_value(json_object_get(h, "content_type")));
    } else if (strcmp(k, "c") == 0) {
        realm_exec_placed_chunk(o->inv, bytes, n);
    } else if (strcmp(k, "p") == 0) {
        realm_buf_append(&o->payload, bytes, n);
    } else if (strcmp(k, "d") == 0) {
        realm_buf_append(&o->payload, bytes, n);
        realm_buf_t tail;
        realm_buf_init(&tail);
        const char *t64 = json_string_value(json_object_get(h, "log_tail"));
        if (t64) realm_str_b64_decode(t64, strlen(t64), &tail);
        realm_inv_result_t res = {
            .status = (realm_inv_status_t)json_integer_value(json_object_get(h, "status")),
            .request_id = realm_inv_request_id(o->inv),
            .payload = o->payload.data ? o->payload.data : "",
            .payload_len = o->payload.len,
            .error_type = json_string_value(json_object_get(h, "error_type")),
            .error_message = json_string_value(json_object_get(h, "error_message")),
            .log_tail = tail.data ? tail.data : "",
            .log_tail_len = tail.len,
            .was_streamed = json_is_true(json_object_get(h, "was_streamed")),
            .content_type = json_string_value(json_object_get(h, "content_type")),
            .error_code = (int)json_integer_value(json_object_get(h, "error_code")),
        };
        realm_inv_t *inv = o->inv;
        o->inv = NULL;
        realm_exec_placed_done(inv, &res);
        realm_buf_dispose(&tail);
        drop_call(o);
    }
    json_decref(h);
}

/* The origin's watchdog: an accepted call silent too long is lost. */
static void on_sweep(uv_timer_t *t)
{
    realm_remote_t *r = t->data;
    uv_update_time(r->loop);
    uint64_t now = uv_now(r->loop);
    /* This node itself stood still (paused, starved): what it did not hear
     * meanwhile says nothing of the others; it judges from now on. */
    int was_stalled = r->swept_ms && now - r->swept_ms > REALM_REMOTE_LOST_MS / 2;
    r->swept_ms = now;
    for (size_t b = 0; b < BUCKETS; b++)
        for (ocall_t *o = r->calls[b], *next; o; o = next) {
            next = o->next;
            if (was_stalled) o->heard_ms = now;
            if (o->inv && o->is_accepted && now - o->heard_ms > REALM_REMOTE_LOST_MS)
                call_lost(o, "no heartbeat for 2 s");
        }
}

/* ==== the runner: calls placed here by others ==== */

struct rcall_s {
    realm_remote_t *r;
    rcall_t *prev, *next;
    int is_listed;
    char *to;
    uint64_t seq;
    realm_inv_t *inv;
    int is_starting; /* resolving: inv not there yet */
    int is_cancelled;
    int wants_chunks;
};

/* Off the running list (if on it) and freed. */
static void rcall_unlink(rcall_t *c)
{
    realm_remote_t *r = c->r;
    if (c->is_listed) {
        if (c->prev)
            c->prev->next = c->next;
        else
            r->running = c->next;
        if (c->next) c->next->prev = c->prev;
    }
    free(c->to);
    free(c);
}

static void reply_to(rcall_t *c, json_t *head, const void *bytes, size_t len)
{
    json_object_set_new(head, "seq", json_integer((json_int_t)c->seq++));
    json_object_set_new(head, "from", json_string(c->r->self));
    send_msg(c->r->c.bus, c->to, head, bytes, len);
}

static void run_stream(realm_inv_t *inv, const char *content_type, void *data)
{
    (void)inv;
    rcall_t *c = data;
    reply_to(c, json_pack("{s:s, s:s}", "k", "s", "content_type", content_type), NULL, 0);
}

static void run_chunk(realm_inv_t *inv, const void *bytes, size_t len, void *data)
{
    (void)inv;
    rcall_t *c = data;
    const char *p = bytes;
    do {
        size_t n = len > REALM_REMOTE_PART_BYTES ? REALM_REMOTE_PART_BYTES : len;
        reply_to(c, json_pack("{s:s}", "k", "c"), p, n);
        p += n;
        len -= n;
    } while (len);
}

static void send_done(rcall_t *c, const realm_inv_result_t *res)
{
    const char *p = res->payload;
    size_t len = res->payload_len;
    while (len > REALM_REMOTE_PART_BYTES) {
        reply_to(c, json_pack("{s:s}", "k", "p"), p, REALM_REMOTE_PART_BYTES);
        p += REALM_REMOTE_PART_BYTES;
        len -= REALM_REMOTE_PART_BYTES;
    }
    json_t *h = json_pack("{s:s, s:i, s:b, s:i}", "k", "d", "status", (int)res->status,
                          "was_streamed", res->was_streamed, "error_code", res->error_code);
    if (res->error_type) json_object_set_new(h, "error_type", json_string(res->error_type));
    if (res->error_message)
        json_object_set_new(h, "error_message", json_string(res->error_message));
    if (res->content_type) json_object_set_new(h, "content_type", json_string(res->content_type));
    if (res->log_tail_len) {
        realm_buf_t t;
        realm_buf_init(&t);
        realm_str_b64_encode(res->log_tail, res->log_tail_len, &t);
        json_object_set_new(h, "log_tail", json_string(t.data ? t.data : ""));
        realm_buf_dispose(&t);
    }
    reply_to(c, h, p, len);
}

static void run_done(realm_inv_t *inv, const realm_inv_result_t *res, void *data)
{
    (void)inv;
    rcall_t *c = data;
    send_done(c, res);
    rcall_unlink(c);
}

static void run_started(realm_inv_t *inv, const realm_error_t *e, void *data)
{
    rcall_t *c = data;
    realm_remote_t *r = c->r;
    c->is_starting = 0;
    r->pending--;
    if (r->is_closed) c->is_cancelled = 1;
    if (inv && c->is_cancelled) {
        realm_inv_cancel(inv);
        rcall_unlink(c);
    } else if (inv) {
        c->inv = inv;
    } else if (c->is_cancelled) {
        rcall_unlink(c);
    } else {
        realm_inv_result_t res = {.status = REALM_INV_FAILED,
                                  .payload = "",
                                  .error_type = "ServiceException",
                                  .error_message = e->message,
                                  .error_code = e->code};
        send_done(c, &res);
        rcall_unlink(c);
    }
    free_maybe(r);
}

static int is_full(realm_remote_t *r)
{
    realm_exec_stats_t st;
    realm_exec_stats(r->c.exec, &st);
    return st.busy + st.starting + st.queued >= r->c.concurrency_limit;
}

static void on_call(const char *subject, const char *reply, const char *data, size_t len, void *ud)
{
    (void)subject;
    realm_remote_t *r = ud;
    const char *payload;
    size_t plen;
    json_t *h = parse_msg(data, len, &payload, &plen);
    const char *to = json_string_value(json_object_get(h, "to"));
    const char *tenant = json_string_value(json_object_get(h, "tenant"));
    const char *fn = json_string_value(json_object_get(h, "function"));
    const char *version = json_string_value(json_object_get(h, "version"));
    const char *rid = json_string_value(json_object_get(h, "request_id"));
    if (!reply || !to || !tenant || !fn || !version || !rid || r->is_closed || is_full(r)) {
        if (reply) realm_bus_publish(r->c.bus, reply, NULL, "busy", 4);
        json_decref(h);
        return;
    }
    realm_bus_publish(r->c.bus, reply, NULL, "accept", 6);
    r->st.served_total++;
    rcall_t *c = realm_calloc(1, sizeof(*c));
    c->r = r;
    c->to = realm_strdup(to);
    c->wants_chunks = json_is_true(json_object_get(h, "chunks"));
    c->next = r->running;
    if (r->running) r->running->prev = c;
    r->running = c;
    c->is_listed = 1;
    const char *trace = json_string_value(json_object_get(h, "trace_id"));
    realm_inv_req_t req = {
        .payload = payload,
        .payload_len = plen,
        .invoked_arn = json_string_value(json_object_get(h, "invoked_arn")),
        .client_context = json_string_value(json_object_get(h, "client_context")),
        .trace_id = trace && trace[0] ? trace : NULL,
        .request_id = rid,
        .waits_past_reserved = json_is_true(json_object_get(h, "waits")),
        .no_placement = 1,
    };
    realm_inv_sink_t sink = {.on_stream = run_stream,
                             .on_chunk = c->wants_chunks ? run_chunk : NULL,
                             .on_done = run_done};
    realm_error_t e;
    realm_inv_t *inv = NULL;
    const char *model = json_string_value(json_object_get(h, "generate"));
    if (model) {
        inv = r->c.generate
                  ? realm_generate_run_placed(r->c.generate, tenant, model, payload, plen, &sink, c)
                  : NULL;
        if (inv) {
            c->inv = inv;
        } else {
            realm_error_t ne;
            realm_error_set(&ne, REALM_ERR_NO_MODEL, "model '%.64s' is not loaded on node %s",
                            model, r->self);
            c->is_starting = 1;
            r->pending++;
            run_started(NULL, &ne, c);
        }
        json_decref(h);
        return;
    }
    c->is_starting = 1;
    r->pending++;
    /* $LATEST unqualified: the invoker's cache answers without the registry,
     * unless it holds an older revision than the one the caller resolved. */
    const char *qualifier = strcmp(version, "$LATEST") == 0 ? NULL : version;
    if (!qualifier)
        realm_invoker_forget_if_stale(r->c.invoker, tenant, fn,
                                      json_string_value(json_object_get(h, "revision")));
    int rc = realm_invoker_start(r->c.invoker, tenant, fn, qualifier, &req, &sink, c, NULL,
                                 run_started, &inv, &e);
    if (rc == 1) {
        c->is_starting = 0;
        r->pending--;
        c->inv = inv;
    } else if (rc < 0) {
        run_started(NULL, &e, c);
    }
    json_decref(h);
}

static void on_cancel(const char *subject, const char *reply, const char *data, size_t len,
                      void *ud)
{
    (void)subject, (void)reply;
    realm_remote_t *r = ud;
    json_t *m = json_loadb(data, len, 0, NULL);
    const char *to = json_string_value(json_object_get(m, "to"));
    for (rcall_t *c = r->running; to && c; c = c->next) {
        if (strcmp(c->to, to) != 0) continue;
        if (c->is_starting) {
            c->is_cancelled = 1;
        } else {
            realm_inv_cancel(c->inv);
            rcall_unlink(c);
        }
        break;
    }
    json_decref(m);
}

/* The runner's heartbeats: one per running call. */
static void on_beat(uv_timer_t *t)
{
    realm_remote_t *r = t->data;
    for (rcall_t *c = r->running; c; c = c->next)
        if (!c->is_cancelled) reply_to(c, json_pack("{s:s}", "k", "h"), NULL, 0);
}

/* ==== both ==== */

static void on_inbox(const char *subject, const char *reply, const char *data, size_t len, void *ud)
{
    (void)reply;
    realm_remote_t *r = ud;
    const char *tok = strrchr(subject, '.');
    tok = tok ? tok + 1 : subject;
    if (tok[0] != 'c') return;
    char *end;
    uint64_t id = strtoull(tok + 1, &end, 10);
    if (*end || r->is_closed) return;
    on_call_msg(r, id, data, len);
}

static void on_idle_pool(const char *key, size_t idle, void *data)
{
    json_t *o = data;
    if (json_object_size(o) < 256) json_object_set_new(o, key, json_integer((json_int_t)idle));
}

json_t *realm_remote_idle(realm_remote_t *r)
{
    json_t *o = json_object();
    realm_exec_idle_pools(r->c.exec, on_idle_pool, o);
    return o;
}

void realm_remote_stats(const realm_remote_t *r, realm_remote_stats_t *out)
{
    *out = r->st;
}

realm_remote_t *realm_remote_open(uv_loop_t *loop, const realm_remote_config_t *c)
{
    realm_remote_t *r = realm_calloc(1, sizeof(*r));
    r->loop = loop;
    r->c = *c;
    snprintf(r->self, sizeof(r->self), "%s", realm_cluster_node_id(c->cluster));
    char subject[128];
    snprintf(subject, sizeof(subject), CALL_SUBJECT, r->self);
    realm_bus_subscribe(c->bus, subject, NULL, on_call, r);
    snprintf(subject, sizeof(subject), CANCEL_SUBJECT, r->self);
    realm_bus_subscribe(c->bus, subject, NULL, on_cancel, r);
    realm_bus_set_inbox(c->bus, on_inbox, r);
    uv_timer_init(loop, &r->sweep);
    r->sweep.data = r;
    uv_timer_start(&r->sweep, on_sweep, REALM_REMOTE_LOST_MS / 4, REALM_REMOTE_LOST_MS / 4);
    uv_unref((uv_handle_t *)&r->sweep);
    uv_timer_init(loop, &r->beat);
    r->beat.data = r;
    uv_timer_start(&r->beat, on_beat, REALM_REMOTE_HEARTBEAT_MS, REALM_REMOTE_HEARTBEAT_MS);
    uv_unref((uv_handle_t *)&r->beat);
    realm_exec_set_placer(c->exec,
                          &(realm_exec_placer_t){.place = on_place, .cancel = on_placed_cancel}, r);
    return r;
}

static void free_maybe(realm_remote_t *r)
{
    if (r->is_closed && r->timers_closing == 0 && r->pending == 0) free(r);
}

static void on_timer_closed(uv_handle_t *h)
{
    realm_remote_t *r = h->data;
    r->timers_closing--;
    free_maybe(r);
}

void realm_remote_close(realm_remote_t *r)
{
    if (!r) return;
    r->is_closed = 1;
    realm_exec_set_placer(r->c.exec, NULL, NULL);
    realm_bus_set_inbox(r->c.bus, NULL, NULL);
    /* Calls placed elsewhere: cancelled there, failed here. */
    for (size_t b = 0; b < BUCKETS; b++)
        while (r->calls[b]) {
            ocall_t *o = r->calls[b];
            if (o->is_offering) { /* its answer (SHUTTING_DOWN at the latest) frees it */
                r->calls[b] = o->next;
                o->next = NULL;
                if (o->inv) {
                    realm_inv_t *inv = o->inv;
                    o->inv = NULL;
                    realm_exec_placed_here(inv); /* nothing ran: the shutdown ends it */
                }
                continue;
            }
            if (o->is_accepted) send_cancel(r, o->node, o->id);
            realm_inv_result_t res = {.status = REALM_INV_FAILED,
                                      .request_id = realm_inv_request_id(o->inv),
                                      .payload = "",
                                      .error_type = "ServiceException",
                                      .error_message = "the server is shutting down"};
            realm_inv_t *inv = o->inv;
            drop_call(o);
            realm_exec_placed_done(inv, &res);
        }
    /* Calls run here for others: cancelled (their origin hears nothing more). */
    while (r->running) {
        rcall_t *c = r->running;
        if (c->is_starting) { /* run_started frees it */
            c->is_cancelled = 1;
            r->running = c->next;
            if (c->next) c->next->prev = NULL;
            c->next = c->prev = NULL;
            c->is_listed = 0;
            continue;
        }
        realm_inv_cancel(c->inv);
        rcall_unlink(c);
    }
    r->timers_closing = 2;
    uv_close((uv_handle_t *)&r->sweep, on_timer_closed);
    uv_close((uv_handle_t *)&r->beat, on_timer_closed);
}
