/*
 * test_evstream.c - the event-stream encoder byte by byte: known answers
 * (AWS's empty-message vector, a PayloadChunk built by hand with zlib's
 * CRC-32 taken independently, and its bytes as botocore decoded them), then
 * an independent decoder reading back chunks, splitting and InvokeComplete.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/evstream.h"

#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t crc(const void *p, size_t len)
{
    return (uint32_t)crc32(0L, (const Bytef *)p, (uInt)len);
}

/* ---- a decoder, written from the framing description, not the encoder ---- */

#define MAX_HEADERS 8

typedef struct {
    size_t n;
    char name[MAX_HEADERS][256];
    char value[MAX_HEADERS][256];
    const unsigned char *payload; /* borrowed from the input */
    size_t payload_len;
} msg_t;

/* Decodes one message at p (avail bytes); returns its length, failing the test on bad framing. */
static size_t decode(const unsigned char *p, size_t avail, msg_t *m)
{
    memset(m, 0, sizeof(*m));
    assert_true(avail >= 16);
    uint32_t total = be32(p), hlen = be32(p + 4);
    assert_true(total <= avail);
    assert_true(total >= 16 + (uint64_t)hlen);
    assert_int_equal(be32(p + 8), crc(p, 8));
    assert_int_equal(be32(p + total - 4), crc(p, total - 4));
    const unsigned char *h = p + 12, *end = p + 12 + hlen;
    while (h < end) {
        assert_true(m->n < MAX_HEADERS);
        size_t nl = h[0];
        assert_true(nl > 0 && h + 1 + nl + 3 <= end);
        memcpy(m->name[m->n], h + 1, nl);
        h += 1 + nl;
        assert_int_equal(h[0], 7); /* string */
        size_t vl = (size_t)h[1] << 8 | h[2];
        assert_true(vl < 256 && h + 3 + vl <= end);
        memcpy(m->value[m->n], h + 3, vl);
        h += 3 + vl;
        m->n++;
    }
    assert_true(h == end);
    m->payload = end;
    m->payload_len = total - 16 - hlen;
    return total;
}

static const char *header(const msg_t *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->name[i], name) == 0) return m->value[i];
    return NULL;
}

static void assert_event(const msg_t *m, const char *type, const char *content_type)
{
    assert_int_equal(m->n, 3);
    assert_string_equal(header(m, ":event-type"), type);
    assert_string_equal(header(m, ":content-type"), content_type);
    assert_string_equal(header(m, ":message-type"), "event");
}

/* ---- known answers ---- */

/* AWS's "empty_message" vector (aws-c-event-stream, botocore's tests). */
static void empty_message(void **state)
{
    (void)state;
    static const unsigned char want[] = {0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00,
                                         0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff};
    realm_buf_t b;
    realm_buf_init(&b);
    realm_evstream_message(&b, NULL, NULL, 0, NULL, 0);
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    realm_buf_dispose(&b);
}

/* The PayloadChunk "hi", laid out by hand. */
static void chunk_by_hand(void **state)
{
    (void)state;
    static const char headers[] = "\x0b:event-type\x07\x00\x0cPayloadChunk"
                                  "\x0d:content-type\x07\x00\x18"
                                  "application/octet-stream"
                                  "\x0d:message-type\x07\x00\x05"
                                  "event";
    const size_t hlen = sizeof(headers) - 1;
    assert_int_equal(hlen, 90);
    unsigned char want[128];
    const size_t total = 12 + hlen + 2 + 4;
    assert_int_equal(total, 108);
    memcpy(want, "\x00\x00\x00\x6c\x00\x00\x00\x5a", 8);
    uint32_t pc = crc(want, 8);
    want[8] = (unsigned char)(pc >> 24), want[9] = (unsigned char)(pc >> 16);
    want[10] = (unsigned char)(pc >> 8), want[11] = (unsigned char)pc;
    memcpy(want + 12, headers, hlen);
    memcpy(want + 12 + hlen, "hi", 2);
    uint32_t mc = crc(want, total - 4);
    want[total - 4] = (unsigned char)(mc >> 24), want[total - 3] = (unsigned char)(mc >> 16);
    want[total - 2] = (unsigned char)(mc >> 8), want[total - 1] = (unsigned char)mc;

    realm_buf_t b;
    realm_buf_init(&b);
    realm_buf_appends(&b, "prefix"); /* appends: what is there stays */
    realm_evstream_chunk(&b, "hi", 2);
    assert_int_equal(b.len, 6 + total);
    assert_memory_equal(b.data, "prefix", 6);
    assert_memory_equal(b.data + 6, want, total);
    realm_buf_dispose(&b);
}

/* The same bytes as decoded by Debian's botocore (EventStreamBuffer):
 * headers {':event-type': 'PayloadChunk', ':content-type':
 * 'application/octet-stream', ':message-type': 'event'}, payload b'hi'. */
static void chunk_as_botocore_read_it(void **state)
{
    (void)state;
    static const char hex[] = "0000006c0000005ab25efdcf0b3a6576656e742d7479706507000c5061796c"
                              "6f61644368756e6b0d3a636f6e74656e742d747970650700186170706c6963"
                              "6174696f6e2f6f637465742d73747265616d0d3a6d6573736167652d747970"
                              "650700056576656e7468691162e469";
    unsigned char want[108];
    assert_int_equal(strlen(hex), 2 * sizeof(want));
    for (size_t i = 0; i < sizeof(want); i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        want[i] = (unsigned char)v;
    }
    realm_buf_t b;
    realm_buf_init(&b);
    realm_evstream_chunk(&b, "hi", 2);
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    realm_buf_dispose(&b);
}

