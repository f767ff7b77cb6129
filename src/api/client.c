/*
 * client.c - Realm call protocol on the client WebSocket (see client.h and
 * docs/protocol.md).
 *
 * DESIGN: a session is one WebSocket. Its in-flight calls are a list of
 * records, each the sink data of one dispatcher call; the record is removed
 * in the call's final sink event, which may come synchronously from
 * realm_dispatch_call() itself. When the socket goes away every call still in
 * flight is cancelled silently, so no work outlives the peer that wanted it.
 *
 * LIFETIME: a session is freed in the WebSocket's on_close.
 */
#include "api/client.h"

#include "api/upgrade.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "proto/message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct session_s session_t;

typedef struct record_s {
    session_t *s;
    char *id;
    realm_call_t *call; /* NULL until dispatch returns, or once ended */
    struct record_s *prev, *next;
} record_t;

struct session_s {
    realm_client_t *cl;
    realm_ws_t *ws;
    record_t *calls; /* in flight */
    size_t calls_cnt;
    struct session_s *prev, *next;
    unsigned is_closing : 1;
};

struct realm_client_s {
    realm_dispatch_t *d;
    realm_client_config_t cfg;
    session_t *sessions;
    size_t sessions_cnt;
    int is_draining;
    realm_metric_t *m_in, *m_out, *m_in_binary;
};

/* ---- sending ---- */

static void send_text(session_t *s, char *text, size_t len)
{
    if (s->ws && !s->is_closing) {
        if (realm_ws_send_text(s->ws, text, len) == 0) realm_metric_inc(s->cl->m_out);
    }
    free(text);
}

static void send_error(session_t *s, const char *id, int err, const char *message, json_t *details)
{
    size_t len;
    char *text = realm_msg_error(id, realm_err_code(err), message, details, &len);
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
    realm_msg_call_t msg;
    char err[512];
    if (realm_msg_parse_call(data, len, &msg, err, sizeof(err)) != 0) {
        send_error(s, msg.id, REALM_ERR_INVALID_REQUEST, err, NULL);
        realm_msg_call_dispose(&msg);
        return;
    }
    /* Functions that only end work (cancel) pass the limits: neither the call
     * limit nor a shutdown may keep a client from stopping its calls. */
    const realm_fn_def_t *def = realm_dispatch_lookup(cl->d, msg.function);
    int is_exempt = def && def->is_exempt;
    if (cl->is_draining && !is_exempt) {
        send_error(s, msg.id, REALM_ERR_SHUTTING_DOWN, "the server is shutting down", NULL);
    } else if (find_record(s, msg.id)) {
        snprintf(err, sizeof(err), "a call with id '%.256s' is already in flight", msg.id);
        send_error(s, msg.id, REALM_ERR_INVALID_REQUEST, err, NULL);
    } else if (s->calls_cnt >= cl->cfg.max_calls_per_connection && !is_exempt) {
        snprintf(err, sizeof(err), "at most %zu calls may be in flight on one connection",
                 cl->cfg.max_calls_per_connection);
        send_error(s, msg.id, REALM_ERR_TOO_MANY_CALLS, err, NULL);
    } else {
        record_t *r = realm_calloc(1, sizeof(*r));
        r->s = s;
        r->id = realm_strdup(msg.id);
        r->next = s->calls;
        if (s->calls) s->calls->prev = r;
        s->calls = r;
        s->calls_cnt++;
        realm_call_t *call = realm_dispatch_call(cl->d, msg.id, msg.function, msg.params,
                                                 msg.tenant_id, s, &sink, r);
        /* If the call ended synchronously, r is already freed. */
        if (call) r->call = call;
    }
    realm_msg_call_dispose(&msg);
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
    free(s);
}

static const realm_ws_cbs_t ws_cbs = {on_ws_message, on_ws_close};

/* ---- upgrade ---- */

static void on_upgrade(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_client_t *cl = data;
    const char *rest;
    size_t rest_len;
    realm_conn_t *c = realm_api_ws_upgrade(req, res, cl->is_draining ? 503 : 0,
                                           "the server is shutting down", &rest, &rest_len);
    if (c == NULL) return;

    session_t *s = realm_calloc(1, sizeof(*s));
    s->cl = cl;
    s->next = cl->sessions;
    if (cl->sessions) cl->sessions->prev = s;
    cl->sessions = s;
    cl->sessions_cnt++;
    /* The welcome goes out before anything the peer pipelined is answered. */
    s->ws = realm_ws_new(c, &cl->cfg.ws, &ws_cbs, s, NULL, 0);
    size_t len;
    char *text = realm_msg_welcome(REALM_VERSION, NULL, &len);
    send_text(s, text, len);
    /* Frames the client sent right behind its handshake. */
    if (rest_len > 0) realm_ws_feed(s->ws, rest, rest_len);
}

/* ---- setup ---- */

realm_client_t *realm_client_new(realm_dispatch_t *d, realm_metrics_t *m, realm_http_server_t *http,
                                 const realm_client_config_t *cfg)
{
    realm_client_t *cl = realm_calloc(1, sizeof(*cl));
    cl->d = d;
    cl->cfg = *cfg;
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
    realm_dispatch_register(d, &cancel_def, cl);
    return cl;
}

void realm_client_free(realm_client_t *cl)
{
    free(cl);
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
