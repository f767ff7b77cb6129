/*
 * test_http_parser.c - the I/O-free HTTP request parser, byte by byte.
 *
 * Every input is fed whole, split at every offset into two pieces, and one
 * byte at a time; the events it produces must be the same every way.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "base/buf.h"
#include "http/parser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Feeds data in pieces of at most `step` bytes (0: split once at `split`)
 * and records a summary of every event. */
static char *run(const char *data, size_t len, size_t step, size_t split, uint64_t body_limit)
{
    realm_http_parser_t p;
    realm_http_parser_init(&p, 1024);
    realm_buf_t out;
    realm_buf_init(&out);
    /* Data arrives in pieces; the parser sees the unconsumed rest plus each new piece. */
    realm_buf_t pending;
    realm_buf_init(&pending);
    size_t fed = 0;
    int failed = 0, is_first = 1;
    while (!failed) {
        size_t piece = step ? step : (is_first ? split : len - fed);
        is_first = 0;
        if (fed + piece > len) piece = len - fed;
        realm_buf_append(&pending, data + fed, piece);
        fed += piece;
        for (;;) {
            size_t used = 0;
            int in_body = realm_http_parser_in_body(&p);
            if (pending.len == 0 && !in_body) break;
            int rc =
                realm_http_parser_feed(&p, pending.data ? pending.data : "", pending.len, &used);
            realm_buf_consume(&pending, used);
            if (rc == REALM_HTTP_NEED_MORE) break;
            if (rc == REALM_HTTP_FAILED) {
                realm_buf_appendf(&out, "FAIL %d|", realm_http_parser_status(&p));
                failed = 1;
                break;
            }
            realm_http_req_t *r = &p.req;
            if (rc == REALM_HTTP_HEAD_DONE) {
                realm_buf_appendf(
                    &out, "HEAD %s %s path=%s query=%s v=%d.%d ka=%d up=%d cl=%lld ch=%d exp=%d",
                    r->method_name, r->target, r->path, r->query, r->http_major, r->http_minor,
                    r->is_keep_alive, r->is_upgrade, (long long)r->content_length, r->is_chunked,
                    r->has_expect_continue);
                for (size_t i = 0; i < r->headers_cnt; i++)
                    realm_buf_appendf(&out, " [%s=%s]", r->headers[i].name, r->headers[i].value);
                realm_buf_appends(&out, "|");
                realm_http_parser_set_body_limit(&p, body_limit, 0);
            } else {
                /* The header block must still be readable (ASan sees a dangling one). */
                size_t sum = 0;
                for (size_t i = 0; i < r->headers_cnt; i++)
                    sum += strlen(r->headers[i].name) + strlen(r->headers[i].value);
                (void)sum;
                realm_buf_appendf(&out, "MSG body=%.*s", (int)r->body.len,
                                  r->body.data ? r->body.data : "");
                for (size_t i = 0; i < r->trailers_cnt; i++)
                    realm_buf_appendf(&out, " {%s=%s}", r->trailers[i].name, r->trailers[i].value);
                realm_buf_appends(&out, "|");
            }
        }
        if (fed >= len) break;
    }
    realm_buf_dispose(&pending);
    realm_http_parser_dispose(&p);
    return realm_buf_steal(&out, NULL);
}

/* The same events whole, at every split, and byte by byte. */
static void check_all_ways(const char *input, const char *expected, uint64_t body_limit)
{
    size_t len = strlen(input);
    char *whole = run(input, len, 0, len, body_limit);
    assert_string_equal(whole, expected);
    free(whole);
    for (size_t split = 0; split <= len; split++) {
        char *got = run(input, len, 0, split, body_limit);
        if (strcmp(got, expected) != 0) fprintf(stderr, "split at %zu\n", split);
        assert_string_equal(got, expected);
        free(got);
    }
    char *bytes = run(input, len, 1, 0, body_limit);
    assert_string_equal(bytes, expected);
    free(bytes);
}

static void test_simple_get(void **state)
{
    (void)state;
    check_all_ways("GET /metrics?x=1&y=2 HTTP/1.1\r\nHost: a\r\nAccept:  */*  \r\n\r\n",
                   "HEAD GET /metrics?x=1&y=2 path=/metrics query=x=1&y=2 v=1.1 ka=1 up=0 cl=-1 "
                   "ch=0 exp=0 [Host=a] [Accept=*/*]|MSG body=|",
                   1000);
}

static void test_empty_header_value(void **state)
{
    (void)state;
    check_all_ways("GET / HTTP/1.1\r\nX-Empty:\r\nHost: h\r\n\r\n",
                   "HEAD GET / path=/ query= v=1.1 ka=1 up=0 cl=-1 ch=0 exp=0 [X-Empty=] "
                   "[Host=h]|MSG body=|",
                   1000);
}