/* ---- decode-back ---- */

static void message_headers_and_binary_payload(void **state)
{
    (void)state;
    const char *names[] = {"a", ":x-y"}, *values[] = {"", "v"};
    static const char bin[] = {0, 1, (char)0xff, 0};
    realm_buf_t b;
    realm_buf_init(&b);
    realm_evstream_message(&b, names, values, 2, bin, sizeof(bin));
    msg_t m;
    assert_int_equal(decode((unsigned char *)b.data, b.len, &m), b.len);
    assert_int_equal(m.n, 2);
    assert_string_equal(m.name[0], "a");
    assert_string_equal(m.value[0], "");
    assert_string_equal(m.name[1], ":x-y");
    assert_string_equal(m.value[1], "v");
    assert_int_equal(m.payload_len, sizeof(bin));
    assert_memory_equal(m.payload, bin, sizeof(bin));
    realm_buf_dispose(&b);
}

static void stream_of_chunks_then_complete(void **state)
{
    (void)state;
    realm_buf_t b;
    realm_buf_init(&b);
    realm_evstream_chunk(&b, "{\"part\":", 8);
    realm_evstream_chunk(&b, NULL, 0); /* an empty chunk is one message */
    realm_evstream_chunk(&b, "1}", 2);
    realm_evstream_complete(&b, NULL, NULL, NULL);

    const unsigned char *p = (const unsigned char *)b.data;
    size_t off = 0;
    msg_t m;
    static const char *const parts[] = {"{\"part\":", "", "1}"};
    for (size_t i = 0; i < 3; i++) {
        off += decode(p + off, b.len - off, &m);
        assert_event(&m, "PayloadChunk", "application/octet-stream");
        assert_int_equal(m.payload_len, strlen(parts[i]));
        assert_memory_equal(m.payload, parts[i], m.payload_len);
    }
    off += decode(p + off, b.len - off, &m);
    assert_event(&m, "InvokeComplete", "application/json");
    assert_int_equal(m.payload_len, 2);
    assert_memory_equal(m.payload, "{}", 2);
    assert_int_equal(off, b.len);
    realm_buf_dispose(&b);
}

static void complete_fields(void **state)
{
    (void)state;
    realm_buf_t b;
    realm_buf_init(&b);
    realm_evstream_complete(&b, "Unhandled", "boom \"quoted\"", "bG9nCg==");
    realm_evstream_complete(&b, NULL, NULL, "bG9nCg==");
    msg_t m;
    size_t off = decode((unsigned char *)b.data, b.len, &m);
    assert_event(&m, "InvokeComplete", "application/json");
    const char *want = "{\"ErrorCode\":\"Unhandled\",\"ErrorDetails\":\"boom \\\"quoted\\\"\","
                       "\"LogResult\":\"bG9nCg==\"}";
    assert_int_equal(m.payload_len, strlen(want));
    assert_memory_equal(m.payload, want, m.payload_len);

    off += decode((unsigned char *)b.data + off, b.len - off, &m);
    want = "{\"LogResult\":\"bG9nCg==\"}";
    assert_int_equal(m.payload_len, strlen(want));
    assert_memory_equal(m.payload, want, m.payload_len);
    assert_int_equal(off, b.len);
    realm_buf_reset(&b);

    /* A function's raw error bytes that are not UTF-8 are repaired, not dropped. */
    realm_evstream_complete(&b, "Unhandled", "bad \xff\xc3(", NULL);
    assert_int_equal(decode((unsigned char *)b.data, b.len, &m), b.len);
    want = "{\"ErrorCode\":\"Unhandled\",\"ErrorDetails\":\"bad \xef\xbf\xbd\xef\xbf\xbd(\"}";
    assert_int_equal(m.payload_len, strlen(want));
    assert_memory_equal(m.payload, want, m.payload_len);
    realm_buf_dispose(&b);
}

/* Data above the per-message limit becomes several chunks. */
static void large_chunk_is_split(void **state)
{
    (void)state;
    size_t len = REALM_EVSTREAM_MAX_PAYLOAD + 3;
    unsigned char *data = malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)(i * 31);
    realm_buf_t b;
    realm_buf_init(&b);
    realm_evstream_chunk(&b, data, len);
    msg_t m;
    size_t off = decode((unsigned char *)b.data, b.len, &m);
    assert_event(&m, "PayloadChunk", "application/octet-stream");
    assert_int_equal(m.payload_len, REALM_EVSTREAM_MAX_PAYLOAD);
    assert_memory_equal(m.payload, data, m.payload_len);
    off += decode((unsigned char *)b.data + off, b.len - off, &m);
    assert_int_equal(m.payload_len, 3);
    assert_memory_equal(m.payload, data + REALM_EVSTREAM_MAX_PAYLOAD, 3);
    assert_int_equal(off, b.len);
    realm_buf_dispose(&b);
    free(data);
}

/* A header name over 255 bytes cannot be framed: it aborts rather than lie. */
static void oversized_header_aborts(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char name[300];
        memset(name, 'n', sizeof(name) - 1);
        name[sizeof(name) - 1] = '\0';
        const char *names[] = {name}, *values[] = {"v"};
        realm_buf_t b;
        realm_buf_init(&b);
        realm_evstream_message(&b, names, values, 1, NULL, 0);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_message),
        cmocka_unit_test(chunk_by_hand),
        cmocka_unit_test(chunk_as_botocore_read_it),
        cmocka_unit_test(message_headers_and_binary_payload),
        cmocka_unit_test(stream_of_chunks_then_complete),
        cmocka_unit_test(complete_fields),
        cmocka_unit_test(large_chunk_is_split),
        cmocka_unit_test(oversized_header_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
