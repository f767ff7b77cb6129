/*
 * invoker.h - running deployed functions, whatever the wire: a reference
 * (name or ARN, and a qualifier) is resolved through the registry to the
 * version and code that run, with the policy that applies to it (the
 * realm:network tag, reserved concurrency, --provisioned warm
 * environments), and handed to the execution engine. One invoker serves
 * api/'s HTTP Invoke, InvokeAsync and InvokeWithResponseStream, the
 * client WebSocket's `invoke` and by-name calls (invoke/functions.h), and
 * the durable queue of Event invocations (retried with backoff, failures
 * kept and listable; docs/execution.md).
 *
 * DESIGN: resolution of an unqualified name is cached per registry write
 * generation (a function nobody changed reads no SQL); versions and
 * aliases are resolved each time (a weighted alias picks anew), on the
 * registry's worker (registry/async.h). Events go to the queue only, which
 * lives on a worker of its own (events.c): a dispatcher takes due events
 * in jobs, with a bounded budget, runs them, and then removes, retries
 * (doubling delays, --event-retries times), defers (throttled), parks
 * (reserved concurrency 0) or fails them (EventAgeExceeded after 6 hours).
 * This module knows no wire format: callers get exec's sinks (exec.h).
 *
 * LIFETIME: the registry, the package store and the engine are borrowed
 * (opened by the server) and must outlive the invoker; realm_invoker_close
 * closes its handles and frees it on a later loop turn.
 * THREADS: the loop thread, but the registry (its worker) and the queue
 * (the events worker): both are touched only by jobs (internal.h).
 */
#ifndef REALM_INVOKE_INVOKER_H
#define REALM_INVOKE_INVOKER_H

#include "base/buf.h"
#include "config/config.h"
#include "exec/exec.h"
#include "pkg/pkg.h"
#include "queue/queue.h"
#include "registry/async.h"

#include <jansson.h>
#include <uv.h>

typedef struct realm_invoker_s realm_invoker_t;

#define REALM_INVOKER_SYNC_LIMIT 6291456u /* 6 MB: RequestResponse payloads */
#define REALM_INVOKER_ASYNC_LIMIT 262144u /* 256 KB: Event payloads */

typedef struct {
    uv_loop_t *loop;
    const realm_config_t *cfg;  /* borrowed: data_dir, limits, --provisioned, event retries */
    realm_registry_async_t *ra; /* borrowed: the registry on its worker */
    realm_pkg_store_t *store;   /* borrowed */
    realm_exec_t *exec;         /* borrowed */
} realm_invoker_opts_t;

/* Opens the event queue (DATA_DIR/events.db). NULL with a message in err. */
realm_invoker_t *realm_invoker_new(const realm_invoker_opts_t *o, char *err, size_t err_len);
/*
 * Stops the dispatcher, closes the queue and closes the invoker's handles;
 * the memory goes in the last close callback, on a later loop turn, after
 * which cb (if not NULL) is called with data. NULL iv is a no-op (cb is not
 * called). Any invocation still running must have ended first (free the
 * engine before).
 */
typedef void (*realm_invoker_close_cb)(void *data);
void realm_invoker_close(realm_invoker_t *iv, realm_invoker_close_cb cb, void *data);
/* Starts the work that needs the runtime API: provisioned environments, queued events. */
void realm_invoker_begin(realm_invoker_t *iv);
/* Stops taking queued events (shutdown); what is leased stays queued. */
void realm_invoker_drain(realm_invoker_t *iv);

/* ---- synchronous and streamed invocation ---- */

/*
 * Starts an invocation of a deployed function. The resolution of the name
 * comes from the cache when it can (an unqualified name nobody changed),
 * else from the registry's worker, and the loop does not wait for it:
 *   1: started now: *inv is the invocation; the sink's on_done comes
 *      exactly once on a later loop turn (also when throttled: exec.h);
 *      started is never called.
 *   0: resolving: started(inv, NULL, data) comes once, later, with the
 *      invocation (the sink follows, as above), or started(NULL, e, data)
 *      when there is nothing to run (404, 400, 503 while the database is
 *      unavailable...) and the sink is never called.
 *  -1: nothing to run, said now in e (the registry's queue is full or
 *      closing); nothing is ever called.
 * tenant, function, qualifier and req are borrowed for the call only (what
 * a later start needs is copied), but req->payload_owned is taken over in
 * every case. executed_version (24 bytes, or NULL; it must live until
 * started or on_done) gets the version that runs.
 */
