/*
 * buf.c - growable byte buffer (see buf.h).
 */
#include "base/buf.h"

#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void realm_buf_init(realm_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void realm_buf_dispose(realm_buf_t *b)
{
    free(b->data);
    realm_buf_init(b);
}

void realm_buf_reserve(realm_buf_t *b, size_t extra)
{
    if (b->data && b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra) cap *= 2;
    b->data = realm_realloc(b->data, cap + 1);
    b->cap = cap;
}

void realm_buf_append(realm_buf_t *b, const void *data, size_t len)
{
    realm_buf_reserve(b, len);
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void realm_buf_appends(realm_buf_t *b, const char *s)
{
    realm_buf_append(b, s, strlen(s));
}

void realm_buf_vappendf(realm_buf_t *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0) return;
    realm_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void realm_buf_appendf(realm_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    realm_buf_vappendf(b, fmt, ap);
    va_end(ap);
}

void realm_buf_consume(realm_buf_t *b, size_t n)
{
    if (n >= b->len) {
        realm_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void realm_buf_reset(realm_buf_t *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

char *realm_buf_steal(realm_buf_t *b, size_t *len_out)
{
    char *d = b->data;
    if (len_out) *len_out = b->len;
    if (d == NULL) d = realm_strdup("");
    realm_buf_init(b);
    return d;
}
