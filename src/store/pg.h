/*
 * pg.h - the PostgreSQL backend's shared parts (not a public header): the
 * store struct, the connection, prepared statements and the errors. The SQL
 * of each kind is in pg_<kind>.c (pg_registry.c, pg_queue.c, pg_auth.c;
 * docs/storage.md).
 *
 * DESIGN: one PGconn per store, blocking libpq calls (PQexecPrepared), each
 * statement prepared once per connection (PQprepare, named "r<index>").
 * A lost connection (CONNECTION_BAD) fails the call (-1, logged) and the
 * next call tries PQreset once; the prepared statements are made again on
 * the new connection. One exception: an enqueue (pg_queue.c) whose
 * connection is lost runs again at once, or, when its COMMIT was in doubt,
 * reconnects and asks the database whether it committed (realm_pg_q_committed),
 * so that it is queued exactly once. Shared rows name their store by
 * p->owner (host:pid and a per-open part): the registry's pending entries,
 * the queue's leases. A lost connection is reset at most once per backoff
 * period (100 ms doubling to 5 s, jittered); calls in between fail at once
 * with the store marked unreachable (realm_store_is_unreachable: callers
 * answer 503 STORE_UNAVAILABLE). TCP keepalives and tcp_user_timeout bound
 * how long a silent database (a partition) holds a call: ~25 s.
 *
 * LIFETIME: the store owns its connection until realm_store_close.
 * THREADS: one thread per store; every call waits on the network, so it
 * must not run on the event loop (the façade's worker thread will).
 */
#ifndef REALM_STORE_PG_H
#define REALM_STORE_PG_H

#include "store/internal.h"

#include <libpq-fe.h>

#define PG_STMT_MAX 64 /* more distinct statements than any kind has */

/* A statement of a kind: its SQL and parameter count (a static table). */
typedef struct {
    const char *sql;
    int nparams;
} pg_stmt_t;

typedef struct {
    realm_store_t base;
    realm_store_ops_t ops; /* base.ops points here */
    PGconn *conn;
    char *where;            /* "postgresql://user@host:port/db (kind)": no password */
    const pg_stmt_t *stmts; /* the kind's statements (pg_registry.c) */
    size_t stmt_cnt;
    unsigned char prepared[PG_STMT_MAX]; /* on this connection (cleared by a reset) */
    int in_txn;
    uint64_t last_generation; /* the last shared generation read */
    int64_t backoff_ms;       /* reconnection backoff while the database is down */
    int64_t retry_at_ms;      /* no reconnection before (CLOCK_MONOTONIC ms) */
    char owner[192];          /* this store's name in shared rows (pending, leases) */
    /* The queue kind (pg_queue.c): realm_store_q_stats' counters, and a hook
     * the tests set to act between an enqueue's statement and its COMMIT
     * (xid: the enqueue's transaction id, text). */
    uint64_t q_rows, q_payload_reads, q_payload_bytes;
    void (*q_before_commit)(void *arg, const char *xid);
    void *q_hook_arg;
} pg_t;

/*
 * Runs the kind's statement idx with params (text; NULL is SQL NULL),
 * preparing it first on this connection. Returns the result when its status
 * is PGRES_COMMAND_OK or PGRES_TUPLES_OK (PQclear it); NULL on error, logged
 * unless its SQLSTATE is quiet (may be NULL), with the SQLSTATE copied to
 * sqlstate (6 bytes, may be NULL).
 */
PGresult *realm_pg_exec(pg_t *p, size_t idx, const char *const *params, char *sqlstate);
/* realm_pg_exec with PQexecPrepared's lengths and formats (1: binary; both
 * may be NULL: all text) and the result in binary when binary_result. */
PGresult *realm_pg_exec_bin(pg_t *p, size_t idx, const char *const *params, const int *lengths,
                            const int *formats, int binary_result, char *sqlstate);
/* Runs sql without parameters (simple query protocol): 0 or -1 (logged). */
int realm_pg_simple(pg_t *p, const char *sql);
/* 0 when the connection is usable (reset once if it was lost), -1 (logged). */
int realm_pg_ready(pg_t *p);
/* Logs "store: WHERE: what: libpq's message" and returns -1. */
int realm_pg_fail(pg_t *p, const char *what, const PGresult *res);
/* The rows a write changed (PQcmdTuples), 0 if none. */
int64_t realm_pg_changes(const PGresult *res);
json_t *realm_pg_json(const PGresult *res, int row, int col); /* never NULL */
int64_t realm_pg_int(const PGresult *res, int row, int col);  /* 0 for NULL */

extern const realm_store_schema_t realm_pg_registry_schema;
/* Fills the registry's ops and p->stmts; sets p->owner. */
void realm_pg_registry_init(pg_t *p);
/* Once the schema is there: drops the creates/updates in flight left by
 * dead processes of this machine's pid namespace (pg_registry.c). A
 * failure is logged and changes nothing (those rows expire anyway). */
void realm_pg_registry_opened(pg_t *p);
/* Releases the leases of this machine's dead processes (pg_queue.c). */
void realm_pg_queue_opened(pg_t *p);
/*
 * Where a pid means one process: "HOST/BOOT/PIDNS" into out; 1, or 0 when
 * it cannot say (then the host alone, and no row is judged by its pid).
 * Owners of shared rows are "SPACE:PID:SALT".
 */
int realm_pg_pid_space(char *out, size_t len);
/* The pid of owner when it is in prefix's space ("SPACE:") and gone, else 0. */
long realm_pg_dead_owner(const char *owner, const char *prefix);
/* p->owner: "SPACE:PID:SALT" (two stores of one process are two owners). */
void realm_pg_set_owner(pg_t *p);
/* Runs drop_stmt(owner) for each owner owners_stmt("SPACE:") lists whose
 * process is gone (this machine's), logging how many rows of what. */
void realm_pg_release_dead(pg_t *p, size_t owners_stmt, size_t drop_stmt, const char *what);

extern const realm_store_schema_t realm_pg_auth_schema;
/* Fills the auth kind's ops and p->stmts (pg_auth.c). */
void realm_pg_auth_init(pg_t *p);
extern const realm_store_schema_t realm_pg_leases_schema;
/* Fills the leases kind's ops and p->stmts (pg_leases.c). */
void realm_pg_leases_init(pg_t *p);
extern const realm_store_schema_t realm_pg_queue_schema;
/* Fills the queue's ops and p->stmts; sets p->owner (pg_queue.c). */
void realm_pg_queue_init(pg_t *p);
/*
 * Whether the transaction xid (text, pg_current_xact_id) committed, after a
 * COMMIT whose answer was lost: 1 committed, 0 aborted (it never will), -1
 * unknown (logged). Reconnects first; when the old session (old_pid) is
 * still finishing it, that session is ended (waiting up to 5 s) so that the
 * answer is final (pg_queue.c; exported for the tests).
 */
int realm_pg_q_committed(pg_t *p, const char *xid, int old_pid);

#endif
