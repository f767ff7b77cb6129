/*
 * alloc.h - allocation that never returns NULL.
 *
 * Realm treats out-of-memory as fatal (as redis's zmalloc does): every
 * allocation either succeeds or the process aborts with a message. Sizes a
 * client controls are capped before they reach these functions.
 */
#ifndef REALM_BASE_ALLOC_H
#define REALM_BASE_ALLOC_H

#include <stddef.h>

/* Each returns new memory owned by the caller (free with free()). */
void *realm_malloc(size_t size);
void *realm_calloc(size_t n, size_t size);
void *realm_realloc(void *ptr, size_t size);
char *realm_strdup(const char *s);
char *realm_strndup(const char *s, size_t len);

#endif
