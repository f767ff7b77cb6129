/*
 * store.h - Realm's storage interface: every byte of durable (or shared)
 * state goes through it, and the SQL lives only behind it (src/store/).
 *
 * DESIGN: a store is opened for one kind of state (REALM_STORE_REGISTRY:
 * functions, versions, aliases, reserved concurrency, tags, the packages
 * they name and the creates/updates in flight; REALM_STORE_QUEUE: the Event
 * queue; REALM_STORE_AUTH: tenants and keys) at a location. The location
 * picks the backend:
 *   "memory:" or "memory:NAME"   everything in this process's memory (tests;
 *                                nothing survives close)
 *   "postgresql://..." or "postgres://..."   a PostgreSQL database (libpq
 *                                URL; every kind, one database for all,
 *                                shared by every server that opens it; its
 *                                calls block on the network: not for the loop)
 *   anything else                a SQLite file at that path (WAL,
 *                                synchronous=NORMAL, busy timeout 1 s)
 * Each backend is a table of operations (store/internal.h,
 * realm_store_ops_t) behind the realm_store_* calls below; a backend
 * implements the operations of every kind. The modules above (registry/,
 * queue/, auth/keys.c) keep every Lambda rule (validation, errors, ARNs,
 * rendering, retries); the store only keeps rows and answers questions
 * about them, each in bounded work.
 *
 * Shared state: what several server processes would have to agree on lives
 * here, not in the modules: the write generation (realm_store_generation),
 * the functions being created or updated (realm_store_pending_*), the
 * queue's leases (claim hands out a lease token; every outcome names it and
 * a stale token is a no-op; on PostgreSQL they are rows, so servers claim
 * disjoint events and a dead server's come back when its leases end), the
 * keys' change counter (realm_store_auth_version).
 *
 * Return codes: int calls answer 0 (done / found), 1 (not found / already
 * there, as documented per call) or -1 (storage error, logged by the
 * backend). JSON results are new references; json_t arguments are borrowed.
 *
 * Transactions: begin/commit/rollback group writes of one kind's store
 * (SQLite: BEGIN IMMEDIATE; memory: a snapshot restored on rollback). Calls
 * outside a transaction are each atomic.
 *
 * LIFETIME: a store owns its connection (or memory) until realm_store_close.
 * THREADS: a store is used by one thread, the loop thread in the server.
 * Each call is one short prepared statement or transaction on the calling
 * thread (measured in docs/storage.md: tens of microseconds for a resolve,
 * a few hundred for a create or an enqueue + claim + complete), so no
 * worker thread is used; a backend whose calls may wait on a network
 * (PostgreSQL) must not be called on the loop as is (docs/storage.md).
 */
#ifndef REALM_STORE_STORE_H
#define REALM_STORE_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct realm_store_s realm_store_t;

typedef enum {
    REALM_STORE_REGISTRY = 0,
    REALM_STORE_QUEUE = 1,
    REALM_STORE_AUTH = 2,
    REALM_STORE_LEASES = 3, /* PostgreSQL only: a cluster's concurrency leases */
} realm_store_kind_t;

/* Bytes of a package hash in hex, plus the NUL. */
#define REALM_STORE_HEX_LEN 64

/*
 * Opens (creating) the store of kind at location (see DESIGN). For SQLite,
 * the file's directory must exist. The schema is created or migrated to the
 * latest version this binary knows, in one transaction (docs/storage.md,
 * "Schema versions and migrations"). Returns the store, or NULL with
 * "LOCATION: reason" in err; a database newer than the binary is refused
 * untouched with "LOCATION: schema version N is newer than this realm
 * (knows up to M); upgrade realm".
 */
realm_store_t *realm_store_open(realm_store_kind_t kind, const char *location, char *err,
                                size_t err_len);
void realm_store_close(realm_store_t *s); /* NULL is fine */
/* "sqlite", "memory" or "postgresql". */
const char *realm_store_backend(const realm_store_t *s);
/* 1 if location names the in-memory backend. */
int realm_store_is_memory(const char *location);
/* 1 if location names PostgreSQL ("postgresql://..." or "postgres://..."). */
int realm_store_is_pg(const char *location);
/*
 * 1 when the last call failed because the database could not be reached
 * (PostgreSQL: the connection is lost and reconnecting failed), 0 otherwise
 * (SQLite and memory: always 0). Callers answer 503 STORE_UNAVAILABLE
 * rather than a plain storage error; the next call tries to reconnect.
 */
