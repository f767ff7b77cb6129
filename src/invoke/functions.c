/*
 * functions.c - deployed functions as calls of the client protocol (see
 * functions.h).
 *
 * Replies: each streamed chunk is {"index","data"} (UTF-8 text) or
 * {"index","data_b64"} (other bytes); the final reply is
 * {"request_id","executed_version","payload"} where payload is the
 * function's JSON answer (or its text when it is not JSON; null after a
 * stream, whose reply adds "chunks" and "content_type"). A function
 * error is the call error FUNCTION_ERROR with details
 * {"error_type","error","request_id"} (error: the function's error JSON);
 * a throttle is THROTTLED with {"reason","retry_after"}.
 */
#include "invoke/functions.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYNC_PAYLOAD_LIMIT REALM_INVOKER_SYNC_LIMIT /* 6 MB, as Invoke over HTTP */

typedef struct {
    realm_call_t *call;
    realm_inv_t *inv;
    char version[24];
    char content_type[128]; /* of a streamed response */
    json_int_t chunks;
    int want_tail;
    int is_by_name;
    int is_cancelled; /* while the name was being resolved */
    char name[200];
} fcall_t;

/* Text or base64 of some bytes, as a new JSON object with one of the keys. */
static json_t *bytes_json(json_t *o, const char *text_key, const char *b64_key, const char *p,
                          size_t n)
{
    json_t *text = json_stringn(p, n); /* NULL unless valid UTF-8 */
    if (text) {
        json_object_set_new(o, text_key, text);
    } else {
        realm_buf_t b;
        realm_buf_init(&b);
        realm_str_b64_encode(p, n, &b);
        json_object_set_new(o, b64_key, json_string(b.data ? b.data : ""));
        realm_buf_dispose(&b);
    }
    return o;
}

static void on_stream(realm_inv_t *inv, const char *content_type, void *data)
{
    (void)inv;
    fcall_t *fc = data;
    snprintf(fc->content_type, sizeof(fc->content_type), "%s", content_type);
}

static void on_chunk(realm_inv_t *inv, const void *bytes, size_t len, void *data)
{
    (void)inv;
    fcall_t *fc = data;
    json_t *o = json_pack("{s:I}", "index", fc->chunks++);
    realm_call_stream(fc->call, bytes_json(o, "data", "data_b64", bytes, len));
}

static void on_done(realm_inv_t *inv, const realm_inv_result_t *r, void *data)
{
    (void)inv;
    fcall_t *fc = data;
    realm_call_t *call = fc->call;
    json_t *payload = r->payload_len ? json_loadb(r->payload, r->payload_len,
                                                  JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL)
                                     : NULL;
    if (!payload && r->payload_len) payload = json_stringn(r->payload, r->payload_len);
    json_t *tail = NULL;
    if (fc->want_tail) tail = json_stringn(r->log_tail, r->log_tail_len);
    switch (r->status) {
    case REALM_INV_OK: {
        json_t *o = json_pack("{s:s, s:s, s:o}", "request_id", r->request_id, "executed_version",
                              fc->version, "payload", payload ? payload : json_null());
        if (r->was_streamed) {
            json_object_set_new(o, "chunks", json_integer(fc->chunks));
            json_object_set_new(o, "content_type", json_string(fc->content_type));
        }
        if (tail) json_object_set_new(o, "log_tail", tail);
        realm_call_complete(call, o);
        break;
    }
    case REALM_INV_FN_ERROR: {
        const char *msg = json_string_value(json_object_get(payload, "errorMessage"));
        json_t *d =
            json_pack("{s:s, s:s, s:O}", "error_type", r->error_type ? r->error_type : "Unhandled",
                      "request_id", r->request_id, "error", payload ? payload : json_null());
        if (tail) json_object_set_new(d, "log_tail", tail);
        realm_call_fail(call, REALM_ERR_FUNCTION_ERROR, d, "%s",
                        msg ? msg : (r->error_type ? r->error_type : "the function failed"));
        json_decref(payload);
        break;
    }
    case REALM_INV_THROTTLED:
        json_decref(payload);
        json_decref(tail);
        realm_call_fail(
            call, REALM_ERR_THROTTLED,
            json_pack("{s:s, s:i}", "reason", r->error_type ? r->error_type : "", "retry_after", 1),
            "%s", r->error_message ? r->error_message : "Rate Exceeded.");
        break;
    default:
        json_decref(payload);
        json_decref(tail);
        realm_call_fail(call, r->error_code ? r->error_code : REALM_ERR_INTERNAL_ERROR, NULL, "%s",
                        r->error_message ? r->error_message : "the invocation failed");
    }
    free(fc);
}

