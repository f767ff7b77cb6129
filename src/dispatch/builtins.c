/*
 * builtins.c - health, metadata, echo (see builtins.h).
 *
 * echo's delays run on libuv timers; its cancel hook stops the timer, which
 * is the pattern every asynchronous function follows.
 */
#include "dispatch/builtins.h"

#include "base/alloc.h"
#include "base/err.h"

#include <stdlib.h>

static const char *param_type_json(realm_param_type_t t)
{
    switch (t) {
    case REALM_PARAM_STRING:
        return "string";
    case REALM_PARAM_INTEGER:
        return "integer";
    case REALM_PARAM_NUMBER:
        return "number";
    case REALM_PARAM_BOOLEAN:
        return "boolean";
    case REALM_PARAM_OBJECT:
        return "object";
    case REALM_PARAM_ARRAY:
        return "array";
    case REALM_PARAM_ANY:
        return "any";
    }
    return "any";
}

json_t *realm_builtins_metadata(const realm_dispatch_t *d, json_t *more)
{
    json_t *fns = json_array();
    for (size_t i = 0; i < realm_dispatch_count(d); i++) {
        const realm_fn_def_t *def = realm_dispatch_at(d, i);
        json_t *params = json_array();
        for (size_t j = 0; j < def->params_cnt; j++) {
            const realm_param_def_t *p = &def->params[j];
            json_t *pj = json_pack("{s:s, s:s, s:b}", "name", p->name, "type",
                                   param_type_json(p->type), "required", p->is_required);
            json_t *dv =
                p->default_json ? json_loads(p->default_json, JSON_DECODE_ANY, NULL) : NULL;
            json_object_set_new(pj, "default", dv ? dv : json_null());
            json_object_set_new(pj, "description", json_string(p->description));
            const char *lo = p->type == REALM_PARAM_STRING ? "min_length" : "minimum";
            const char *hi = p->type == REALM_PARAM_STRING ? "max_length" : "maximum";
            if (p->has_min) json_object_set_new(pj, lo, json_real(p->min));
            if (p->has_max) json_object_set_new(pj, hi, json_real(p->max));
            if (p->has_min && p->min == (double)(json_int_t)p->min)
                json_object_set_new(pj, lo, json_integer((json_int_t)p->min));
            if (p->has_max && p->max == (double)(json_int_t)p->max)
                json_object_set_new(pj, hi, json_integer((json_int_t)p->max));
            json_array_append_new(params, pj);
        }
        json_t *result =
            def->result_json ? json_loads(def->result_json, JSON_DECODE_ANY, NULL) : NULL;
        json_array_append_new(fns, json_pack("{s:s, s:s, s:o, s:o, s:b}", "name", def->name,
                                             "description", def->description, "params", params,
                                             "result", result ? result : json_null(), "streaming",
                                             def->is_streaming));
    }
    if (more) json_array_extend(fns, more);
    json_t *doc = json_pack("{s:{s:s, s:s}, s:o}", "runtime", "name", "realm", "version",
                            REALM_VERSION, "functions", fns);
    realm_dispatch_annotate(d, doc);
    return doc;
}

/* ---- health ---- */

static void fn_health(realm_call_t *call, json_t *params, void *data)
{
    (void)params;
    realm_builtins_ctx_t *ctx = data;
    json_int_t uptime = (json_int_t)((uv_hrtime() - ctx->start_ns) / 1000000000u);
    size_t conns = ctx->connections ? ctx->connections(ctx->data) : 0;
    json_t *cluster = ctx->cluster ? ctx->cluster(ctx->data) : NULL;
    realm_call_complete(call, json_pack("{s:s, s:s, s:I, s:I, s:I, s:o*}", "status", "ok",
                                        "version", REALM_VERSION, "uptime_seconds", uptime,
                                        "connections", (json_int_t)conns, "in_flight",
                                        (json_int_t)realm_dispatch_in_flight(ctx->dispatch),
                                        "cluster", cluster));
}

static const realm_fn_def_t health_def = {
    .name = "health",
    .description = "Server liveness: status, version, uptime, open client connections and "
                   "calls in flight.",
    .result_json = "{\"status\":\"string (ok)\",\"version\":\"string\",\"uptime_seconds\":"
                   "\"integer\",\"connections\":\"integer\",\"in_flight\":\"integer\"}",
    .handler = fn_health,
};

/* ---- metadata ---- */

/* A metadata call waiting for the deployed functions (found off the loop). */
typedef struct {
    realm_call_t *call; /* NULL once cancelled */
    realm_builtins_ctx_t *ctx;
} metadata_wait_t;

static void metadata_complete(realm_call_t *call, realm_builtins_ctx_t *ctx, json_t *more)
{
    json_t *doc = realm_builtins_metadata(ctx->dispatch, more);
    /* The runtimes functions can be deployed with, each with its exact version. */
    if (ctx->runtimes) json_object_set_new(doc, "runtimes", json_deep_copy(ctx->runtimes));
    realm_call_complete(call, doc);
}

static void metadata_cancelled(realm_call_t *call, void *data)
{
    (void)call;
    metadata_wait_t *w = data;
    w->call = NULL; /* freed when the answer comes */
}