int realm_store_is_unreachable(const realm_store_t *s);
/* The schema version the store's database is at (the latest its backend
 * knows for its kind, once open); the memory backend's is a constant. */
int64_t realm_store_schema_version(const realm_store_t *s);

/* ---- transactions (any kind) ---- */

int realm_store_begin(realm_store_t *s);
int realm_store_commit(realm_store_t *s); /* a failed commit is rolled back */
void realm_store_rollback(realm_store_t *s);
/*
 * The write generation: grows with every call that may write (committed or
 * not). What was read at one value still holds while it stays the same.
 * PostgreSQL: shared by every store on the database (it moves when another
 * server's write commits), one round trip per call.
 */
uint64_t realm_store_generation(const realm_store_t *s);
/* This store's own calls that may write, ever (no round trip; this process only). */
uint64_t realm_store_local_writes(const realm_store_t *s);

/* ---- registry: functions ---- */

typedef struct {
    int64_t next_version; /* the number the next published version gets */
    int64_t reserved;     /* reserved concurrency, -1 when none */
    json_t *tags;         /* owned: {"key": "value"} */
} realm_store_fn_t;

/* 0 and *out (may be NULL; dispose with realm_store_fn_dispose), 1 missing, -1. */
int realm_store_fn_get(realm_store_t *s, const char *tenant, const char *name,
                       realm_store_fn_t *out);
void realm_store_fn_dispose(realm_store_fn_t *f);
/* A new function (next version 1, no reservation). 0, 1 if it exists, -1. */
int realm_store_fn_insert(realm_store_t *s, const char *tenant, const char *name, json_t *tags);
/* Deletes the function with its versions and aliases. 0, 1 missing, -1. */
int realm_store_fn_delete(realm_store_t *s, const char *tenant, const char *name);
int realm_store_fn_set_reserved(realm_store_t *s, const char *tenant, const char *name,
                                int64_t reserved /* -1: none */);
int realm_store_fn_set_tags(realm_store_t *s, const char *tenant, const char *name, json_t *tags);
/* Returns the function's next version number and counts it as used; -1 on error. */
int64_t realm_store_fn_take_version(realm_store_t *s, const char *tenant, const char *name);
/* The sum of the reservations of tenant's functions but except (may be NULL); -1 on error. */
int64_t realm_store_fn_sum_reserved(realm_store_t *s, const char *tenant, const char *except);
/* Tenant's function count and the sum of CodeSize over all its versions. 0 or -1. */
int realm_store_fn_usage(realm_store_t *s, const char *tenant, int64_t *count, int64_t *code_size);

/* ---- registry: versions (num 0 is $LATEST) ---- */

/* 0 with *config (owned; may be NULL) and code (may be NULL), 1 missing, -1. */
int realm_store_ver_get(realm_store_t *s, const char *tenant, const char *name, int64_t num,
                        json_t **config, char *code);
/* The highest published version (num > 0): 0 with its fields, 1 none, -1. */
int realm_store_ver_last(realm_store_t *s, const char *tenant, const char *name, int64_t *num,
                         json_t **config, char *code);
/* A new version row of an existing function. 0 or -1. */
int realm_store_ver_insert(realm_store_t *s, const char *tenant, const char *name, int64_t num,
                           const char *code, json_t *config);
/* Rewrites a version's config and, when code is not NULL, its code. 0 or -1. */
int realm_store_ver_update(realm_store_t *s, const char *tenant, const char *name, int64_t num,
                           const char *code, json_t *config);
/* 0 deleted, 1 missing, -1. */
int realm_store_ver_delete(realm_store_t *s, const char *tenant, const char *name, int64_t num);
/*
 * A page of version rows as [{"name", "num", "config"}], at most limit:
 *   name != NULL: that function's versions with num > after_num, by num;
 *   name == NULL, latest_only: tenant's $LATEST rows with name > after_name, by name;
 *   name == NULL: tenant's rows after (after_name, after_num), by (name, num).
 * NULL on error.
 */
json_t *realm_store_ver_list(realm_store_t *s, const char *tenant, const char *name,
                             const char *after_name, int64_t after_num, int latest_only,
                             size_t limit);
/* 1 if a version uses package hex (tenant NULL: any tenant's), 0 if none, -1. */
int realm_store_code_used(realm_store_t *s, const char *tenant, const char *hex);

