/*
 * client.c - Realm call protocol on the client WebSocket (see client.h and
 * docs/protocol.md).
 *
 * DESIGN: a session is one WebSocket. Its in-flight calls are a list of
 * records, each the sink data of one dispatcher call; the record is removed
 * in the call's final sink event, which never comes before
 * realm_dispatch_call() returns (the record is kept first, then the
 * call flushed). When the socket goes away every call still in
 * flight is cancelled silently, so no work outlives the peer that wanted it.
 *
 * Admission (keys, tenants, connection and rate limits, draining) is
 * admit/'s: this file extracts the credentials (a Bearer key on the upgrade,
 * else the first {"type":"auth"} message) and renders the verdicts. Keys
 * are looked up on admission's worker, never on the loop: a Bearer key by
 * the listener's guard (the upgrade answers when it is found), an auth
 * message, or a call of the admin naming a tenant, while the session's
 * later messages wait in order (held) behind it.
 *
 * LIFETIME: a session is freed in the WebSocket's on_close, or by the last
 * of its lookups to answer after that (refs).
 */
#include "api/client.h"

#include "api/upgrade.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "net/listener.h"
#include "proto/message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct session_s session_t;

#define MAX_HELD 1024 /* messages that may wait behind a lookup; beyond, each is refused */

typedef struct held_s {
    struct held_s *next;
    size_t len;
    char data[]; /* len bytes */
} held_t;

typedef struct record_s {
    session_t *s;
    char *id;
    realm_call_t *call; /* NULL until dispatch returns, or once ended */
    struct record_s *prev, *next;
} record_t;

struct session_s {
    realm_client_t *cl;
    realm_ws_t *ws;
    realm_admit_conn_t adm; /* admission; adm.who valid once is_authed */
    uint64_t auth_deadline; /* uv_now() by which an auth message must come */
    record_t *calls;        /* in flight */
    size_t calls_cnt;
    held_t *held, *held_tail; /* messages waiting for a lookup to answer, in order */
    size_t held_cnt;
    int refs; /* lookups not yet answered */
    struct session_s *prev, *next;
    unsigned is_closing : 1;
    unsigned is_authed : 1;  /* always, when auth is off */
    unsigned is_waiting : 1; /* a lookup is out: later messages are held */
    unsigned is_gone : 1;    /* the WebSocket closed: freed when refs reaches 0 */
};

struct realm_client_s {
    realm_dispatch_t *d;
    realm_client_config_t cfg;
    realm_admit_t *ad; /* the authn's */
    session_t *sessions;
    size_t sessions_cnt;
    int is_draining;
    realm_metric_t *m_in, *m_out, *m_in_binary;
    uv_timer_t sweep; /* auth deadlines, revoked keys */
    uint64_t keys_version;
    int is_checking; /* a realm_admit_find_revoked is out */
    realm_client_close_cb on_closed; /* realm_client_close's */
    void *closed_data;
};

/* ---- sending ---- */

static void send_text(session_t *s, char *text, size_t len)
{
    if (s->ws && !s->is_closing) {
        if (realm_ws_send_text(s->ws, text, len) == 0) realm_metric_inc(s->cl->m_out);
    }
    free(text);
}

/* details (may be NULL) is taken over. */
static void send_error(session_t *s, const char *id, int err, const char *message, json_t *details)
{
    size_t len;
    char *text = realm_msg_error(id, realm_err_code(err), message, details, &len);
    json_decref(details);
    send_text(s, text, len);
}

static void maybe_close_drained(session_t *s)
{
    if (s->cl->is_draining && s->calls_cnt == 0 && s->ws && !s->is_closing) {
        s->is_closing = 1;
        realm_ws_close(s->ws, 1001, "server shutting down");
    }
}

/* ---- call records ---- */

static record_t *find_record(session_t *s, const char *id)
{
    for (record_t *r = s->calls; r; r = r->next)
        if (strcmp(r->id, id) == 0) return r;
    return NULL;
}

