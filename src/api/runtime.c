/*
 * runtime.c - the Lambda runtime API over HTTP and the WebSocket channel
 * (see runtime.h, docs/runtime-channel.md).
 *
 * HTTP: `next` is a long poll: the response is held until the engine hands
 * the environment an invocation; if the connection dies first the wait is
 * withdrawn. Answers map the engine's codes (base/err.h) to AWS's shapes
 * with the table's columns (400 InvalidRequestID, 403
 * InvalidStateTransition, 413 RequestEntityTooLarge).
 *
 * WebSocket: from the moment it opens (a `register` message is optional)
 * the session keeps one `next` outstanding on the environment's behalf; each invocation goes out as
 * one message and the next `next` is taken when it has been answered.
 */
#include "api/runtime.h"

#include "api/upgrade.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "base/str.h"
#include "net/listener.h"
#include "proto/rtmsg.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PREFIX "/2018-06-01/runtime"
/* Bodies above the buffered limit are still read, so the caller can be told. */
#define MAX_RUNTIME_BODY (21u * 1024u * 1024u) /* streamed responses: 20 MiB, as Lambda */

typedef struct private_s private_t;

struct realm_runtime_s {
    realm_exec_t *x;
    realm_http_server_t *http;
    uv_loop_t *loop;
    realm_ws_config_t ws;
    private_t *privates;       /* the environments' private listeners */
    uint64_t private_accepted; /* by private listeners already closed */
    uint64_t private_rejected;
};

typedef struct {
    realm_runtime_t *rt;
    realm_env_t *env; /* borrowed from the connection's tag */
    realm_ws_t *ws;
    unsigned has_sent_register : 1; /* register is optional, once */
    unsigned is_waiting : 1;        /* a `next` is outstanding */
    unsigned is_closed : 1;
} chan_t;

/* ---- shapes ---- */

static void send_rt_error(realm_http_res_t *res, int status, const char *type, const char *msg)
{
    json_t *o = json_pack("{s:s, s:s}", "errorMessage", msg, "errorType", type);
    realm_http_res_send_json(res, status, o);
}

/* One of our codes (base/err.h) with its status, AWS type and message. */
static void send_err(realm_http_res_t *res, int err)
{
    send_rt_error(res, realm_err_http_status(err), realm_err_aws_type(err), realm_err_message(err));
}

const char *realm_runtime_error_type(int status)
{
    return status == 413   ? "RequestEntityTooLarge"
           : status == 404 ? "NotFound"
           : status == 405 ? "MethodNotAllowed"
           : status >= 500 ? "InternalServerError"
                           : "InvalidRequest";
}

static void on_http_error(realm_http_res_t *res, int status, const char *message, void *data)
{
    (void)data;
    send_rt_error(res, status, realm_runtime_error_type(status), message);
}

/* Answers an engine code (base/err.h); 1 if it was an error (answered). */
static int answer_code(realm_http_res_t *res, int rc)
{
    if (rc == 0) return 0;
    if (rc != REALM_ERR_INVALID_REQUEST_ID && rc != REALM_ERR_RESPONSE_TOO_LARGE &&
        rc != REALM_ERR_ENV_GONE)
        rc = REALM_ERR_INVALID_STATE_TRANSITION;
    if (rc == REALM_ERR_RESPONSE_TOO_LARGE) {
        char msg[128];
        snprintf(msg, sizeof(msg), "%s (%u bytes).", realm_err_message(rc),
                 REALM_EXEC_MAX_RESPONSE);
        send_rt_error(res, realm_err_http_status(rc), realm_err_aws_type(rc), msg);
        return 1;
    }
    send_rt_error(res, realm_err_http_status(rc), realm_err_aws_type(rc), realm_err_message(rc));
    return 1;
}

static void send_ok(realm_http_res_t *res)
{
    static const char ok[] = "{\"status\":\"OK\"}";
    realm_http_res_send(res, 202, "application/json", ok, sizeof(ok) - 1);
}

/* The environment of the request's connection, or NULL after answering 403. */
static realm_env_t *env_of(realm_http_res_t *res)
{
    realm_conn_t *c = realm_http_res_conn(res);
    realm_env_t *env = c ? realm_conn_tag(c) : NULL;
    if (!env) {
        send_err(res, REALM_ERR_UNKNOWN_ENVIRONMENT);
        return NULL;
    }
    return env;
}