typedef void (*realm_invoker_started_cb)(realm_inv_t *inv, const realm_error_t *e, void *data);
int realm_invoker_start(realm_invoker_t *iv, const char *tenant, const char *function,
                        const char *qualifier, const realm_inv_req_t *req,
                        const realm_inv_sink_t *sink, void *data, char *executed_version,
                        realm_invoker_started_cb started, realm_inv_t **inv, realm_error_t *e);

/* ---- Event invocation ---- */

typedef enum {
    REALM_INVOKER_DRY_RUN,     /* only checks that the function can be invoked */
    REALM_INVOKER_EVENT,       /* queued under its name, with the qualifier as given */
    REALM_INVOKER_EVENT_PLAIN, /* InvokeAsync: queued unqualified ($LATEST) */
} realm_invoker_mode_t;

/*
 * Resolves the function (on the registry's worker) and, for an Event, puts
 * it in the durable queue (on the events worker; it runs later, on the
 * dispatcher). payload is copied (JSON text, already within
 * REALM_INVOKER_ASYNC_LIMIT). Returns 0, and cb(version, NULL, data) comes
 * once, on a later loop turn, when the event is queued (or would run:
 * DryRun), with the version that runs; or cb(NULL, e, data) with the
 * registry's error (404, 400...), REALM_ERR_EVENT_QUEUE_FULL (429),
 * REALM_ERR_STORE_UNAVAILABLE (503: nothing was queued) or
 * REALM_ERR_INTERNAL_ERROR (500). Or -1 with e now (the registry's worker
 * is full or closing) and cb never comes.
 */
typedef void (*realm_invoker_submitted_cb)(const char *version, const realm_error_t *e, void *data);
int realm_invoker_submit(realm_invoker_t *iv, realm_invoker_mode_t mode, const char *tenant,
                         const char *function, const char *qualifier, const char *payload,
                         size_t len, realm_invoker_submitted_cb cb, void *data, realm_error_t *e);
/* The Reason of a 429 answer for an error code ("EventQueueFull"), "" for others. */
const char *realm_invoker_throttle_reason(int code);
/* The Event queue (borrowed until realm_invoker_close). It belongs to the
 * events worker: tests and fuzzers may use it only while no job is queued. */
realm_queue_t *realm_invoker_queue(realm_invoker_t *iv);
/* 1 when no Event job is queued or under way and no kick is due (tests). */
int realm_invoker_events_idle(realm_invoker_t *iv);
/* Event invocations queued, all tenants and functions (the metric), as the
 * dispatcher last counted them (plus those queued since). */
size_t realm_invoker_events_pending(realm_invoker_t *iv);
/*
 * The failed Event invocations of a function (at most 100, a new JSON
 * array, the callee's) and how many are pending, read on the events
 * worker: 0 and cb(list, pending, data) comes once, later (an empty list
 * when they could not be read); or -1 (closing) and cb never comes. The
 * function's name is its plain name (realm_invoker_plain_name).
 */
typedef void (*realm_invoker_failed_cb)(json_t *list, int64_t pending, void *data);
int realm_invoker_failed_events(realm_invoker_t *iv, const char *tenant, const char *name,
                                realm_invoker_failed_cb cb, void *data);

/*
 * The event dispatcher's decision for an event that ended (pure; tests).
 * attempts is the attempts before this one; the answer is RETRY with the
 * delay in *delay_ms, or FAIL. An EXPIRED event is past Lambda's maximum
 * age (6 hours) and is dropped to the failed list.
 */
typedef enum { REALM_EVENT_RETRY, REALM_EVENT_FAIL, REALM_EVENT_EXPIRED } realm_event_verdict_t;
realm_event_verdict_t realm_invoker_event_verdict(const realm_config_t *cfg, int attempts,
                                                  int64_t *delay_ms);
int realm_invoker_event_is_expired(int64_t enqueued_ms, int64_t now_ms);