/* Nothing runs: the call fails with the reason. */
static void refuse(realm_call_t *call, const char *name, int is_by_name, const realm_error_t *e)
{
    /* Called by name, anything that names no deployed function is "no such function". */
    int status = e->code ? realm_err_http_status(e->code) : 0;
    if (status == 404 || (is_by_name && status < 500)) {
        realm_call_fail(call, REALM_ERR_FUNCTION_NOT_FOUND, json_pack("{s:s}", "function", name),
                        "%s", e->message);
    } else if (status == 503) {
        realm_call_fail(call, e->code, NULL, "%s", e->message);
    } else if (status >= 500) {
        realm_call_fail(call, REALM_ERR_INTERNAL_ERROR, NULL, "%s", e->message);
    } else {
        realm_call_fail(call, REALM_ERR_INVALID_PARAMS, json_pack("{s:s}", "param", "name"), "%s",
                        e->message);
    }
}

static void on_cancel(realm_call_t *call, void *data)
{
    (void)call;
    fcall_t *fc = data;
    if (!fc->inv) { /* still resolving: on_started drops it */
        fc->is_cancelled = 1;
        return;
    }
    realm_inv_cancel(fc->inv);
    free(fc);
}

static void on_started(realm_inv_t *inv, const realm_error_t *e, void *data)
{
    fcall_t *fc = data;
    if (fc->is_cancelled) {
        if (inv) realm_inv_cancel(inv);
        free(fc);
        return;
    }
    if (inv) {
        fc->inv = inv;
        return;
    }
    realm_call_on_cancel(fc->call, NULL, NULL);
    refuse(fc->call, fc->name, fc->is_by_name, e);
    free(fc);
}

static void run(realm_call_t *call, realm_invoker_t *iv, const char *name, const char *qualifier,
                json_t *payload, int want_tail, int is_by_name)
{
    char *text = payload ? json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY) : realm_strdup("{}");
    if (strlen(text) > SYNC_PAYLOAD_LIMIT) {
        /* Lambda's own limit on a synchronous event, as Invoke over HTTP has it. */
        realm_call_fail(call, REALM_ERR_INVALID_PARAMS, json_pack("{s:s}", "param", "payload"),
                        "the event is %zu bytes; the limit is %u", strlen(text),
                        SYNC_PAYLOAD_LIMIT);
        free(text);
        return;
    }
    fcall_t *fc = realm_calloc(1, sizeof(*fc));
    fc->call = call;
    fc->want_tail = want_tail;
    /* The engine takes the text over (no copy), also when nothing runs. */
    realm_inv_req_t req = {.payload_owned = text, .payload_len = strlen(text)};
    static const realm_inv_sink_t sink = {
        .on_stream = on_stream, .on_chunk = on_chunk, .on_done = on_done};
    realm_error_t e;
    realm_inv_t *inv;
    int rc = realm_invoker_start(iv, realm_call_tenant(call) ? realm_call_tenant(call) : "", name,
                                 qualifier, &req, &sink, fc, fc->version, on_started, &inv, &e);
    if (rc < 0) {
        free(fc);
        refuse(call, name, is_by_name, &e);
        return;
    }
    /* It ends in on_done, on a later turn (or is cancelled first); while the
     * name is resolved, a cancel is remembered (on_started acts on it). */
    fc->inv = inv;
    fc->is_by_name = is_by_name;
    snprintf(fc->name, sizeof(fc->name), "%s", name);
    realm_call_on_cancel(call, on_cancel, fc);
}

/* A string param holding a control character: refused before any lookup. */
static int has_ctl_param(json_t *params, const char *key)
{
    json_t *v = json_object_get(params, key);
    return json_is_string(v) && realm_str_has_ctl(json_string_value(v), json_string_length(v));
}

