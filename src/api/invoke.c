/*
 * invoke.c - the invoker's HTTP routes on the control API (see invoke.h).
 *
 * Invoke (POST /2015-03-31/functions/{name}/invocations):
 *   RequestResponse  200 with the function's payload (a streaming function's
 *                    chunks whole, up to 6 MB, with its content type); a function error is
 *                    200 with X-Amz-Function-Error: Unhandled and the error
 *                    JSON; throttles are 429 TooManyRequestsException.
 *   Event            202 once the event is in the durable queue.
 *   DryRun           204 when the function could be invoked.
 * X-Amz-Log-Type: Tail adds X-Amz-Log-Result (the last 4 KB, base64).
 *
 * Resolution, policy, the Event queue and its dispatcher live in
 * invoke/invoker.c; this file only reads requests and writes responses.
 */
#include "api/invoke.h"

#include "api/control.h"

#include "base/alloc.h"
#include "base/str.h"
#include "proto/evstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYNC_LIMIT REALM_INVOKER_SYNC_LIMIT
#define ASYNC_LIMIT REALM_INVOKER_ASYNC_LIMIT

/* ---- HTTP helpers ---- */

/* The error a REALM_ERR_* code stands for: its HTTP status and AWS type, with msg. */
static void amz_error(realm_http_res_t *res, int code, const char *msg)
{
    realm_control_send_error(res, realm_err_http_status(code), realm_err_aws_type(code), msg);
}

