/*
 * internal.h - what a storage backend implements (not a public header):
 * the operations table and the handle every backend's store starts with.
 */
#ifndef REALM_STORE_INTERNAL_H
#define REALM_STORE_INTERNAL_H

#include "store/store.h"

typedef struct {
    const char *name;
    void (*close)(realm_store_t *s);
    int (*begin)(realm_store_t *s);
    int (*commit)(realm_store_t *s);
    void (*rollback)(realm_store_t *s);

    int (*fn_get)(realm_store_t *s, const char *t, const char *n, realm_store_fn_t *out);
    int (*fn_insert)(realm_store_t *s, const char *t, const char *n, json_t *tags);
    int (*fn_delete)(realm_store_t *s, const char *t, const char *n);
    int (*fn_set_reserved)(realm_store_t *s, const char *t, const char *n, int64_t reserved);
    int (*fn_set_tags)(realm_store_t *s, const char *t, const char *n, json_t *tags);
    int64_t (*fn_take_version)(realm_store_t *s, const char *t, const char *n);
    int64_t (*fn_sum_reserved)(realm_store_t *s, const char *t, const char *except);
    int (*fn_usage)(realm_store_t *s, const char *t, int64_t *count, int64_t *code_size);
    int (*ver_get)(realm_store_t *s, const char *t, const char *n, int64_t num, json_t **config,
                   char *code);
    int (*ver_last)(realm_store_t *s, const char *t, const char *n, int64_t *num, json_t **config,
                    char *code);
    int (*ver_insert)(realm_store_t *s, const char *t, const char *n, int64_t num, const char *code,
                      json_t *config);
    int (*ver_update)(realm_store_t *s, const char *t, const char *n, int64_t num, const char *code,
                      json_t *config);
    int (*ver_delete)(realm_store_t *s, const char *t, const char *n, int64_t num);
    json_t *(*ver_list)(realm_store_t *s, const char *t, const char *n, const char *after_name,
                        int64_t after_num, int latest_only, size_t limit);
    int (*code_used)(realm_store_t *s, const char *t, const char *hex);
    int (*alias_get)(realm_store_t *s, const char *t, const char *n, const char *a,
                     json_t **config);
    int (*alias_put)(realm_store_t *s, const char *t, const char *n, const char *a, json_t *config,
                     int is_insert);
    int (*alias_delete)(realm_store_t *s, const char *t, const char *n, const char *a);
    json_t *(*alias_list)(realm_store_t *s, const char *t, const char *n, const char *after,
                          const char *version, size_t limit);
    int (*alias_using)(realm_store_t *s, const char *t, const char *n, const char *version,
                       char *alias_out);

    int64_t (*q_push)(realm_store_t *s, const char *t, const char *f, const char *q,
                      const void *payload, size_t len, int64_t now_ms, uint64_t max_fn,
                      uint64_t max_tenant, char *which);
    size_t (*q_claim)(realm_store_t *s, int64_t now_ms, int64_t lease_until_ms,
                      realm_store_event_t *out, size_t max);
    int (*q_payload)(realm_store_t *s, int64_t id, char **data, size_t *len);
    int (*q_complete)(realm_store_t *s, int64_t id, uint64_t lease);
    int (*q_retry)(realm_store_t *s, int64_t id, uint64_t lease, int64_t due_ms, const char *error);
    int (*q_defer)(realm_store_t *s, int64_t id, uint64_t lease, int64_t due_ms);
    int (*q_release)(realm_store_t *s, int64_t id, uint64_t lease);
    int (*q_fail)(realm_store_t *s, int64_t id, uint64_t lease, const char *etype, const char *emsg,
                  int64_t now_ms, int64_t keep);
    int (*q_park)(realm_store_t *s, int64_t id, uint64_t lease, int64_t until_ms);
    int64_t (*q_unpark)(realm_store_t *s, const char *t, const char *f, int64_t now_ms);
    json_t *(*q_parked)(realm_store_t *s);
    int64_t (*q_next_due)(realm_store_t *s);
    size_t (*q_pending)(realm_store_t *s, const char *t, const char *f);
    void (*q_stats)(realm_store_t *s, realm_store_q_stats_t *out);
    json_t *(*q_failed)(realm_store_t *s, const char *t, const char *f, size_t limit);
    int (*q_forget)(realm_store_t *s, const char *t, const char *f);

    int (*tenant_get)(realm_store_t *s, const char *t, char *account_id);
    int (*tenant_add)(realm_store_t *s, const char *t, const char *account_id, int64_t now_ms);
    int (*key_add)(realm_store_t *s, const realm_store_key_t *key);
    int (*key_get)(realm_store_t *s, const char *id, int by_access_key, realm_store_key_t *out);
    int (*key_list)(realm_store_t *s, realm_store_key_t **out, size_t *n);
    int (*key_revoke)(realm_store_t *s, const char *key_id, int64_t now_ms);
    int (*key_any)(realm_store_t *s);
    int64_t (*auth_version)(realm_store_t *s);

    /* Optional (NULL: kept in the process by store.c, from base.generation
     * and base.pending). A backend shared by several processes (PostgreSQL)
     * keeps them in its database. */
    uint64_t (*generation)(realm_store_t *s);
    int (*pending_add)(realm_store_t *s, const char *t, const char *n, int is_create);
    int (*pending_get)(realm_store_t *s, const char *t, const char *n);
    void (*pending_remove)(realm_store_t *s, const char *t, const char *n);
    size_t (*pending_count)(realm_store_t *s);

    /* Optional (NULL: the backend keeps no package bytes, SQLite; store.h). */
    int (*pkg_put)(realm_store_t *s, const char *hex, const void *data, size_t len);
    int (*pkg_get)(realm_store_t *s, const char *hex, char **data, size_t *len);
    int (*pkg_has)(realm_store_t *s, const char *hex);
    int64_t (*pkg_delete_unused)(realm_store_t *s);
    /* Optional (NULL: no server key check is kept, store.h). */
    int (*auth_key_check)(realm_store_t *s, const char *check, char *stored);
    /* Optional (NULL: leases last until the outcome; nothing to renew). */
    int64_t (*q_renew)(realm_store_t *s, const int64_t *ids, const uint64_t *leases, size_t n,
                       int64_t until_ms);
    /* Optional (NULL: the backend keeps no leases; only PostgreSQL does). */
    int64_t (*lease_take)(realm_store_t *s, const char *node, const char *t, const char *f,
                          int64_t fn_cap, int64_t t_cap, int64_t ttl_ms);
    int (*lease_renew)(realm_store_t *s, const char *node, const int64_t *ids, size_t n,
                       int64_t ttl_ms, unsigned char *kept);
    int (*lease_drop)(realm_store_t *s, const char *node, const int64_t *ids, size_t n);
} realm_store_ops_t;

