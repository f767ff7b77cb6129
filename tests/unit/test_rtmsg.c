/*
 * test_rtmsg.c - the runtime channel's messages (proto/rtmsg.h) byte for
 * byte: what each message from an environment becomes for the engine (the
 * same bytes runtime.c handed it before the codec was its own module), the
 * refusals, Realm's own messages; and the router's rule that a path segment
 * holding %00 names nothing (fuzz_invoke found /functions/g%00x/invocations
 * invoking g).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "http/parser.h"
#include "http/server.h"
#include "proto/rtmsg.h"

#include <stdlib.h>
#include <string.h>

static realm_rtmsg_kind_t parse(const char *text, realm_rtmsg_t *m)
{
    return realm_rtmsg_parse(text, strlen(text), 1, m);
}

static void assert_data(const realm_rtmsg_t *m, const char *want)
{
    assert_non_null(m->data);
    assert_int_equal(m->data_len, strlen(want));
    assert_memory_equal(m->data, want, m->data_len);
}

static void response_and_error(void **state)
{
    (void)state;
    realm_rtmsg_t m;
    assert_int_equal(parse("{\"type\":\"response\",\"request_id\":\"r1\",\"payload\":{\"a\":[1,"
                           "\"\\u0000\"]}}",
                           &m),
                     REALM_RTMSG_RESPONSE);
    assert_string_equal(m.request_id, "r1");
    assert_data(&m, "{\"a\":[1,\"\\u0000\"]}");
    realm_rtmsg_dispose(&m);
    assert_int_equal(parse("{\"type\":\"response\",\"request_id\":\"r1\"}", &m),
                     REALM_RTMSG_RESPONSE);
    assert_data(&m, "null");
    realm_rtmsg_dispose(&m);
    /* Without a stack_trace (this leaked a JSON array per message before). */
    assert_int_equal(
        parse("{\"type\":\"error\",\"request_id\":\"r2\",\"error_message\":\"x\"}", &m),
        REALM_RTMSG_ERROR);
    assert_null(m.error_type);
    assert_data(&m, "{\"errorMessage\":\"x\",\"errorType\":\"Unhandled\",\"stackTrace\":[]}");
    realm_rtmsg_dispose(&m);
    assert_int_equal(parse("{\"type\":\"error\",\"request_id\":\"r2\",\"error_type\":\"TypeError\","
                           "\"stack_trace\":[\"a\",\"b\"]}",
                           &m),
                     REALM_RTMSG_ERROR);
    assert_string_equal(m.error_type, "TypeError");
    assert_data(&m,
                "{\"errorMessage\":\"\",\"errorType\":\"TypeError\",\"stackTrace\":[\"a\",\"b\"]}");
    realm_rtmsg_dispose(&m);
}

static void stream_messages(void **state)
{
    (void)state;
    realm_rtmsg_t m;
    assert_int_equal(
        parse("{\"type\":\"stream_start\",\"request_id\":\"r\",\"content_type\":\"text/plain\"}",
              &m),
        REALM_RTMSG_STREAM_START);
    assert_string_equal(m.content_type, "text/plain");
    realm_rtmsg_dispose(&m);
    assert_int_equal(parse("{\"type\":\"chunk\",\"request_id\":\"r\",\"data\":\"a\\u0000b\"}", &m),
                     REALM_RTMSG_CHUNK);
    assert_null(m.bad);
    assert_int_equal(m.data_len, 3);
    assert_memory_equal(m.data, "a\0b", 3);
    realm_rtmsg_dispose(&m);
    assert_int_equal(parse("{\"type\":\"chunk\",\"request_id\":\"r\",\"data_b64\":\"AAFi\"}", &m),
                     REALM_RTMSG_CHUNK);
    assert_int_equal(m.data_len, 3);
    assert_memory_equal(m.data,
                        "\x00\x01"
                        "b",
                        3);
    realm_rtmsg_dispose(&m);
    assert_int_equal(parse("{\"type\":\"chunk\",\"request_id\":\"r\",\"data_b64\":\"!!\"}", &m),
                     REALM_RTMSG_CHUNK);
    assert_string_equal(m.bad, "data_b64 is not base64");
    realm_rtmsg_dispose(&m);
    assert_int_equal(parse("{\"type\":\"chunk\",\"request_id\":\"r\"}", &m), REALM_RTMSG_CHUNK);
    assert_string_equal(m.bad, "a chunk needs \"data\" or \"data_b64\"");
    realm_rtmsg_dispose(&m);
    assert_int_equal(parse("{\"type\":\"stream_end\",\"request_id\":\"r\"}", &m),
                     REALM_RTMSG_STREAM_END);
    assert_false(m.is_failed);
    assert_null(m.data);
    realm_rtmsg_dispose(&m);
    assert_int_equal(
        parse("{\"type\":\"stream_end\",\"request_id\":\"r\",\"error_message\":\"m\"}", &m),
        REALM_RTMSG_STREAM_END);
    assert_true(m.is_failed);
    assert_data(&m, "{\"errorMessage\":\"m\",\"errorType\":\"Unhandled\"}");
    realm_rtmsg_dispose(&m);
}

