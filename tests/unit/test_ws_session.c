/*
 * test_ws_session.c - the wslay-backed session, fed from memory: split every
 * way, the same messages and the same close codes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fixture.h"

#include "base/buf.h"
#include "ws/handshake.h"
#include "ws/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    realm_buf_t out;  /* bytes the server sent */
    realm_buf_t msgs; /* "T:payload|" per message */
} sink_t;

static void on_output(void *ud, const uint8_t *data, size_t len)
{
    sink_t *s = ud;
    realm_buf_append(&s->out, data, len);
}

static void on_message(void *ud, int opcode, const uint8_t *data, size_t len)
{
    sink_t *s = ud;
    realm_buf_appendf(&s->msgs, "%d:%.*s|", opcode, (int)len, (const char *)data);
}

static const realm_ws_session_cbs_t cbs = {on_output, on_message};

/* Appends one client frame (masked unless is_unmasked). */
static void frame(realm_buf_t *b, int fin, int rsv, int opcode, const char *payload, size_t len,
                  int is_unmasked)
{
    uint8_t h[14];
    size_t n = 0;
    h[n++] = (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | opcode);
    uint8_t m = is_unmasked ? 0 : 0x80;
    if (len < 126) {
        h[n++] = (uint8_t)(m | len);
    } else if (len < 65536) {
        h[n++] = m | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
    if (!is_unmasked) memcpy(h + n, key, 4), n += 4;
    realm_buf_append(b, h, n);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)payload[i];
        if (!is_unmasked) c ^= key[i % 4];
        realm_buf_append(b, &c, 1);
    }
}

/* Runs input through a session in pieces of `step` bytes (0: whole). Returns
 * the messages and, after "#", the close code the server sent (0: none). */
static char *run(const realm_buf_t *in, size_t step, uint64_t max_msg)
{
    sink_t s;
    realm_buf_init(&s.out);
    realm_buf_init(&s.msgs);
    realm_ws_session_t *ws = realm_ws_session_new(&cbs, &s, max_msg);
    size_t off = 0;
    while (off < in->len && !realm_ws_session_is_done(ws)) {
        size_t n = step && step < in->len - off ? step : in->len - off;
        realm_ws_session_feed(ws, in->data + off, n);
        off += n;
    }
    realm_buf_appendf(&s.msgs, "#%u%s", realm_ws_session_close_code_sent(ws),
                      realm_ws_session_is_done(ws) ? " done" : "");
    realm_ws_session_free(ws);
    realm_buf_dispose(&s.out);
    return realm_buf_steal(&s.msgs, NULL);
}

static void check(const realm_buf_t *in, const char *expected, uint64_t max_msg)
{
    size_t steps[] = {0, 1, 2, 3, 7};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        char *got = run(in, steps[i], max_msg);
        if (strcmp(got, expected) != 0) fprintf(stderr, "step %zu\n", steps[i]);
        assert_string_equal(got, expected);
        free(got);
    }
}

static void test_text_and_binary(void **state)
{
    (void)state;
    realm_buf_t b;
    realm_buf_init(&b);
    frame(&b, 1, 0, 1, "hello", 5, 0);
    frame(&b, 1, 0, 2, "bin", 3, 0);
    char big[70000];
    memset(big, 'x', sizeof(big));
    frame(&b, 1, 0, 1, big, 200, 0);
    realm_buf_t expect;
    realm_buf_init(&expect);
    realm_buf_appendf(&expect, "1:hello|2:bin|1:%.*s|#0", 200, big);
    check(&b, expect.data, 1 << 20);
    realm_buf_dispose(&b);
    realm_buf_dispose(&expect);
}

static void test_fragmentation_with_ping(void **state)
{
    (void)state;
    realm_buf_t b;
    realm_buf_init(&b);
    frame(&b, 0, 0, 1, "he", 2, 0);
    frame(&b, 1, 0, 9, "p", 1, 0); /* ping inside a fragmented message */
    frame(&b, 0, 0, 0, "l\xc3", 2, 0);
    frame(&b, 1, 0, 0, "\xa9o", 2, 0); /* a UTF-8 sequence split across fragments */
    check(&b, "1:hel\xc3\xa9o|#0", 1 << 20);
    realm_buf_dispose(&b);
}

