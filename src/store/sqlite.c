/*
 * sqlite.c - the SQLite backend: opening a file (WAL, synchronous=NORMAL,
 * busy timeout, the schema migrated to its latest version), the statement
 * cache and transactions. One file per kind of store (the server's realm.db,
 * events.db and auth.db); each kind's migrations and statements are in
 * sqlite_<kind>.c. The version is kept in the file's realm_schema table
 * (schema.c runs the procedure; SQLite's side is below).
 *
 * Durability: WAL with synchronous=NORMAL, which survives a killed process
 * but may lose the last commits on power loss. The 1 s busy timeout bounds
 * how long a call waits when another process (the `realm keys` CLI, a
 * sqlite3 shell) holds the write lock: the call then fails rather than
 * stall the event loop.
 */
#include "store/sqlite.h"

#include "base/alloc.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SQ_BUSY_MS 1000       /* a call waits at most this long for another process's lock */
#define SQ_OPEN_BUSY_MS 10000 /* open, for another process's migration */

sqlite3_stmt *realm_sqlite_prep(sq_t *q, const char *sql)
{
    for (size_t i = 0; i < q->stmt_cnt; i++) {
        sq_stmt_t *c = &q->stmts[i];
        if (!c->in_use && c->sql == sql) {
            c->in_use = 1;
            return c->st;
        }
    }
    int keep = q->stmt_cnt < SQ_STMT_CACHE;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(q->db, sql, -1, keep ? SQLITE_PREPARE_PERSISTENT : 0, &st, NULL) !=
        SQLITE_OK) {
        realm_error("store: %s: prepare: %s: %s", q->path, sqlite3_errmsg(q->db), sql);
        sqlite3_finalize(st);
        return NULL;
    }
    if (keep) q->stmts[q->stmt_cnt++] = (sq_stmt_t){sql, st, 1};
    return st;
}

void realm_sqlite_done(sq_t *q, sqlite3_stmt *st)
{
    if (!st) return;
    if (!sqlite3_stmt_readonly(st)) q->base.generation++;
    for (size_t i = 0; i < q->stmt_cnt; i++) {
        if (q->stmts[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            q->stmts[i].in_use = 0;
            return;
        }
    }
    sqlite3_finalize(st);
}

int realm_sqlite_step_done(sq_t *q, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE && (rc & 0xff) != SQLITE_CONSTRAINT)
        realm_sqlite_fail(q, sqlite3_sql(st));
    realm_sqlite_done(q, st);
    return rc;
}

void realm_sqlite_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

int realm_sqlite_fail(sq_t *q, const char *what)
{
    realm_error("store: %s: %s: %s", q->path, sqlite3_errmsg(q->db), what ? what : "");
    return -1;
}

json_t *realm_sqlite_column_json(sqlite3_stmt *st, int col)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    json_t *j = s ? json_loads(s, 0, NULL) : NULL;
    return j ? j : json_object();
}

char *realm_sqlite_column_dup(sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    return realm_strdup(s ? (const char *)s : "");
}

void realm_sqlite_column_copy(char *out, size_t len, sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    snprintf(out, len, "%s", s ? (const char *)s : "");
}

