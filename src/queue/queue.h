/*
 * queue.h - the durable queue of asynchronous (InvocationType=Event) Lambda
 * invocations, in one store (store/store.h): a SQLite file (e.g.
 * DATA_DIR/events.db), a PostgreSQL database several servers may share
 * when the path is "postgresql://..." (docs/storage.md), or memory when it
 * is "memory:...".
 *
 * DESIGN: an event is pushed once the invoke request is accepted (202) and
 * stays pending until the dispatcher reports its outcome: done (removed),
 * retry (attempts + 1, due again later), fail (moved to the failed list,
 * which keeps the newest REALM_QUEUE_FAILED_KEEP events of each function),
 * release (handed back untouched, e.g. shutting down), defer (throttled:
 * due again later, attempts unchanged) or park (the function may not run at
 * all, reserved concurrency 0: the event sleeps until unpark wakes its
 * function's events, or until the time given, its expiry).
 *
 * Bounds: realm_queue_set_limits caps the pending events of one function and
 * of one tenant; push beyond answers REALM_QUEUE_FULL. The counts live in
 * the file (kept by triggers), so checking them reads two rows, not the
 * backlog.
 *
 * Cost: every operation reads or writes a bounded number of rows, whatever
 * the backlog: take_due walks the due-time index from the front and skips
 * only leased events (at most the events in flight); payloads live in their
 * own table and are read only by realm_queue_load_payload, when an event is
 * about to run; parked events are out of the way until they expire. Opening
 * a file reads no events. realm_queue_stats counts the work done, for tests.
 *
 * Leases: take_due hands an event out and marks it leased so it is not
 * handed out twice while it runs (the store's lease token, which every
 * outcome names: an outcome for a lease lost meanwhile changes nothing).
 * With SQLite, leases live in memory only: after a crash (or any close and
 * reopen) nothing is leased and every pending event is due again at its
 * stored due time, so an event is delivered at least once. On PostgreSQL
 * (a database several servers may share) leases are rows that last
 * REALM_QUEUE_LEASE_MS: another server (or this one, restarted) claims a
 * dead server's events again once they expire.
 *
 * Durability: each operation is one small transaction in WAL mode with
 * synchronous=NORMAL: an event whose push returned survives a SIGKILL of the
 * server (not necessarily a power loss).
 *
 * Times are milliseconds since the Unix epoch (the caller's clock, passed in
 * so tests control it). Tenants: every function name lives in a tenant's
 * namespace ("" without authentication).
 *
 * Errors: functions returning int answer 0, or -1 on a storage error (the
 * store logs the cause). An id that is no longer pending (its function
 * was forgotten while the event ran) is not an error for done, retry, fail,
 * release, defer or park: the lease is dropped and 0 returned.
 *
 * THREADS: loop thread only (one store connection). Every call blocks on
 * a small transaction; busy_timeout is 1000 ms if another process holds the
 * write lock.
 */