/* ---- functions, policy and logs ---- */

/*
 * The plain name (no qualifier) of a function reference, checking on the
 * registry's worker that it exists: 0 and cb(name, NULL, data) or cb(NULL,
 * e, data) (404; 503 when closing) once, later, on the loop; or -1 with e
 * now (a malformed name 400, the worker full or closing 503): cb never
 * comes.
 */
typedef void (*realm_invoker_named_cb)(const char *name, const realm_error_t *e, void *data);
int realm_invoker_plain_name(realm_invoker_t *iv, const char *tenant, const char *function,
                             realm_invoker_named_cb cb, void *data, realm_error_t *e);
/*
 * Appends the last `tail` bytes of a function's log (the older file first
 * when the current one holds less) to out. name is a plain name.
 */
/*
 * A function's log on every node of a cluster (api/node.c gathers them:
 * realm_invoker_set_logs_gather). 0 and done(text, len, nodes, done_data)
 * once, later, on the loop: each node's last `tail` bytes, nodes in id
 * order, and the ids of the nodes that answered ("n1,n2"); or -1 when
 * there is no cluster (done never comes: read the local log).
 */
typedef void (*realm_invoker_logs_cb)(const char *text, size_t len, const char *nodes,
                                      void *done_data);
typedef int (*realm_invoker_logs_gather_cb)(const char *tenant, const char *name, long tail,
                                            realm_invoker_logs_cb done, void *done_data,
                                            void *data);
void realm_invoker_set_logs_gather(realm_invoker_t *iv, realm_invoker_logs_gather_cb gather,
                                   void *data);
int realm_invoker_gather_logs(realm_invoker_t *iv, const char *tenant, const char *name, long tail,
                              realm_invoker_logs_cb done, void *done_data);
void realm_invoker_read_log(realm_invoker_t *iv, const char *tenant, const char *name, long tail,
                            realm_buf_t *out);

/*
 * Forgets every cached resolution at once: the next invocation of each
 * function reads the registry again (another node changed it: a hint
 * over the cluster's bus, docs/cluster.md).
 */
void realm_invoker_forget_cached(realm_invoker_t *iv);
/*
 * Forgets every cached resolution when the one of tenant's unqualified
 * function is cached with another RevisionId than revision (another node
 * resolved it newer and placed the call here before its hint came). 1 if
 * it did.
 */
int realm_invoker_forget_if_stale(realm_invoker_t *iv, const char *tenant, const char *function,
                                  const char *revision);

/*
 * A node of a cluster (api/node.c): the dispatcher looks at the queue at
 * least every look_ms (events a dead node had taken come back when their
 * lease expires), and on_pushed(data) runs after each event queued here
 * (the node wakes the others' dispatchers). look_ms 0 and on_pushed NULL
 * undo it.
 */
void realm_invoker_events_cluster(realm_invoker_t *iv, uint64_t look_ms,
                                  void (*on_pushed)(void *data), void *data);
/* Another node queued an event: look now if there is room. */
void realm_invoker_events_wake(realm_invoker_t *iv);

/* Checks --provisioned's syntax: 0, or -1 with a message. */
int realm_invoker_check_provisioned(const char *spec, char *err, size_t err_len);
/*
 * Keeps the warm environments --provisioned asks for: of every function
 * listed (only NULL), or of the one named only (after it was created or
 * changed). Each is resolved on the registry's worker and provisioned when
 * found.
 */
void realm_invoker_provision(realm_invoker_t *iv, const char *only);

/* A function was deleted: its queued and failed events go too. */
void realm_invoker_forget(realm_invoker_t *iv, const char *tenant, const char *name);

/*
 * Every deployed function of a tenant for `metadata`, read on the
 * registry's worker: 0 and done(fns, ctx) comes once, on a later loop turn,
 * with a new array (the callee owns it; empty when the registry could not
 * be read); or -1 (the worker is full or closing) and done never comes.
 */
int realm_invoker_describe(realm_invoker_t *iv, const char *tenant,
                           void (*done)(json_t *fns, void *ctx), void *ctx);

/* Resolutions served from the cache since the start (tests). */
uint64_t realm_invoker_cache_hits(const realm_invoker_t *iv);

#endif