/* ---- registry: the code packages' bytes ----
 *
 * Where a backend keeps them: PostgreSQL in the registry's database (every
 * server on it fetches from there; docs/storage.md, "Code packages on
 * PostgreSQL"), in chunks of REALM_STORE_PKG_CHUNK bytes; memory in the
 * process (tests); SQLite NOT AT ALL: there the data dir's package store
 * (pkg/) is the truth, so put and delete_unused keep nothing and answer
 * REALM_STORE_NOT_KEPT / 0, get answers 1 and has 0.
 * A package is named by hex, the SHA-256 of its bytes (lower-case hex): the
 * store does not hash, its callers check (registry/, realm_registry_code_fetch).
 */
#define REALM_STORE_PKG_CHUNK (1024 * 1024)
/* What an optional call answers on a backend that keeps no such thing. */
#define REALM_STORE_NOT_KEPT 2
/*
 * Keeps package hex (len bytes). Idempotent: a package already there is
 * kept as it is (only its "last touched" time moves, see delete_unused).
 * Inside the caller's transaction when one is open (the package commits
 * with the version row that names it, or not at all); else in a
 * transaction of its own. 0, REALM_STORE_NOT_KEPT (SQLite), -1.
 */
int realm_store_pkg_put(realm_store_t *s, const char *hex, const void *data, size_t len);
/* 0 with *data (malloc'd, len + 1 bytes, NUL-terminated) and *len, 1 missing, -1. */
int realm_store_pkg_get(realm_store_t *s, const char *hex, char **data, size_t *len);
/* 1 kept, 0 not, -1. */
int realm_store_pkg_has(realm_store_t *s, const char *hex);
/*
 * Deletes the packages no version row of any tenant names. PostgreSQL:
 * only those also untouched for REALM_STORE_PKG_GRACE_S seconds (a put, or
 * a version row naming them inserted, changed or deleted, touches a
 * package), which makes it safe against a create or a publish running on
 * another server at the same moment (docs/storage.md explains why under
 * READ COMMITTED). Returns how many were deleted, or -1.
 */
#define REALM_STORE_PKG_GRACE_S 900
int64_t realm_store_pkg_delete_unused(realm_store_t *s);

/* ---- registry: aliases ---- */

/* 0 with *config (owned), 1 missing, -1. */
int realm_store_alias_get(realm_store_t *s, const char *tenant, const char *name, const char *alias,
                          json_t **config);
/* Inserts (is_insert) or rewrites an alias's config. 0 or -1. */
int realm_store_alias_put(realm_store_t *s, const char *tenant, const char *name, const char *alias,
                          json_t *config, int is_insert);
/* 0 deleted, 1 missing, -1. */
int realm_store_alias_delete(realm_store_t *s, const char *tenant, const char *name,
                             const char *alias);
/* [{"alias", "config"}] with alias > after, FunctionVersion == version (when
 * not "" / NULL), by alias, at most limit; NULL on error. */
json_t *realm_store_alias_list(realm_store_t *s, const char *tenant, const char *name,
                               const char *after, const char *version, size_t limit);
/* 1 and alias_out (129 bytes) if an alias routes to version (primary or
 * additional), 0 if none, -1. */
int realm_store_alias_using(realm_store_t *s, const char *tenant, const char *name,
                            const char *version, char *alias_out);

/* ---- registry: creates and code updates in flight ---- */

/*
 * In this process's memory for SQLite and memory; on PostgreSQL, rows every
 * server on the database sees, each owned by the store that added it (only
 * it removes it) and expiring 15 minutes after (a dead server's entries
 * stop counting): docs/storage.md. 0 recorded, 1 if the function already
 * has one, -1 on a storage error (PostgreSQL).
 */
int realm_store_pending_add(realm_store_t *s, const char *tenant, const char *name, int is_create);
/* 0 none, 1 a code update, 2 a create, -1 on a storage error (PostgreSQL). */
int realm_store_pending_get(realm_store_t *s, const char *tenant, const char *name);
void realm_store_pending_remove(realm_store_t *s, const char *tenant, const char *name);
/* How many are in flight (PostgreSQL: 1 on a storage error, so that
 * nothing is garbage-collected on a guess). */
size_t realm_store_pending_count(realm_store_t *s);

/* ---- queue ---- */

/* An event handed out by realm_store_q_claim. */
typedef struct {
    int64_t id;                          /* > 0, never reused within one store */
    char *tenant, *function, *qualifier; /* owned */
    int attempts;
    int64_t enqueued_ms;
    uint64_t lease; /* the token its outcome must name */
} realm_store_event_t;

