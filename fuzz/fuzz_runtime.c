/*
 * fuzz_runtime.c - libFuzzer driver for the Lambda runtime API that
 * execution environments talk to (src/api/runtime.c,
 * docs/runtime-channel.md), without an environment or a socket:
 *
 * - HTTP: the input is a request stream, cut into pieces whose size comes
 *   from the first byte, through the real parser and the runtime listener's
 *   real route table (realm_runtime_new on a server, matched with
 *   realm_http_server_match, with each route's body limit). A complete
 *   request is decoded as its handler does: the response mode of
 *   .../response, a streamed response's error trailers (or headers, base64
 *   body), the error type of .../error and /init/error. A valid WebSocket
 *   handshake on /runtime/websocket hands the bytes after it to the channel,
 *   as the server does.
 * - WebSocket channel: frames through a server session (masking,
 *   fragments, UTF-8, close codes), every message through
 *   realm_rtmsg_parse as on_chan_message does, then the channel's rules
 *   (register first) and the engine's view of it checked: a response is
 *   JSON, an error is Lambda's error shape, a chunk has bytes. Every
 *   message also goes back out as an invocation and an error_response,
 *   which must be JSON objects that carry what went in.
 *
 * First byte: bit 0 picks the start (0: HTTP, 1: WebSocket frames at once),
 * the rest the piece size (1..128).
 *
 *   make fuzz-build && build/fuzz/fuzz_runtime -max_total_time=600 \
 *       build/fuzz/corpus/fuzz_runtime fuzz/corpus/fuzz_runtime
 */
#include "api/runtime.h"
#include "proto/rtmsg.h"
#include "ws/handshake.h"
#include "ws/session.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static realm_http_server_t *server;

/* The channel's state, as runtime.c's chan_t keeps it. */
typedef struct {
    int is_registered;
    int is_streaming;
} chan_t;

static void on_output(void *ud, const uint8_t *out, size_t len)
{
    (void)ud;
    (void)out;
    (void)len;
}

/* text must be a JSON object whose "type" is type. */
static json_t *expect_object(const char *text, size_t len, const char *type)
{
    json_t *o = json_loadb(text, len, JSON_ALLOW_NUL, NULL); /* a payload may hold \u0000 */
    if (!json_is_object(o)) __builtin_trap();
    const char *t = json_string_value(json_object_get(o, "type"));
    if (type && (!t || strcmp(t, type) != 0)) __builtin_trap();
    return o;
}

/* The message goes back out in Realm's own messages, which stay JSON. */
static void echo(const realm_rtmsg_t *m)
{
    size_t len;
    realm_rtmsg_invocation_t inv = {.request_id = m->request_id,
                                    .payload = m->data ? m->data : "",
                                    .payload_len = m->data_len,
                                    .deadline_ms = (int64_t)m->data_len * 1000,
                                    .invoked_arn = m->error_type,
                                    .trace_id = m->content_type,
                                    .client_context = m->bad ? "{\"custom\":{}}" : m->request_id};
    char *text = realm_rtmsg_invocation(&inv, &len);
    json_t *o = expect_object(text, len, "invocation");
    const char *id = json_string_value(json_object_get(o, "request_id"));
    if (m->request_id) {
        /* It came from JSON, so it is UTF-8: it goes out as it came (up to a NUL it may hold). */
        if (!id || strcmp(id, m->request_id) != 0) __builtin_trap();
    }
    if (!json_object_get(o, "payload") || !json_is_integer(json_object_get(o, "deadline_ms")))
        __builtin_trap();
    json_decref(o);
    free(text);
    text = realm_rtmsg_error_response("BAD_MESSAGE", m->bad ? m->bad : m->request_id, &len);
    json_decref(expect_object(text, len, "error_response"));
    free(text);
}

