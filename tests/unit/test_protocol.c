/*
 * test_protocol.c - the call message codec and the dispatcher: parsing,
 * every refusal with its message, param validation and defaults, the call
 * lifecycle and metadata generated from the same table.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/err.h"
#include "dispatch/builtins.h"
#include "dispatch/dispatch.h"
#include "proto/message.h"

#include <uv.h>

#include <stdlib.h>
#include <string.h>

static void parse_ok(void **state)
{
    (void)state;
    const char *in =
        "{\"id\":\"r1\",\"function\":\"health\",\"params\":{\"a\":1},\"tenant_id\":\"t\"}";
    realm_msg_call_t c;
    char err[256];
    assert_int_equal(realm_msg_parse_call(in, strlen(in), &c, err, sizeof(err)), 0);
    assert_string_equal(c.id, "r1");
    assert_string_equal(c.function, "health");
    assert_string_equal(c.tenant_id, "t");
    assert_int_equal(json_integer_value(json_object_get(c.params, "a")), 1);
    realm_msg_call_dispose(&c);

    const char *no_params = "{\"id\":\"r2\",\"function\":\"f\"}";
    assert_int_equal(realm_msg_parse_call(no_params, strlen(no_params), &c, err, sizeof(err)), 0);
    assert_true(json_is_object(c.params));
    assert_null(c.tenant_id);
    realm_msg_call_dispose(&c);
}

static void parse_refusals(void **state)
{
    (void)state;
    struct {
        const char *in, *id, *msg;
    } cases[] = {
        {"nope", NULL, "message is not valid JSON"},
        {"[1]", NULL, "message must be a JSON object, not an array"},
        {"{\"function\":\"f\"}", NULL, "missing 'id'"},
        {"{\"id\":7,\"function\":\"f\"}", NULL, "'id' must be a string, not a number"},
        {"{\"id\":\"\",\"function\":\"f\"}", NULL, "'id' must be 1 to 256 characters"},
        {"{\"id\":\"a\"}", "a", "missing 'function'"},
        {"{\"id\":\"a\",\"function\":3}", "a",
         "'function' must be a non-empty string, not a number"},
        {"{\"id\":\"a\",\"function\":\"\"}", "a", "'function' must be a non-empty string"},
        {"{\"id\":\"a\",\"function\":\"f\",\"params\":[]}", "a",
         "'params' must be an object, not an array"},
        {"{\"id\":\"a\",\"function\":\"f\",\"tenant_id\":1}", "a",
         "'tenant_id' must be a string or null"},
        {"{\"id\":\"a\",\"function\":\"f\",\"extra\":1}", "a", "unknown field 'extra'"},
        {"{\"id\":\"a\",\"id\":\"b\",\"function\":\"f\"}", NULL, "message is not valid JSON"},
        /* Control characters in a function's name: refused before any lookup. */
        {"{\"id\":\"a\",\"function\":\"vic\\u0001tim\"}", "a",
         "'function' must not contain control characters"},
        {"{\"id\":\"a\",\"function\":\"victim\\n\"}", "a",
         "'function' must not contain control characters"},
        {"{\"id\":\"a\",\"function\":\"\\u007fvictim\"}", "a",
         "'function' must not contain control characters"},
        {"{\"id\":\"a\",\"function\":\"victim\\u001f\"}", "a",
         "'function' must not contain control characters"},
        /* NUL: not JSON the server reads at all (jansson without JSON_ALLOW_NUL). */
        {"{\"id\":\"a\",\"function\":\"victim\\u0000junk\"}", NULL, "message is not valid JSON"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        realm_msg_call_t c;
        char err[256];
        int rc = realm_msg_parse_call(cases[i].in, strlen(cases[i].in), &c, err, sizeof(err));
        assert_int_equal(rc, REALM_ERR_INVALID_REQUEST);
        if (strncmp(err, cases[i].msg, strlen(cases[i].msg)) != 0)
            fail_msg("case %zu: '%s'", i, err);
        if (cases[i].id)
            assert_string_equal(c.id, cases[i].id);
        else
            assert_null(c.id);
        realm_msg_call_dispose(&c);
    }
}