typedef struct {
    uint64_t rows;          /* rows touched by every call since open (SQLite: VM steps) */
    uint64_t payload_reads; /* realm_store_q_payload calls that found one */
    uint64_t payload_bytes;
} realm_store_q_stats_t;

/*
 * Enqueues an event due at now_ms (attempts 0), unless tenant's function
 * already has max_fn pending events or tenant max_tenant (0: no cap).
 * Returns the id (> 0); -2 with *which 'f' or 't' when a cap is reached;
 * -1 on error. PostgreSQL: the caps hold across servers, and an enqueue
 * whose COMMIT was lost is settled (queued once, never twice).
 */
int64_t realm_store_q_push(realm_store_t *s, const char *tenant, const char *function,
                           const char *qualifier, const void *payload, size_t len, int64_t now_ms,
                           uint64_t max_fn, uint64_t max_tenant, char *which);
/*
 * Claims up to max due (due <= now_ms), unleased events, earliest due first
 * (ties: lower id), leasing each until lease_until_ms (after it, an event
 * may be claimed again). Returns how many (0 on error); dispose each with
 * realm_store_event_dispose.
 */
size_t realm_store_q_claim(realm_store_t *s, int64_t now_ms, int64_t lease_until_ms,
                           realm_store_event_t *out, size_t max);
void realm_store_event_dispose(realm_store_event_t *ev);
/* The payload of a pending event: 0 with *data (malloc'd, len + NUL) and *len, 1 gone, -1. */
int realm_store_q_payload(realm_store_t *s, int64_t id, char **data, size_t *len);
/*
 * Outcomes, each fenced by the lease token: when lease is not the event's
 * current lease (stale, or the event is gone) nothing changes and 0 is
 * returned. complete removes the event; retry makes it due at due_ms with
 * attempts + 1 and error kept; defer makes it due at due_ms; release only
 * drops the lease; fail moves it to the failed list (attempts + 1), keeping
 * the newest `keep` failures of its function; park makes it wait until
 * unpark or until_ms.
 */
int realm_store_q_complete(realm_store_t *s, int64_t id, uint64_t lease);
int realm_store_q_retry(realm_store_t *s, int64_t id, uint64_t lease, int64_t due_ms,
                        const char *error);
int realm_store_q_defer(realm_store_t *s, int64_t id, uint64_t lease, int64_t due_ms);
int realm_store_q_release(realm_store_t *s, int64_t id, uint64_t lease);
int realm_store_q_fail(realm_store_t *s, int64_t id, uint64_t lease, const char *error_type,
                       const char *error_message, int64_t now_ms, int64_t keep);
int realm_store_q_park(realm_store_t *s, int64_t id, uint64_t lease, int64_t until_ms);
/*
 * Extends the leases (ids[i], leases[i]) still current to until_ms: how
 * many, or -1. A lease that ended and was claimed again is not renewed (its
 * outcome stays stale). SQLite, memory: 0, nothing to do (leases last until
 * the outcome).
 */
int64_t realm_store_q_renew(realm_store_t *s, const int64_t *ids, const uint64_t *leases, size_t n,
                            int64_t until_ms);
/* Wakes tenant's function's parked events (due at now_ms): how many, or -1. */
int64_t realm_store_q_unpark(realm_store_t *s, const char *tenant, const char *function,
                             int64_t now_ms);
/* [["tenant", "function"], ...] of functions with parked events; NULL on error. */
json_t *realm_store_q_parked(realm_store_t *s);
/* Earliest due time of an unleased pending event, -1 if none or on error.
 * PostgreSQL: or sooner, the end of a lease (when a leased event may be
 * claimed again), unless that is INT64_MAX. */
int64_t realm_store_q_next_due(realm_store_t *s);
/* Pending events of all (function NULL: tenant NULL) or of tenant's function. */
size_t realm_store_q_pending(realm_store_t *s, const char *tenant, const char *function);
void realm_store_q_stats(realm_store_t *s, realm_store_q_stats_t *out);
/*
 * Tenant's failed events (function NULL: all its functions), newest first,
 * at most limit: [{"Id", "FunctionName", "Qualifier", "Payload" (text,
 * invalid UTF-8 replaced), "Attempts", "ErrorType", "ErrorMessage" (string
 * or null), "EnqueuedMs", "FailedMs"}]; NULL on error.
 */
json_t *realm_store_q_failed(realm_store_t *s, const char *tenant, const char *function,
                             size_t limit);
