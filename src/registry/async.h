/*
 * async.h - the registry on its own thread: every registry operation of a
 * server runs on the registry's store worker (storeq/), so that the event
 * loop never waits on the database (docs/storage.md, "The store queue").
 *
 * DESIGN: realm_registry_async_new takes a registry (already open) and
 * starts a store queue for it. Callers on the loop submit a job (work on
 * the worker with the registry, done on the loop); the registry is touched
 * by the worker thread only from then on. After every job the worker reads
 * the registry's write generation and publishes it (an atomic), so the loop
 * knows, without a round trip, whether what it cached is still true: a
 * write through this server is visible to the loop before the write's
 * done callback runs; a write by another server sharing the database is
 * seen at the next poll (every poll_ms, a job that only reads the
 * generation) or the next job, whichever comes first.
 *
 * LIFETIME: the registry is borrowed (the server closes it after the close
 * callback here has come). Jobs not started when close is called are
 * cancelled: their done callback gets REALM_ERR_SHUTTING_DOWN.
 * THREADS: new, submit, generation and close on the loop thread; work on
 * the worker thread; done on the loop thread.
 */
#ifndef REALM_REGISTRY_ASYNC_H
#define REALM_REGISTRY_ASYNC_H

#include "registry/registry.h"

#include <stdint.h>
#include <uv.h>

typedef struct realm_registry_async_s realm_registry_async_t;

/* On the worker: the registry is the caller's for the call. */
typedef void (*realm_registry_work_cb)(realm_registry_t *reg, void *data);
/* On the loop: status 0 (work ran) or REALM_ERR_SHUTTING_DOWN (it did not). */
typedef void (*realm_registry_done_cb)(void *data, int status);

/* NULL when the thread cannot start (logged). max_jobs: the queue's bound. */
realm_registry_async_t *realm_registry_async_new(uv_loop_t *loop, realm_registry_t *reg,
                                                 size_t max_jobs, uint64_t poll_ms);
/*
 * Queues a job: 0 and done comes once, later, on the loop (done may be
 * NULL); or REALM_ERR_BACKPRESSURE (the queue is full) or
 * REALM_ERR_SHUTTING_DOWN, and nothing is ever called.
 */
int realm_registry_async_submit(realm_registry_async_t *ra, realm_registry_work_cb work,
                                realm_registry_done_cb done, void *data);
/* The registry's write generation as the worker last read it. */
uint64_t realm_registry_async_generation(const realm_registry_async_t *ra);
/* The registry (immutable parts only on the loop: names, ARNs; see registry.h). */
realm_registry_t *realm_registry_async_registry(realm_registry_async_t *ra);
/* Jobs waiting or running now (a gauge). */
uint64_t realm_registry_async_in_flight(realm_registry_async_t *ra);
/*
 * Stops the worker (see LIFETIME); cb(data) on the loop when it is gone.
 * From the call on, submit and call answer REALM_ERR_SHUTTING_DOWN; the
 * pointer stays valid (generation still reads) until realm_registry_async_free.
 */
void realm_registry_async_close(realm_registry_async_t *ra, void (*cb)(void *data), void *data);
void realm_registry_async_free(realm_registry_async_t *ra); /* after close's cb; NULL is fine */

/*
 * cb(data) runs on the loop after every job that may have written the
 * registry (its generation moved), before that job's done callback answers
 * its caller: a cluster node tells the others here (docs/cluster.md).
 */
void realm_registry_async_on_write(realm_registry_async_t *ra, void (*cb)(void *data),
                                   void *data);

#endif