static void record_remove(record_t *r)
{
    session_t *s = r->s;
    if (r->prev)
        r->prev->next = r->next;
    else
        s->calls = r->next;
    if (r->next) r->next->prev = r->prev;
    s->calls_cnt--;
    free(r->id);
    free(r);
}

/* ---- sink: dispatcher events to protocol replies ---- */

static void sink_stream(realm_call_t *call, json_t *data, void *sink_data)
{
    record_t *r = sink_data;
    size_t len;
    char *text = realm_msg_reply(realm_call_id(call), "streaming", data, &len);
    send_text(r->s, text, len);
}

static void finish(record_t *r, char *text, size_t len)
{
    session_t *s = r->s;
    send_text(s, text, len);
    record_remove(r);
    maybe_close_drained(s);
}

static void sink_complete(realm_call_t *call, json_t *data, void *sink_data)
{
    size_t len;
    char *text = realm_msg_reply(realm_call_id(call), "complete", data, &len);
    finish(sink_data, text, len);
}

static void sink_error(realm_call_t *call, int err, const char *message, json_t *details,
                       void *sink_data)
{
    size_t len;
    char *text = realm_msg_error(realm_call_id(call), realm_err_code(err), message, details, &len);
    finish(sink_data, text, len);
}

static void sink_cancelled(realm_call_t *call, void *sink_data)
{
    size_t len;
    char *text = realm_msg_cancelled(realm_call_id(call), &len);
    finish(sink_data, text, len);
}

static const realm_call_sink_t sink = {sink_stream, sink_complete, sink_error, sink_cancelled};

/* ---- the cancel function ---- */

static void fn_cancel(realm_call_t *call, json_t *params, void *data)
{
    (void)data;
    session_t *s = realm_call_scope(call);
    const char *target = json_string_value(json_object_get(params, "id"));
    record_t *r = s ? find_record(s, target) : NULL;
    if (r == NULL || r->call == NULL || r->call == call) {
        realm_call_fail(call, REALM_ERR_CALL_NOT_FOUND, json_pack("{s:s}", "target", target),
                        "no call with id '%.256s' is in flight on this connection", target);
        return;
    }
    realm_call_t *victim = r->call;
    r->call = NULL;
    realm_call_cancel(victim, 0); /* the victim's sink sends {"status":"cancelled"} */
    realm_call_complete(call, json_pack("{s:s, s:b}", "id", target, "cancelled", 1));
}

static const realm_param_def_t cancel_params[] = {
    {.name = "id",
     .type = REALM_PARAM_STRING,
     .is_required = 1,
     .description = "The id of a call in flight on this connection.",
     .has_min = 1,
     .min = 1,
     .has_max = 1,
     .max = 256},
};

static const realm_fn_def_t cancel_def = {
    .name = "cancel",
    .description = "Cancels a call in flight on this connection: that call ends with status "
                   "`cancelled`, and this one completes with {id, cancelled: true}.",
    .params = cancel_params,
    .params_cnt = 1,
    .result_json = "{\"id\":\"string\",\"cancelled\":\"boolean\"}",
    .is_exempt = 1,
    .handler = fn_cancel,
};

/* ---- lookups: a session waits, its later messages held ---- */

static void handle_text(session_t *s, const char *data, size_t len);

static void session_free(session_t *s)
{
    while (s->held) {
        held_t *h = s->held;
        s->held = h->next;
        free(h);
    }
    free(s);
}

static void hold(session_t *s, const char *data, size_t len)
{
    if (s->held_cnt >= MAX_HELD) {
        send_error(s, NULL, REALM_ERR_TOO_MANY_CALLS,
                   "too many messages are waiting for this connection's key to be looked up",
                   NULL);
        return;
    }
    held_t *h = realm_malloc(sizeof(*h) + len);
    h->next = NULL;
    h->len = len;
    memcpy(h->data, data, len);
    if (s->held_tail)
        s->held_tail->next = h;
    else
        s->held = h;
    s->held_tail = h;
    s->held_cnt++;
}