static void serializers(void **state)
{
    (void)state;
    size_t len;
    json_t *data = json_pack("{s:i}", "x", 1);
    char *t = realm_msg_reply("a", "complete", data, &len);
    assert_string_equal(t, "{\"id\":\"a\",\"status\":\"complete\",\"data\":{\"x\":1}}");
    assert_int_equal(len, strlen(t));
    free(t);
    json_t *details = json_pack("{s:s}", "param", "p");
    t = realm_msg_error(NULL, "INVALID_PARAMS", "bad \"p\"", details, &len);
    assert_string_equal(t,
                        "{\"id\":null,\"status\":\"error\",\"error\":{\"code\":\"INVALID_PARAMS\","
                        "\"message\":\"bad \\\"p\\\"\",\"param\":\"p\"}}");
    free(t);
    t = realm_msg_cancelled("z", &len);
    assert_string_equal(t, "{\"id\":\"z\",\"status\":\"cancelled\"}");
    free(t);
    t = realm_msg_welcome("1.2.3", NULL, &len);
    assert_string_equal(t, "{\"status\":\"connected\",\"version\":\"1.2.3\",\"tenant_id\":null}");
    free(t);
    json_decref(data);
    json_decref(details);
}

/* ---- dispatcher ---- */

typedef struct {
    realm_buf_t log;
} rec_t;

static void s_stream(realm_call_t *call, json_t *data, void *sd)
{
    char *d = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    realm_buf_appendf(&((rec_t *)sd)->log, "S %s %s|", realm_call_id(call), d);
    free(d);
}
static void s_complete(realm_call_t *call, json_t *data, void *sd)
{
    char *d = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    realm_buf_appendf(&((rec_t *)sd)->log, "C %s %s|", realm_call_id(call), d);
    free(d);
}
static void s_error(realm_call_t *call, int err, const char *msg, json_t *details, void *sd)
{
    const char *param = details ? json_string_value(json_object_get(details, "param")) : NULL;
    realm_buf_appendf(&((rec_t *)sd)->log, "E %s %s %s [%s]|", realm_call_id(call),
                      realm_err_code(err), msg, param ? param : "");
}
static void s_cancelled(realm_call_t *call, void *sd)
{
    realm_buf_appendf(&((rec_t *)sd)->log, "X %s|", realm_call_id(call));
}
static const realm_call_sink_t sink = {s_stream, s_complete, s_error, s_cancelled};

static int cancel_hook_ran;
static realm_call_t *pending;
static void on_cancel(realm_call_t *call, void *data)
{
    (void)call;
    (void)data;
    cancel_hook_ran++;
    pending = NULL;
}

static void fn_typed(realm_call_t *call, json_t *params, void *data)
{
    (void)data;
    if (json_is_true(json_object_get(params, "later"))) {
        pending = call;
        realm_call_on_cancel(call, on_cancel, NULL);
        return;
    }
    realm_call_stream(call, json_integer(1));
    realm_call_complete(call, json_incref(params));
}

static const realm_param_def_t typed_params[] = {
    {.name = "n",
     .type = REALM_PARAM_INTEGER,
     .is_required = 1,
     .has_min = 1,
     .min = 1,
     .has_max = 1,
     .max = 10,
     .description = "n"},
    {.name = "s",
     .type = REALM_PARAM_STRING,
     .default_json = "\"dflt\"",
     .has_max = 1,
     .max = 3,
     .description = "s"},
    {.name = "later",
     .type = REALM_PARAM_BOOLEAN,
     .default_json = "false",
     .description = "go async"},
};
static const realm_fn_def_t typed_def = {
    .name = "typed",
    .description = "test",
    .params = typed_params,
    .params_cnt = 3,
    .result_json = "{}",
    .is_streaming = 1,
    .handler = fn_typed,
};

static uv_loop_t loop;