/* Between messages the session holds no wslay context; inside one it does. */
static void test_sleeps_between_messages(void **state)
{
    (void)state;
    sink_t s;
    realm_buf_init(&s.out);
    realm_buf_init(&s.msgs);
    realm_ws_session_t *ws = realm_ws_session_new(&cbs, &s, 1 << 20);
    assert_true(realm_ws_session_is_asleep(ws));
    realm_buf_t b;
    realm_buf_init(&b);
    frame(&b, 0, 0, 1, "ab", 2, 0);
    frame(&b, 1, 0, 0, "cd", 2, 0);
    size_t first = 8; /* the first frame: 2 header bytes, 4 mask, 2 payload */
    assert_int_equal(realm_ws_session_feed(ws, b.data, 3), 0); /* part of a header */
    assert_false(realm_ws_session_is_asleep(ws));
    assert_int_equal(realm_ws_session_feed(ws, b.data + 3, first - 3), 0);
    assert_false(realm_ws_session_is_asleep(ws)); /* a fragmented message is open */
    assert_int_equal(realm_ws_session_feed(ws, b.data + first, b.len - first), 0);
    assert_true(realm_ws_session_is_asleep(ws));
    assert_int_equal(realm_ws_session_send(ws, 1, "reply", 5), 0);
    assert_true(realm_ws_session_is_asleep(ws));
    assert_string_equal(s.msgs.data, "1:abcd|");
    assert_bytes_equal(s.out.data, s.out.len, "\x81\x05reply", 7);
    assert_int_equal(realm_ws_session_close(ws, 1000, "bye"), 0);
    assert_false(realm_ws_session_is_asleep(ws)); /* closing: awake until done */
    assert_true(realm_ws_session_close_sent(ws));
    realm_ws_session_free(ws);
    realm_buf_dispose(&b);
    realm_buf_dispose(&s.out);
    realm_buf_dispose(&s.msgs);
}

static void test_protocol_errors(void **state)
{
    (void)state;
    struct {
        int fin, rsv, opcode, unmasked;
        const char *payload;
        size_t len;
        const char *expect;
    } cases[] = {
        {1, 0, 1, 1, "x", 1, "#1002 done"},            /* unmasked client frame */
        {1, 4, 1, 0, "x", 1, "#1002 done"},            /* RSV1 */
        {1, 1, 1, 0, "x", 1, "#1002 done"},            /* RSV3 */
        {1, 0, 3, 0, "x", 1, "#1002 done"},            /* reserved opcode */
        {1, 0, 0xb, 0, "x", 1, "#1002 done"},          /* reserved control opcode */
        {1, 0, 0, 0, "x", 1, "#1002 done"},            /* continuation without a start */
        {0, 0, 9, 0, "x", 1, "#1002 done"},            /* fragmented ping */
        {1, 0, 1, 0, "\xff", 1, "#1007 done"},         /* invalid UTF-8 */
        {1, 0, 1, 0, "\xed\xa0\x80", 3, "#1007 done"}, /* surrogate */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        realm_buf_t b;
        realm_buf_init(&b);
        frame(&b, cases[i].fin, cases[i].rsv, cases[i].opcode, cases[i].payload, cases[i].len,
              cases[i].unmasked);
        char *got = run(&b, 0, 1 << 20);
        if (strcmp(got, cases[i].expect)) fprintf(stderr, "case %zu\n", i);
        assert_string_equal(got, cases[i].expect);
        free(got);
        realm_buf_dispose(&b);
    }
}

static void test_too_big_and_close(void **state)
{
    (void)state;
    realm_buf_t b;
    realm_buf_init(&b);
    frame(&b, 1, 0, 1, "0123456789", 10, 0);
    check(&b, "#1009 done", 9);
    realm_buf_reset(&b);
    frame(&b, 1, 0, 8, "\x03\xe8", 2, 0); /* close 1000: echoed */
    check(&b, "8:\x03\xe8|#1000 done", 100);
    realm_buf_reset(&b);
    frame(&b, 1, 0, 8, "\x03\xe7", 2, 0); /* 999: invalid code */
    check(&b, "#1002 done", 100);
    realm_buf_dispose(&b);
}

static void test_handshake(void **state)
{
    (void)state;
    char accept[29];
    const char *why;
    realm_ws_handshake_t h = {
        "GET", 1, 1, "websocket", "keep-alive, Upgrade", "dGhlIHNhbXBsZSBub25jZQ==", "13"};
    assert_int_equal(realm_ws_handshake_check(&h, accept, &why), 0);
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="); /* RFC 6455 1.3 */
    h.version = "8";
    assert_int_equal(realm_ws_handshake_check(&h, accept, &why), 426);
    h.version = "13";
    h.key = "short";
    assert_int_equal(realm_ws_handshake_check(&h, accept, &why), 400);
    h.key = NULL;
    assert_int_equal(realm_ws_handshake_check(&h, accept, &why), 400);
    h.upgrade = NULL;
    assert_int_equal(realm_ws_handshake_check(&h, accept, &why), 426);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_and_binary), cmocka_unit_test(test_fragmentation_with_ping),
        cmocka_unit_test(test_protocol_errors), cmocka_unit_test(test_too_big_and_close),
        cmocka_unit_test(test_handshake),       cmocka_unit_test(test_sleeps_between_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