/* ---- accept ---- */

static void release_env(void *tag)
{
    realm_env_unref(tag);
}

void realm_runtime_accept(realm_runtime_t *rt, realm_conn_t *c)
{
    int fd = realm_conn_fd(c);
    realm_env_t *env = fd >= 0 ? realm_exec_env_for_fd(rt->x, fd) : NULL;
    if (env) {
        realm_conn_set_tag(c, env, release_env);
        realm_debug("runtime connection %s is environment %s", realm_conn_peer(c),
                    realm_env_id(env));
    } else {
        realm_info("runtime connection from %s belongs to no environment: refused",
                   realm_conn_peer(c));
    }
}

/* ---- a private door (environments without the host's network) ---- */

/* Connections one environment may hold to its private runtime listener. */
#define PRIVATE_MAX_CONNS 16

struct private_s {
    realm_runtime_t *rt;
    realm_env_t *env;
    realm_listener_t *l;
    private_t *prev, *next;
};

static void on_private_conn(realm_listener_t *l, realm_conn_t *c, void *data)
{
    (void)l;
    private_t *pv = data;
    /* Only the environment's own processes live in that namespace. */
    realm_env_ref(pv->env);
    realm_conn_set_tag(c, pv->env, release_env);
    realm_http_server_attach(pv->rt->http, c);
}

void *realm_runtime_private_listen(realm_env_t *env, int fd, void *data)
{
    realm_runtime_t *rt = data;
    private_t *pv = realm_calloc(1, sizeof(*pv));
    pv->rt = rt;
    pv->env = env;
    int rc = realm_listener_adopt(rt->loop, "runtime-private", fd, on_private_conn, pv, &pv->l);
    if (rc != 0) {
        realm_error("environment %s: private runtime listener: %s", realm_env_id(env),
                    uv_strerror(rc));
        free(pv);
        return NULL;
    }
    /* A runtime needs one or two connections; a function that opens
     * thousands must not take the server's descriptors. */
    static const char refusal[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                  "Retry-After: 1\r\nConnection: close\r\n\r\n";
    realm_listener_set_limit(pv->l, PRIVATE_MAX_CONNS, refusal, sizeof(refusal) - 1);
    pv->next = rt->privates;
    if (rt->privates) rt->privates->prev = pv;
    rt->privates = pv;
    return pv;
}

void realm_runtime_private_counts(const realm_runtime_t *rt, uint64_t *open, uint64_t *accepted,
                                  uint64_t *rejected)
{
    *open = 0;
    *accepted = rt->private_accepted;
    *rejected = rt->private_rejected;
    for (const private_t *pv = rt->privates; pv; pv = pv->next) {
        *open += realm_listener_open_cnt(pv->l);
        *accepted += realm_listener_accepted_cnt(pv->l);
        *rejected += realm_listener_rejected_cnt(pv->l);
    }
}

static void on_private_closed(realm_listener_t *l, void *data)
{
    (void)l;
    free(data);
}

void realm_runtime_private_close(void *handle, void *data)
{
    (void)data;
    private_t *pv = handle;
    realm_runtime_t *rt = pv->rt;
    rt->private_accepted += realm_listener_accepted_cnt(pv->l);
    rt->private_rejected += realm_listener_rejected_cnt(pv->l);
    if (pv->prev)
        pv->prev->next = pv->next;
    else
        rt->privates = pv->next;
    if (pv->next) pv->next->prev = pv->prev;
    realm_listener_close(pv->l, on_private_closed);
    realm_listener_free(pv->l);
}

/* ---- HTTP ---- */

static void on_next_abort(realm_http_res_t *res, void *data)
{
    realm_env_next_abort(data, res);
}

static void on_http_work(realm_env_t *env, const realm_env_work_t *w, void *data)
{
    (void)env;
    realm_http_res_t *res = data;
    realm_http_res_on_abort(res, NULL, NULL);
    if (!w) {
        /* Stopped: say so and let the connection go with it. */
        realm_conn_t *c = realm_http_res_conn(res);
        if (c) realm_http_conn_close_when_idle(c);
        send_err(res, REALM_ERR_ENV_STOPPED);
        return;
    }
    char deadline[32];
    snprintf(deadline, sizeof(deadline), "%lld", (long long)w->deadline_ms);
    realm_http_res_on_abort(res, NULL, NULL);
    realm_http_res_header(res, "lambda-runtime-aws-request-id", w->request_id);
    realm_http_res_header(res, "lambda-runtime-deadline-ms", deadline);
    realm_http_res_header(res, "lambda-runtime-invoked-function-arn", w->invoked_arn);
    realm_http_res_header(res, "lambda-runtime-trace-id", w->trace_id);
    if (w->client_context)
        realm_http_res_header(res, "lambda-runtime-client-context", w->client_context);
    realm_http_res_send(res, 200, "application/json", w->payload, w->payload_len);
}

static void on_next(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)req;
    (void)data;
    realm_env_t *env = env_of(res);
    if (!env) return;
    int rc = realm_env_next(env, on_http_work, res);
    if (rc != 0) {
        answer_code(res, rc);
        return;
    }
    /* The work comes on a later loop turn; if the connection goes first, withdraw. */
    realm_http_res_on_abort(res, on_next_abort, env);
}