static void test_http10_and_pipelining(void **state)
{
    (void)state;
    check_all_ways(
        "GET /a HTTP/1.0\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        "HEAD GET /a path=/a query= v=1.0 ka=0 up=0 cl=-1 ch=0 exp=0|MSG body=|FAIL 400|", 1000);
    /* HTTP/1.0 without keep-alive ends the connection: bytes after it are an
     * error (the server closes after answering). With keep-alive they are the
     * next request. */
    check_all_ways("GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
                   "HEAD GET /a path=/a query= v=1.1 ka=1 up=0 cl=-1 ch=0 exp=0|MSG body=|"
                   "HEAD POST /b path=/b query= v=1.1 ka=1 up=0 cl=3 ch=0 exp=0 "
                   "[Content-Length=3]|MSG body=abc|",
                   1000);
}

static void test_chunked_body(void **state)
{
    (void)state;
    check_all_ways("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
                   "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n",
                   "HEAD POST /x path=/x query= v=1.1 ka=1 up=0 cl=-1 ch=1 exp=1 "
                   "[Transfer-Encoding=chunked] [Expect=100-continue]|MSG body=abcde|",
                   1000);
}

/* Trailer fields after a chunked body: kept apart from the header block
 * (which must not move), bounded in number and size. */
static void test_chunked_trailers(void **state)
{
    (void)state;
    check_all_ways("POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTrailer: X-A, X-B\r\n\r\n"
                   "2\r\n{}\r\n0\r\nX-A:  one \r\nX-B: two\r\n\r\n"
                   "GET /next HTTP/1.1\r\n\r\n",
                   "HEAD POST /r path=/r query= v=1.1 ka=1 up=0 cl=-1 ch=1 exp=0 "
                   "[Transfer-Encoding=chunked] [Trailer=X-A, X-B]|MSG body={} {X-A=one} "
                   "{X-B=two}|HEAD GET /next path=/next query= v=1.1 ka=1 up=0 cl=-1 ch=0 exp=0|"
                   "MSG body=|",
                   1000);
    /* A trailer block larger than the header limit (1024 here) is refused. */
    char big[2200];
    int n = snprintf(big, sizeof(big),
                     "POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Big: ");
    memset(big + n, 'b', 1100);
    memcpy(big + n + 1100, "\r\n\r\n", 5);
    char *got = run(big, strlen(big), 0, strlen(big), 1000);
    assert_non_null(strstr(got, "FAIL 431|"));
    free(got);
    /* More trailer fields than REALM_HTTP_MAX_TRAILERS. */
    realm_buf_t many;
    realm_buf_init(&many);
    realm_buf_appends(&many, "POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    for (int i = 0; i < REALM_HTTP_MAX_TRAILERS + 1; i++)
        realm_buf_appendf(&many, "T%d: v\r\n", i);
    realm_buf_appends(&many, "\r\n");
    got = run(many.data, many.len, 0, many.len, 1000);
    assert_non_null(strstr(got, "FAIL 431|"));
    free(got);
    realm_buf_dispose(&many);
}

static void test_upgrade(void **state)
{
    (void)state;
    const char *in = "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    char *got = run(in, strlen(in), 0, strlen(in), 100);
    assert_string_equal(got, "HEAD GET / path=/ query= v=1.1 ka=1 up=1 cl=-1 ch=0 exp=0 "
                             "[Upgrade=websocket] [Connection=Upgrade]|MSG body=|");
    free(got);
}

static void test_body_limit(void **state)
{
    (void)state;
    check_all_ways("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
                   "HEAD POST /x path=/x query= v=1.1 ka=1 up=0 cl=-1 ch=1 exp=0 "
                   "[Transfer-Encoding=chunked]|FAIL 413|",
                   4);
}

static void test_header_limits(void **state)
{
    (void)state;
    char big[2048];
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX-Big: %01100d\r\n\r\n", 0);
    char *got = run(big, strlen(big), 0, strlen(big), 100);
    assert_string_equal(got, "FAIL 431|");
    free(got);

    realm_buf_t many;
    realm_buf_init(&many);
    realm_buf_appends(&many, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < REALM_HTTP_MAX_HEADERS + 1; i++)
        realm_buf_appendf(&many, "h%d:\r\n", i);
    realm_buf_appends(&many, "\r\n");
    got = run(many.data, many.len, 0, many.len, 100);
    assert_string_equal(got, "FAIL 431|");
    free(got);
    realm_buf_dispose(&many);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GARBAGE\r\n\r\n",
        "GET / HTTP/9.9\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *got = run(bad[i], strlen(bad[i]), 0, strlen(bad[i]), 100);
        const char *fail = strstr(got, "FAIL 400|");
        if (!fail) fprintf(stderr, "input %zu: %s\n", i, got);
        assert_non_null(fail);
        free(got);
    }
}

static void test_has_token_and_params(void **state)
{
    (void)state;
    realm_http_req_t req;
    memset(&req, 0, sizeof(req));
    req.headers[0].name = "Connection";
    req.headers[0].value = "keep-alive, Upgrade";
    req.headers_cnt = 1;
    assert_string_equal(realm_http_req_header(&req, "connection"), "keep-alive, Upgrade");
    assert_null(realm_http_req_header(&req, "Upgrade"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_empty_header_value),
        cmocka_unit_test(test_http10_and_pipelining),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_header_limits),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_has_token_and_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