/* A lookup went out: later messages wait for it, and the peer is not read meanwhile. */
static void wait_for_lookup(session_t *s)
{
    s->is_waiting = 1;
    s->refs++;
    if (s->ws) realm_ws_hold(s->ws, 1);
}

/* A lookup answered: 1 if the session is still there to use (else it is freed). */
static int lookup_answered(session_t *s)
{
    s->refs--;
    s->is_waiting = 0;
    if (s->is_gone) {
        if (s->refs == 0) session_free(s);
        return 0;
    }
    return 1;
}

/* The messages that waited, in order, until one waits again; then the peer is read again. */
static void release_held(session_t *s)
{
    while (s->held && !s->is_waiting && !s->is_closing && s->ws) {
        held_t *h = s->held;
        s->held = h->next;
        if (!s->held) s->held_tail = NULL;
        s->held_cnt--;
        handle_text(s, h->data, h->len);
        free(h);
    }
    if (!s->is_waiting && s->ws) realm_ws_hold(s->ws, 0);
}

/* ---- authentication ---- */

static void send_welcome(session_t *s)
{
    size_t len;
    const char *tenant = s->adm.who.tenant;
    char *text = realm_msg_welcome(REALM_VERSION, tenant[0] ? tenant : NULL, &len);
    send_text(s, text, len);
}

static void auth_fail(session_t *s, const char *why)
{
    json_t *o = json_pack("{s:s, s:s}", "type", "auth_failed", "message", why);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    send_text(s, text, strlen(text));
    if (s->ws && !s->is_closing) {
        s->is_closing = 1;
        realm_ws_close(s->ws, 1008, "authentication failed");
    }
}

static void on_auth_found(realm_admit_found_t *f, int status, void *data)
{
    (void)status; /* a lookup cancelled by shutdown says so in f->v */
    session_t *s = data;
    if (!lookup_answered(s) || s->is_closing) return;
    realm_admit_verdict_t v;
    if (f->v.err != 0) {
        auth_fail(s, f->v.message);
    } else if (realm_admit_conn_identify(s->cl->ad, &s->adm, &f->who, &v) != 0) {
        auth_fail(s, v.message);
    } else {
        s->is_authed = 1;
        const char *tenant = s->adm.who.tenant;
        json_t *o = json_pack("{s:s, s:s?}", "type", "auth_success", "tenant_id",
                              tenant[0] ? tenant : NULL);
        char *text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        send_text(s, text, strlen(text));
        send_welcome(s);
        release_held(s);
    }
}

/* The first message when auth is on: {"type":"auth","api_key":"..."}. */
static void on_auth_message(session_t *s, const char *data, size_t len)
{
    json_t *m = json_loadb(data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(m, "type"));
    const char *key = json_string_value(json_object_get(m, "api_key"));
    if (!type || strcmp(type, "auth") != 0 || !key) {
        auth_fail(s, "authenticate first: {\"type\":\"auth\",\"api_key\":\"...\"}");
    } else {
        realm_admit_query_t q = {.api_key = key};
        int rc = realm_admit_find(s->cl->ad, &q, on_auth_found, s);
        if (rc == 0)
            wait_for_lookup(s);
        else
            auth_fail(s, rc == REALM_ERR_SHUTTING_DOWN
                             ? "the server is shutting down"
                             : "too many connections are waiting for their keys: retry");
    }
    json_decref(m);
}

/* Every second: sessions past their auth deadline, and keys revoked since. */
static void on_revoked(const char *const *revoked, size_t n, int status, void *data)
{
    (void)status;
    realm_client_t *cl = data;
    cl->is_checking = 0;
    for (session_t *s = cl->sessions, *next; s; s = next) {
        next = s->next;
        if (s->is_closing || !s->is_authed) continue;
        for (size_t i = 0; i < n; i++)
            if (strcmp(s->adm.who.key_id, revoked[i]) == 0) {
                auth_fail(s, "the API key was revoked");
                break;
            }
    }
}

