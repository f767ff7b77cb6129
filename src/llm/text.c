/*
 * text.c - buffer, UTF-8, JSON string and base64 helpers of realm-llm (see
 * text.h).
 *
 * DESIGN: UTF-8 well-formedness follows the Unicode Standard's table 3-7
 * (the same rules as RFC 3629): the lead byte fixes the length and the
 * range of the second byte (E0 needs A0..BF, ED 80..9F, F0 90..BF, F4
 * 80..8F), later bytes are 80..BF. The sanitizer replaces one byte at a
 * time; what matters to the worker is that it is a pure function of the
 * bytes, so the text sent token by token and the final text agree.
 */
#include "llm/text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- allocation and buffers ---------------------------------------------------------- */

void *llm_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fputs("realm-llm: out of memory\n", stderr);
        abort();
    }
    return p;
}

void *llm_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fputs("realm-llm: out of memory\n", stderr);
        abort();
    }
    return q;
}

void llm_buf_init(llm_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void llm_buf_dispose(llm_buf_t *b)
{
    free(b->data);
    llm_buf_init(b);
}

void llm_buf_reserve(llm_buf_t *b, size_t extra)
{
    if (b->len + extra <= b->cap && b->data) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    b->data = llm_xrealloc(b->data, cap + 1);
    b->cap = cap;
    b->data[b->len] = '\0';
}

void llm_buf_append(llm_buf_t *b, const void *data, size_t len)
{
    llm_buf_reserve(b, len);
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void llm_buf_appends(llm_buf_t *b, const char *s)
{
    llm_buf_append(b, s, strlen(s));
}

void llm_buf_appendf(llm_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof(tmp)) {
        llm_buf_append(b, tmp, (size_t)n);
        return;
    }
    llm_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void llm_buf_reset(llm_buf_t *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

/* ---- UTF-8 ----------------------------------------------------------------------------- */

/* Length of the sequence a lead byte starts (0: not a lead byte), and the
 * allowed range of its second byte. */
static int lead_info(unsigned char c, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) *lo = 0xA0;
        if (c == 0xED) *hi = 0x9F;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) *lo = 0x90;
        if (c == 0xF4) *hi = 0x8F;
        return 4;
    }
    return 0;
}

/* How many bytes of s[0..len) (len >= 1) form a valid prefix of the
 * sequence s[0] starts, and that sequence's full length n (0 when s[0] is
 * not a lead byte). */
static size_t valid_prefix(const unsigned char *s, size_t len, int *n)
{
    unsigned char lo, hi;
    *n = lead_info(s[0], &lo, &hi);
    if (*n == 0) return 0;
    size_t i = 1;
    while (i < (size_t)*n && i < len) {
        unsigned char c = s[i];
        if (i == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
        i++;
    }
    return i;
}

size_t llm_utf8_sanitize(llm_buf_t *out, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t before = out->len;
    llm_buf_reserve(out, len);
    size_t i = 0, run = 0; /* run: start of the valid bytes not yet copied */
    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int n;
        size_t ok = valid_prefix(u + i, len - i, &n);
        if (n > 0 && ok == (size_t)n) {
            i += (size_t)n;
            continue;
        }
        llm_buf_append(out, s + run, i - run);
        llm_buf_append(out, "\xEF\xBF\xBD", 3);
        i++;
        run = i;
    }
    llm_buf_append(out, s + run, len - run);
    return out->len - before;
}

size_t llm_utf8_boundary(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    /* A lead byte at most three bytes back whose sequence is cut short. */
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        unsigned char c = u[len - back];
        if (c >= 0x80 && c <= 0xBF) continue; /* a continuation byte: look further back */
        int n;
        size_t ok = valid_prefix(u + len - back, back, &n);
        if (n > 1 && ok == back && back < (size_t)n) return len - back;
        return len;
    }
    return len;
}

/* ---- JSON strings ---------------------------------------------------------------------- */

void llm_json_escape(llm_buf_t *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    static const char named[] = "\"\\\n\r\t\b\f"; /* escaped as \ + the letter below */
    static const char letter[] = "\"\\nrtbf";
    llm_buf_reserve(out, len + 8);
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        llm_buf_append(out, s + run, i - run);
        run = i + 1;
        const char *at = c ? memchr(named, c, sizeof(named) - 1) : NULL;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        if (at) esc[1] = letter[at - named];
        llm_buf_append(out, esc, at ? 2 : 6);
    }
    llm_buf_append(out, s + run, len - run);
}

/* ---- base64 ---------------------------------------------------------------------------- */

void llm_base64(llm_buf_t *out, const void *data, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    llm_buf_reserve(out, (len + 2) / 3 * 4);
    char q[4];
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        q[0] = tab[v >> 18];
        q[1] = tab[(v >> 12) & 63];
        q[2] = tab[(v >> 6) & 63];
        q[3] = tab[v & 63];
        llm_buf_append(out, q, 4);
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
        q[0] = tab[v >> 18];
        q[1] = tab[(v >> 12) & 63];
        q[2] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        q[3] = '=';
        llm_buf_append(out, q, 4);
    }
}
