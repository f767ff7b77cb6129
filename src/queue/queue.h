/*
 * queue.h - the durable queue of asynchronous (InvocationType=Event) Lambda
 * invocations, in one SQLite file (e.g. DATA_DIR/events.db).
 *
 * DESIGN: an event is pushed once the invoke request is accepted (202) and
 * stays pending until the dispatcher reports its outcome: done (removed),
 * retry (attempts + 1, due again later), fail (moved to the failed list,
 * which keeps the newest REALM_QUEUE_FAILED_KEEP events of each function) or
 * release (handed back untouched, e.g. throttled or shutting down).
 *
 * Leases: take_due hands an event out and marks it leased so it is not
 * handed out twice while it runs. Leases live in memory only: after a crash
 * (or any close and reopen) nothing is leased and every pending event is due
 * again at its stored due time, so an event is delivered at least once.
 *
 * Durability: each operation is one small transaction in WAL mode with
 * synchronous=NORMAL: an event whose push returned survives a SIGKILL of the
 * server (not necessarily a power loss).
 *
 * Times are milliseconds since the Unix epoch (the caller's clock, passed in
 * so tests control it). Tenants: every function name lives in a tenant's
 * namespace ("" until authentication exists).
 *
 * Errors: functions returning int answer 0, or -1 on a storage error (the
 * SQLite message is logged). An id that is no longer pending (its function
 * was forgotten while the event ran) is not an error for done, retry, fail,
 * release or defer: the lease is dropped and 0 returned.
 *
 * THREADS: loop thread only (one SQLite connection). Every call blocks on
 * a small transaction; busy_timeout is 1000 ms if another process holds the
 * write lock.
 */
#ifndef REALM_QUEUE_QUEUE_H
#define REALM_QUEUE_QUEUE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Failed events kept per function; older ones are deleted on insert. */
#define REALM_QUEUE_FAILED_KEEP 1000

typedef struct realm_queue_s realm_queue_t;

/* One event handed out by realm_queue_take_due. */
typedef struct {
    int64_t id;          /* > 0, never reused within one file */
    char *tenant;        /* owned */
    char *function;      /* owned: the function name */
    char *qualifier;     /* owned: version or alias; "" when none */
    char *payload;       /* owned; payload_len bytes plus a NUL (never NULL) */
    size_t payload_len;  /* binary-safe: may hold NUL bytes */
    int attempts;        /* tries already made (0 on the first take) */
    int64_t enqueued_ms; /* when it was pushed */
} realm_queue_item_t;

/*
 * Opens (creating if needed) the queue file at path; its directory must
 * exist. Returns a new queue (free with realm_queue_close), or NULL with a
 * message in err (e.g. "/x/events.db: unable to open database file").
 */
realm_queue_t *realm_queue_open(const char *path, char *err, size_t err_len);
/* Closes the file; leases are forgotten (their events stay pending). NULL is fine. */
void realm_queue_close(realm_queue_t *q);

/*
 * Appends an event, due at now_ms with 0 attempts. Strings are copied;
 * qualifier NULL means none (""); payload (len bytes, NULL when len is 0) is
 * copied as a blob. Returns the new id (> 0) once it is committed, or -1 with
 * a message in err.
 */
int64_t realm_queue_push(realm_queue_t *q, const char *tenant, const char *function,
                         const char *qualifier, const void *payload, size_t len, int64_t now_ms,
                         char *err, size_t err_len);

/*
 * Fills items[0..n) with up to max events that are due (due time <= now_ms)
 * and not leased, oldest (lowest id, that is first pushed) first, and leases
 * them. Returns n (0 on a storage error, which is logged). Each item is the
 * caller's: dispose it with realm_queue_item_dispose, and end each lease with
 * exactly one of done, retry, fail, release or defer.
 */
size_t realm_queue_take_due(realm_queue_t *q, int64_t now_ms, realm_queue_item_t *items,
                            size_t max);
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

/* The earliest due time among unleased pending events, or -1 if none (or on error). */
int64_t realm_queue_next_due(realm_queue_t *q);
/* Pending events, leased or not (0 on error). */
size_t realm_queue_pending(realm_queue_t *q);

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
