/*
 * evstream.c - AWS event-stream encoder (see evstream.h).
 *
 * DESIGN: a message is written in place at the end of the caller's buffer:
 * the sizes are known up front, so the prelude goes first, its CRC is taken
 * over the 8 bytes just written, and the message CRC over the whole message
 * once headers and payload follow. The CRC is zlib's crc32(), the same
 * CRC-32 the AWS SDKs (and botocore's binascii.crc32) check.
 */
#include "proto/evstream.h"

#include "base/str.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define HEADER_TYPE_STRING 7

static void put_u32(realm_buf_t *out, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    realm_buf_append(out, b, sizeof(b));
}

static void put_u16(realm_buf_t *out, uint16_t v)
{
    unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    realm_buf_append(out, b, sizeof(b));
}

static uint32_t crc_of(const char *p, size_t len)
{
    /* len is below 4 GiB (it fits total_len), so one call covers it. */
    return (uint32_t)crc32(0L, (const Bytef *)p, (uInt)len);
}

void realm_evstream_message(realm_buf_t *out, const char *const *names, const char *const *values,
                            size_t n, const void *payload, size_t len)
{
    size_t headers_len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t nl = strlen(names[i]), vl = strlen(values[i]);
        if (nl == 0 || nl > UINT8_MAX || vl > UINT16_MAX) abort(); /* a programming error */
        headers_len += 1 + nl + 1 + 2 + vl;
    }
    if (len > REALM_EVSTREAM_MAX_PAYLOAD) abort(); /* callers chunk (realm_evstream_chunk) */
    size_t total = REALM_EVSTREAM_OVERHEAD + headers_len + len;
    if (total > UINT32_MAX) abort(); /* n headers that large: a programming error */

    realm_buf_reserve(out, total);
    size_t start = out->len;
    put_u32(out, (uint32_t)total);
    put_u32(out, (uint32_t)headers_len);
    put_u32(out, crc_of(out->data + start, 8));
    for (size_t i = 0; i < n; i++) {
        size_t nl = strlen(names[i]), vl = strlen(values[i]);
        unsigned char b[2] = {(unsigned char)nl, HEADER_TYPE_STRING};
        realm_buf_append(out, b, 1);
        realm_buf_append(out, names[i], nl);
        realm_buf_append(out, b + 1, 1);
        put_u16(out, (uint16_t)vl);
        realm_buf_append(out, values[i], vl);
    }
    if (len) realm_buf_append(out, payload, len);
    put_u32(out, crc_of(out->data + start, out->len - start));
}

static const char *const event_names[] = {":event-type", ":content-type", ":message-type"};

void realm_evstream_chunk(realm_buf_t *out, const void *data, size_t len)
{
    static const char *const values[] = {"PayloadChunk", "application/octet-stream", "event"};
    const char *p = data;
    do {
        size_t n = len > REALM_EVSTREAM_MAX_PAYLOAD ? REALM_EVSTREAM_MAX_PAYLOAD : len;
        realm_evstream_message(out, event_names, values, 3, p, n);
        p += n;
        len -= n;
    } while (len > 0);
}

/* s as a JSON string; bytes that are not UTF-8 (a function's raw error
 * output) become U+FFFD rather than losing the field. */
static json_t *text(const char *s)
{
    return realm_str_json(s, strlen(s));
}

void realm_evstream_complete(realm_buf_t *out, const char *error_code, const char *error_details,
                             const char *log_result_b64)
{
    static const char *const values[] = {"InvokeComplete", "application/json", "event"};
    json_t *o = json_object();
    if (error_code) json_object_set_new(o, "ErrorCode", text(error_code));
    if (error_details) json_object_set_new(o, "ErrorDetails", text(error_details));
    if (log_result_b64) json_object_set_new(o, "LogResult", text(log_result_b64));
    char *json = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (json == NULL) abort(); /* only on out-of-memory */
    realm_evstream_message(out, event_names, values, 3, json, strlen(json));
    free(json);
}