static const char *body_of(realm_http_req_t *req)
{
    return req->body.data ? req->body.data : "";
}

int realm_runtime_response_mode(const realm_http_req_t *req)
{
    const char *mode = realm_http_req_header(req, "Lambda-Runtime-Function-Response-Mode");
    if (!mode) return 0;
    return strcasecmp(mode, "streaming") == 0 ? 1 : -1;
}

int realm_runtime_stream_error(const realm_http_req_t *req, const char **type, realm_buf_t *body)
{
    /* The error of a failed stream comes in the trailers (a header is taken too). */
    const char *et = realm_http_req_trailer(req, "Lambda-Runtime-Function-Error-Type");
    const char *eb = realm_http_req_trailer(req, "Lambda-Runtime-Function-Error-Body");
    if (!et) et = realm_http_req_header(req, "Lambda-Runtime-Function-Error-Type");
    if (!eb) eb = realm_http_req_header(req, "Lambda-Runtime-Function-Error-Body");
    *type = et;
    if (!eb) return 0;
    realm_str_b64_decode(eb, strlen(eb), body);
    return 1;
}

/*
 * A streamed response's body goes to the caller piece by piece as it
 * arrives. Nothing is answered here: if the stream cannot begin (wrong id
 * or state) the pieces are dropped and the handler at the end says why.
 */
static int on_response_body(realm_http_req_t *req, realm_conn_t *c, const char *bytes, size_t len,
                            int is_first, void *data)
{
    (void)data;
    realm_env_t *env = realm_conn_tag(c);
    if (!env || realm_runtime_response_mode(req) != 1) return 0;
    const char *id = realm_http_req_param(req, "id");
    if (is_first) realm_env_stream_begin(env, id, realm_http_req_header(req, "Content-Type"));
    if (len) realm_env_stream_write(env, id, bytes, len);
    return 1;
}

static void on_response(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)data;
    realm_env_t *env = env_of(res);
    if (!env) return;
    const char *id = realm_http_req_param(req, "id");
    int mode = realm_runtime_response_mode(req);
    if (mode < 0) {
        send_rt_error(res, 400, "InvalidFunctionResponseMode", "Invalid function response mode");
        return;
    }
    if (mode == 0) {
        if (answer_code(res, realm_env_respond(env, id, body_of(req), req->body.len))) return;
        send_ok(res);
        return;
    }
    /* Streamed: the pieces went out as they came (on_response_body); the
     * end, with an error in the trailers if the function failed midway. A
     * stream that never began tells why now. */
    int rc = realm_env_stream_write(env, id, "", 0);
    if (rc == REALM_ERR_INVALID_STATE_TRANSITION) rc = realm_env_stream_begin(env, id, NULL);
    if (answer_code(res, rc)) return;
    const char *et;
    realm_buf_t err;
    realm_buf_init(&err);
    int has_body = realm_runtime_stream_error(req, &et, &err);
    rc = realm_env_stream_end(env, id, et, has_body ? (err.data ? err.data : "") : NULL, err.len);
    realm_buf_dispose(&err);
    if (answer_code(res, rc)) return;
    send_ok(res);
}

