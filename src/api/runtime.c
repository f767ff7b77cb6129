/*
 * runtime.c - the Lambda runtime API over HTTP and the WebSocket channel
 * (see runtime.h, docs/runtime-channel.md).
 *
 * HTTP: `next` is a long poll: the response is held until the engine hands
 * the environment an invocation; if the connection dies first the wait is
 * withdrawn. Answers map the engine's codes to AWS's shapes (400
 * InvalidRequestID, 403 InvalidStateTransition, 413 RequestEntityTooLarge).
 *
 * WebSocket: after `register` the session keeps one `next` outstanding on
 * the environment's behalf; each invocation goes out as one message and the
 * next `next` is taken when it has been answered.
 */
#include "api/runtime.h"

#include "api/upgrade.h"

#include "base/alloc.h"
#include "base/log.h"
#include "base/str.h"
#include "net/listener.h"

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
    private_t *privates;          /* the environments' private listeners */
    uint64_t private_accepted;    /* by private listeners already closed */
    uint64_t private_rejected;
};

typedef struct {
    realm_runtime_t *rt;
    realm_env_t *env; /* borrowed from the connection's tag */
    realm_ws_t *ws;
    unsigned is_registered : 1;
    unsigned is_waiting : 1; /* a `next` is outstanding */
    unsigned is_closed : 1;
} chan_t;

/* ---- shapes ---- */

static void send_rt_error(realm_http_res_t *res, int status, const char *type, const char *msg)
{
    json_t *o = json_pack("{s:s, s:s}", "errorMessage", msg, "errorType", type);
    realm_http_res_send_json(res, status, o);
}

static void on_http_error(realm_http_res_t *res, int status, const char *message, void *data)
{
    (void)data;
    const char *type = status == 413   ? "RequestEntityTooLarge"
                       : status == 404 ? "NotFound"
                       : status == 405 ? "MethodNotAllowed"
                       : status >= 500 ? "InternalServerError"
                                       : "InvalidRequest";
    send_rt_error(res, status, type, message);
}

/* Answers an engine code; 1 if it was an error (answered). */
static int answer_code(realm_http_res_t *res, int rc)
{
    switch (rc) {
    case REALM_ENV_OK:
        return 0;
    case REALM_ENV_BAD_ID:
        send_rt_error(res, 400, "InvalidRequestID", "Invalid request ID");
        return 1;
    case REALM_ENV_TOO_LARGE: {
        char msg[128];
        snprintf(msg, sizeof(msg), "Exceeded maximum allowed payload size (%u bytes).",
                 REALM_EXEC_MAX_RESPONSE);
        send_rt_error(res, 413, "RequestEntityTooLarge", msg);
        return 1;
    }
    case REALM_ENV_GONE:
        send_rt_error(res, 403, "InvalidStateTransition",
                      "The execution environment has been stopped");
        return 1;
    default:
        send_rt_error(res, 403, "InvalidStateTransition",
                      "State transition failed for runtime: the call is out of order");
        return 1;
    }
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
        send_rt_error(res, 403, "Realm.UnknownEnvironment",
                      "This connection does not come from an execution environment of this "
                      "server");
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
        send_rt_error(res, 410, "Realm.EnvironmentStopped",
                      "The execution environment was stopped");
        return;
    }
    char deadline[32];
    snprintf(deadline, sizeof(deadline), "%lld", (long long)w->deadline_ms);
    realm_http_res_on_abort(res, NULL, NULL);
    realm_http_res_header(res, "Lambda-Runtime-Aws-Request-Id", w->request_id);
    realm_http_res_header(res, "Lambda-Runtime-Deadline-Ms", deadline);
    realm_http_res_header(res, "Lambda-Runtime-Invoked-Function-Arn", w->invoked_arn);
    realm_http_res_header(res, "Lambda-Runtime-Trace-Id", w->trace_id);
    if (w->client_context)
        realm_http_res_header(res, "Lambda-Runtime-Client-Context", w->client_context);
    realm_http_res_send(res, 200, "application/json", w->payload, w->payload_len);
}

static void on_next(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)req;
    (void)data;
    realm_env_t *env = env_of(res);
    if (!env) return;
    /* Set first: the work may be handed over before realm_env_next returns. */
    realm_http_res_on_abort(res, on_next_abort, env);
    int rc = realm_env_next(env, on_http_work, res);
    if (rc != REALM_ENV_OK) {
        realm_http_res_on_abort(res, NULL, NULL);
        answer_code(res, rc);
    }
}

