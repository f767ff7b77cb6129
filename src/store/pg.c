/*
 * pg.c - the PostgreSQL backend: opening a connection (libpq URL,
 * connect_timeout, application_name=realm), the schema migrated to its
 * latest version (schema.c's procedure; PostgreSQL's side below: an
 * advisory lock in the migrating transaction), prepared statements,
 * transactions and the lost-connection rule (pg.h). One database holds
 * every kind, each kind with its own row in realm_schema: the registry
 * (pg_registry.c), the queue (pg_queue.c) and the auth kind (pg_auth.c).
 *
 * The location shown in messages never holds the password:
 * "postgresql://user@host:port/db (registry)".
 */
#include "store/pg.h"

#include "base/alloc.h"
#include "base/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PG_CONNECT_TIMEOUT "5" /* seconds, unless the URL says otherwise */
#define PG_BACKOFF_MIN_MS 100  /* between reconnections while the database is down */
#define PG_BACKOFF_MAX_MS 5000
/* pg_advisory_xact_lock's key for migrations: "realm" in ASCII. */
#define PG_MIGRATE_LOCK "491496910189"

/* libpq's messages end with a newline; the log's lines must not. */
static const char *msg_of(PGconn *c, const PGresult *res)
{
    static _Thread_local char buf[512];
    const char *m = res ? PQresultErrorMessage(res) : NULL;
    if (!m || !*m) m = c ? PQerrorMessage(c) : "out of memory";
    snprintf(buf, sizeof(buf), "%s", m && *m ? m : "unknown error");
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    return buf;
}

int realm_pg_fail(pg_t *p, const char *what, const PGresult *res)
{
    realm_warn("store: %s: %s: %s", p->where, what ? what : "", msg_of(p->conn, res));
    return -1;
}

int realm_pg_ready(pg_t *p)
{
    p->base.is_unreachable = 0;
    if (PQstatus(p->conn) == CONNECTION_OK) return 0;
    p->base.is_unreachable = 1;
    /* Lost inside a transaction: every call fails until the caller ends it
     * (its writes are gone with the session; running the rest on a new
     * connection would commit half of it). */
    if (p->in_txn) {
        realm_warn("store: %s: the connection was lost inside a transaction", p->where);
        return -1;
    }
    /* Lost (the server restarted, the network dropped): reconnect, at most
     * once per backoff period (100 ms doubling to 5 s, with jitter); calls
     * in between fail at once, unreachable, without touching the network. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (now < p->retry_at_ms) return -1;
    PQreset(p->conn);
    memset(p->prepared, 0, sizeof(p->prepared));
    if (PQstatus(p->conn) == CONNECTION_OK) {
        realm_info("store: %s: reconnected", p->where);
        p->base.is_unreachable = 0;
        p->backoff_ms = 0;
        p->retry_at_ms = 0;
        return 0;
    }
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : PG_BACKOFF_MIN_MS;
    if (p->backoff_ms > PG_BACKOFF_MAX_MS) p->backoff_ms = PG_BACKOFF_MAX_MS;
    p->retry_at_ms = now + p->backoff_ms / 2 + rand() % (p->backoff_ms / 2 + 1);
    return realm_pg_fail(p, "reconnecting", NULL);
}

PGresult *realm_pg_exec(pg_t *p, size_t idx, const char *const *params, char *sqlstate)
{
    return realm_pg_exec_bin(p, idx, params, NULL, NULL, 0, sqlstate);
}

PGresult *realm_pg_exec_bin(pg_t *p, size_t idx, const char *const *params, const int *lengths,
                            const int *formats, int binary_result, char *sqlstate)
{
    if (sqlstate) sqlstate[0] = 0;
    if (idx >= p->stmt_cnt || realm_pg_ready(p) != 0) return NULL;
    const pg_stmt_t *st = &p->stmts[idx];
    char name[24];
    snprintf(name, sizeof(name), "r%zu", idx);
    if (!p->prepared[idx]) {
        PGresult *r = PQprepare(p->conn, name, st->sql, st->nparams, NULL);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) realm_pg_fail(p, st->sql, r);
        PQclear(r);
        if (!ok) return NULL;
        p->prepared[idx] = 1;
    }
    /* This store's part of the generation: every statement that may write
     * counts, committed or not (store.h); the database's part is shared. */
    if (strncmp(st->sql, "SELECT", 6) != 0) p->base.generation++;
    PGresult *r =
        PQexecPrepared(p->conn, name, st->nparams, params, lengths, formats, binary_result ? 1 : 0);
    ExecStatusType es = PQresultStatus(r);
    if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK) return r;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (sqlstate && state) snprintf(sqlstate, 6, "%s", state);
    /* Lost mid-statement, or the server is shutting down or starting up. */
    p->base.is_unreachable =
        PQstatus(p->conn) != CONNECTION_OK ||
        (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0));
    realm_pg_fail(p, st->sql, r);
    PQclear(r);
    return NULL;
}