/* What the engine would be handed for one message is well formed. */
static void check_message(chan_t *ch, const realm_rtmsg_t *m)
{
    switch (m->kind) {
    case REALM_RTMSG_BAD:
    case REALM_RTMSG_UNKNOWN:
        if (!m->bad || !m->bad[0]) __builtin_trap();
        return;
    case REALM_RTMSG_PING:
    case REALM_RTMSG_PONG:
        return;
    case REALM_RTMSG_REGISTER:
        ch->is_registered = 1;
        return;
    default:
        break;
    }
    if (!ch->is_registered) return; /* NOT_REGISTERED: the engine sees nothing */
    switch (m->kind) {
    case REALM_RTMSG_RESPONSE: {
        json_t *p = json_loadb(m->data, m->data_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!p) __builtin_trap();
        json_decref(p);
        break;
    }
    case REALM_RTMSG_ERROR: {
        json_t *o = json_loadb(m->data, m->data_len, JSON_ALLOW_NUL, NULL);
        const char *et = json_string_value(json_object_get(o, "errorType"));
        if (!et || !et[0] || !json_is_array(json_object_get(o, "stackTrace")) ||
            !json_is_string(json_object_get(o, "errorMessage")))
            __builtin_trap();
        json_decref(o);
        break;
    }
    case REALM_RTMSG_STREAM_START:
        ch->is_streaming = 1;
        break;
    case REALM_RTMSG_CHUNK:
        if (!m->bad && !m->data) __builtin_trap();
        break;
    case REALM_RTMSG_STREAM_END:
        if (m->is_failed) {
            json_t *o = json_loadb(m->data, m->data_len, JSON_ALLOW_NUL, NULL);
            if (!json_is_string(json_object_get(o, "errorType"))) __builtin_trap();
            json_decref(o);
        } else if (m->data || m->error_type) {
            __builtin_trap();
        }
        ch->is_streaming = 0;
        break;
    default:
        break;
    }
}

static void on_message(void *ud, int opcode, const uint8_t *msg, size_t len)
{
    realm_rtmsg_t m;
    realm_rtmsg_parse((const char *)msg, len, opcode == REALM_WS_TEXT, &m);
    check_message(ud, &m);
    echo(&m);
    realm_rtmsg_dispose(&m);
}

static const realm_ws_session_cbs_t ws_cbs = {on_output, on_message};

/* The WebSocket channel on bytes after the handshake. */
static void channel(const uint8_t *data, size_t size, size_t step)
{
    chan_t ch = {0};
    realm_ws_session_t *s = realm_ws_session_new(&ws_cbs, &ch, 64 * 1024);
    for (size_t off = 0; off < size && !realm_ws_session_is_done(s); off += step) {
        size_t n = size - off < step ? size - off : step;
        realm_ws_session_feed(s, data + off, n);
    }
    realm_ws_session_free(s);
}

/* A complete request, decoded as its route's handler does. 1: it upgraded. */
static int handle(realm_http_req_t *req, const char *pattern)
{
    if (strstr(pattern, "/response")) {
        int mode = realm_runtime_response_mode(req);
        if (mode < -1 || mode > 1) __builtin_trap();
        if (!realm_http_req_param(req, "id")) __builtin_trap();
        if (mode == 1) {
            const char *type;
            realm_buf_t body;
            realm_buf_init(&body);
            int has = realm_runtime_stream_error(req, &type, &body);
            if (has != 0 && has != 1) __builtin_trap();
            if (!has && body.len) __builtin_trap();
            volatile size_t sink = type ? strlen(type) : 0;
            (void)sink;
            realm_buf_dispose(&body);
        }
    } else if (strstr(pattern, "/error")) {
        if (strstr(pattern, "{id}") && !realm_http_req_param(req, "id")) __builtin_trap();
        volatile size_t sink = req->body.len;
        const char *type = realm_http_req_header(req, "Lambda-Runtime-Function-Error-Type");
        if (type) sink += strlen(type);
        (void)sink;
    } else if (strstr(pattern, "/websocket")) {
        realm_ws_handshake_t h = {
            .method = req->method_name,
            .http_major = req->http_major,
            .http_minor = req->http_minor,
            .upgrade = realm_http_req_header(req, "Upgrade"),
            .connection = realm_http_req_header(req, "Connection"),
            .key = realm_http_req_header(req, "Sec-WebSocket-Key"),
            .version = realm_http_req_header(req, "Sec-WebSocket-Version"),
        };
        char accept[29];
        const char *why = NULL;
        int st = realm_ws_handshake_check(&h, accept, &why);
        if (st == 0) {
            if (strlen(accept) != 28) __builtin_trap();
            return 1;
        }
        if (st < 400 || st > 499 || !why) __builtin_trap();
    }
    return 0;
}