/* A create or code update in flight (kept by store.c for every backend of
 * one process; a shared backend would keep them in its database). */
typedef struct {
    char *tenant, *name;
    int is_create;
} store_pending_t;

/* The head of every backend's store. */
struct realm_store_s {
    const realm_store_ops_t *ops;
    realm_store_kind_t kind;
    int64_t schema_version; /* what the database is at after open (schema.c) */
    uint64_t generation;    /* bumped by backends on every call that may write */
    int is_unreachable;     /* the last call found the database out of reach (PostgreSQL) */
    store_pending_t *pending;
    size_t pending_cnt, pending_cap;
};

/* ---- versioned schemas (schema.c; docs/storage.md, "Schema versions and migrations") ----
 *
 * DESIGN: a backend keeps, per kind, an ordered list of migrations: step i
 * (from 0) takes that kind's schema from version i to version i + 1, so the
 * list's length is the latest version this binary knows. The lists are
 * append-only: a released step is never edited, reordered or removed (a
 * database at version N ran steps 1..N as they were written). Each database
 * records the version of each kind it holds in a table
 * realm_schema(kind TEXT PRIMARY KEY, version INTEGER) of the same shape in
 * every backend: one row in each SQLite file, one row per kind in a database
 * that holds several kinds. Versions count per backend (a new backend's
 * list starts at 1 with its whole schema).
 *
 * realm_store_migrate runs at open: it reads the version without locking
 * (the common case, nothing to do, takes no write lock), refuses a version
 * newer than the list, and otherwise applies the missing steps and records
 * the version in one transaction that holds the backend's write lock
 * (SQLite: BEGIN IMMEDIATE), reading the version again under it, so two
 * processes opening at once migrate once. A failed step rolls everything
 * back: the database stays at its old version.
 */
typedef struct {
    const char *what; /* what the step changes, in a few words (log, errors) */
    const char *sql;  /* its statements, in the backend's dialect */
} realm_store_migration_t;

typedef struct {
    const realm_store_migration_t *steps;
    size_t n; /* the latest version */
} realm_store_schema_t;

/* A backend's side of realm_store_migrate; conn is its connection. Each
 * answers 0 or -1, and after -1 errmsg says why. */
typedef struct {
    /* The version of kind recorded in the database: 0 with *version and
     * *is_recorded. With no record, *is_recorded is 0 and *version is the
     * baseline the backend recognises in what is there (0: an empty database). */
    int (*read)(void *conn, const char *kind, int64_t *version, int *is_recorded);
    /* Begins the transaction, holding the lock a second migrating process
     * waits for, and makes the realm_schema table if it is missing. */
    int (*lock)(void *conn);
    int (*exec)(void *conn, const char *sql);
    /* Records version for kind, inside the transaction. */
    int (*write)(void *conn, const char *kind, int64_t version);
    int (*commit)(void *conn);
    void (*rollback)(void *conn); /* fine after a failed lock */
    const char *(*errmsg)(void *conn);
} realm_store_migrate_ops_t;

/*
 * Brings conn's schema of kind to schema->n (see DESIGN). Returns 0 with
 * *version = schema->n, or -1 with "LOCATION: reason" in err: when the
 * database is newer, "LOCATION: schema version N is newer than this realm
 * (knows up to M); upgrade realm" (nothing is written).
 */
int realm_store_migrate(const realm_store_migrate_ops_t *ops, void *conn, const char *location,
                        realm_store_kind_t kind, const realm_store_schema_t *schema,
                        int64_t *version, char *err, size_t err_len);
/* "registry", "queue" or "auth": the kind column of realm_schema. */
const char *realm_store_kind_name(realm_store_kind_t kind);

realm_store_t *realm_store_sqlite_open(realm_store_kind_t kind, const char *path, char *err,
                                       size_t err_len);
/* location starts with "postgresql://" or "postgres://" (pg.c). */
realm_store_t *realm_store_pg_open(realm_store_kind_t kind, const char *location, char *err,
                                   size_t err_len);
realm_store_t *realm_store_memory_open(realm_store_kind_t kind, const char *name, char *err,
                                       size_t err_len);

#endif
