/*
 * evdecode.c - event-stream decoder (see evdecode.h).
 *
 * A message: [total_len u32][headers_len u32][prelude_crc u32][headers]
 * [payload][message_crc u32], big-endian. A header is [name_len u8][name]
 * [type u8][value]; value sizes by type: 0/1 (true/false) none, 2 one byte,
 * 3 two, 4 four, 5 and 8 (timestamp) eight, 9 (uuid) sixteen, 6 (bytes)
 * and 7 (string) a u16 length and that many bytes.
 */
#include "cli/evdecode.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#define PRELUDE 12
#define OVERHEAD 16 /* prelude and message CRC */

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint32_t crc_of(const unsigned char *p, size_t len)
{
    return (uint32_t)crc32(0L, (const Bytef *)p, (uInt)len);
}

void realm_cli_evdecode_init(realm_cli_evdecode_t *d)
{
    realm_buf_init(&d->pending);
}

void realm_cli_evdecode_dispose(realm_cli_evdecode_t *d)
{
    realm_buf_dispose(&d->pending);
}

int realm_cli_evdecode_has_partial(const realm_cli_evdecode_t *d)
{
    return d->pending.len > 0;
}

/* The value size of a header type (the bytes after the type byte); -1 when unknown. */
static long value_size(unsigned type, const unsigned char *p, size_t left)
{
    switch (type) {
    case 0:
    case 1:
        return 0;
    case 2:
        return 1;
    case 3:
        return 2;
    case 4:
        return 4;
    case 5:
    case 8:
        return 8;
    case 9:
        return 16;
    case 6:
    case 7:
        if (left < 2) return -1;
        return 2 + ((long)p[0] << 8 | p[1]);
    default:
        return -1;
    }
}

/* Decodes the headers of one message: 0, or -1 when they are malformed. */
static int parse_headers(const unsigned char *h, size_t len, char *event_type, char *message_type,
                         size_t cap)
{
    size_t i = 0;
    while (i < len) {
        size_t nl = h[i++];
        if (nl == 0 || i + nl + 1 > len) return -1;
        const unsigned char *name = h + i;
        i += nl;
        unsigned type = h[i++];
        long vs = value_size(type, h + i, len - i);
        if (vs < 0 || i + (size_t)vs > len) return -1;
        if (type == 7) {
            char *out = NULL;
            if (nl == 11 && memcmp(name, ":event-type", 11) == 0) out = event_type;
            if (nl == 13 && memcmp(name, ":message-type", 13) == 0) out = message_type;
            size_t sl = (size_t)vs - 2;
            if (out) snprintf(out, cap, "%.*s", (int)(sl < cap ? sl : cap - 1), h + i + 2);
        }
        i += (size_t)vs;
    }
    return 0;
}

int realm_cli_evdecode_feed(realm_cli_evdecode_t *d, const void *bytes, size_t len,
                            realm_cli_evdecode_cb cb, void *data, char *err, size_t err_len)
{
    if (len) realm_buf_append(&d->pending, bytes, len);
    const unsigned char *p = (const unsigned char *)d->pending.data;
    size_t off = 0, have = d->pending.len;
    int rc = 0;
    while (rc == 0 && have - off >= PRELUDE) {
        const unsigned char *m = p + off;
        uint32_t total = get_u32(m), hlen = get_u32(m + 4);
        if (total < OVERHEAD || total > REALM_CLI_EVDECODE_MAX_MESSAGE || hlen > total - OVERHEAD) {
            snprintf(err, err_len, "bad event-stream message (length %u, headers %u)", total, hlen);
            return -1;
        }
        if (crc_of(m, 8) != get_u32(m + 8)) {
            snprintf(err, err_len, "bad event-stream message (prelude CRC)");
            return -1;
        }
        if (have - off < total) break;
        if (crc_of(m, total - 4) != get_u32(m + total - 4)) {
            snprintf(err, err_len, "bad event-stream message (message CRC)");
            return -1;
        }
        char event_type[64] = "", message_type[64] = "";
        if (parse_headers(m + PRELUDE, hlen, event_type, message_type, sizeof(event_type)) != 0) {
            snprintf(err, err_len, "bad event-stream message (headers)");
            return -1;
        }
        off += total;
        rc = cb(event_type, message_type, m + PRELUDE + hlen, total - OVERHEAD - hlen, data);
    }
    /* Keep only the incomplete message. */
    if (off) {
        memmove(d->pending.data, d->pending.data + off, have - off);
        d->pending.len = have - off;
        d->pending.data[d->pending.len] = '\0';
    }
    return rc;
}
