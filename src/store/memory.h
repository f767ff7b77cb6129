/*
 * memory.h - the in-memory backend's shared parts (not a public header): the
 * store struct and its rows. The registry, the transactions and the auth
 * tables are in memory.c, the Event queue in memory_queue.c.
 */
#ifndef REALM_STORE_MEMORY_H
#define REALM_STORE_MEMORY_H

#include "store/internal.h"

#include <stddef.h>
#include <stdint.h>

/* The in-memory rows' schema version: a constant, nothing to migrate (no
 * row outlives the process that made it). */
#define REALM_MEMORY_SCHEMA_VERSION 1

typedef struct {
    int64_t id;
    char *tenant, *function, *qualifier, *last_error;
    int attempts;
    int64_t enqueued_ms, due_ms;
    int is_parked;
    char *payload;
    size_t len;
    uint64_t lease; /* 0: not leased */
    int64_t lease_until;
} mem_event_t;

typedef struct {
    int64_t seq, id;
    char *tenant, *function, *qualifier, *etype, *emsg;
    char *payload;
    size_t len;
    int attempts;
    int64_t enqueued_ms, failed_ms;
} mem_failed_t;

typedef struct {
    char name[65];
    char account[13];
    int64_t created;
} mem_tenant_t;

typedef struct {
    realm_store_t base;
    realm_store_ops_t ops; /* base.ops points here */
    char *name;
    int in_tx;
    /* registry */
    json_t *fns, *fns_snapshot;
    json_t *pkgs, *pkgs_snapshot; /* {hex: the package's bytes as a string} */
    /* queue */
    mem_event_t *ev;
    size_t ev_cnt, ev_cap;
    mem_failed_t *failed;
    size_t failed_cnt, failed_cap;
    json_t *parked; /* {"tenant\nfunction": ["tenant", "function"]} */
    int64_t next_id, next_seq;
    uint64_t next_token;
    realm_store_q_stats_t stats;
    /* auth */
    mem_tenant_t *tenants, *tenants_snap;
    size_t tenant_cnt, tenant_snap_cnt;
    realm_store_key_t *keys, *keys_snap;
    size_t key_cnt, key_snap_cnt;
} mem_t;

#define M(s) ((mem_t *)(s))

/* A copy of p[0..n) (never NULL, also for n 0). */
void *realm_memory_dup(const void *p, size_t n);
/* realm_strdup, or NULL for NULL. */
char *realm_memory_dup_or_null(const char *s);

/* Fills the queue's operations (q_*) in ops. */
void realm_memory_queue_ops(realm_store_ops_t *ops);
/* Frees the queue's rows (events, failures, parked functions) of m. */
void realm_memory_queue_dispose(mem_t *m);

#endif