int realm_pg_simple(pg_t *p, const char *sql)
{
    if (realm_pg_ready(p) != 0) return -1;
    PGresult *r = PQexec(p->conn, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) realm_pg_fail(p, sql, r);
    PQclear(r);
    return ok ? 0 : -1;
}

int64_t realm_pg_changes(const PGresult *res)
{
    const char *n = PQcmdTuples((PGresult *)res);
    return n && *n ? strtoll(n, NULL, 10) : 0;
}

json_t *realm_pg_json(const PGresult *res, int row, int col)
{
    json_t *j = PQgetisnull(res, row, col) ? NULL : json_loads(PQgetvalue(res, row, col), 0, NULL);
    return j ? j : json_object();
}

int64_t realm_pg_int(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* ---- transactions ---- */

static int pg_begin(realm_store_t *s)
{
    pg_t *p = (pg_t *)s;
    if (realm_pg_simple(p, "BEGIN") != 0) return -1;
    p->in_txn = 1;
    return 0;
}

static int pg_commit(realm_store_t *s)
{
    pg_t *p = (pg_t *)s;
    p->in_txn = 0;
    /* No reset here: a COMMIT on a new connection would "succeed" with
     * nothing to commit. The next call reconnects. */
    if (PQstatus(p->conn) != CONNECTION_OK)
        return realm_pg_fail(p, "COMMIT: the connection was lost; the transaction is lost", NULL);
    PGresult *r = PQexec(p->conn, "COMMIT");
    /* COMMIT of a failed transaction answers ROLLBACK without an error. */
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
    if (!ok) {
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            realm_warn("store: %s: COMMIT: the transaction had failed; rolled back", p->where);
        else
            realm_pg_fail(p, "COMMIT", r);
    }
    PQclear(r);
    if (!ok && PQstatus(p->conn) == CONNECTION_OK && PQtransactionStatus(p->conn) != PQTRANS_IDLE)
        realm_pg_simple(p, "ROLLBACK");
    return ok ? 0 : -1;
}

static void pg_rollback(realm_store_t *s)
{
    pg_t *p = (pg_t *)s;
    p->in_txn = 0;
    /* Nothing to undo on a lost connection: the server rolled back. */
    if (PQstatus(p->conn) == CONNECTION_OK) realm_pg_simple(p, "ROLLBACK");
}

/* ---- schema versions (store/internal.h, realm_store_migrate) ---- */

typedef struct {
    PGconn *conn;
    char why[512];
} pg_mig_t;

/* Runs sql (params as text); 0 with the result in *out (may be NULL), or -1 with why. */
static int mig_q(pg_mig_t *m, const char *sql, int n, const char *const *params, PGresult **out)
{
    PGresult *r =
        n ? PQexecParams(m->conn, sql, n, NULL, params, NULL, NULL, 0) : PQexec(m->conn, sql);
    ExecStatusType es = PQresultStatus(r);
    if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
        snprintf(m->why, sizeof(m->why), "%s", msg_of(m->conn, r));
        PQclear(r);
        return -1;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return 0;
}

static int mig_read(void *conn, const char *kind, int64_t *version, int *is_recorded)
{
    pg_mig_t *m = conn;
    PGresult *r = NULL;
    *version = 0;
    *is_recorded = 0;
    if (mig_q(m, "SELECT to_regclass('realm_schema') IS NOT NULL", 0, NULL, &r) != 0) return -1;
    int has = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!has) return 0; /* a database Realm never used: version 0 */
    const char *params[] = {kind};
    if (mig_q(m, "SELECT version FROM realm_schema WHERE kind = $1", 1, params, &r) != 0) return -1;
    if (PQntuples(r) == 1) {
        *version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        *is_recorded = 1;
    }
    PQclear(r);
    return 0;
}

static int mig_lock(void *conn)
{
    /* The advisory lock first: two concurrent CREATE TABLE IF NOT EXISTS can
     * still collide (a unique violation on the catalog). */
    return mig_q(conn,
                 "BEGIN; SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK ");"
                 "CREATE TABLE IF NOT EXISTS realm_schema("
                 " kind TEXT NOT NULL PRIMARY KEY, version BIGINT NOT NULL)",
                 0, NULL, NULL);
}

static int mig_exec(void *conn, const char *sql)
{
    return mig_q(conn, sql, 0, NULL, NULL);
}

static int mig_write(void *conn, const char *kind, int64_t version)
{
    char v[24];
    snprintf(v, sizeof(v), "%" PRId64, version);
    const char *params[] = {kind, v};
    return mig_q(conn,
                 "INSERT INTO realm_schema(kind, version) VALUES($1, $2)"
                 " ON CONFLICT (kind) DO UPDATE SET version = excluded.version",
                 2, params, NULL);
}

