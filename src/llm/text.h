/*
 * text.h - the byte buffer, JSON string encoding, UTF-8 and base64 helpers of
 * the model worker (realm-llm). The worker is its own executable and links
 * nothing of realm_core, so it carries these few helpers itself.
 *
 * THREADS: none; every function works on the caller's buffers.
 */
#ifndef REALM_LLM_TEXT_H
#define REALM_LLM_TEXT_H

#include <stdarg.h>
#include <stddef.h>

/* A growable byte buffer. Owns data; data[len] == '\0' once anything was appended. */
typedef struct {
    char *data; /* owned; NULL until the first append */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated, excluding the terminator */
} llm_buf_t;

void llm_buf_init(llm_buf_t *b);
void llm_buf_dispose(llm_buf_t *b); /* frees; safe to call twice */
void llm_buf_reserve(llm_buf_t *b, size_t extra);
void llm_buf_append(llm_buf_t *b, const void *data, size_t len);
void llm_buf_appends(llm_buf_t *b, const char *s);
void llm_buf_appendf(llm_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void llm_buf_reset(llm_buf_t *b); /* len = 0, keeps the allocation */

/* Allocation that aborts on failure (out of memory is not an error we handle). */
void *llm_xmalloc(size_t n);
void *llm_xrealloc(void *p, size_t n);

/*
 * Appends s[0..len) to out as valid UTF-8: every byte that does not start a
 * complete, well-formed sequence (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF) becomes U+FFFD. Returns the number of bytes
 * appended.
 */
size_t llm_utf8_sanitize(llm_buf_t *out, const char *s, size_t len);

/*
 * The length of the longest prefix of s[0..len) that does not end inside an
 * incomplete but so far well-formed UTF-8 sequence: the place where text can
 * be cut without splitting a character that the next bytes may complete.
 */
size_t llm_utf8_boundary(const char *s, size_t len);

/*
 * Appends s[0..len) to out as the inside of a JSON string (RFC 8259 section
 * 7: '"', '\\' and control characters escaped). s must be valid UTF-8.
 */
void llm_json_escape(llm_buf_t *out, const char *s, size_t len);

/* Appends the standard base64 (RFC 4648 section 4, padded) of data to out. */
void llm_base64(llm_buf_t *out, const void *data, size_t len);

#endif