static void on_error(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)data;
    realm_env_t *env = env_of(res);
    if (!env) return;
    const char *type = realm_http_req_header(req, "Lambda-Runtime-Function-Error-Type");
    if (answer_code(res, realm_env_fail(env, realm_http_req_param(req, "id"), type, body_of(req),
                                        req->body.len)))
        return;
    send_ok(res);
}

static void on_init_error(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)data;
    realm_env_t *env = env_of(res);
    if (!env) return;
    const char *type = realm_http_req_header(req, "Lambda-Runtime-Function-Error-Type");
    if (answer_code(res, realm_env_init_error(env, type, body_of(req), req->body.len))) return;
    send_ok(res);
}

/* ---- WebSocket channel ---- */

static void chan_send(chan_t *ch, char *text, size_t len)
{
    if (!ch->is_closed) realm_ws_send_text(ch->ws, text, len);
    free(text);
}

static void chan_error(chan_t *ch, const char *code, const char *msg)
{
    size_t len;
    char *text = realm_rtmsg_error_response(code, msg, &len);
    chan_send(ch, text, len);
}

static void on_chan_work(realm_env_t *env, const realm_env_work_t *w, void *data)
{
    (void)env;
    chan_t *ch = data;
    ch->is_waiting = 0;
    if (!w) {
        if (!ch->is_closed) realm_ws_close(ch->ws, 1001, "environment stopped");
        return;
    }
    const realm_rtmsg_invocation_t inv = {.request_id = w->request_id,
                                          .payload = w->payload,
                                          .payload_len = w->payload_len,
                                          .deadline_ms = w->deadline_ms,
                                          .invoked_arn = w->invoked_arn,
                                          .trace_id = w->trace_id,
                                          .client_context = w->client_context};
    size_t len;
    char *text = realm_rtmsg_invocation(&inv, &len);
    chan_send(ch, text, len);
}

static void chan_next(chan_t *ch)
{
    if (ch->is_waiting || ch->is_closed) return;
    int rc = realm_env_next(ch->env, on_chan_work, ch); /* on_chan_work comes later */
    if (rc == 0) {
        ch->is_waiting = 1;
        return;
    }
    /* UNKNOWN_ENVIRONMENT (stopped) or INVALID_STATE (a `next` already open). */
    chan_error(ch, realm_err_code(rc), "the environment cannot take an invocation now");
}

static void chan_code(chan_t *ch, int rc)
{
    if (rc == 0) return;
    if (rc == REALM_ERR_INVALID_REQUEST_ID || rc == REALM_ERR_RESPONSE_TOO_LARGE)
        chan_error(ch, realm_err_code(rc), realm_err_message(rc));
    else /* a stopped environment too: the channel says INVALID_STATE for both */
        chan_error(ch, realm_err_code(REALM_ERR_INVALID_STATE_TRANSITION),
                   "out of order for this environment");
}

/* One decoded message (proto/rtmsg.h) applied to the environment. */
static void chan_apply(chan_t *ch, const realm_rtmsg_t *m)
{
    const char *id = m->request_id;
    int rc;
    switch (m->kind) {
    case REALM_RTMSG_BAD:
        chan_error(ch, "BAD_MESSAGE", m->bad);
        return;
    case REALM_RTMSG_PING: {
        size_t len;
        char *text = realm_rtmsg_pong(&len);
        chan_send(ch, text, len);
        return;
    }
    case REALM_RTMSG_PONG:
        return; /* keep-alive answer */
    case REALM_RTMSG_REGISTER:
        /* Optional: the connection registered the environment already. */
        if (ch->has_sent_register) {
            chan_error(ch, "INVALID_STATE", "already registered");
            return;
        }
        ch->has_sent_register = 1;
        realm_debug("environment %s sent register on the WebSocket channel", realm_env_id(ch->env));
        return;
    default:
        break;
    }
    switch (m->kind) {
    case REALM_RTMSG_RESPONSE:
        rc = realm_env_respond(ch->env, id, m->data, m->data_len);
        chan_code(ch, rc == REALM_ERR_RESPONSE_TOO_LARGE ? 0 : rc);
        if (rc == 0 || rc == REALM_ERR_RESPONSE_TOO_LARGE) chan_next(ch);
        break;
    case REALM_RTMSG_ERROR:
        rc = realm_env_fail(ch->env, id, m->error_type, m->data, m->data_len);
        chan_code(ch, rc);
        if (rc == 0) chan_next(ch);
        break;
    case REALM_RTMSG_STREAM_START:
        chan_code(ch, realm_env_stream_begin(ch->env, id, m->content_type));
        break;
    case REALM_RTMSG_CHUNK:
        if (m->bad)
            chan_error(ch, "BAD_MESSAGE", m->bad);
        else
            chan_code(ch, realm_env_stream_write(ch->env, id, m->data, m->data_len));
        break;
    case REALM_RTMSG_STREAM_END:
        rc = realm_env_stream_end(ch->env, id, m->error_type, m->is_failed ? m->data : NULL,
                                  m->is_failed ? m->data_len : 0);
        chan_code(ch, rc);
        if (rc == 0) chan_next(ch);
        break;
    default:
        chan_error(ch, "BAD_MESSAGE", m->bad ? m->bad : "unknown message type");
        break;
    }
}

