/*
 * text.c - UTF-8 boundaries and JSON string encoding for realm-llm (see
 * text.h).
 *
 * DESIGN: UTF-8 well-formedness follows the Unicode Standard's table 3-7
 * (the same rules as RFC 3629): the lead byte fixes the length and the
 * range of the second byte (E0 needs A0..BF, ED 80..9F, F0 90..BF, F4
 * 80..8F), later bytes are 80..BF.
 */
#include "llm/text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void llm_json_escape(realm_buf_t *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    static const char named[] = "\"\\\n\r\t\b\f"; /* escaped as \ + the letter below */
    static const char letter[] = "\"\\nrtbf";
    realm_buf_reserve(out, len + 8);
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        realm_buf_append(out, s + run, i - run);
        run = i + 1;
        const char *at = c ? memchr(named, c, sizeof(named) - 1) : NULL;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        if (at) esc[1] = letter[at - named];
        realm_buf_append(out, esc, at ? 2 : 6);
    }
    realm_buf_append(out, s + run, len - run);
}