/* Drops tenant's function's pending and failed events. 0 or -1. */
int realm_store_q_forget(realm_store_t *s, const char *tenant, const char *function);

/* ---- auth: tenants and keys ---- */

/* A key row. Blobs are sized by the caller's layout (auth/keys.c). */
typedef struct {
    char key_id[32];
    char tenant[65];
    char account_id[13];
    char access_key_id[24];
    double rate, burst;
    int64_t revoked_ms; /* 0 when not revoked */
    int64_t created_ms;
    unsigned char salt[16];
    size_t salt_len;
    unsigned char hash[32];
    size_t hash_len;
    unsigned char secret_enc[128];
    size_t secret_enc_len;
} realm_store_key_t;

/* 0 and account_id (13 bytes), 1 unknown, -1. */
int realm_store_tenant_get(realm_store_t *s, const char *tenant, char *account_id);
/* 0, 1 if the name or the account id is taken, -1. */
int realm_store_tenant_add(realm_store_t *s, const char *tenant, const char *account_id,
                           int64_t now_ms);
/* 0, 1 if the key id or access key id is taken, -1. Uses key's fields but account_id. */
int realm_store_key_add(realm_store_t *s, const realm_store_key_t *key);
/* By key id (by_access_key 0) or access key id: 0 and *out, 1 unknown, -1. */
int realm_store_key_get(realm_store_t *s, const char *id, int by_access_key,
                        realm_store_key_t *out);
/* Every key, by tenant then creation then key id: *out (malloc'd) and *n. 0 or -1. */
int realm_store_key_list(realm_store_t *s, realm_store_key_t **out, size_t *n);
/* 0 revoked now, 1 already revoked, 2 unknown, -1. */
int realm_store_key_revoke(realm_store_t *s, const char *key_id, int64_t now_ms);
/* 1 if any key exists, 0 if none, -1. */
int realm_store_key_any(realm_store_t *s);
/*
 * A number that moves when another connection or process changed the
 * store (SQLite: PRAGMA data_version); writes through s may not be counted
 * (SQLite's are not). PostgreSQL: a counter row shared by every store on
 * the database, moved by every committed change of tenants or keys (s's
 * own included), one round trip; on an error the last value read stands.
 */
int64_t realm_store_auth_version(realm_store_t *s);
/*
 * The check value of the server key that sealed the database's secrets
 * (auth/keys.c makes it; 64 hex chars), kept with the keys when several
 * servers share them. check NULL: only reads. Else records check when the
 * database holds none (the first store to record wins). Returns 0 with the
 * value held (after the call) in stored (65 bytes), 1 when none is held
 * (check NULL), REALM_STORE_NOT_KEPT when the backend keeps none (SQLite
 * and memory: the key file lives with the database), -1.
 */
int realm_store_auth_key_check(realm_store_t *s, const char *check, char *stored);

/* ---- leases: concurrency across the nodes of a cluster (PostgreSQL only) ----
 *
 * One row per execution environment, taken before it starts, renewed by its
 * node, dropped when it stops; a lease its node stops renewing ends by
 * itself after its ttl (the database's clock). Opening REALM_STORE_LEASES
 * anywhere but on PostgreSQL fails ("... are kept in PostgreSQL only").
 */
#define REALM_STORE_LEASE_TENANT_FULL (-2)
/*
 * A lease for one environment of tenant's function, for ttl_ms: granted
 * while the tenant holds fewer than t_cap live leases and (fn_cap >= 0) the
 * function fewer than fn_cap (a cap below 0 is none). Returns its id (> 0),
 * 0 at the function's cap, REALM_STORE_LEASE_TENANT_FULL at the tenant's,
 * or -1 (storage error).
 */
int64_t realm_store_lease_take(realm_store_t *s, const char *node, const char *tenant,
                               const char *function, int64_t fn_cap, int64_t t_cap, int64_t ttl_ms);
/*
 * Extends node's leases ids[0..n) that are still live by ttl_ms from now;
 * kept[i] = 1 for each renewed, 0 for each that ended (never renewed again).
 * 0, or -1 (kept unchanged).
 */
int realm_store_lease_renew(realm_store_t *s, const char *node, const int64_t *ids, size_t n,
                            int64_t ttl_ms, unsigned char *kept);
/* Drops node's leases ids[0..n) (ids NULL: every lease of node). 0 or -1. */
int realm_store_lease_drop(realm_store_t *s, const char *node, const int64_t *ids, size_t n);

#endif