static int mig_commit(void *conn)
{
    pg_mig_t *m = conn;
    PGresult *r = NULL;
    if (mig_q(m, "COMMIT", 0, NULL, &r) != 0) return -1;
    int ok = strcmp(PQcmdStatus(r), "COMMIT") == 0;
    PQclear(r);
    if (!ok) snprintf(m->why, sizeof(m->why), "the transaction failed and was rolled back");
    return ok ? 0 : -1;
}

static void mig_rollback(void *conn)
{
    pg_mig_t *m = conn;
    PQclear(PQexec(m->conn, "ROLLBACK")); /* a warning only when none is open */
}

static const char *mig_errmsg(void *conn)
{
    pg_mig_t *m = conn;
    return m->why[0] ? m->why : msg_of(m->conn, NULL);
}

/* ---- open / close ---- */

static void pg_close(realm_store_t *s)
{
    pg_t *p = (pg_t *)s;
    PQfinish(p->conn);
    free(p->where);
    free(p);
}

/* libpq's notices (a ROLLBACK with no transaction, IF NOT EXISTS) are not
 * Realm's business; warnings worth a line come back as errors. */
static void quiet_notice(void *arg, const char *message)
{
    (void)arg;
    realm_debug("store: postgresql: %s", message);
}

realm_store_t *realm_store_pg_open(realm_store_kind_t kind, const char *location, char *err,
                                   size_t err_len)
{
    pg_t *p = realm_calloc(1, sizeof(*p));
    p->ops.name = "postgresql";
    p->ops.close = pg_close;
    p->ops.begin = pg_begin;
    p->ops.commit = pg_commit;
    p->ops.rollback = pg_rollback;
    p->base.ops = &p->ops;
    /* Realm's defaults first: the URL's own parameters override them. */
    /* TCP keepalives and a user timeout: a database that stops answering
     * without closing the connection (a partition) is noticed in ~25 s. */
    const char *const keys[] = {
        "connect_timeout",  "application_name", "keepalives_idle", "keepalives_interval",
        "keepalives_count", "tcp_user_timeout", "dbname",          NULL};
    const char *const vals[] = {PG_CONNECT_TIMEOUT, "realm", "10", "5", "3", "25000",
                                location,           NULL};
    p->conn = PQconnectdbParams(keys, vals, 1);
    char where[512];
    if (!p->conn) {
        snprintf(err, err_len, "postgresql: out of memory");
        goto fail;
    }
    /* The parts of the URL that can be shown (never PQpass). */
    const char *host = PQhost(p->conn), *port = PQport(p->conn), *db = PQdb(p->conn),
               *user = PQuser(p->conn);
    snprintf(where, sizeof(where), "postgresql://%s@%s:%s/%s (%s)", user ? user : "",
             host ? host : "", port ? port : "", db ? db : "", realm_store_kind_name(kind));
    p->where = realm_strdup(where);
    if (PQstatus(p->conn) != CONNECTION_OK) {
        snprintf(err, err_len, "%s: %s", where, msg_of(p->conn, NULL));
        goto fail;
    }
    PQsetNoticeProcessor(p->conn, quiet_notice, NULL);
    const realm_store_schema_t *schema = NULL;
    if (kind == REALM_STORE_REGISTRY) {
        realm_pg_registry_init(p);
        schema = &realm_pg_registry_schema;
    } else if (kind == REALM_STORE_QUEUE) {
        realm_pg_queue_init(p);
        schema = &realm_pg_queue_schema;
    } else if (kind == REALM_STORE_AUTH) {
        realm_pg_auth_init(p);
        schema = &realm_pg_auth_schema;
    } else if (kind == REALM_STORE_LEASES) {
        realm_pg_leases_init(p);
        schema = &realm_pg_leases_schema;
    } else {
        snprintf(err, err_len, "%s: the %s is not yet implemented on PostgreSQL", where,
                 realm_store_kind_name(kind));
        goto fail;
    }
    pg_mig_t m = {p->conn, {0}};
    if (realm_store_migrate(&(const realm_store_migrate_ops_t){.read = mig_read,
                                                               .lock = mig_lock,
                                                               .exec = mig_exec,
                                                               .write = mig_write,
                                                               .commit = mig_commit,
                                                               .rollback = mig_rollback,
                                                               .errmsg = mig_errmsg},
                            &m, where, kind, schema, &p->base.schema_version, err, err_len) != 0)
        goto fail;
    /* What this machine's dead processes left (a server killed, restarted). */
    if (kind == REALM_STORE_REGISTRY) realm_pg_registry_opened(p);
    if (kind == REALM_STORE_QUEUE) realm_pg_queue_opened(p);
    return &p->base;
fail:
    pg_close(&p->base);
    return NULL;
}