static void check_revoked(realm_client_t *cl)
{
    size_t n = 0;
    const char **ids = realm_calloc(cl->sessions_cnt + 1, sizeof(*ids));
    for (session_t *s = cl->sessions; s; s = s->next) {
        const char *id = s->adm.who.key_id;
        if (s->is_closing || !s->is_authed || s->adm.who.is_admin || !id[0]) continue;
        int seen = 0;
        for (size_t i = 0; i < n && !seen; i++)
            seen = strcmp(ids[i], id) == 0;
        if (!seen) ids[n++] = id;
    }
    if (n > 0 && realm_admit_find_revoked(cl->ad, ids, n, on_revoked, cl) == 0)
        cl->is_checking = 1;
    free(ids);
}

static void on_sweep(uv_timer_t *t)
{
    realm_client_t *cl = t->data;
    uint64_t now = uv_now(t->loop);
    for (session_t *s = cl->sessions, *n; s; s = n) {
        n = s->next;
        if (!s->is_closing && !s->is_authed && now >= s->auth_deadline)
            auth_fail(s, "no auth message in time");
    }
    uint64_t v = realm_admit_version(cl->ad);
    if (v != cl->keys_version && !cl->is_checking) {
        cl->keys_version = v;
        check_revoked(cl);
    }
}

/* ---- calls ---- */

/* A call admission refused. */
static void refuse_call(session_t *s, const realm_msg_call_t *msg, const realm_admit_verdict_t *v)
{
    json_t *details = NULL;
    const char *why = v->message;
    int code = v->err;
    if (code == REALM_ERR_RATE_LIMIT_EXCEEDED) {
        details = json_pack("{s:i}", "retry_after", v->retry_after);
    } else if (code == REALM_ERR_UNAUTHORIZED || code == REALM_ERR_TENANT_NOT_FOUND) {
        /* Protocol: any tenant_id the key may not act for is UNAUTHORIZED. */
        code = REALM_ERR_UNAUTHORIZED;
        why = "this connection's key does not act for that tenant_id";
        details = json_pack("{s:s}", "tenant_id", msg->tenant_id);
    }
    send_error(s, msg->id, code, why, details);
}

/* A call whose principal is known: the limits, then the dispatcher. */
static void run_call(session_t *s, realm_msg_call_t *msg, const realm_admit_principal_t *as)
{
    realm_client_t *cl = s->cl;
    char err[512];
    /* Functions that only end work (cancel) pass the limits: neither the call
     * limit nor a shutdown may keep a client from stopping its calls. */
    const realm_fn_def_t *def = realm_dispatch_lookup(cl->d, msg->function);
    int is_exempt = def && def->is_exempt;
    realm_admit_verdict_t v;
    if (realm_admit_call(cl->ad, as, is_exempt ? REALM_ADMIT_ENDS_WORK : 0, &v) != 0) {
        refuse_call(s, msg, &v);
    } else if (find_record(s, msg->id)) {
        snprintf(err, sizeof(err), "a call with id '%.256s' is already in flight", msg->id);
        send_error(s, msg->id, REALM_ERR_INVALID_REQUEST, err, NULL);
    } else if (s->calls_cnt >= cl->cfg.max_calls_per_connection && !is_exempt) {
        snprintf(err, sizeof(err), "at most %zu calls may be in flight on one connection",
                 cl->cfg.max_calls_per_connection);
        send_error(s, msg->id, REALM_ERR_TOO_MANY_CALLS, err, NULL);
    } else {
        record_t *r = realm_calloc(1, sizeof(*r));
        r->s = s;
        r->id = realm_strdup(msg->id);
        r->next = s->calls;
        if (s->calls) s->calls->prev = r;
        s->calls = r;
        s->calls_cnt++;
        r->call =
            realm_dispatch_call(cl->d, msg->id, msg->function, msg->params, as->ns, s, &sink, r);
        realm_call_flush(r->call); /* what it said at once, before the next message (r may go) */
    }
}