int realm_sqlite_exec(sq_t *q, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(q->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        realm_error("store: %s: %s: %s", q->path, sql, msg ? msg : "?");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* ---- transactions ---- */

static int sq_begin(realm_store_t *s)
{
    return realm_sqlite_exec((sq_t *)s, "BEGIN IMMEDIATE");
}

static int sq_commit(realm_store_t *s)
{
    if (realm_sqlite_exec((sq_t *)s, "COMMIT") == 0) return 0;
    realm_sqlite_exec((sq_t *)s, "ROLLBACK");
    return -1;
}

static void sq_rollback(realm_store_t *s)
{
    realm_sqlite_exec((sq_t *)s, "ROLLBACK");
}

/* ---- schema versions (store/internal.h, realm_store_migrate) ---- */

typedef struct {
    sqlite3 *db;
    const char *why; /* a message of ours, else sqlite3_errmsg's */
} sq_mig_t;

/* One integer from a query's first row, ?1 bound to text when given: 0 with
 * *found (and *out when found), or -1. */
static int mig_int(sq_mig_t *m, const char *sql, const char *text, int64_t *out, int *found)
{
    sqlite3_stmt *st = NULL;
    m->why = NULL;
    if (sqlite3_prepare_v2(m->db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    if (text) sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    if (*found) *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st); /* keeps a failed step's message for sqlite3_errmsg */
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static int mig_run(sq_mig_t *m, const char *sql)
{
    m->why = NULL;
    return sqlite3_exec(m->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static int mig_read(void *conn, const char *kind, int64_t *version, int *is_recorded)
{
    sq_mig_t *m = conn;
    int64_t has_table = 0;
    int found = 0;
    *version = 0;
    *is_recorded = 0;
    if (mig_int(m,
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                " AND name = 'realm_schema'",
                NULL, &has_table, &found) != 0)
        return -1;
    if (has_table && mig_int(m, "SELECT version FROM realm_schema WHERE kind = ?1", kind, version,
                             is_recorded) != 0)
        return -1;
    if (*is_recorded) return 0;
    /* A file from before realm_schema: every earlier release stamped its
     * schema's version in user_version (registry 1, queue 1 or 2, auth 1),
     * the numbers of the steps here; an empty file has 0. */
    return mig_int(m, "PRAGMA user_version", NULL, version, &found);
}

static int mig_lock(void *conn)
{
    return mig_run(conn, "BEGIN IMMEDIATE;"
                         "CREATE TABLE IF NOT EXISTS realm_schema("
                         " kind TEXT NOT NULL PRIMARY KEY, version INTEGER NOT NULL)");
}

static int mig_exec(void *conn, const char *sql)
{
    return mig_run(conn, sql);
}

static int mig_write(void *conn, const char *kind, int64_t version)
{
    sq_mig_t *m = conn;
    /* The steps ran with foreign keys off (the connection turns them on
     * after: PRAGMA foreign_keys cannot change inside a transaction, and
     * rebuilding a table needs them off); what they left is checked here,
     * before it counts. */
    int64_t unused = 0;
    int found = 0;
    if (mig_int(m, "PRAGMA foreign_key_check", NULL, &unused, &found) != 0) return -1;
    if (found) {
        m->why = "a row refers to a missing row (PRAGMA foreign_key_check)";
        return -1;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->db,
                           "INSERT INTO realm_schema(kind, version) VALUES(?1, ?2)"
                           " ON CONFLICT(kind) DO UPDATE SET version = excluded.version",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int mig_commit(void *conn)
{
    return mig_run(conn, "COMMIT");
}

static void mig_rollback(void *conn)
{
    sq_mig_t *m = conn;
    /* Fails harmlessly when no transaction is open (a failed BEGIN, or
     * SQLite already rolled back after an I/O error). */
    sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
}

static const char *mig_errmsg(void *conn)
{
    sq_mig_t *m = conn;
    return m->why ? m->why : sqlite3_errmsg(m->db);
}

int realm_sqlite_migrate(sqlite3 *db, const char *path, realm_store_kind_t kind,
                         const realm_store_schema_t *schema, int64_t *version, char *err,
                         size_t err_len)
{
    static const realm_store_migrate_ops_t ops = {
        .read = mig_read,
        .lock = mig_lock,
        .exec = mig_exec,
        .write = mig_write,
        .commit = mig_commit,
        .rollback = mig_rollback,
        .errmsg = mig_errmsg,
    };
    sq_mig_t m = {db, NULL};
    return realm_store_migrate(&ops, &m, path, kind, schema, version, err, err_len);
}

/* ---- open / close ---- */

static void sq_close(realm_store_t *s)
{
    sq_t *q = (sq_t *)s;
    for (size_t i = 0; i < q->stmt_cnt; i++)
        sqlite3_finalize(q->stmts[i].st);
    sqlite3_close(q->db);
    free(q->leases);
    free(q->path);
    free(q);
}

realm_store_t *realm_store_sqlite_open(realm_store_kind_t kind, const char *path, char *err,
                                       size_t err_len)
{
    static const realm_store_schema_t *const schemas[] = {
        &realm_sqlite_registry_schema, &realm_sqlite_queue_schema, &realm_sqlite_auth_schema};
    sq_t *q = realm_calloc(1, sizeof(*q));
    /* The table is filled per store: no global state to initialize once. */
    q->ops.name = "sqlite";
    q->ops.close = sq_close;
    q->ops.begin = sq_begin;
    q->ops.commit = sq_commit;
    q->ops.rollback = sq_rollback;
    realm_sqlite_registry_ops(&q->ops);
    realm_sqlite_queue_ops(&q->ops);
    realm_sqlite_auth_ops(&q->ops);
    q->base.ops = &q->ops;
    q->path = realm_strdup(path);
    q->next_token = 1;
    /* The keys' file is made 0600 by auth/keys.c before it is opened here. */
    int flags = SQLITE_OPEN_READWRITE |
                (kind == REALM_STORE_AUTH ? SQLITE_OPEN_NOFOLLOW : SQLITE_OPEN_CREATE);
    char *msg = NULL;
    if (sqlite3_open_v2(path, &q->db, flags, NULL) != SQLITE_OK) {
        snprintf(err, err_len, "%s: %s", path, q->db ? sqlite3_errmsg(q->db) : "cannot open");
        goto fail;
    }
    /* At open, before the store is used: wait longer for another process
     * that is migrating the same file (a large queue takes a moment). */
    sqlite3_busy_timeout(q->db, SQ_OPEN_BUSY_MS);
    if (sqlite3_exec(q->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                     &msg) != SQLITE_OK) {
        snprintf(err, err_len, "%s: %s", path, msg ? msg : sqlite3_errmsg(q->db));
        sqlite3_free(msg);
        goto fail;
    }
    if (realm_sqlite_migrate(q->db, path, kind, schemas[kind], &q->base.schema_version, err,
                             err_len) != 0)
        goto fail;
    sqlite3_busy_timeout(q->db, SQ_BUSY_MS);
    /* Versions and aliases go with their function (after the migrations,
     * which run with foreign keys off; the setting is the connection's). */
    if (kind == REALM_STORE_REGISTRY &&
        sqlite3_exec(q->db, "PRAGMA foreign_keys=ON", NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, err_len, "%s: %s", path, msg ? msg : sqlite3_errmsg(q->db));
        sqlite3_free(msg);
        goto fail;
    }
    return &q->base;
fail:
    sq_close(&q->base);
    return NULL;
}
