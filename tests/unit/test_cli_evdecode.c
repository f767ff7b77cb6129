/*
 * test_cli_evdecode.c - the CLI's event-stream decoder (cli/evdecode.h):
 * messages made by the server's encoder (proto/evstream.h) come back whole
 * whether the bytes arrive at once or one by one; a message cut short waits;
 * bad lengths and CRCs are errors; headers of other types are skipped; a
 * callback can stop the decoding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli/evdecode.h"
#include "proto/evstream.h"

#include <stdio.h>
#include <string.h>
#include <zlib.h>

typedef struct {
    char seen[16][64]; /* "event-type/message-type" */
    realm_buf_t payload[16];
    size_t n;
    size_t stop_at; /* return 1 on this message (1-based); 0: never */
} got_t;

static int on_msg(const char *et, const char *mt, const void *p, size_t len, void *data)
{
    got_t *g = data;
    assert_true(g->n < 16);
    snprintf(g->seen[g->n], sizeof(g->seen[0]), "%s/%s", et, mt);
    realm_buf_init(&g->payload[g->n]);
    realm_buf_append(&g->payload[g->n], p, len);
    g->n++;
    return g->stop_at && g->n == g->stop_at;
}

static void got_dispose(got_t *g)
{
    for (size_t i = 0; i < g->n; i++)
        realm_buf_dispose(&g->payload[i]);
}

static void sample(realm_buf_t *b)
{
    realm_buf_init(b);
    realm_evstream_chunk(b, "hello ", 6);
    realm_evstream_chunk(b, "", 0);
    realm_evstream_chunk(b, "world\n", 6);
    realm_evstream_complete(b, "Unhandled", "bad", NULL);
}

static void check_sample(const got_t *g)
{
    assert_int_equal(g->n, 4);
    assert_string_equal(g->seen[0], "PayloadChunk/event");
    assert_int_equal(g->payload[0].len, 6);
    assert_memory_equal(g->payload[0].data, "hello ", 6);
    assert_int_equal(g->payload[1].len, 0);
    assert_memory_equal(g->payload[2].data, "world\n", 6);
    assert_string_equal(g->seen[3], "InvokeComplete/event");
    assert_non_null(strstr(g->payload[3].data, "\"ErrorCode\":\"Unhandled\""));
}

static void test_whole_and_byte_by_byte(void **state)
{
    (void)state;
    realm_buf_t b;
    sample(&b);
    char err[128];
    got_t g = {0};
    realm_cli_evdecode_t d;
    realm_cli_evdecode_init(&d);
    assert_int_equal(realm_cli_evdecode_feed(&d, b.data, b.len, on_msg, &g, err, sizeof(err)), 0);
    assert_false(realm_cli_evdecode_has_partial(&d));
    check_sample(&g);
    got_dispose(&g);
    realm_cli_evdecode_dispose(&d);

    got_t g2 = {0};
    realm_cli_evdecode_init(&d);
    for (size_t i = 0; i < b.len; i++) {
        assert_int_equal(realm_cli_evdecode_feed(&d, b.data + i, 1, on_msg, &g2, err, sizeof(err)),
                         0);
        if (i + 1 < b.len) assert_true(realm_cli_evdecode_has_partial(&d) || g2.n > 0);
    }
    assert_false(realm_cli_evdecode_has_partial(&d));
    check_sample(&g2);
    got_dispose(&g2);
    realm_cli_evdecode_dispose(&d);
    realm_buf_dispose(&b);
}

static void test_cut_short_waits(void **state)
{
    (void)state;
    realm_buf_t b;
    sample(&b);
    char err[128];
    got_t g = {0};
    realm_cli_evdecode_t d;
    realm_cli_evdecode_init(&d);
    assert_int_equal(realm_cli_evdecode_feed(&d, b.data, b.len - 3, on_msg, &g, err, sizeof(err)),
                     0);
    assert_int_equal(g.n, 3);
    assert_true(realm_cli_evdecode_has_partial(&d));
    got_dispose(&g);
    realm_cli_evdecode_dispose(&d);
    realm_buf_dispose(&b);
}