/* A call of the admin naming a tenant, waiting for the tenant to be found. */
typedef struct {
    session_t *s;
    size_t len;
    char text[]; /* the call message, parsed again once found */
} tenant_wait_t;

static void on_tenant_found(realm_admit_found_t *f, int status, void *data)
{
    (void)status;
    tenant_wait_t *w = data;
    session_t *s = w->s;
    if (lookup_answered(s) && !s->is_closing) {
        realm_msg_call_t msg;
        char err[512];
        if (realm_msg_parse_call(w->text, w->len, &msg, err, sizeof(err)) == 0) {
            if (f->v.err != 0)
                send_error(s, msg.id, f->v.err, f->v.message, NULL);
            else if (f->as_v.err != 0)
                refuse_call(s, &msg, &f->as_v);
            else
                run_call(s, &msg, &f->as);
        }
        realm_msg_call_dispose(&msg);
        release_held(s);
    }
    free(w);
}

static void handle_text(session_t *s, const char *data, size_t len)
{
    realm_client_t *cl = s->cl;
    if (!s->is_authed) {
        on_auth_message(s, data, len);
        return;
    }
    realm_msg_call_t msg;
    char err[512];
    if (realm_msg_parse_call(data, len, &msg, err, sizeof(err)) != 0) {
        send_error(s, msg.id, REALM_ERR_INVALID_REQUEST, err, NULL);
        realm_msg_call_dispose(&msg);
        return;
    }
    realm_admit_principal_t as;
    realm_admit_verdict_t v;
    int rc = realm_admit_act_as(cl->ad, &s->adm.who, msg.tenant_id, &as, &v);
    if (rc == REALM_ADMIT_FIND) {
        tenant_wait_t *w = realm_malloc(sizeof(*w) + len);
        w->s = s;
        w->len = len;
        memcpy(w->text, data, len);
        realm_admit_query_t q = {.who = &s->adm.who, .act_as = msg.tenant_id};
        int err_rc = realm_admit_find(cl->ad, &q, on_tenant_found, w);
        if (err_rc == 0) {
            wait_for_lookup(s);
        } else {
            free(w);
            send_error(s, msg.id, err_rc == REALM_ERR_SHUTTING_DOWN ? err_rc : REALM_ERR_BACKPRESSURE,
                       err_rc == REALM_ERR_SHUTTING_DOWN
                           ? "the server is shutting down"
                           : "too many calls are waiting for their tenant to be looked up: retry",
                       NULL);
        }
    } else if (rc != 0) {
        refuse_call(s, &msg, &v);
    } else {
        run_call(s, &msg, &as);
    }
    realm_msg_call_dispose(&msg);
}

/* ---- WebSocket events ---- */

static void on_ws_message(realm_ws_t *ws, int is_text, const char *data, size_t len, void *ud)
{
    (void)ws;
    session_t *s = ud;
    realm_client_t *cl = s->cl;
    realm_metric_inc(is_text ? cl->m_in : cl->m_in_binary);
    if (!is_text) {
        send_error(s, NULL, REALM_ERR_INVALID_REQUEST,
                   "binary messages are not supported: send calls as JSON text", NULL);
        return;
    }
    if (s->is_waiting)
        hold(s, data, len);
    else
        handle_text(s, data, len);
}