static void on_chan_message(realm_ws_t *ws, int is_text, const char *data, size_t len, void *ud)
{
    (void)ws;
    realm_rtmsg_t m;
    realm_rtmsg_parse(data, len, is_text, &m);
    chan_apply(ud, &m);
    realm_rtmsg_dispose(&m);
}

static void on_chan_close(realm_ws_t *ws, void *ud)
{
    (void)ws;
    chan_t *ch = ud;
    ch->is_closed = 1;
    if (ch->is_waiting) realm_env_next_abort(ch->env, ch);
    free(ch);
}

static const realm_ws_cbs_t chan_cbs = {on_chan_message, on_chan_close};

static void on_websocket(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_runtime_t *rt = data;
    realm_env_t *env = env_of(res);
    if (!env) return;
    const char *rest;
    size_t rest_len;
    realm_conn_t *c = realm_api_ws_upgrade(req, res, 0, NULL, &rest, &rest_len);
    if (!c) return;
    chan_t *ch = realm_calloc(1, sizeof(*ch));
    ch->rt = rt;
    ch->env = env;
    /* Frames pipelined behind the handshake are fed once ch->ws is set:
     * answering them sends on it. */
    ch->ws = realm_ws_new(c, &rt->ws, &chan_cbs, ch);
    /* The connection registers the environment: invocations may come at
     * once (a `register` message is optional; Lambda@Home's bootstraps
     * for Node 22 and 24 never send one). */
    chan_next(ch);
    if (rest_len > 0) realm_ws_feed(ch->ws, rest, rest_len);
}

static void on_ping(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)req;
    (void)data;
    realm_http_res_send(res, 200, "text/plain", "pong", 4);
}

/* ---- setup ---- */

realm_runtime_t *realm_runtime_new(uv_loop_t *loop, realm_exec_t *x, realm_http_server_t *http,
                                   const realm_ws_config_t *ws)
{
    realm_runtime_t *rt = realm_calloc(1, sizeof(*rt));
    rt->x = x;
    rt->http = http;
    rt->loop = loop;
    rt->ws = *ws;
    realm_http_server_set_error_cb(http, on_http_error, rt);
    realm_http_server_route(http, "GET", PREFIX "/invocation/next", 1, on_next, rt);
    realm_http_server_route_streamed(http, "POST", PREFIX "/invocation/{id}/response",
                                     MAX_RUNTIME_BODY, on_response_body, on_response, rt);
    realm_http_server_route(http, "POST", PREFIX "/invocation/{id}/error", MAX_RUNTIME_BODY,
                            on_error, rt);
    realm_http_server_route(http, "POST", PREFIX "/init/error", MAX_RUNTIME_BODY, on_init_error,
                            rt);
    realm_http_server_route(http, "GET", PREFIX "/websocket", 1, on_websocket, rt);
    realm_http_server_route(http, "GET", "/2018-06-01/ping", 1, on_ping, rt);
    return rt;
}

void realm_runtime_free(realm_runtime_t *rt)
{
    free(rt);
}
