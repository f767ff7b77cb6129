/*
 * rtmsg.c - the runtime channel's messages over jansson (see rtmsg.h).
 *
 * DESIGN: decoding does everything that needs no engine state: it picks the
 * kind, reads the request id, and builds the bytes the engine is handed
 * (the response payload as JSON text, the error JSON in Lambda's shape, a
 * chunk's bytes). Whether the message is allowed now (registered, the
 * current invocation) is the adapter's and the engine's to say.
 */
#include "proto/rtmsg.h"

#include "base/alloc.h"
#include "base/str.h"

#include <stdlib.h>
#include <string.h>

/* ---- decoding ---- */

static void set_text(realm_rtmsg_t *m, char *text)
{
    /* json_dumps fails only on invalid values, which a parsed tree never holds. */
    if (!text) text = realm_strdup("null");
    realm_buf_append(&m->buf, text, strlen(text));
    free(text);
    m->data = m->buf.data;
    m->data_len = m->buf.len;
}

/* Lambda's error shape for an `error` message. */
static void decode_error(realm_rtmsg_t *m)
{
    json_t *st = json_object_get(m->root, "stack_trace");
    const char *em = json_string_value(json_object_get(m->root, "error_message"));
    const char *et = m->error_type;
    json_t *body = json_pack("{s:s, s:s, s:o}", "errorMessage", em ? em : "", "errorType",
                             et && et[0] ? et : "Unhandled", "stackTrace",
                             json_is_array(st) ? json_incref(st) : json_array());
    set_text(m, json_dumps(body, JSON_COMPACT));
    json_decref(body);
}

static void decode_chunk(realm_rtmsg_t *m)
{
    json_t *text = json_object_get(m->root, "data");
    const char *b64 = json_string_value(json_object_get(m->root, "data_b64"));
    if (json_is_string(text)) {
        m->data = json_string_value(text);
        m->data_len = json_string_length(text);
    } else if (b64) {
        if (realm_str_b64_decode(b64, strlen(b64), &m->buf) != 0) {
            m->bad = "data_b64 is not base64";
            return;
        }
        m->data = m->buf.data ? m->buf.data : "";
        m->data_len = m->buf.len;
    } else {
        m->bad = "a chunk needs \"data\" or \"data_b64\"";
    }
}

static void decode_stream_end(realm_rtmsg_t *m)
{
    const char *em = json_string_value(json_object_get(m->root, "error_message"));
    const char *et = m->error_type;
    if (!et && !em) return;
    m->is_failed = 1;
    json_t *b =
        json_pack("{s:s, s:s}", "errorMessage", em ? em : "", "errorType", et ? et : "Unhandled");
    set_text(m, json_dumps(b, JSON_COMPACT));
    json_decref(b);
}

realm_rtmsg_kind_t realm_rtmsg_parse(const char *data, size_t len, int is_text, realm_rtmsg_t *out)
{
    memset(out, 0, sizeof(*out));
    realm_buf_init(&out->buf);
    out->root = is_text ? json_loadb(data, len, JSON_ALLOW_NUL, NULL) : NULL;
    const char *type = json_string_value(json_object_get(out->root, "type"));
    if (!type) {
        out->kind = REALM_RTMSG_BAD;
        out->bad = "expected a JSON object with a \"type\"";
        return out->kind;
    }
    out->request_id = json_string_value(json_object_get(out->root, "request_id"));
    out->error_type = json_string_value(json_object_get(out->root, "error_type"));
    if (strcmp(type, "ping") == 0) {
        out->kind = REALM_RTMSG_PING;
    } else if (strcmp(type, "pong") == 0) {
        out->kind = REALM_RTMSG_PONG;
    } else if (strcmp(type, "register") == 0) {
        out->kind = REALM_RTMSG_REGISTER;
    } else if (strcmp(type, "response") == 0) {
        out->kind = REALM_RTMSG_RESPONSE;
        json_t *p = json_object_get(out->root, "payload");
        set_text(out, p ? json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY) : realm_strdup("null"));
    } else if (strcmp(type, "error") == 0) {
        out->kind = REALM_RTMSG_ERROR;
        decode_error(out);
    } else if (strcmp(type, "stream_start") == 0) {
        out->kind = REALM_RTMSG_STREAM_START;
        out->content_type = json_string_value(json_object_get(out->root, "content_type"));
    } else if (strcmp(type, "chunk") == 0) {
        out->kind = REALM_RTMSG_CHUNK;
        decode_chunk(out);
    } else if (strcmp(type, "stream_end") == 0) {
        out->kind = REALM_RTMSG_STREAM_END;
        decode_stream_end(out);
    } else {
        out->kind = REALM_RTMSG_UNKNOWN;
        out->bad = "unknown message type";
    }
    return out->kind;
}

void realm_rtmsg_dispose(realm_rtmsg_t *m)
{
    json_decref(m->root);
    m->root = NULL;
    realm_buf_dispose(&m->buf);
    m->data = NULL;
    m->data_len = 0;
}

/* ---- encoding ---- */

/* A JSON string of s, repaired if it is not UTF-8; null for NULL. */
static json_t *text_or_null(const char *s)
{
    if (!s) return json_null();
    json_t *j = realm_str_json(s, strlen(s));
    return j ? j : json_string("");
}

/* Compact text of o (a new reference, taken). */
static char *dump(json_t *o, size_t *len)
{
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text) abort(); /* every value above is valid: only out of memory */
    *len = strlen(text);
    return text;
}

char *realm_rtmsg_invocation(const realm_rtmsg_invocation_t *inv, size_t *len)
{
    json_t *payload =
        json_loadb(inv->payload, inv->payload_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    /* Not JSON (it always is from Invoke): the bytes as a string. */
    if (!payload) payload = realm_str_json(inv->payload, inv->payload_len);
    json_t *cc = inv->client_context ? json_loads(inv->client_context, 0, NULL) : NULL;
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("invocation"));
    json_object_set_new(o, "request_id", text_or_null(inv->request_id));
    json_object_set_new(o, "payload", payload ? payload : json_null());
    json_object_set_new(o, "deadline_ms", json_integer((json_int_t)inv->deadline_ms));
    json_object_set_new(o, "invoked_function_arn", text_or_null(inv->invoked_arn));
    json_object_set_new(o, "trace_id", text_or_null(inv->trace_id));
    json_object_set_new(o, "client_context", cc ? cc : json_null());
    json_object_set_new(o, "cognito_identity", json_null());
    return dump(o, len);
}

char *realm_rtmsg_error_response(const char *code, const char *message, size_t *len)
{
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("error_response"));
    json_object_set_new(o, "message", text_or_null(message));
    json_object_set_new(o, "code", text_or_null(code));
    return dump(o, len);
}

char *realm_rtmsg_pong(size_t *len)
{
    return dump(json_pack("{s:s}", "type", "pong"), len);
}