/* Feeds an HTTP stream; returns the offset after an upgrade, or size. */
static size_t http(const uint8_t *data, size_t size, size_t step)
{
    realm_http_parser_t p;
    realm_http_parser_init(&p, 8192);
    realm_buf_t pending;
    realm_buf_init(&pending);
    size_t fed = 0, upgraded_at = size;
    const char *pattern = NULL;
    int done = 0;
    while (!done && fed < size) {
        size_t n = size - fed < step ? size - fed : step;
        realm_buf_append(&pending, data + fed, n);
        fed += n;
        for (;;) {
            if (pending.len == 0 && !realm_http_parser_in_body(&p)) break;
            size_t used = 0;
            int rc =
                realm_http_parser_feed(&p, pending.data ? pending.data : "", pending.len, &used);
            if (used > pending.len) __builtin_trap();
            realm_buf_consume(&pending, used);
            if (rc == REALM_HTTP_NEED_MORE) break;
            if (rc == REALM_HTTP_FAILED) {
                int st = realm_http_parser_status(&p);
                if (st < 400 || st > 599 || !realm_runtime_error_type(st)) __builtin_trap();
                done = 1;
                break;
            }
            realm_http_req_t *r = &p.req;
            if (rc == REALM_HTTP_HEAD_DONE) {
                uint64_t limit = 1024 * 1024;
                int st = realm_http_server_match(server, r, &pattern, &limit);
                /* 400: an escaped control character in the path or query. */
                if (st != 0 && st != 400 && st != 404 && st != 405) __builtin_trap();
                if (st != 0) {
                    pattern = NULL;
                    if (!realm_runtime_error_type(st)) __builtin_trap();
                }
                /* Bodies are kept up to the route's limit (tens of MiB) here:
                 * cap them at the fuzzer's input size, which changes nothing. */
                realm_http_parser_set_body_limit(&p, limit < 1 << 20 ? limit : 1 << 20,
                                                 pattern == NULL);
            } else if (rc == REALM_HTTP_MSG_DONE) {
                if (pattern && handle(r, pattern)) {
                    /* The bytes that followed the request go to the channel. */
                    upgraded_at = fed - pending.len;
                    done = 1;
                    break;
                }
                pattern = NULL;
            }
        }
    }
    realm_buf_dispose(&pending);
    realm_http_parser_dispose(&p);
    return upgraded_at;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!server) {
        realm_http_limits_t lim = {.max_header_bytes = 8192, .max_body_bytes = 1024 * 1024};
        server = realm_http_server_new("runtime", &lim);
        realm_ws_config_t ws;
        memset(&ws, 0, sizeof(ws));
        /* Routes only: no loop or engine is reached without a connection. */
        (void)realm_runtime_new(NULL, NULL, server, &ws);
    }
    if (size < 1) return 0;
    int is_ws = data[0] & 1;
    size_t step = (size_t)(data[0] >> 1) + 1;
    data++, size--;
    size_t at = is_ws ? 0 : http(data, size, step);
    if (at < size) channel(data + at, size - at, step);
    return 0;
}