/* Starts a call: nothing reaches the sink before realm_dispatch_call returns
 * (libuv's rule); what it says by the next loop turn is returned. */
static char *call(realm_dispatch_t *d, const char *fn, const char *params_json, realm_call_t **out)
{
    static rec_t rec;
    realm_buf_init(&rec.log);
    json_t *params = json_loads(params_json, 0, NULL);
    realm_call_t *c = realm_dispatch_call(d, "id1", fn, params, NULL, NULL, &sink, &rec);
    assert_non_null(c);
    assert_int_equal(rec.log.len, 0);
    if (out) *out = c;
    json_decref(params);
    uv_run(&loop, UV_RUN_NOWAIT);
    return realm_buf_steal(&rec.log, NULL);
}

/* Closes the dispatcher; the loop must then be empty. */
static void dispatch_done(realm_dispatch_t *d)
{
    realm_dispatch_close(d, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void dispatch_validation(void **state)
{
    (void)state;
    realm_metrics_t *m = realm_metrics_new();
    uv_loop_init(&loop);
    realm_dispatch_t *d = realm_dispatch_new(&loop, m);
    assert_int_equal(realm_dispatch_register(d, &typed_def, NULL), 0);
    assert_int_equal(realm_dispatch_register(d, &typed_def, NULL), REALM_ERR_INVALID_REQUEST);
    struct {
        const char *fn, *params, *expect;
    } cases[] = {
        {"typed", "{\"n\":3}", "S id1 1|C id1 {\"n\":3,\"s\":\"dflt\",\"later\":false}|"},
        {"typed", "{\"n\":3.0,\"s\":null}",
         "S id1 1|C id1 {\"n\":3,\"s\":\"dflt\",\"later\":false}|"},
        {"typed", "{}", "E id1 INVALID_PARAMS missing required param 'n' [n]|"},
        {"typed", "{\"n\":\"3\"}", "E id1 INVALID_PARAMS param 'n' must be an integer [n]|"},
        {"typed", "{\"n\":3.5}", "E id1 INVALID_PARAMS param 'n' must be an integer [n]|"},
        {"typed", "{\"n\":11}", "E id1 INVALID_PARAMS param 'n' must be between 1 and 10 [n]|"},
        {"typed", "{\"n\":1,\"s\":\"long\"}",
         "E id1 INVALID_PARAMS param 's' must be at most 3 characters [s]|"},
        {"typed", "{\"n\":1,\"zz\":1}", "E id1 INVALID_PARAMS unknown param 'zz' for typed [zz]|"},
        {"nope", "{}",
         "E id1 FUNCTION_NOT_FOUND no function named 'nope' (call metadata for the list) []|"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        realm_call_t *c;
        char *got = call(d, cases[i].fn, cases[i].params, &c); /* ended on the next turn */
        assert_string_equal(got, cases[i].expect);
        free(got);
    }
    assert_int_equal(realm_dispatch_in_flight(d), 0);
    dispatch_done(d);
    realm_metrics_free(m);
}

static void dispatch_cancel(void **state)
{
    (void)state;
    realm_metrics_t *m = realm_metrics_new();
    uv_loop_init(&loop);
    realm_dispatch_t *d = realm_dispatch_new(&loop, m);
    realm_dispatch_register(d, &typed_def, NULL);
    realm_call_t *c;
    char *got = call(d, "typed", "{\"n\":1,\"later\":true}", &c);
    assert_string_equal(got, "");
    free(got);
    assert_non_null(c);
    assert_ptr_equal(c, pending);
    assert_int_equal(realm_dispatch_in_flight(d), 1);
    cancel_hook_ran = 0;
    realm_call_cancel(c, 1); /* silent: no sink event */
    assert_int_equal(cancel_hook_ran, 1);
    assert_int_equal(realm_dispatch_in_flight(d), 0);

    realm_buf_t out;
    realm_buf_init(&out);
    realm_metrics_render(m, &out);
    assert_non_null(
        strstr(out.data, "realm_calls_total{function=\"typed\",outcome=\"cancelled\"} 1"));
    assert_non_null(strstr(out.data, "realm_calls_in_flight 0"));
    realm_buf_dispose(&out);
    dispatch_done(d);
    realm_metrics_free(m);
}

/* A call that ended while starting is still its owner's until reported. */
static void dispatch_deferred_end(void **state)
{
    (void)state;
    realm_metrics_t *m = realm_metrics_new();
    uv_loop_init(&loop);
    realm_dispatch_t *d = realm_dispatch_new(&loop, m);
    realm_dispatch_register(d, &typed_def, NULL);
    rec_t rec;
    realm_buf_init(&rec.log);
    json_t *params = json_pack("{s:i}", "n", 2);
    /* Cancelled silently before the next turn: nothing is reported. */
    realm_call_t *c = realm_dispatch_call(d, "a", "typed", params, NULL, NULL, &sink, &rec);
    assert_int_equal(realm_dispatch_in_flight(d), 1);
    realm_call_cancel(c, 1);
    assert_int_equal(realm_dispatch_in_flight(d), 0);
    json_decref(params);
    params = json_pack("{s:i}", "n", 2);
    /* Cancelled aloud: what it said is delivered then, in order. */
    c = realm_dispatch_call(d, "b", "typed", params, NULL, NULL, &sink, &rec);
    assert_int_equal(rec.log.len, 0);
    realm_call_cancel(c, 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    /* Flushed by its owner: delivered then, not on the next turn. */
    json_decref(params);
    params = json_pack("{s:i}", "n", 3);
    size_t before = rec.log.len;
    c = realm_dispatch_call(d, "c", "typed", params, NULL, NULL, &sink, &rec);
    assert_int_equal(rec.log.len, before);
    realm_call_flush(c);
    assert_string_equal(rec.log.data, "S b 1|C b {\"n\":2,\"s\":\"dflt\",\"later\":false}|"
                                      "S c 1|C c {\"n\":3,\"s\":\"dflt\",\"later\":false}|");
    assert_int_equal(realm_dispatch_in_flight(d), 0);
    json_decref(params);
    realm_buf_dispose(&rec.log);
    realm_buf_t out;
    realm_buf_init(&out);
    realm_metrics_render(m, &out);
    assert_non_null(
        strstr(out.data, "realm_calls_total{function=\"typed\",outcome=\"complete\"} 3"));
    realm_buf_dispose(&out);
    dispatch_done(d);
    realm_metrics_free(m);
}

static void metadata_matches_table(void **state)
{
    (void)state;
    realm_metrics_t *m = realm_metrics_new();
    uv_loop_init(&loop);
    realm_dispatch_t *d = realm_dispatch_new(&loop, m);
    realm_dispatch_register(d, &typed_def, NULL);
    json_t *md = realm_builtins_metadata(d, NULL);
    json_t *fns = json_object_get(md, "functions");
    assert_int_equal(json_array_size(fns), 1);
    json_t *f = json_array_get(fns, 0);
    assert_string_equal(json_string_value(json_object_get(f, "name")), "typed");
    assert_true(json_is_true(json_object_get(f, "streaming")));
    json_t *p = json_array_get(json_object_get(f, "params"), 0);
    assert_string_equal(json_string_value(json_object_get(p, "type")), "integer");
    assert_true(json_is_true(json_object_get(p, "required")));
    assert_int_equal(json_integer_value(json_object_get(p, "maximum")), 10);
    json_t *s = json_array_get(json_object_get(f, "params"), 1);
    assert_string_equal(json_string_value(json_object_get(s, "default")), "dflt");
    assert_int_equal(json_integer_value(json_object_get(s, "max_length")), 3);
    json_decref(md);
    dispatch_done(d);
    realm_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_ok),
        cmocka_unit_test(parse_refusals),
        cmocka_unit_test(serializers),
        cmocka_unit_test(dispatch_validation),
        cmocka_unit_test(dispatch_cancel),
        cmocka_unit_test(dispatch_deferred_end),
        cmocka_unit_test(metadata_matches_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
