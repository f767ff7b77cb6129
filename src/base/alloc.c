/*
 * alloc.c - abort-on-OOM allocation wrappers (see alloc.h).
 */
#include "base/alloc.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
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

char *realm_strdup_opt(const char *s)
{
    return s ? realm_strdup(s) : NULL;
}

char *realm_strndup(const char *s, size_t len)
{
    char *p = realm_malloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* ---- giving memory back ---- */

int realm_mem_trim(void)
{
#ifdef __GLIBC__
    return malloc_trim(0);
#else
    return 0;
#endif
}

void realm_mem_idle_init(realm_mem_idle_t *m, unsigned busy_trim_ticks)
{
    memset(m, 0, sizeof(*m));
    m->busy_trim_ticks = busy_trim_ticks;
}

int realm_mem_idle_tick(realm_mem_idle_t *m, uint64_t activity)
{
    int is_busy = activity != m->last_activity;
    m->last_activity = activity;
    if (is_busy) {
        m->busy_ticks++;
        if (!m->busy_trim_ticks || m->busy_ticks < m->busy_trim_ticks) return 0;
    } else if (m->busy_ticks == 0) {
        return 0; /* quiet, and nothing happened since the last trim */
    }
    m->busy_ticks = 0;
    m->trims_cnt++;
    realm_mem_trim();
    return 1;
}