#ifndef REALM_QUEUE_QUEUE_H
#define REALM_QUEUE_QUEUE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* How long take_due's lease lasts on PostgreSQL (SQLite, memory: until the
 * outcome or the close). take_due renews the leases of the events this
 * queue still holds every third of it, before claiming: a live server
 * keeps its events; a dead one's come back at most this long after it
 * stopped (a server that stops calling take_due for longer may lose them:
 * another server takes them, and this one's outcomes are stale). */
#define REALM_QUEUE_LEASE_MS (30 * 60 * 1000LL)

/* Failed events kept per function; older ones are deleted on insert. */
#define REALM_QUEUE_FAILED_KEEP 1000

typedef struct realm_queue_s realm_queue_t;

/* push: a bound of realm_queue_set_limits is reached (the event is not queued). */
#define REALM_QUEUE_FULL (-2)

/* One event handed out by realm_queue_take_due. */
typedef struct {
    int64_t id;          /* > 0, never reused within one file */
    char *tenant;        /* owned */
    char *function;      /* owned: the function name */
    char *qualifier;     /* owned: version or alias; "" when none */
    char *payload;       /* owned; NULL until realm_queue_load_payload, then payload_len
                            bytes plus a NUL */
    size_t payload_len;  /* binary-safe: may hold NUL bytes */
    int attempts;        /* tries already made (0 on the first take) */
    int64_t enqueued_ms; /* when it was pushed */
} realm_queue_item_t;

/* Work done since open, for tests and metrics. */
typedef struct {
    uint64_t vm_steps;      /* SQLite virtual machine steps of every statement (rows touched) */
    uint64_t payload_reads; /* payloads read (realm_queue_load_payload) */
    uint64_t payload_bytes; /* their bytes */
} realm_queue_stats_t;

/*
 * Opens (creating if needed) the queue file at path; its directory must
 * exist. Returns a new queue (free with realm_queue_close), or NULL with a
 * message in err (e.g. "/x/events.db: unable to open database file").
 */
realm_queue_t *realm_queue_open(const char *path, char *err, size_t err_len);
/* Closes the file; leases are forgotten (their events stay pending). NULL is fine. */
void realm_queue_close(realm_queue_t *q);

/*
 * Caps the pending events (leased, parked or not) of one function and of
 * one tenant; 0 means no cap (the default). Pushes beyond are refused.
 */
/* 1 when the last storage error was the database out of reach (store.h). */
int realm_queue_unreachable(const realm_queue_t *q);
/* How long a lease lasts on a shared database (REALM_QUEUE_LEASE_MS when
 * lease_ms <= 0; --event-lease-ms). Renewed every third of it. */
void realm_queue_set_lease(realm_queue_t *q, int64_t lease_ms);
void realm_queue_set_limits(realm_queue_t *q, uint64_t per_function, uint64_t per_tenant);

/*
 * Appends an event, due at now_ms with 0 attempts. Strings are copied;
 * qualifier NULL means none (""); payload (len bytes, NULL when len is 0) is
 * copied as a blob. Returns the new id (> 0) once it is committed;
 * REALM_QUEUE_FULL when the function or the tenant already has its cap of
 * pending events (err says which); or -1 with a message in err.
 */
int64_t realm_queue_push(realm_queue_t *q, const char *tenant, const char *function,
                         const char *qualifier, const void *payload, size_t len, int64_t now_ms,
                         char *err, size_t err_len);

/*
 * Fills items[0..n) with up to max events that are due (due time <= now_ms)
 * and not leased, earliest due first (ties: first pushed first), and leases
 * them. Payloads are not read (item.payload is NULL). Returns n (0 on a
 * storage error, which is logged). Each item is the caller's: dispose it
 * with realm_queue_item_dispose, and end each lease with exactly one of
 * done, retry, fail, release, defer or park.
 */
size_t realm_queue_take_due(realm_queue_t *q, int64_t now_ms, realm_queue_item_t *items,
                            size_t max);
/*
 * Reads a taken event's payload into it->payload and it->payload_len (the
 * item's from then on). Returns 0; or -1 when the event is no longer
 * pending (forgotten) or on a storage error (payload stays NULL).
 */
int realm_queue_load_payload(realm_queue_t *q, realm_queue_item_t *it);
/* Frees an item's strings and zeroes it; safe to call twice. */
void realm_queue_item_dispose(realm_queue_item_t *it);

/* The event succeeded: it is removed. */
int realm_queue_done(realm_queue_t *q, int64_t id);
/*
 * A try failed and another will be made: attempts + 1, due at due_ms,
 * unleased. error (may be NULL) is kept as the event's last error.
 */
int realm_queue_retry(realm_queue_t *q, int64_t id, int64_t due_ms, const char *error);
/*
 * The event is given up: it moves to the failed list with the error (either
 * may be NULL) and now_ms as its failure time. Its Attempts there are
 * attempts + 1: fail is meant to follow a try that failed, and that try
 * counts (as it does for retry).
 */
int realm_queue_fail(realm_queue_t *q, int64_t id, const char *error_type,
                     const char *error_message, int64_t now_ms);
/* The event was not tried (shutting down): unleased, unchanged, due as before. */
int realm_queue_release(realm_queue_t *q, int64_t id);
/*
 * The event was not tried and should wait (throttled): unleased and due at
 * due_ms, attempts unchanged. (release would make it due at once again.)
 */
int realm_queue_defer(realm_queue_t *q, int64_t id, int64_t due_ms);

/*
 * The event's function may not run now (reserved concurrency 0): unleased,
 * attempts unchanged, parked until realm_queue_unpark wakes its function or
 * until_ms (its expiry), whichever comes first. Its function is recorded for
 * realm_queue_parked.
 */
int realm_queue_park(realm_queue_t *q, int64_t id, int64_t until_ms);
/*
 * Wakes the parked events of tenant's function: due at now_ms. Returns how
 * many woke, or -1 on a storage error. The function leaves realm_queue_parked.
 */
int64_t realm_queue_unpark(realm_queue_t *q, const char *tenant, const char *function,
                           int64_t now_ms);
/*
 * The functions with parked events (one row each, however many events):
 * a new reference to [["tenant", "function"], ...], or NULL on a storage
 * error (logged).
 */
json_t *realm_queue_parked(realm_queue_t *q);

/* The earliest due time among unleased pending events (parked ones: their
 * expiry), or -1 if none (or on error). */
int64_t realm_queue_next_due(realm_queue_t *q);
/* Pending events, leased or not (0 on error); reads the counts, not the events. */
size_t realm_queue_pending(realm_queue_t *q);
/* The same for one tenant's function. */
size_t realm_queue_pending_of(realm_queue_t *q, const char *tenant, const char *function);
/* Work done since open (see realm_queue_stats_t). */
void realm_queue_stats(realm_queue_t *q, realm_queue_stats_t *out);

/*
 * The failed events of tenant's function (function NULL: of all the
 * tenant's functions), newest failure first, at most limit. Returns a new
 * reference to a JSON array of objects:
 *   {"Id": 42, "FunctionName": "f", "Qualifier": "" (none) or "prod",
 *    "Payload": "<the payload as text>", "Attempts": 3,
 *    "ErrorType": "Unhandled" or null, "ErrorMessage": ".." or null,
 *    "EnqueuedAt": "2024-05-01T12:00:00.000Z", "FailedAt": "..Z"}
 * Bytes of the payload or the error that are not valid UTF-8 are replaced
 * by U+FFFD (a JSON string cannot hold them). Returns NULL on a storage
 * error (logged).
 */
json_t *realm_queue_list_failed(realm_queue_t *q, const char *tenant, const char *function,
                                size_t limit);

/* Drops the pending and failed events of tenant's function (it was deleted). */
int realm_queue_forget(realm_queue_t *q, const char *tenant, const char *function);

#endif
