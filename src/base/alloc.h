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
#include <stdint.h>

/* Each returns new memory owned by the caller (free with free()). */
void *realm_malloc(size_t size);
void *realm_calloc(size_t n, size_t size);
void *realm_realloc(void *ptr, size_t size);
char *realm_strdup(const char *s);
/* realm_strdup, or NULL for NULL. */
char *realm_strdup_opt(const char *s);
char *realm_strndup(const char *s, size_t len);

/*
 * Giving memory back after a burst. glibc's malloc keeps what was freed in
 * its arenas (the top of the heap is trimmed, the rest is not), so after
 * 10,000 connections come and go the process stays at its peak.
 * realm_mem_trim() asks malloc to return every free page (malloc_trim(0):
 * all arenas, also the thread pool's); it is a no-op without glibc.
 *
 * realm_mem_idle_t decides when: the owner calls realm_mem_idle_tick()
 * every second or so with a counter of the work done (connections,
 * requests); the first tick that sees no change after some did trims, and
 * while work never stops a trim still happens every busy_trim_ticks ticks.
 * Trimming costs a walk of the free lists (milliseconds on a fragmented
 * heap), which is why it waits for a quiet moment.
 */
typedef struct {
    uint64_t last_activity;   /* the counter at the previous tick */
    unsigned busy_ticks;      /* ticks with activity since the last trim */
    unsigned busy_trim_ticks; /* trim anyway after this many busy ticks (0: never) */
    uint64_t trims_cnt;       /* trims done */
} realm_mem_idle_t;

void realm_mem_idle_init(realm_mem_idle_t *m, unsigned busy_trim_ticks);
/* One tick; trims when activity has just stopped. Returns 1 if it trimmed. */
int realm_mem_idle_tick(realm_mem_idle_t *m, uint64_t activity);
/* Returns free memory to the system now; 1 if some was released. */
int realm_mem_trim(void);

#endif
