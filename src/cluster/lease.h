/*
 * lease.h - a node's concurrency leases (docs/cluster.md, "Concurrency
 * across nodes"): the loop's side of the leases kept in PostgreSQL
 * (store.h, REALM_STORE_LEASES), one per execution environment.
 *
 * DESIGN: the store has a worker thread of its own (storeq), so a lease
 * never waits behind registry or queue work. A take is one job; every
 * ttl/3 one job renews all the node's leases at once. The node keeps, for
 * each lease it holds, until when it is known to be live: the start of the
 * last take or renewal that confirmed it plus the ttl (measured on this
 * machine's monotonic clock from before the statement was sent; the
 * database counts the ttl from later, on its own clock, so the node's view
 * ends first). realm_leases_is_live answers from that alone, with no round
 * trip. A renewal that finds a lease ended reports it lost. Drops are jobs
 * that answer nothing (a drop that fails leaves the lease to end by itself).
 *
 * LIFETIME: realm_leases_open .. realm_leases_close (drops every lease of
 * the node, then closes; freed on a later loop turn). A take's callback
 * comes exactly once, also when closing (REALM_EXEC_LEASE_UNAVAILABLE: -1).
 * THREADS: loop thread only (the store on its worker).
 */
#ifndef REALM_CLUSTER_LEASE_H
#define REALM_CLUSTER_LEASE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct realm_leases_s realm_leases_t;

/* lease > 0 taken; 0 the function's cap reached; -2 the tenant's; -1 unavailable. */
typedef void (*realm_leases_take_cb)(int64_t lease, void *data);
/* A lease this node held ended without it (a renewal found it gone). */
typedef void (*realm_leases_lost_cb)(int64_t lease, void *data);

/*
 * Opens the leases store at db (postgresql://) for node, with leases of
 * ttl_ms, and drops what an earlier process of this node left. Returns it,
 * or NULL with a message in err.
 */
realm_leases_t *realm_leases_open(uv_loop_t *loop, const char *db, const char *node,
                                  uint64_t ttl_ms, realm_leases_lost_cb lost, void *lost_data,
                                  char *err, size_t err_len);
/* Takes a lease (see the callback); fn_cap/t_cap < 0: no cap. */
void realm_leases_take(realm_leases_t *l, const char *tenant, const char *function, int64_t fn_cap,
                       int64_t t_cap, realm_leases_take_cb cb, void *data);
void realm_leases_drop(realm_leases_t *l, int64_t lease);
/* 1 while lease is held and known to be live now. */
int realm_leases_is_live(const realm_leases_t *l, int64_t lease);
/* Leases held now. */
size_t realm_leases_held(const realm_leases_t *l);
/* NULL does nothing. */
void realm_leases_close(realm_leases_t *l);

#endif