static const char *body_of(realm_http_req_t *req)
{
    return req->body.data ? req->body.data : "";
}

static int is_streamed(realm_http_req_t *req)
{
    const char *mode = realm_http_req_header(req, "Lambda-Runtime-Function-Response-Mode");
    return mode && strcasecmp(mode, "streaming") == 0;
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
    if (!env || !is_streamed(req)) return 0;
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
    const char *mode = realm_http_req_header(req, "Lambda-Runtime-Function-Response-Mode");
    if (mode && strcasecmp(mode, "streaming") != 0) {
        send_rt_error(res, 400, "InvalidFunctionResponseMode", "Invalid function response mode");
        return;
    }
    if (!mode) {
        if (answer_code(res, realm_env_respond(env, id, body_of(req), req->body.len))) return;
        send_ok(res);
        return;
    }
    /* Streamed: the pieces went out as they came (on_response_body); the
     * end, with an error in the trailers if the function failed midway. A
     * stream that never began tells why now. */
    int rc = realm_env_stream_write(env, id, "", 0);
    if (rc == REALM_ENV_BAD_STATE) rc = realm_env_stream_begin(env, id, NULL);
    if (answer_code(res, rc)) return;
    /* The error of a failed stream comes in the trailers (a header is taken too). */
    const char *et = realm_http_req_trailer(req, "Lambda-Runtime-Function-Error-Type");
    const char *eb = realm_http_req_trailer(req, "Lambda-Runtime-Function-Error-Body");
    if (!et) et = realm_http_req_header(req, "Lambda-Runtime-Function-Error-Type");
    if (!eb) eb = realm_http_req_header(req, "Lambda-Runtime-Function-Error-Body");
    realm_buf_t err;
    realm_buf_init(&err);
    if (eb) realm_str_b64_decode(eb, strlen(eb), &err);
    rc = realm_env_stream_end(env, id, et, eb ? (err.data ? err.data : "") : NULL, err.len);
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

static void chan_send(chan_t *ch, json_t *o)
{
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!ch->is_closed) realm_ws_send_text(ch->ws, text, strlen(text));
    free(text);
}

static void chan_error(chan_t *ch, const char *code, const char *msg)
{
    chan_send(ch,
              json_pack("{s:s, s:s, s:s}", "type", "error_response", "message", msg, "code", code));
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
    json_t *payload =
        json_loadb(w->payload, w->payload_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!payload) payload = json_stringn_nocheck(w->payload, w->payload_len);
    json_t *cc = w->client_context ? json_loads(w->client_context, 0, NULL) : NULL;
    chan_send(ch, json_pack("{s:s, s:s, s:o, s:I, s:s, s:s, s:o, s:n}", "type", "invocation",
                            "request_id", w->request_id, "payload", payload, "deadline_ms",
                            (json_int_t)w->deadline_ms, "invoked_function_arn", w->invoked_arn,
                            "trace_id", w->trace_id, "client_context", cc ? cc : json_null(),
                            "cognito_identity"));
}

static void chan_next(chan_t *ch)
{
    if (ch->is_waiting || ch->is_closed) return;
    /* Set first: the work may go out before realm_env_next returns (it clears it). */
    ch->is_waiting = 1;
    int rc = realm_env_next(ch->env, on_chan_work, ch);
    if (rc == REALM_ENV_OK) return;
    ch->is_waiting = 0;
    chan_error(ch, rc == REALM_ENV_GONE ? "UNKNOWN_ENVIRONMENT" : "INVALID_STATE",
               "the environment cannot take an invocation now");
}

static void chan_code(chan_t *ch, int rc)
{
    if (rc == REALM_ENV_OK) return;
    if (rc == REALM_ENV_BAD_ID)
        chan_error(ch, "INVALID_REQUEST_ID", "Invalid request ID");
    else if (rc == REALM_ENV_TOO_LARGE)
        chan_error(ch, "PAYLOAD_TOO_LARGE", "Exceeded maximum allowed payload size");
    else
        chan_error(ch, "INVALID_STATE", "out of order for this environment");
}