static void refusals(void **state)
{
    (void)state;
    realm_rtmsg_t m;
    assert_int_equal(parse("not json", &m), REALM_RTMSG_BAD);
    assert_string_equal(m.bad, "expected a JSON object with a \"type\"");
    realm_rtmsg_dispose(&m);
    assert_int_equal(parse("{\"type\":1}", &m), REALM_RTMSG_BAD);
    realm_rtmsg_dispose(&m);
    assert_int_equal(realm_rtmsg_parse("{\"type\":\"ping\"}", 15, 0, &m), REALM_RTMSG_BAD);
    realm_rtmsg_dispose(&m);
    assert_int_equal(parse("{\"type\":\"launch\"}", &m), REALM_RTMSG_UNKNOWN);
    assert_string_equal(m.bad, "unknown message type");
    realm_rtmsg_dispose(&m);
    assert_int_equal(parse("{\"type\":\"register\",\"function_name\":\"f\"}", &m),
                     REALM_RTMSG_REGISTER);
    realm_rtmsg_dispose(&m);
    realm_rtmsg_dispose(&m); /* twice is fine */
}

static void realm_messages(void **state)
{
    (void)state;
    size_t len;
    realm_rtmsg_invocation_t inv = {.request_id = "r1",
                                    .payload = "{\"k\":1}",
                                    .payload_len = 7,
                                    .deadline_ms = 1700000000000,
                                    .invoked_arn = "arn:aws:lambda:us-east-1:0:function:f",
                                    .trace_id = "Root=1-2-3",
                                    .client_context = "{\"custom\":{}}"};
    char *t = realm_rtmsg_invocation(&inv, &len);
    assert_string_equal(t, "{\"type\":\"invocation\",\"request_id\":\"r1\",\"payload\":{\"k\":1},"
                           "\"deadline_ms\":1700000000000,\"invoked_function_arn\":\"arn:aws:"
                           "lambda:us-east-1:0:function:f\",\"trace_id\":\"Root=1-2-3\","
                           "\"client_context\":{\"custom\":{}},\"cognito_identity\":null}");
    assert_int_equal(len, strlen(t));
    free(t);
    /* Not JSON, not UTF-8: a repaired string, never a NULL message. */
    inv.payload = "a\xff";
    inv.payload_len = 2;
    inv.trace_id = "\xc3";
    inv.client_context = NULL;
    t = realm_rtmsg_invocation(&inv, &len);
    assert_non_null(strstr(t, "\"payload\":\"a\xef\xbf\xbd\""));
    assert_non_null(strstr(t, "\"trace_id\":\"\xef\xbf\xbd\""));
    assert_non_null(strstr(t, "\"client_context\":null"));
    free(t);
    t = realm_rtmsg_error_response("BAD_MESSAGE", "why", &len);
    assert_string_equal(
        t, "{\"type\":\"error_response\",\"message\":\"why\",\"code\":\"BAD_MESSAGE\"}");
    free(t);
    t = realm_rtmsg_pong(&len);
    assert_string_equal(t, "{\"type\":\"pong\"}");
    free(t);
}

static void noop(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)req;
    (void)res;
    (void)data;
}

/* Routes one request line; the match's status, the param in out. */
static int route(realm_http_server_t *s, const char *line, char *out, size_t out_len)
{
    realm_http_parser_t p;
    realm_http_parser_init(&p, 4096);
    char text[256];
    snprintf(text, sizeof(text), "%s\r\nHost: x\r\n\r\n", line);
    size_t used;
    assert_int_equal(realm_http_parser_feed(&p, text, strlen(text), &used), REALM_HTTP_HEAD_DONE);
    const char *pattern = NULL;
    int st = realm_http_server_match(s, &p.req, &pattern, NULL);
    const char *v = realm_http_req_param(&p.req, "FunctionName");
    snprintf(out, out_len, "%s", v ? v : "");
    realm_http_parser_dispose(&p);
    return st;
}

static void route_segment_with_nul(void **state)
{
    (void)state;
    realm_http_limits_t lim = {.max_header_bytes = 4096, .max_body_bytes = 1024};
    realm_http_server_t *s = realm_http_server_new("t", &lim);
    realm_http_server_route(s, "POST", "/functions/{FunctionName}/invocations", 0, noop, NULL);
    char v[64];
    assert_int_equal(route(s, "POST /functions/my%2Dfn/invocations HTTP/1.1", v, sizeof(v)), 0);
    assert_string_equal(v, "my-fn");
    assert_int_equal(route(s, "GET /functions/f/invocations HTTP/1.1", v, sizeof(v)), 405);
    /* An escaped control character is refused before any route is tried. */
    assert_int_equal(route(s, "POST /functions/g%00junk/invocations HTTP/1.1", v, sizeof(v)), 400);
    assert_string_equal(v, "");
    assert_int_equal(route(s, "POST /functions/%00/invocations HTTP/1.1", v, sizeof(v)), 400);
    assert_int_equal(route(s, "POST /functions/g%2500/invocations HTTP/1.1", v, sizeof(v)), 0);
    assert_string_equal(v, "g%00");
    realm_http_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(response_and_error),
        cmocka_unit_test(stream_messages),
        cmocka_unit_test(refusals),
        cmocka_unit_test(realm_messages),
        cmocka_unit_test(route_segment_with_nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