static void on_ws_close(realm_ws_t *ws, void *ud)
{
    (void)ws;
    session_t *s = ud;
    realm_client_t *cl = s->cl;
    s->ws = NULL;
    /* The peer is gone: stop whatever it asked for. */
    while (s->calls) {
        record_t *r = s->calls;
        realm_call_t *call = r->call;
        r->call = NULL;
        if (call) realm_call_cancel(call, 1);
        record_remove(r);
    }
    if (s->prev)
        s->prev->next = s->next;
    else
        cl->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    cl->sessions_cnt--;
    realm_admit_conn_close(cl->ad, &s->adm);
    if (s->refs > 0)
        s->is_gone = 1; /* the lookups out free it */
    else
        session_free(s);
}

static const realm_ws_cbs_t ws_cbs = {on_ws_message, on_ws_close};

/* ---- upgrade ---- */

/* The key of `Authorization: Bearer KEY`, or NULL. */
static const char *bearer_key(realm_http_req_t *req)
{
    const char *authz = realm_http_req_header(req, "Authorization");
    if (!authz || strncasecmp(authz, "Bearer", 6) != 0 || (authz[6] != ' ' && authz[6] != '\0'))
        return NULL;
    const char *key = authz + 6;
    while (*key == ' ')
        key++;
    return key;
}

/* found: what the guard found for a Bearer key (NULL: none came). */
static void upgrade(realm_http_req_t *req, realm_http_res_t *res, realm_client_t *cl,
                    const realm_admit_found_t *found)
{
    const char *rest;
    size_t rest_len;
    realm_admit_conn_t adm;
    realm_admit_verdict_t v;
    int rc = realm_admit_conn_open(cl->ad, &adm, &v);
    int is_on = realm_admit_is_on(cl->ad);
    if (rc == 0 && is_on && found) {
        if (found->v.err != 0) {
            v = found->v;
            rc = v.err;
        } else {
            rc = realm_admit_conn_identify(cl->ad, &adm, &found->who, &v);
        }
    }
    int refuse = rc == 0 ? 0 : rc == REALM_ERR_UNAUTHORIZED ? 401 : 503;
    if (refuse == 503) {
        realm_http_res_header(res, "Retry-After", "1");
        realm_conn_t *hc = realm_http_res_conn(res);
        if (hc && realm_conn_listener(hc)) realm_listener_count_rejected(realm_conn_listener(hc));
    }
    realm_conn_t *c = realm_api_ws_upgrade(req, res, refuse, v.message, &rest, &rest_len);
    if (c == NULL) { /* refused, or not a WebSocket handshake */
        realm_admit_conn_close(cl->ad, &adm);
        return;
    }

    session_t *s = realm_calloc(1, sizeof(*s));
    s->cl = cl;
    s->adm = adm;
    s->next = cl->sessions;
    if (cl->sessions) cl->sessions->prev = s;
    cl->sessions = s;
    cl->sessions_cnt++;
    /* The welcome goes out before anything the peer pipelined is answered. */
    s->ws = realm_ws_new(c, &cl->cfg.ws, &ws_cbs, s);
    if (!is_on || found) {
        s->is_authed = 1;
        send_welcome(s);
    } else {
        s->auth_deadline = uv_now(realm_conn_loop(c)) + cl->cfg.auth_timeout_ms;
        static const char required[] = "{\"type\":\"auth_required\"}";
        send_text(s, realm_strdup(required), sizeof(required) - 1);
    }
    /* Frames the client sent right behind its handshake. */
    if (rest_len > 0) realm_ws_feed(s->ws, rest, rest_len);
}

static void on_upgrade(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    upgrade(req, res, data, NULL);
}

/* A Bearer key was looked up: the upgrade goes on with what was found. */
typedef struct {
    realm_client_t *cl;
    realm_http_res_t *res;
    realm_admit_found_t *f;
} bearer_wait_t;

static void on_bearer_resumed(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    bearer_wait_t *w = data;
    upgrade(req, res, w->cl, w->f);
}

