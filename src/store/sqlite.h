/*
 * sqlite.h - the SQLite backend's shared parts (not a public header): the
 * store struct, opening a file, the statement cache. The SQL of each kind
 * is in sqlite_registry.c, sqlite_queue.c and sqlite_auth.c.
 */
#ifndef REALM_STORE_SQLITE_H
#define REALM_STORE_SQLITE_H

#include "store/internal.h"

#include <sqlite3.h>

/* A prepared statement kept for reuse (realm_sqlite_prep, realm_sqlite_done). */
typedef struct {
    const char *sql; /* a string literal of the backend */
    sqlite3_stmt *st;
    int in_use;
} sq_stmt_t;

#define SQ_STMT_CACHE 64 /* more distinct statements than any kind has */

typedef struct {
    int64_t id;
    uint64_t token;
    int64_t until_ms;
} sq_lease_t;

typedef struct {
    realm_store_t base;
    realm_store_ops_t ops; /* base.ops points here */
    sqlite3 *db;
    char *path;
    sq_stmt_t stmts[SQ_STMT_CACHE]; /* parsed once: an invocation's lookups skip the parser */
    size_t stmt_cnt;
    /* queue: leases live in this process's memory (a reopened file has none) */
    sq_lease_t *leases; /* sorted by id */
    size_t lease_cnt, lease_cap;
    uint64_t next_token;
    uint64_t payload_reads, payload_bytes;
    /* auth */
    int64_t data_version;
} sq_t;

/* A statement for sql (a literal): a cached one not in use, else a new one;
 * hand it back with realm_sqlite_done, never sqlite3_finalize. NULL on error (logged). */
sqlite3_stmt *realm_sqlite_prep(sq_t *q, const char *sql);
/* Resets, unbinds and hands back st (NULL is fine); bumps the generation
 * when st may write. */
void realm_sqlite_done(sq_t *q, sqlite3_stmt *st);
/* Steps st once and hands it back: the sqlite3_step code. */
int realm_sqlite_step_done(sq_t *q, sqlite3_stmt *st);
void realm_sqlite_text(sqlite3_stmt *st, int i, const char *s); /* NULL binds NULL */
int realm_sqlite_fail(sq_t *q, const char *what);               /* logs; returns -1 */
json_t *realm_sqlite_column_json(sqlite3_stmt *st, int col);    /* never NULL */
char *realm_sqlite_column_dup(sqlite3_stmt *st, int col);       /* "" for NULL */
void realm_sqlite_column_copy(char *out, size_t len, sqlite3_stmt *st, int col);
int realm_sqlite_exec(sq_t *q, const char *sql); /* 0 or -1 (logged) */

/* Each kind's migrations (store/internal.h, realm_store_schema_t): append-only. */
extern const realm_store_schema_t realm_sqlite_registry_schema;
extern const realm_store_schema_t realm_sqlite_queue_schema;
extern const realm_store_schema_t realm_sqlite_auth_schema;
/*
 * Brings db's schema of kind to schema->n: realm_store_migrate with
 * SQLite's side (the version in the file's realm_schema table, or for a
 * file from before that table its PRAGMA user_version; BEGIN IMMEDIATE;
 * a foreign key check before the version is recorded). path names the file
 * in messages. 0 with *version, or -1 with "PATH: reason" in err.
 */
int realm_sqlite_migrate(sqlite3 *db, const char *path, realm_store_kind_t kind,
                         const realm_store_schema_t *schema, int64_t *version, char *err,
                         size_t err_len);
void realm_sqlite_registry_ops(realm_store_ops_t *ops);
void realm_sqlite_queue_ops(realm_store_ops_t *ops);
void realm_sqlite_auth_ops(realm_store_ops_t *ops);

#endif
