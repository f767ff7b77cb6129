/*
 * str.h - small string helpers shared by the protocol layers.
 */
#ifndef REALM_BASE_STR_H
#define REALM_BASE_STR_H

#include "base/buf.h"

#include <jansson.h>

#include <stddef.h>

/* Does a comma-separated list (an HTTP header value) hold token, ignoring case? */
int realm_str_has_token(const char *list, const char *token);

/* A random (version 4) UUID, "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx", into out
 * (RAND_bytes drawn a block at a time per thread; a fork's child draws anew). */
void realm_str_uuid4(char out[37]);
/* Appends the bytes that base64 text (whitespace allowed) stands for; -1 if it is not base64. */
int realm_str_b64_decode(const char *in, size_t len, realm_buf_t *out);
/* Appends len bytes with every byte that is not well-formed UTF-8 replaced
 * by U+FFFD; returns 1 if any was replaced. */
int realm_str_utf8_repair(const void *data, size_t len, realm_buf_t *out);
/* len bytes as a new JSON string, bytes that are not well-formed UTF-8
 * replaced by U+FFFD (jansson refuses them); NULL only when out of memory. */
json_t *realm_str_json(const void *data, size_t len);
/* Appends the base64 (no line breaks) of len bytes. */
void realm_str_b64_encode(const void *in, size_t len, realm_buf_t *out);
/*
 * Does the text hold a control character (0x00-0x1f or 0x7f)? No name Realm
 * knows (functions, aliases, versions, tenants) may: such a name is refused
 * before any lookup, so "victim\0junk" can never be taken for "victim".
 */
int realm_str_has_ctl(const char *s, size_t len);

#endif