static void chan_error_msg(chan_t *ch, json_t *m, const char *id)
{
    json_t *st = json_object_get(m, "stack_trace");
    const char *et = json_string_value(json_object_get(m, "error_type"));
    const char *em = json_string_value(json_object_get(m, "error_message"));
    json_t *body = json_pack("{s:s, s:s, s:O}", "errorMessage", em ? em : "", "errorType",
                             et && et[0] ? et : "Unhandled", "stackTrace",
                             json_is_array(st) ? st : json_array());
    if (json_is_array(st)) json_object_set(body, "stackTrace", st);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    int rc = realm_env_fail(ch->env, id, et, text, strlen(text));
    free(text);
    chan_code(ch, rc);
    if (rc == REALM_ENV_OK) chan_next(ch);
}

static void on_chan_message(realm_ws_t *ws, int is_text, const char *data, size_t len, void *ud)
{
    (void)ws;
    chan_t *ch = ud;
    json_t *m = is_text ? json_loadb(data, len, JSON_ALLOW_NUL, NULL) : NULL;
    const char *type = json_string_value(json_object_get(m, "type"));
    if (!type) {
        chan_error(ch, "BAD_MESSAGE", "expected a JSON object with a \"type\"");
        json_decref(m);
        return;
    }
    const char *id = json_string_value(json_object_get(m, "request_id"));
    if (strcmp(type, "ping") == 0) {
        chan_send(ch, json_pack("{s:s}", "type", "pong"));
    } else if (strcmp(type, "pong") == 0) {
        /* keep-alive answer */
    } else if (strcmp(type, "register") == 0) {
        if (ch->is_registered) {
            chan_error(ch, "INVALID_STATE", "already registered");
        } else {
            ch->is_registered = 1;
            realm_debug("environment %s registered on the WebSocket channel",
                        realm_env_id(ch->env));
            chan_next(ch);
        }
    } else if (!ch->is_registered) {
        chan_error(ch, "NOT_REGISTERED", "send register first");
    } else if (strcmp(type, "response") == 0) {
        json_t *p = json_object_get(m, "payload");
        char *text = p ? json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY) : realm_strdup("null");
        int rc = realm_env_respond(ch->env, id, text, strlen(text));
        free(text);
        chan_code(ch, rc == REALM_ENV_TOO_LARGE ? REALM_ENV_OK : rc);
        if (rc == REALM_ENV_OK || rc == REALM_ENV_TOO_LARGE) chan_next(ch);
    } else if (strcmp(type, "error") == 0) {
        chan_error_msg(ch, m, id);
    } else if (strcmp(type, "stream_start") == 0) {
        chan_code(ch, realm_env_stream_begin(
                          ch->env, id, json_string_value(json_object_get(m, "content_type"))));
    } else if (strcmp(type, "chunk") == 0) {
        const char *text = json_string_value(json_object_get(m, "data"));
        const char *b64 = json_string_value(json_object_get(m, "data_b64"));
        if (text) {
            chan_code(ch, realm_env_stream_write(ch->env, id, text,
                                                 json_string_length(json_object_get(m, "data"))));
        } else if (b64) {
            realm_buf_t b;
            realm_buf_init(&b);
            if (realm_str_b64_decode(b64, strlen(b64), &b) != 0) {
                chan_error(ch, "BAD_MESSAGE", "data_b64 is not base64");
            } else {
                chan_code(ch, realm_env_stream_write(ch->env, id, b.data ? b.data : "", b.len));
            }
            realm_buf_dispose(&b);
        } else {
            chan_error(ch, "BAD_MESSAGE", "a chunk needs \"data\" or \"data_b64\"");
        }
    } else if (strcmp(type, "stream_end") == 0) {
        const char *et = json_string_value(json_object_get(m, "error_type"));
        const char *em = json_string_value(json_object_get(m, "error_message"));
        char *body = NULL;
        if (et || em) {
            json_t *b = json_pack("{s:s, s:s}", "errorMessage", em ? em : "", "errorType",
                                  et ? et : "Unhandled");
            body = json_dumps(b, JSON_COMPACT);
            json_decref(b);
        }
        int rc = realm_env_stream_end(ch->env, id, et, body, body ? strlen(body) : 0);
        free(body);
        chan_code(ch, rc);
        if (rc == REALM_ENV_OK) chan_next(ch);
    } else {
        chan_error(ch, "BAD_MESSAGE", "unknown message type");
    }
    json_decref(m);
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
    ch->ws = realm_ws_new(c, &rt->ws, &chan_cbs, ch, rest, rest_len);
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