static void test_bad_framing(void **state)
{
    (void)state;
    char err[128];
    realm_cli_evdecode_t d;
    got_t g = {0};
    /* a message CRC that does not match */
    realm_buf_t b;
    realm_buf_init(&b);
    realm_evstream_chunk(&b, "abc", 3);
    b.data[b.len - 1] ^= 1;
    realm_cli_evdecode_init(&d);
    assert_int_equal(realm_cli_evdecode_feed(&d, b.data, b.len, on_msg, &g, err, sizeof(err)), -1);
    assert_string_equal(err, "bad event-stream message (message CRC)");
    realm_cli_evdecode_dispose(&d);
    /* a prelude CRC that does not match */
    b.data[b.len - 1] ^= 1;
    b.data[9] ^= 1;
    realm_cli_evdecode_init(&d);
    assert_int_equal(realm_cli_evdecode_feed(&d, b.data, b.len, on_msg, &g, err, sizeof(err)), -1);
    assert_string_equal(err, "bad event-stream message (prelude CRC)");
    realm_cli_evdecode_dispose(&d);
    /* a total length below the framing's own */
    static const unsigned char tiny[12] = {0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0};
    realm_cli_evdecode_init(&d);
    assert_int_equal(realm_cli_evdecode_feed(&d, tiny, sizeof(tiny), on_msg, &g, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "length 4"));
    realm_cli_evdecode_dispose(&d);
    assert_int_equal(g.n, 0);
    realm_buf_dispose(&b);
}

static void test_other_header_types_and_stop(void **state)
{
    (void)state;
    /* Headers built by hand: an int32 header and a bool before the strings. */
    static const unsigned char hdrs[] = {
        2,  'n', 'n', 4,   0,   0,   0,   7,                                     /* int32 */
        1,  'b', 0,                                                              /* true */
        11, ':', 'e', 'v', 'e', 'n', 't', '-', 't', 'y', 'p', 'e', 7, 0, 1, 'X', /* string */
    };
    realm_buf_t one;
    realm_buf_init(&one);
    const char *names[] = {":message-type"}, *values[] = {"exception"};
    realm_evstream_message(&one, names, values, 1, "boom", 4);
    /* The encoder writes only strings: the typed message is made here. */
    unsigned char m[128];
    size_t hl = sizeof(hdrs), total = 16 + hl + 2;
    m[0] = 0, m[1] = 0, m[2] = 0, m[3] = (unsigned char)total;
    m[4] = 0, m[5] = 0, m[6] = 0, m[7] = (unsigned char)hl;
    uint32_t c = (uint32_t)crc32(0L, m, 8);
    m[8] = (unsigned char)(c >> 24), m[9] = (unsigned char)(c >> 16),
    m[10] = (unsigned char)(c >> 8), m[11] = (unsigned char)c;
    memcpy(m + 12, hdrs, hl);
    memcpy(m + 12 + hl, "ok", 2);
    c = (uint32_t)crc32(0L, m, (uInt)(total - 4));
    m[total - 4] = (unsigned char)(c >> 24), m[total - 3] = (unsigned char)(c >> 16),
              m[total - 2] = (unsigned char)(c >> 8), m[total - 1] = (unsigned char)c;
    realm_buf_t b;
    realm_buf_init(&b);
    realm_buf_append(&b, m, total);
    realm_buf_append(&b, one.data, one.len);
    realm_buf_append(&b, m, total);
    char err[128];
    got_t g = {.stop_at = 2};
    realm_cli_evdecode_t d;
    realm_cli_evdecode_init(&d);
    assert_int_equal(realm_cli_evdecode_feed(&d, b.data, b.len, on_msg, &g, err, sizeof(err)), 1);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.seen[0], "X/");
    assert_memory_equal(g.payload[0].data, "ok", 2);
    assert_string_equal(g.seen[1], "/exception");
    assert_true(realm_cli_evdecode_has_partial(&d)); /* the third waits */
    got_dispose(&g);
    realm_cli_evdecode_dispose(&d);
    realm_buf_dispose(&b);
    realm_buf_dispose(&one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_and_byte_by_byte),
        cmocka_unit_test(test_cut_short_waits),
        cmocka_unit_test(test_bad_framing),
        cmocka_unit_test(test_other_header_types_and_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
