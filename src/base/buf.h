/*
 * buf.h - a growable byte buffer (always NUL-terminated for convenience).
 *
 * The buffer owns data. realm_buf_init() gives an empty buffer that allocates
 * nothing; realm_buf_dispose() frees and resets it, and is safe to call twice.
 */
#ifndef REALM_BASE_BUF_H
#define REALM_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char *data; /* owned; NULL until the first append; data[len] == '\0' */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated (excluding the terminator) */
} realm_buf_t;

void realm_buf_init(realm_buf_t *b);
void realm_buf_dispose(realm_buf_t *b);
/* Ensures room for extra more bytes. */
void realm_buf_reserve(realm_buf_t *b, size_t extra);
void realm_buf_append(realm_buf_t *b, const void *data, size_t len);
void realm_buf_appends(realm_buf_t *b, const char *s);
void realm_buf_appendf(realm_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void realm_buf_vappendf(realm_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Drops the first n bytes (n <= len). */
void realm_buf_consume(realm_buf_t *b, size_t n);
void realm_buf_reset(realm_buf_t *b); /* len = 0, keeps the allocation */
/* Hands the data over to the caller (free() it); the buffer becomes empty. */
char *realm_buf_steal(realm_buf_t *b, size_t *len_out);

#endif
