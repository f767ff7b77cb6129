/*
 * internal.h - what invoker.c (resolution, starts, names, life) and
 * events.c (the Event queue: submission and the dispatcher) share. Not a
 * public header: the invoker's API is invoker.h.
 *
 * THREADS: everything here is the loop's, but the registry and the queue:
 * the registry is used only by jobs on its worker (registry/async.h), the
 * queue (iv->queue) only by jobs on the events worker (iv->eq).
 */
#ifndef REALM_INVOKE_INTERNAL_H
#define REALM_INVOKE_INTERNAL_H

#include "invoke/invoker.h"
#include "storeq/storeq.h"

#include <stdint.h>

#define DEFAULT_TENANT ""                    /* the namespace when authentication is off */
#define THROTTLED_RETRY_MS 1000              /* a throttled event waits this long */
#define EVENT_MAX_AGE_MS (6 * 3600 * 1000LL) /* Lambda keeps an event this long */
#define EVENT_KICK_BUDGET 64                 /* events taken per take at most */
#define PARK_CHECK_MS 1000                   /* parked functions are looked at this often */
#define RCACHE_SLOTS 256                     /* resolutions kept (see rcache_t) */
#define EVENTS_MAX_JOBS 65536                /* the events worker's queue bound */

/*
 * The last resolution of an unqualified function name ($LATEST) per slot,
 * kept while the registry's generation stays the same: an invocation of a
 * function nobody changed reads no SQL and parses no configuration. Direct-
 * mapped by a hash of tenant and name; a collision replaces the entry.
 * Versions and aliases (a weighted alias picks anew each time) are not kept.
 * Another node's write (a hint over the cluster's bus) bumps the invoker's
 * cache epoch, which empties the cache at once, ahead of the generation
 * poll.
 */
typedef struct {
    char *key; /* owned: tenant "\n" name; NULL when the slot is empty */
    uint64_t generation;
    uint64_t epoch; /* the invoker's cache_epoch when the lookup started */
    realm_fn_version_t v; /* config: an owned reference */
    int no_network;
} rcache_t;

struct realm_invoker_s {
    realm_invoker_opts_t o;
    realm_queue_t *queue; /* used by jobs on eq only */
    realm_storeq_t *eq;   /* the events worker */
    size_t eq_jobs;       /* jobs submitted to eq whose done has not come */
    uv_timer_t timer;     /* the next due event (or the next parked check) */
    uv_idle_t kick_idle;  /* a kick on the next loop turn */
    size_t events_running;
    size_t events_preparing; /* taken, being resolved or read, not started yet */
    size_t pending_known;    /* queued events, as the last take counted them */
    int is_taking;           /* a take job is queued */
    int is_parked_checking;  /* a parked check is under way */
    uint64_t parked_gen;     /* the registry generation parked functions were checked at */
    int has_parked;          /* some function has parked events */
    int is_parked_checked;   /* parked_gen is meaningful */
    int is_draining;
    int is_closing;
    int is_eq_closed;
    int handles_open;                           /* timer, kick_idle and eq until they are closed */
    void (*eq_one_closed)(realm_invoker_t *iv); /* eq is gone (invoker.c's close) */
    realm_invoker_close_cb on_closed;
    void *closed_data;
    uint64_t cache_hits;
    uint64_t cache_epoch; /* realm_invoker_forget_cached bumps it */
    realm_invoker_logs_gather_cb logs_gather; /* a cluster's (realm_invoker_set_logs_gather) */
    uint64_t look_ms;                         /* a cluster's: the dispatcher looks at least this often */
    void (*on_event_pushed)(void *data);      /* a cluster's: an event was queued here */
    void *on_event_pushed_data;
    void *logs_gather_data;
    rcache_t rcache[RCACHE_SLOTS];
};

/* What runs: a resolved version with everything the engine needs. */
typedef struct {
    realm_exec_fn_t fn;
    realm_fn_version_t v;
    char code_dir[4096];
    char **env;
    char arn[256];
} resolved_t;

void realm_invoker_resolved_dispose(resolved_t *r);
/* From the cache: 1 and r filled (fn.tenant = tenant, which must outlive r), or 0. */
int realm_invoker_cached(realm_invoker_t *iv, const char *tenant, const char *function,
                         const char *qualifier, resolved_t *r);
/*
 * Resolves on the registry's worker: 0 and done(iv, r, e, data) comes once,
 * later, on the loop, with r (the callee disposes it; fn.tenant points into
 * memory that lives until done returns: copy what must last) or with NULL
 * and e; or an error code now (the worker is full or closing: nothing
 * called).
 */
typedef void (*realm_invoker_resolved_cb)(realm_invoker_t *iv, resolved_t *r,
                                          const realm_error_t *e, void *data);
int realm_invoker_resolve_async(realm_invoker_t *iv, const char *tenant, const char *function,
                                const char *qualifier, realm_invoker_resolved_cb done, void *data);
/* Starts what was resolved on the engine (exec.h's contract). */
realm_inv_t *realm_invoker_start_resolved(realm_invoker_t *iv, resolved_t *r, const char *qualifier,
                                          const realm_inv_req_t *req, const realm_inv_sink_t *sink,
                                          void *data);
int64_t realm_invoker_wall_ms(void);

/* ---- events.c ---- */

/* Opens the queue where --db says and starts the events worker. */
int realm_invoker_events_open(realm_invoker_t *iv, char *err, size_t err_len);
/* Counts what is queued (logged) and kicks the dispatcher. */
void realm_invoker_events_begin(realm_invoker_t *iv);
void realm_invoker_events_stop(realm_invoker_t *iv); /* drain: no new takes */
/* Closes the events worker once its jobs are done, then one_closed(iv). */
void realm_invoker_events_close(realm_invoker_t *iv, void (*one_closed)(realm_invoker_t *iv));

#endif
