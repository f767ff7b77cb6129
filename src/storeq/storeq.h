/*
 * storeq.h - the store queue: one worker thread that runs blocking work
 * (store calls) in submission order, and hands each job's answer back to
 * the event loop. The asynchronous façade of docs/storage.md ("PostgreSQL:
 * how the loop talks to it" and "The store queue").
 *
 * DESIGN: realm_storeq_new starts one thread. realm_storeq_submit appends a
 * job (work_fn, done_fn, data) to a bounded FIFO under a mutex and wakes the
 * thread (a condition variable); the thread runs work_fn(data) for one job
 * at a time, in submission order, then moves the job to a completed list and
 * calls uv_async_send; the loop's async callback takes the whole list and
 * calls done_fn(data, status) for each job, in order. So whatever the work
 * touches (a store, a registry_t, a queue_t) is used by the worker thread
 * only, one job at a time, and needs no lock of its own; one queue per store
 * kind keeps each kind's operations serial, as they are on the loop today.
 * This module knows nothing of stores: it runs functions (layer: base and
 * libuv only).
 *
 * Bound: at most max_jobs jobs are in the queue at once, counted from
 * submit until their done_fn has been called (waiting, running, or done and
 * not yet delivered to the loop). Submit beyond answers
 * REALM_ERR_BACKPRESSURE at once (the caller answers 503) and changes
 * nothing.
 *
 * Close: realm_storeq_close stops taking work (submit answers
 * REALM_ERR_SHUTTING_DOWN), CANCELS the jobs not started (their work_fn
 * never runs; their done_fn runs with REALM_ERR_SHUTTING_DOWN), lets the one
 * job running finish (done_fn with 0), joins the thread, closes its
 * uv_async_t (and realm_storeq_every's timer) and then calls the close
 * callback on the loop. Cancelling
 * rather than draining bounds a shutdown to one job (with PostgreSQL down,
 * a drained backlog would take its length times the statement timeout), and
 * a job not started has changed nothing: its caller answers 503 and the
 * client may retry.
 *
 * Status passed to done_fn: 0 (work_fn ran) or REALM_ERR_SHUTTING_DOWN
 * (cancelled by close; work_fn did not run). What work_fn found (found,
 * not found, a storage error) travels in the caller's data.
 *
 * Callbacks: submit never calls done_fn before it returns (libuv's rule):
 * it returns 0 and done_fn is called exactly once, later, on the loop, or
 * it returns an error and neither work_fn nor done_fn is ever called. The
 * same for close and its callback. A done_fn may submit (to this queue or
 * another) or call realm_storeq_close.
 *
 * LOOP: the queue keeps its loop alive only while jobs are in flight (its
 * uv_async_t is referenced from the first submit until the last done).
 *
 * LIFETIME: the queue lives from realm_storeq_new until the close callback
 * has been called (after it the pointer is freed and must not be used).
 * data is borrowed by the queue from submit until done_fn is called; the
 * caller keeps it alive and frees it in done_fn. name is copied.
 *
 * THREADS: new, submit, close and stats on the loop thread; work_fn on the
 * worker thread; done_fn and the close callback on the loop thread. The
 * counters are read under the queue's mutex.
 */
#ifndef REALM_STOREQ_STOREQ_H
#define REALM_STOREQ_STOREQ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct realm_storeq_s realm_storeq_t;

/* Runs on the worker thread. */
typedef void (*realm_storeq_work_cb)(void *data);
/* Runs on the loop thread: status 0 or REALM_ERR_SHUTTING_DOWN (see DESIGN). */
typedef void (*realm_storeq_done_cb)(void *data, int status);
/* Runs on the loop thread once the queue is gone. */
typedef void (*realm_storeq_close_cb)(void *data);

/* Counters for metrics: a snapshot taken under the mutex. */
typedef struct {
    uint64_t queued;        /* jobs waiting for the worker now */
    uint64_t running;       /* 0 or 1: a work_fn running now */
    uint64_t in_flight;     /* jobs counted against max_jobs now */
    uint64_t submitted_cnt; /* jobs accepted by submit, ever */
    uint64_t done_cnt;      /* jobs whose work_fn ran, ever */
    uint64_t cancelled_cnt; /* jobs cancelled by close, ever */
    uint64_t rejected_cnt;  /* submits refused (full or closing), ever */
    uint64_t max_wait_ns;   /* longest wait from submit to work_fn start */
    uint64_t max_work_ns;   /* longest work_fn */
} realm_storeq_stats_t;

/*
 * Starts the worker thread of a queue on loop. name (copied; a short word
 * such as "registry") names the thread for logs. max_jobs >= 1. Returns the
 * queue, or NULL (the thread or the async handle could not be made; logged;
 * nothing to close).
 */
realm_storeq_t *realm_storeq_new(uv_loop_t *loop, const char *name, size_t max_jobs);

/*
 * Queues a job (see DESIGN). work_fn may not be NULL; done_fn may be NULL
 * (nothing is called on the loop). Returns 0, REALM_ERR_BACKPRESSURE (the
 * queue holds max_jobs jobs) or REALM_ERR_SHUTTING_DOWN (closing).
 */
int realm_storeq_submit(realm_storeq_t *q, realm_storeq_work_cb work_fn,
                        realm_storeq_done_cb done_fn, void *data);

/*
 * Closes the queue (see DESIGN): cb(data) is called on the loop once every
 * done_fn has run and the thread and the handle are gone. cb may be NULL.
 * A second close is ignored (its cb is never called).
 */
void realm_storeq_close(realm_storeq_t *q, realm_storeq_close_cb cb, void *data);

/*
 * Runs work_fn(data) on the worker every period_ms (> 0), as a job like any
 * other (no done_fn), never two at once: a tick while the last one still
 * waits or runs is skipped. For an owner that reads a change counter now
 * and then (the registry's generation, the keys' version). The timer does
 * not keep the loop alive; close stops it. At most once per queue.
 */
void realm_storeq_every(realm_storeq_t *q, uint64_t period_ms, realm_storeq_work_cb work_fn,
                        void *data);

/* Copies the counters into out. */
void realm_storeq_stats(realm_storeq_t *q, realm_storeq_stats_t *out);

/* The name given to realm_storeq_new. */
const char *realm_storeq_name(const realm_storeq_t *q);

#endif