static void reg_error(realm_http_res_t *res, const realm_error_t *e)
{
    amz_error(res, e->code, e->message);
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

/* The decoded X-Amz-Client-Context into out: 0, or -1 with e (400). */
static int client_context(const realm_http_req_t *req, realm_buf_t *out, realm_error_t *e)
{
    const char *cc = realm_http_req_header(req, "X-Amz-Client-Context");
    if (!cc || !cc[0]) return 0;
    json_t *j = NULL;
    if (strlen(cc) <= 3583 && realm_str_b64_decode(cc, strlen(cc), out) == 0)
        j = json_loadb(out->data ? out->data : "", out->len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        realm_error_set(e, REALM_ERR_INVALID_REQUEST,
                        "Client context must be a valid Base64-encoded JSON object of at most 3583 "
                        "bytes encoded.");
        return -1;
    }
    json_decref(j);
    return 0;
}

/* The body as the event: valid JSON, "{}" when empty. 0, or -1 with e (413, 400). */
static int event_payload(const realm_http_req_t *req, size_t limit, const char *op,
                         const char **payload, size_t *len, realm_error_t *e)
{
    if (req->body.len > limit) {
        char msg[160];
        snprintf(msg, sizeof(msg), "Request must be smaller than %zu bytes for the %s operation",
                 limit, op);
        realm_error_set(e, REALM_ERR_REQUEST_TOO_LARGE, "%s", msg);
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
        realm_error_set(e, REALM_ERR_INVALID_REQUEST, "%s", msg);
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
        amz_error(res, r->error_code ? r->error_code : REALM_ERR_INTERNAL_ERROR,
                  r->error_message ? r->error_message : "failed");
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
            /* A streaming function's chunks come whole, with its content type. */
            const char *ct =
                r->status == REALM_INV_OK && r->content_type ? r->content_type : "application/json";
            realm_http_res_send(res, 200, ct, r->payload, r->payload_len);
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
            } else if (r->status != REALM_INV_OK) {
                /* Failed once begun (its node lost): an error, never a clean end. */
                details = realm_strdup(r->error_message ? r->error_message : "failed");
            }
            const char *etype = r->status == REALM_INV_OK ? NULL
                                : r->error_type           ? r->error_type
                                                          : "ServiceException";
            realm_buf_reset(&c->frame);
            realm_evstream_complete(&c->frame, etype, details,
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

/* ---- routes ---- */

int realm_invoke_parse(const realm_http_req_t *req, int is_stream, realm_invoke_req_t *ir,
                       realm_error_t *e)
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
        realm_error_set(e, REALM_ERR_INVALID_PARAMS, "%s",
                        is_stream
                            ? "X-Amz-Invocation-Type must be RequestResponse or DryRun"
                            : "X-Amz-Invocation-Type must be RequestResponse, Event or DryRun");
        return -1;
    }
    if (log_type && strcmp(log_type, "None") != 0 && strcmp(log_type, "Tail") != 0) {
        realm_error_set(e, REALM_ERR_INVALID_PARAMS, "X-Amz-Log-Type must be None or Tail");
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

int realm_invoke_submit(realm_invoker_t *iv, const realm_invoke_req_t *ir,
                        realm_invoker_submitted_cb cb, void *data, realm_error_t *e)
{
    realm_invoker_mode_t mode =
        strcmp(ir->type, "DryRun") == 0 ? REALM_INVOKER_DRY_RUN : REALM_INVOKER_EVENT;
    return realm_invoker_submit(iv, mode, ir->tenant, ir->fn, ir->qualifier, ir->payload, ir->len,
                                cb, data, e);
}

/* An Event, DryRun or InvokeAsync request waiting for the queue's answer. */
typedef enum { WAIT_DRY_RUN, WAIT_EVENT, WAIT_ASYNC } wait_kind_t;

typedef struct {
    realm_http_res_t *res; /* NULL once the client went away (the event still counts) */
    wait_kind_t kind;
} submit_wait_t;

static void submit_aborted(realm_http_res_t *res, void *data)
{
    (void)res;
    submit_wait_t *w = data;
    w->res = NULL;
}

static void submit_refused(realm_http_res_t *res, const realm_error_t *e)
{
    if (realm_err_http_status(e->code) == 429)
        throttled(res, realm_invoker_throttle_reason(e->code), e->message);
    else
        reg_error(res, e);
}

static void on_submitted(const char *version, const realm_error_t *e, void *data)
{
    submit_wait_t *w = data;
    realm_http_res_t *res = w->res;
    wait_kind_t kind = w->kind;
    free(w);
    if (!res) return;
    realm_http_res_on_abort(res, NULL, NULL);
    if (e) {
        submit_refused(res, e);
        return;
    }
    char rid[37];
    realm_str_uuid4(rid);
    realm_http_res_header(res, "x-amzn-RequestId", rid);
    if (kind == WAIT_DRY_RUN) {
        realm_http_res_header(res, "X-Amz-Executed-Version", version);
        realm_http_res_send(res, 204, NULL, NULL, 0);
    } else if (kind == WAIT_EVENT) {
        realm_http_res_send(res, 202, NULL, NULL, 0);
    } else {
        realm_http_res_send_json(res, 202, json_pack("{s:i}", "Status", 202));
    }
}

static submit_wait_t *submit_wait(realm_http_res_t *res, wait_kind_t kind)
{
    submit_wait_t *w = realm_malloc(sizeof(*w));
    *w = (submit_wait_t){.res = res, .kind = kind};
    return w;
}

/* Submitted: the answer comes in on_submitted; refused now: answered here. */
static void submit_started(realm_http_res_t *res, submit_wait_t *w, int rc, const realm_error_t *e)
{
    if (rc == 0) {
        realm_http_res_on_abort(res, submit_aborted, w);
        return;
    }
    free(w);
    submit_refused(res, e);
}

static void invoke_without_running(realm_invoker_t *iv, realm_http_res_t *res,
                                   const realm_invoke_req_t *ir)
{
    realm_error_t e;
    submit_wait_t *w =
        submit_wait(res, strcmp(ir->type, "DryRun") == 0 ? WAIT_DRY_RUN : WAIT_EVENT);
    submit_started(res, w, realm_invoke_submit(iv, ir, on_submitted, w, &e), &e);
}

/* Nothing runs: the error is the answer. */
static void call_refused(call_t *c, const realm_error_t *e)
{
    if (c->res) {
        realm_http_res_on_abort(c->res, NULL, NULL);
        reg_error(c->res, e);
    }
    realm_buf_dispose(&c->frame);
    free(c);
}

/* The name was resolved on the registry's worker: it runs (inv), or not (e). */
static void on_started(realm_inv_t *inv, const realm_error_t *e, void *data)
{
    call_t *c = data;
    if (!inv) call_refused(c, e);
}

static void invoke_http(realm_http_req_t *req, realm_http_res_t *res, realm_invoker_t *iv,
                        int is_stream)
{
    realm_invoke_req_t ir;
    realm_error_t e;
    if (realm_invoke_parse(req, is_stream, &ir, &e) != 0) {
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
    realm_inv_t *inv;
    int rc = realm_invoker_start(iv, ir.tenant, ir.fn, ir.qualifier, &rq,
                                 is_stream ? &stream_sink : &sync_sink, c, c->version, on_started,
                                 &inv, &e);
    realm_buf_dispose(&ir.cc);
    if (rc < 0) call_refused(c, &e); /* else it answers in its sink, later */
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
    realm_error_t e;
    if (event_payload(req, ASYNC_LIMIT, "InvokeAsync", &payload, &len, &e) != 0) {
        reg_error(res, &e);
        return;
    }
    submit_wait_t *w = submit_wait(res, WAIT_ASYNC);
    int rc = realm_invoker_submit(iv, REALM_INVOKER_EVENT_PLAIN, req->principal, fn, NULL, payload,
                                  len, on_submitted, w, &e);
    submit_started(res, w, rc, &e);
}

/* GET .../logs and .../failed-events: waiting for the function's plain name. */
typedef struct {
    realm_http_res_t *res; /* NULL once the client went away */
    realm_invoker_t *iv;
    long tail; /* the logs' bytes; 0: the failed events */
    char tenant[80];
} named_wait_t;

static void named_aborted(realm_http_res_t *res, void *data)
{
    (void)res;
    named_wait_t *w = data;
    w->res = NULL;
}

static void on_failed_listed(json_t *list, int64_t pending, void *data)
{
    submit_wait_t *w = data;
    realm_http_res_t *res = w->res;
    free(w);
    if (!res) {
        json_decref(list);
        return;
    }
    realm_http_res_on_abort(res, NULL, NULL);
    char rid[37];
    realm_str_uuid4(rid);
    realm_http_res_header(res, "x-amzn-RequestId", rid);
    realm_http_res_send_json(
        res, 200, json_pack("{s:o, s:I}", "FailedEvents", list, "Pending", (json_int_t)pending));
}

static void answer_log(realm_http_res_t *res, const char *text, size_t len, const char *nodes)
{
    char rid[37];
    realm_str_uuid4(rid);
    realm_http_res_header(res, "x-amzn-RequestId", rid);
    if (nodes) realm_http_res_header(res, "X-Realm-Log-Nodes", nodes);
    realm_http_res_send(res, 200, "text/plain; charset=utf-8", text, len);
}

/* A cluster's nodes answered (the wait ends here). */
static void on_logs_gathered(const char *text, size_t len, const char *nodes, void *data)
{
    named_wait_t *w = data;
    if (w->res) {
        realm_http_res_on_abort(w->res, NULL, NULL);
        answer_log(w->res, text, len, nodes);
    }
    free(w);
}

/* 1 when the answer comes later (from every node of a cluster: w is kept), 0 when sent. */
static int send_log(named_wait_t *w, const char *name)
{
    if (realm_invoker_gather_logs(w->iv, w->tenant, name, w->tail, on_logs_gathered, w) == 0) {
        realm_http_res_on_abort(w->res, named_aborted, w);
        return 1;
    }
    realm_buf_t out;
    realm_buf_init(&out);
    realm_invoker_read_log(w->iv, w->tenant, name, w->tail, &out);
    answer_log(w->res, out.data ? out.data : "", out.len, NULL);
    realm_buf_dispose(&out);
    return 0;
}

static void list_failed(named_wait_t *w, const char *name)
{
    submit_wait_t *sw = submit_wait(w->res, WAIT_EVENT);
    if (realm_invoker_failed_events(w->iv, w->tenant, name, on_failed_listed, sw) != 0) {
        realm_http_res_on_abort(w->res, NULL, NULL);
        free(sw);
        amz_error(w->res, REALM_ERR_SHUTTING_DOWN, "the server is shutting down");
        return;
    }
    realm_http_res_on_abort(w->res, submit_aborted, sw);
}

static void on_named(const char *name, const realm_error_t *e, void *data)
{
    named_wait_t *w = data;
    if (w->res) {
        realm_http_res_on_abort(w->res, NULL, NULL);
        if (!name)
            reg_error(w->res, e);
        else if (w->tail > 0 && send_log(w, name))
            return; /* on_logs_gathered frees w */
        else if (w->tail <= 0)
            list_failed(w, name);
    }
    free(w);
}

/* Looks the path's function up on the registry's worker, then answers (on_named). */
static void wait_for_name(realm_invoker_t *iv, realm_http_req_t *req, realm_http_res_t *res,
                          long tail)
{
    named_wait_t *w = realm_calloc(1, sizeof(*w));
    w->res = res;
    w->iv = iv;
    w->tail = tail;
    snprintf(w->tenant, sizeof(w->tenant), "%s", req->principal);
    realm_error_t e;
    if (realm_invoker_plain_name(iv, req->principal, realm_http_req_param(req, "FunctionName"),
                                 on_named, w, &e) != 0) {
        free(w);
        reg_error(res, &e);
        return;
    }
    realm_http_res_on_abort(res, named_aborted, w);
}

/* GET /realm/v1/functions/{name}/logs[?tail=BYTES]: the function's log, text. */
static void on_logs(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    char buf[32];
    long tail = 64 * 1024;
    if (req_query(req, "tail", buf, sizeof(buf))) {
        char *end;
        tail = strtol(buf, &end, 10);
        if (!buf[0] || *end || tail < 1 || tail > 16 * 1024 * 1024) {
            amz_error(res, REALM_ERR_INVALID_PARAMS,
                      "tail must be a byte count from 1 to 16777216");
            return;
        }
    }
    wait_for_name(data, req, res, tail);
}

/* GET /realm/v1/functions/{name}/failed-events: Event invocations that failed for good. */
static void on_failed_events(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    wait_for_name(data, req, res, 0);
}

void realm_invoke_routes(realm_invoker_t *iv, realm_http_server_t *http)
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
