/*
 * alloc.c - abort-on-OOM allocation wrappers (see alloc.h).
 */
#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t size)
{
    fprintf(stderr, "realm: out of memory allocating %zu bytes\n", size);
    abort();
}

void *realm_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL) oom(size);
    return p;
}

void *realm_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) oom(n * size);
    return p;
}

void *realm_realloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL) oom(size);
    return p;
}

char *realm_strdup(const char *s)
{
    return realm_strndup(s, strlen(s));
}

char *realm_strndup(const char *s, size_t len)
{
    char *p = realm_malloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}