static void on_bearer_found(realm_admit_found_t *f, int status, void *data)
{
    (void)status; /* a lookup cancelled by shutdown says so in f->v (503) */
    bearer_wait_t *w = data;
    w->f = f;
    realm_http_res_resume(w->res, on_bearer_resumed, w);
    free(w);
}

/* The listener's guard: a Bearer key on the upgrade is looked up first. */
static int upgrade_guard(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_client_t *cl = data;
    const char *key = realm_admit_is_on(cl->ad) ? bearer_key(req) : NULL;
    if (!key) return 0;
    bearer_wait_t *w = realm_calloc(1, sizeof(*w));
    w->cl = cl;
    w->res = res;
    realm_admit_query_t q = {.api_key = key};
    int rc = realm_admit_find(cl->ad, &q, on_bearer_found, w);
    if (rc == 0) return REALM_HTTP_GUARD_LATER;
    free(w);
    realm_http_res_header(res, "Retry-After", "1");
    realm_http_res_error(res, 503,
                         rc == REALM_ERR_SHUTTING_DOWN ? "the server is shutting down"
                                                       : "too many keys are being looked up: retry");
    return -1;
}

/* ---- setup ---- */

realm_client_t *realm_client_new(uv_loop_t *loop, realm_dispatch_t *d, realm_metrics_t *m,
                                 realm_http_server_t *http, const realm_client_config_t *cfg)
{
    realm_client_t *cl = realm_calloc(1, sizeof(*cl));
    cl->d = d;
    cl->cfg = *cfg;
    cl->ad = realm_authn_admit(cfg->authn);
    realm_metric_family_t *f =
        realm_metrics_family(m, REALM_METRIC_COUNTER, "realm_websocket_messages_total",
                             "WebSocket messages on the client listener, by direction and type",
                             "direction,type", NULL, 0);
    const char *in_text[] = {"in", "text"}, *in_bin[] = {"in", "binary"},
               *out_text[] = {"out", "text"};
    cl->m_in = realm_metrics_child(f, in_text);
    cl->m_in_binary = realm_metrics_child(f, in_bin);
    cl->m_out = realm_metrics_child(f, out_text);
    realm_http_server_route(http, "GET", "/", 1, on_upgrade, cl);
    realm_http_server_set_guard(http, upgrade_guard, cl);
    realm_dispatch_register(d, &cancel_def, cl);
    uv_timer_init(loop, &cl->sweep);
    cl->sweep.data = cl;
    if (realm_admit_is_on(cl->ad)) {
        cl->keys_version = realm_admit_version(cl->ad);
        uv_timer_start(&cl->sweep, on_sweep, 1000, 1000);
        uv_unref((uv_handle_t *)&cl->sweep);
    }
    return cl;
}

static void on_sweep_closed(uv_handle_t *h)
{
    realm_client_t *cl = h->data;
    realm_client_close_cb cb = cl->on_closed;
    void *data = cl->closed_data;
    free(cl);
    if (cb) cb(data);
}

void realm_client_close(realm_client_t *cl, realm_client_close_cb cb, void *data)
{
    if (!cl) return;
    cl->on_closed = cb;
    cl->closed_data = data;
    uv_close((uv_handle_t *)&cl->sweep, on_sweep_closed);
}

size_t realm_client_connections(const realm_client_t *cl)
{
    return cl->sessions_cnt;
}

void realm_client_drain(realm_client_t *cl)
{
    cl->is_draining = 1;
    session_t *s = cl->sessions;
    while (s) {
        session_t *next = s->next;
        maybe_close_drained(s);
        s = next;
    }
}

void realm_client_cancel_all(realm_client_t *cl)
{
    for (session_t *s = cl->sessions; s; s = s->next) {
        while (s->calls) {
            record_t *r = s->calls;
            realm_call_t *call = r->call;
            r->call = NULL;
            if (call)
                realm_call_cancel(call, 0); /* removes r via the sink */
            else
                record_remove(r);
        }
        maybe_close_drained(s);
    }
}