static void fn_invoke(realm_call_t *call, json_t *params, void *data)
{
    const char *q = json_string_value(json_object_get(params, "qualifier"));
    const char *lt = json_string_value(json_object_get(params, "log_type"));
    static const char *const names[] = {"name", "qualifier"};
    for (size_t i = 0; i < 2; i++) {
        if (!has_ctl_param(params, names[i])) continue;
        realm_call_fail(call, REALM_ERR_INVALID_PARAMS, json_pack("{s:s}", "param", names[i]),
                        "'%s' must not contain control characters", names[i]);
        return;
    }
    run(call, data, json_string_value(json_object_get(params, "name")), q && q[0] ? q : NULL,
        json_object_get(params, "payload"), lt && strcmp(lt, "Tail") == 0, 0);
}

static void fn_by_name(realm_call_t *call, json_t *params, void *data)
{
    run(call, data, realm_call_function(call), NULL, params, 0, 1);
}

static const realm_param_def_t invoke_params[] = {
    {.name = "name",
     .type = REALM_PARAM_STRING,
     .is_required = 1,
     .description = "the deployed function: name, name:qualifier, or ARN",
     .has_min = 1,
     .min = 1,
     .has_max = 1,
     .max = 256},
    {.name = "payload",
     .type = REALM_PARAM_ANY,
     .default_json = "{}",
     .description = "the event passed to the handler"},
    {.name = "qualifier",
     .type = REALM_PARAM_STRING,
     .description = "a version number or alias name ($LATEST when omitted)",
     .has_max = 1,
     .max = 128},
    {.name = "log_type",
     .type = REALM_PARAM_STRING,
     .default_json = "\"None\"",
     .description = "Tail adds the last 4 KB of the invocation's log as log_tail"},
};

static const realm_fn_def_t invoke_def = {
    .name = "invoke",
    .description = "Runs a deployed function (Lambda Invoke): streamed chunks arrive as "
                   "streaming replies, then the result.",
    .params = invoke_params,
    .params_cnt = sizeof(invoke_params) / sizeof(invoke_params[0]),
    .result_json = "{\"request_id\":\"string\",\"executed_version\":\"string\",\"payload\":"
                   "\"any\",\"chunks\":\"integer\",\"content_type\":\"string\"}",
    .is_streaming = 1,
    .handler = fn_invoke,
};

static const realm_fn_def_t by_name_def = {
    .name = "lambda",
    .description = "A deployed function called by its name; params are its event.",
    .is_streaming = 1,
    .handler = fn_by_name,
};

struct realm_functions_s {
    realm_dispatch_t *d;
    realm_invoker_t *iv;
};

/*
 * Deployed functions for `metadata`. One named like a built-in (a Lambda
 * may be called "echo") is listed as shadowed: by name the built-in
 * answers; `invoke` reaches the function.
 */
typedef struct {
    realm_functions_t *fs;
    realm_dispatch_described_cb done;
    void *ctx;
} describing_t;

static void described(json_t *fns, void *data)
{
    describing_t *w = data;
    size_t i;
    json_t *f;
    json_array_foreach(fns, i, f)
    {
        const char *name = json_string_value(json_object_get(f, "name"));
        if (!name || !realm_dispatch_lookup(w->fs->d, name)) continue;
        json_object_set_new(f, "shadowed", json_true());
        json_object_set_new(f, "description",
                            json_string("A deployed Lambda function named like a built-in: "
                                        "call it with invoke"));
    }
    w->done(fns, w->ctx);
    free(w);
}

static int describe(const char *tenant, realm_dispatch_described_cb done, void *ctx, void *data)
{
    describing_t *w = realm_malloc(sizeof(*w));
    *w = (describing_t){.fs = data, .done = done, .ctx = ctx};
    if (realm_invoker_describe(w->fs->iv, tenant ? tenant : "", described, w) == 0) return 0;
    free(w);
    return -1;
}

realm_functions_t *realm_functions_new(realm_dispatch_t *d, realm_invoker_t *iv)
{
    realm_functions_t *fs = realm_calloc(1, sizeof(*fs));
    fs->d = d;
    fs->iv = iv;
    realm_dispatch_register(d, &invoke_def, iv);
    realm_dispatch_set_fallback(d, &by_name_def, iv);
    realm_dispatch_set_describer(d, describe, fs);
    return fs;
}

void realm_functions_free(realm_functions_t *fs)
{
    free(fs);
}
