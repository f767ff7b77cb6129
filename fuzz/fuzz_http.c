/*
 * fuzz_http.c - libFuzzer driver for the HTTP request path: the parser fed
 * the input in pieces whose sizes come from the input itself, with the
 * router-style body limit decision at every header block.
 *
 *   make fuzz-build && build/fuzz/fuzz_http -max_total_time=600 fuzz/corpus/fuzz_http
 */
#include "http/parser.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    /* The first byte picks the piece size (1..256) the stream is cut into. */
    size_t step = (size_t)data[0] + 1;
    data++, size--;
    realm_http_parser_t p;
    realm_http_parser_init(&p, 4096);
    realm_buf_t pending;
    realm_buf_init(&pending);
    size_t fed = 0;
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
                if (st < 400 || st > 599) __builtin_trap();
                done = 1;
                break;
            }
            if (rc == REALM_HTTP_HEAD_DONE) {
                realm_http_req_t *r = &p.req;
                /* Touch everything a handler would read. */
                volatile size_t sink = strlen(r->target) + strlen(r->path) + strlen(r->query);
                for (size_t i = 0; i < r->headers_cnt; i++)
                    sink += strlen(r->headers[i].name) + strlen(r->headers[i].value);
                (void)realm_http_req_header(r, "Content-Type");
                (void)sink;
                realm_http_parser_set_body_limit(&p, 1024, r->content_length > 512);
            } else if (rc == REALM_HTTP_MSG_DONE) {
                /* A handler reads the header block and the trailers at the end. */
                realm_http_req_t *r = &p.req;
                volatile size_t sink = strlen(r->target);
                for (size_t i = 0; i < r->headers_cnt; i++)
                    sink += strlen(r->headers[i].name) + strlen(r->headers[i].value);
                for (size_t i = 0; i < r->trailers_cnt; i++)
                    sink += strlen(r->trailers[i].name) + strlen(r->trailers[i].value);
                (void)realm_http_req_trailer(r, "X-Error");
                (void)sink;
            }
        }
    }
    realm_buf_dispose(&pending);
    realm_http_parser_dispose(&p);
    return 0;
}
