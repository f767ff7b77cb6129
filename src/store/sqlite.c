/*
 * sqlite.c - the SQLite backend: opening a file (WAL, synchronous=NORMAL,
 * busy timeout), the statement cache and transactions. One file per kind
 * of store (the server's realm.db, events.db and auth.db); each kind's
 * schema and statements are in sqlite_<kind>.c.
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
    static const char *const schemas[] = {realm_sqlite_registry_schema, realm_sqlite_queue_schema,
                                          realm_sqlite_auth_schema};
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
    sqlite3_busy_timeout(q->db, 1000);
    if (sqlite3_exec(q->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                     &msg) != SQLITE_OK ||
        sqlite3_exec(q->db, schemas[kind], NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, err_len, "%s: %s", path, msg ? msg : sqlite3_errmsg(q->db));
        sqlite3_free(msg);
        goto fail;
    }
    if (kind == REALM_STORE_QUEUE && realm_sqlite_queue_migrate(q, err, err_len) != 0) goto fail;
    return &q->base;
fail:
    sq_close(&q->base);
    return NULL;
}
