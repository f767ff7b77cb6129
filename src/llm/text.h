/*
 * text.h - where UTF-8 text may be cut, and JSON string encoding, for the
 * model worker (realm-llm). Buffers, allocation, UTF-8 repair and base64
 * come from src/base/, which the worker links (and nothing else of Realm's).
 *
 * THREADS: none; every function works on the caller's buffers.
 */
#ifndef REALM_LLM_TEXT_H
#define REALM_LLM_TEXT_H

#include "base/alloc.h"
#include "base/buf.h"
#include "base/str.h"

#include <stddef.h>

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
void llm_json_escape(realm_buf_t *out, const char *s, size_t len);

#endif
