/*
 * str.c - string helpers (see str.h).
 */
#include "base/str.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int realm_str_has_token(const char *list, const char *token)
{
    size_t tl = strlen(token);
    const char *s = list;
    while (s && *s) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        const char *e = s;
        while (*e && *e != ',')
            e++;
        const char *te = e;
        while (te > s && (te[-1] == ' ' || te[-1] == '\t'))
            te--;
        if ((size_t)(te - s) == tl && strncasecmp(s, token, tl) == 0) return 1;
        s = e;
    }
    return 0;
}

/*
 * Random bytes for ids, drawn from RAND_bytes a block at a time: an id then
 * costs no call into OpenSSL (its fork check and locking per call), and is
 * as unguessable as RAND_bytes itself. Per thread; a fork's child starts a
 * fresh block (pthread_atfork), so parent and child never hand out the same
 * bytes.
 */
#define RAND_BLOCK 4096
static _Thread_local unsigned char rand_block[RAND_BLOCK];
static _Thread_local size_t rand_left;
static pthread_once_t rand_once = PTHREAD_ONCE_INIT;

static void rand_forget(void)
{
    rand_left = 0;
}

static void rand_setup(void)
{
    pthread_atfork(NULL, NULL, rand_forget);
}

static void rand16(unsigned char b[16])
{
    if (rand_left < 16) {
        pthread_once(&rand_once, rand_setup);
        if (RAND_bytes(rand_block, sizeof(rand_block)) != 1) abort(); /* nothing is safe */
        rand_left = sizeof(rand_block);
    }
    unsigned char *p = rand_block + sizeof(rand_block) - rand_left;
    memcpy(b, p, 16);
    memset(p, 0, 16); /* handed out: not kept */
    rand_left -= 16;
}

void realm_str_uuid4(char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    rand16(b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

int realm_str_b64_decode(const char *in, size_t len, realm_buf_t *out)
{
    realm_buf_reserve(out, len / 4 * 3 + 4);
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    if (!ctx) abort();
    EVP_DecodeInit(ctx);
    int n = 0, fin = 0;
    int rc = -1;
    size_t off = 0;
    while (off < len) {
        int chunk = len - off > (1 << 20) ? (1 << 20) : (int)(len - off);
        if (EVP_DecodeUpdate(ctx, (unsigned char *)out->data + out->len, &n,
                             (const unsigned char *)in + off, chunk) < 0)
            goto done;
        out->len += (size_t)n;
        off += (size_t)chunk;
    }
    if (EVP_DecodeFinal(ctx, (unsigned char *)out->data + out->len, &fin) != 1) goto done;
    out->len += (size_t)fin;
    rc = 0;
done:
    if (out->data) out->data[out->len] = '\0';
    EVP_ENCODE_CTX_free(ctx);
    return rc;
}

void realm_str_b64_encode(const void *in, size_t len, realm_buf_t *out)
{
    size_t need = (len + 2) / 3 * 4;
    realm_buf_reserve(out, need + 1);
    int n =
        EVP_EncodeBlock((unsigned char *)out->data + out->len, (const unsigned char *)in, (int)len);
    out->len += (size_t)n;
    out->data[out->len] = '\0';
}

/*
 * Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 if it is not one.
 */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned c = s[0], lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    size_t n;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (len < n || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return n;
}

int realm_str_utf8_repair(const void *data, size_t len, realm_buf_t *out)
{
    const unsigned char *p = data;
    int bad = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(p + i, len - i);
        if (n == 0) {
            realm_buf_append(out, "\xEF\xBF\xBD", 3);
            bad = 1;
            i++;
        } else {
            realm_buf_append(out, p + i, n);
            i += n;
        }
    }
    return bad;
}

int realm_str_has_ctl(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) return 1;
    }
    return 0;
}

json_t *realm_str_json(const void *data, size_t len)
{
    json_t *j = json_stringn(len ? (const char *)data : "", len);
    if (j) return j;
    realm_buf_t b;
    realm_buf_init(&b);
    realm_str_utf8_repair(data, len, &b);
    j = json_stringn(b.data ? b.data : "", b.len);
    realm_buf_dispose(&b);
    return j;
}