static void metadata_described(json_t *more, void *data)
{
    metadata_wait_t *w = data;
    if (w->call) {
        realm_call_on_cancel(w->call, NULL, NULL);
        metadata_complete(w->call, w->ctx, more);
    }
    json_decref(more);
    free(w);
}

static void fn_metadata(realm_call_t *call, json_t *params, void *data)
{
    (void)params;
    realm_builtins_ctx_t *ctx = data;
    metadata_wait_t *w = realm_malloc(sizeof(*w));
    *w = (metadata_wait_t){.call = call, .ctx = ctx};
    if (realm_dispatch_describe_more(ctx->dispatch, realm_call_tenant(call), metadata_described,
                                     w) == 0) {
        realm_call_on_cancel(call, metadata_cancelled, w);
        return;
    }
    free(w);
    metadata_complete(call, ctx, NULL);
}

static const realm_fn_def_t metadata_def = {
    .name = "metadata",
    .description = "Describes the runtime and every callable function: params (name, type, "
                   "required, default, description), result shape, and whether it streams; "
                   "and the runtimes functions can be deployed with, each with the exact "
                   "version of its interpreter (null: the function brings its own bootstrap).",
    .result_json = "{\"runtime\":{\"name\":\"string\",\"version\":\"string\"},\"functions\":"
                   "[{\"name\":\"string\",\"description\":\"string\",\"params\":\"array\","
                   "\"result\":\"any\",\"streaming\":\"boolean\"}],\"runtimes\":"
                   "{\"<runtime>\":\"string or null\"}}",
    .handler = fn_metadata,
};

/* ---- echo ---- */

typedef struct {
    uv_timer_t timer;
    realm_call_t *call;
    json_t *message;
    json_int_t repeat, sent, delay_ms;
} echo_t;

static void echo_free(uv_handle_t *h)
{
    echo_t *e = h->data;
    json_decref(e->message);
    free(e);
}

static void echo_step(echo_t *e)
{
    /* Streams `repeat` parts, then completes; each step after delay_ms. */
    if (e->sent < e->repeat) {
        realm_call_stream(e->call,
                          json_pack("{s:I, s:O}", "index", e->sent, "message", e->message));
        e->sent++;
        return;
    }
    realm_call_t *call = e->call;
    e->call = NULL;
    uv_timer_stop(&e->timer);
    uv_close((uv_handle_t *)&e->timer, echo_free);
    realm_call_complete(call, json_pack("{s:O, s:I}", "message", e->message, "parts", e->repeat));
}

static void on_echo_timer(uv_timer_t *t)
{
    echo_step(t->data);
}

static void on_echo_cancel(realm_call_t *call, void *data)
{
    (void)call;
    echo_t *e = data;
    e->call = NULL;
    uv_timer_stop(&e->timer);
    uv_close((uv_handle_t *)&e->timer, echo_free);
}

static void fn_echo(realm_call_t *call, json_t *params, void *data)
{
    realm_builtins_ctx_t *ctx = data;
    json_t *message = json_object_get(params, "message");
    json_int_t repeat = json_integer_value(json_object_get(params, "repeat"));
    json_int_t delay = json_integer_value(json_object_get(params, "delay_ms"));
    if (delay == 0) {
        for (json_int_t i = 0; i < repeat; i++)
            realm_call_stream(call, json_pack("{s:I, s:O}", "index", i, "message", message));
        realm_call_complete(call, json_pack("{s:O, s:I}", "message", message, "parts", repeat));
        return;
    }
    echo_t *e = realm_calloc(1, sizeof(*e));
    e->call = call;
    e->message = json_incref(message);
    e->repeat = repeat;
    e->delay_ms = delay;
    uv_timer_init(ctx->loop, &e->timer);
    e->timer.data = e;
    uv_timer_start(&e->timer, on_echo_timer, (uint64_t)delay, (uint64_t)delay);
    realm_call_on_cancel(call, on_echo_cancel, e);
}

static const realm_param_def_t echo_params[] = {
    {.name = "message",
     .type = REALM_PARAM_ANY,
     .default_json = "null",
     .description = "Any JSON value; sent back as is."},
    {.name = "repeat",
     .type = REALM_PARAM_INTEGER,
     .default_json = "0",
     .description = "How many `streaming` replies to send before the final one.",
     .has_min = 1,
     .min = 0,
     .has_max = 1,
     .max = 10000},
    {.name = "delay_ms",
     .type = REALM_PARAM_INTEGER,
     .default_json = "0",
     .description = "Wait this long before each streaming reply and before the final one.",
     .has_min = 1,
     .min = 0,
     .has_max = 1,
     .max = 600000},
};

static const realm_fn_def_t echo_def = {
    .name = "echo",
    .description = "Diagnostic: returns `message`, optionally streaming it `repeat` times first, "
                   "each after `delay_ms`. Cancellable.",
    .params = echo_params,
    .params_cnt = sizeof(echo_params) / sizeof(echo_params[0]),
    .result_json = "{\"message\":\"any\",\"parts\":\"integer\"}",
    .is_streaming = 1,
    .handler = fn_echo,
};

void realm_builtins_register(realm_dispatch_t *d, realm_builtins_ctx_t *ctx)
{
    ctx->dispatch = d;
    realm_dispatch_register(d, &health_def, ctx);
    realm_dispatch_register(d, &metadata_def, ctx);
    realm_dispatch_register(d, &echo_def, ctx);
}
