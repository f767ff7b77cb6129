/*
 * pg_queue.c - the PostgreSQL backend's Event queue (docs/storage.md,
 * "PostgreSQL backend (queue)"): the same rows and answers as
 * sqlite_queue.c, on a database that several servers may share.
 *
 * SCHEMA (version 1, recorded in realm_schema under 'queue'; the steps below):
 *   events(id, tenant, function, qualifier, attempts, enqueued_ms, due_ms,
 *          is_parked, last_error, lease, lease_owner, lease_until_ms)
 *   payloads(id, payload)                   its payload (BYTEA), deleted with it
 *   fn_counts(tenant, function, shard, n), tenant_counts(tenant, shard, n)
 *                                           pending events, kept by triggers
 *   parked_fns(tenant, function)            functions with parked events
 *   failed(seq, id, tenant, function, qualifier, payload, attempts,
 *          error_type, error_message, enqueued_ms, failed_ms)
 * Ids come from an identity column (never reused). As on SQLite, claim walks
 * the (due_ms, id) index from the front, payloads are read only when asked,
 * and the caps read the count tables, not the backlog. A count is the sum of
 * up to 8 shard rows; each statement adds its +n / -n to a random shard, so
 * that servers completing events of one tenant rarely wait on one row.
 *
 * Leases live in the rows: claim is one statement (a SELECT ... FOR UPDATE
 * SKIP LOCKED of the due, unleased or lease-expired events, earliest due
 * first, then an UPDATE setting a fresh random token, this store's owner
 * name and lease_until_ms), so servers claiming at once take disjoint events,
 * and a dead server's events are claimed again once their lease expires.
 * Every outcome names the token in its WHERE (lease 0: unfenced, as on
 * SQLite), so a stale one changes nothing.
 *
 * Enqueue: BEGIN; SELECT realm_events_push(...) (the cap check under a
 * per-tenant advisory lock, both inserts, the transaction id); COMMIT. When
 * the connection is lost before the COMMIT, nothing was committed: it runs
 * once more on a new connection. When the COMMIT's answer is lost, the
 * transaction's status (pg_xact_status) says whether the event is queued
 * (return its id) or not (push it once more): an event is never queued
 * twice, nor lost, by a lost connection.
 */
#include "store/pg.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/str.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* The migrations (append-only: store/internal.h). */
static const realm_store_migration_t steps[] = {
    {"events, payloads, counts, parked functions, failed events",
     "CREATE TABLE events("
     " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     " tenant TEXT COLLATE \"C\" NOT NULL, function TEXT COLLATE \"C\" NOT NULL,"
     " qualifier TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
     " enqueued_ms BIGINT NOT NULL, due_ms BIGINT NOT NULL,"
     " is_parked BOOLEAN NOT NULL DEFAULT false, last_error TEXT,"
     " lease BIGINT, lease_owner TEXT, lease_until_ms BIGINT);"
     "CREATE INDEX events_due ON events(due_ms, id);"
     "CREATE INDEX events_fn ON events(tenant, function, is_parked);"
     "CREATE TABLE payloads(id BIGINT PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,"
     " payload BYTEA NOT NULL);"
     "CREATE TABLE fn_counts(tenant TEXT COLLATE \"C\" NOT NULL,"
     " function TEXT COLLATE \"C\" NOT NULL, shard SMALLINT NOT NULL, n BIGINT NOT NULL,"
     " PRIMARY KEY(tenant, function, shard));"
     "CREATE TABLE tenant_counts(tenant TEXT COLLATE \"C\" NOT NULL, shard SMALLINT NOT NULL,"
     " n BIGINT NOT NULL, PRIMARY KEY(tenant, shard));"
     "CREATE TABLE parked_fns(tenant TEXT COLLATE \"C\" NOT NULL,"
     " function TEXT COLLATE \"C\" NOT NULL, PRIMARY KEY(tenant, function));"
     "CREATE TABLE failed(seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     " id BIGINT NOT NULL, tenant TEXT COLLATE \"C\" NOT NULL,"
     " function TEXT COLLATE \"C\" NOT NULL, qualifier TEXT NOT NULL, payload BYTEA NOT NULL,"
     " attempts INTEGER NOT NULL, error_type TEXT, error_message TEXT,"
     " enqueued_ms BIGINT NOT NULL, failed_ms BIGINT NOT NULL);"
     "CREATE INDEX failed_fn ON failed(tenant, function, seq);"
     "CREATE INDEX failed_tenant ON failed(tenant, seq);"
     /* The counts: one row per (group, random shard) per statement. */
     "CREATE FUNCTION realm_events_added() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
     " INSERT INTO fn_counts AS c(tenant, function, shard, n)"
     "  SELECT tenant, function, floor(random() * 8)::smallint, count(*) FROM added"
     "  GROUP BY tenant, function"
     "  ON CONFLICT (tenant, function, shard) DO UPDATE SET n = c.n + excluded.n;"
     " INSERT INTO tenant_counts AS c(tenant, shard, n)"
     "  SELECT tenant, floor(random() * 8)::smallint, count(*) FROM added GROUP BY tenant"
     "  ON CONFLICT (tenant, shard) DO UPDATE SET n = c.n + excluded.n;"
     " RETURN NULL; END $$;"
     "CREATE FUNCTION realm_events_removed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
     " INSERT INTO fn_counts AS c(tenant, function, shard, n)"
     "  SELECT tenant, function, floor(random() * 8)::smallint, -count(*) FROM removed"
     "  GROUP BY tenant, function"
     "  ON CONFLICT (tenant, function, shard) DO UPDATE SET n = c.n + excluded.n;"
     " INSERT INTO tenant_counts AS c(tenant, shard, n)"
     "  SELECT tenant, floor(random() * 8)::smallint, -count(*) FROM removed GROUP BY tenant"
     "  ON CONFLICT (tenant, shard) DO UPDATE SET n = c.n + excluded.n;"
     " RETURN NULL; END $$;"
     "CREATE TRIGGER events_added AFTER INSERT ON events REFERENCING NEW TABLE AS added"
     " FOR EACH STATEMENT EXECUTE FUNCTION realm_events_added();"
     "CREATE TRIGGER events_removed AFTER DELETE ON events REFERENCING OLD TABLE AS removed"
     " FOR EACH STATEMENT EXECUTE FUNCTION realm_events_removed();"
     /* An enqueue. The caps are checked under a transaction-scoped advisory
      * lock of the tenant, and each statement of a VOLATILE function reads a
      * new snapshot: the counts read after the lock include every enqueue
      * that held it before (committed), so the caps are exact across
      * servers. Returns (id, '' | 'f' | 't' when a cap is reached, xid). */
     "CREATE FUNCTION realm_events_push(p_t TEXT, p_f TEXT, p_q TEXT, p_body BYTEA,"
     " p_now BIGINT, p_max_fn BIGINT, p_max_tenant BIGINT,"
     " OUT o_id BIGINT, OUT o_full TEXT, OUT o_xid TEXT) LANGUAGE plpgsql AS $$"
     " DECLARE fn_n BIGINT; t_n BIGINT; BEGIN"
     " o_id := 0; o_full := ''; o_xid := '';"
     " IF p_max_fn > 0 OR p_max_tenant > 0 THEN"
     "  PERFORM pg_advisory_xact_lock(hashtextextended('realm queue ' || p_t, 0));"
     "  IF p_max_fn > 0 THEN SELECT COALESCE(SUM(n), 0) INTO fn_n FROM fn_counts"
     "   WHERE tenant = p_t AND function = p_f;"
     "   IF fn_n >= p_max_fn THEN o_full := 'f'; RETURN; END IF; END IF;"
     "  IF p_max_tenant > 0 THEN SELECT COALESCE(SUM(n), 0) INTO t_n FROM tenant_counts"
     "   WHERE tenant = p_t;"
     "   IF t_n >= p_max_tenant THEN o_full := 't'; RETURN; END IF; END IF;"
     " END IF;"
     " INSERT INTO events(tenant, function, qualifier, enqueued_ms, due_ms)"
     "  VALUES(p_t, p_f, p_q, p_now, p_now) RETURNING id INTO o_id;"
     " INSERT INTO payloads(id, payload) VALUES(o_id, p_body);"
     " o_xid := pg_current_xact_id()::text;"
     " END $$;"
     /* A failure: the event (and its payload, read before the cascade) to
      * the failed list, then all but the newest p_keep of its function
      * dropped. 1 moved, 0 stale or gone. */
     "CREATE FUNCTION realm_events_fail(p_id BIGINT, p_lease BIGINT, p_type TEXT, p_msg TEXT,"
     " p_now BIGINT, p_keep BIGINT) RETURNS INTEGER LANGUAGE plpgsql AS $$"
     " DECLARE v_t TEXT; v_f TEXT; BEGIN"
     " WITH e AS (DELETE FROM events WHERE id = p_id AND (p_lease = 0 OR lease = p_lease)"
     "  RETURNING *)"
     " INSERT INTO failed(id, tenant, function, qualifier, payload, attempts, error_type,"
     "  error_message, enqueued_ms, failed_ms)"
     "  SELECT e.id, e.tenant, e.function, e.qualifier, COALESCE(p.payload, ''::bytea),"
     "  e.attempts + 1, p_type, p_msg, e.enqueued_ms, p_now"
     "  FROM e LEFT JOIN payloads p ON p.id = e.id"
     "  RETURNING tenant, function INTO v_t, v_f;"
     " IF v_t IS NULL THEN RETURN 0; END IF;"
     " DELETE FROM failed WHERE tenant = v_t AND function = v_f AND seq <= (SELECT seq"
     "  FROM failed WHERE tenant = v_t AND function = v_f ORDER BY seq DESC LIMIT 1"
     "  OFFSET GREATEST(p_keep, 0));"
     " RETURN 1; END $$;"},
};
const realm_store_schema_t realm_pg_queue_schema = {steps, sizeof(steps) / sizeof(steps[0])};

/* Clears an event's lease (every outcome). */
#define UNLEASE "lease = NULL, lease_owner = NULL, lease_until_ms = NULL"
/* The fence of every outcome: $1 the id, $2 the token (0: unfenced). */
#define FENCE " WHERE id = $1::bigint AND ($2::bigint = 0 OR lease = $2::bigint)"

enum {
    S_PUSH,
    S_CLAIM,
    S_PAYLOAD,
    S_DONE,
    S_RETRY,
    S_DEFER,
    S_RELEASE,
    S_FAIL,
    S_PARK,
    S_UNPARK,
    S_PARKED,
    S_NEXT,
    S_COUNT_ALL,
    S_COUNT_FN,
    S_FAILED_FN,
    S_FAILED_TENANT,
    S_FORGET,
    S_XACT_STATUS,
    S_END_SESSION,
    S_RENEW,
    S_LEASE_OWNERS,
    S_LEASE_DROP,
    S_COUNT
};

static const pg_stmt_t stmts[S_COUNT] = {
    [S_PUSH] = {"SELECT o_id, o_full, o_xid FROM realm_events_push($1, $2, $3, $4, $5::bigint,"
                " $6::bigint, $7::bigint)",
                7},
    /* $1 now, $2 lease until, $3 max, $4 the first token minus 1, $5 owner.
     * Locked rows (another server's claim or outcome in flight) are skipped. */
    [S_CLAIM] = {"WITH c AS (SELECT id, due_ms FROM events WHERE due_ms <= $1::bigint"
                 " AND (lease IS NULL OR lease_until_ms <= $1::bigint)"
                 " ORDER BY due_ms, id LIMIT $3::bigint FOR UPDATE SKIP LOCKED),"
                 " r AS (SELECT id, row_number() OVER (ORDER BY due_ms, id) AS rn FROM c)"
                 " UPDATE events e SET lease = $4::bigint + r.rn, lease_owner = $5,"
                 " lease_until_ms = $2::bigint FROM r WHERE e.id = r.id"
                 " RETURNING e.id, e.tenant, e.function, e.qualifier, e.attempts,"
                 " e.enqueued_ms, e.lease",
                 5},
    [S_PAYLOAD] = {"SELECT payload FROM payloads WHERE id = $1::bigint", 1},
    [S_DONE] = {"DELETE FROM events" FENCE, 2},
    [S_RETRY] = {"UPDATE events SET attempts = attempts + 1, due_ms = $3::bigint,"
                 " last_error = $4, " UNLEASE FENCE,
                 4},
    [S_DEFER] = {"UPDATE events SET due_ms = $3::bigint, " UNLEASE FENCE, 3},
    [S_RELEASE] = {"UPDATE events SET " UNLEASE FENCE " AND lease IS NOT NULL", 2},
    [S_FAIL] = {"SELECT realm_events_fail($1::bigint, $2::bigint, $3, $4, $5::bigint, $6::bigint)",
                6},
    [S_PARK] = {"WITH u AS (UPDATE events SET is_parked = true, due_ms = $3::bigint,"
                " " UNLEASE FENCE " RETURNING tenant, function)"
                " INSERT INTO parked_fns(tenant, function) SELECT tenant, function FROM u"
                " ON CONFLICT DO NOTHING",
                3},
    [S_UNPARK] = {"WITH u AS (UPDATE events SET is_parked = false, due_ms = $3::bigint"
                  " WHERE tenant = $1 AND function = $2 AND is_parked RETURNING 1),"
                  " d AS (DELETE FROM parked_fns WHERE tenant = $1 AND function = $2)"
                  " SELECT count(*) FROM u",
                  3},
    [S_PARKED] = {"SELECT tenant, function FROM parked_fns ORDER BY tenant, function", 0},
    /* When the next event may be claimed: the first unleased one's due time,
     * or sooner, when a lease of an event due before it ends (leased events
     * due later are due after it anyway). Walks the leased events at the
     * front of the index (those in flight), no more. */
    [S_NEXT] = {"WITH f AS (SELECT due_ms FROM events WHERE lease IS NULL"
                " ORDER BY due_ms, id LIMIT 1)"
                " SELECT LEAST((SELECT due_ms FROM f), (SELECT min(GREATEST(due_ms,"
                " lease_until_ms)) FROM events WHERE lease IS NOT NULL AND due_ms <="
                " COALESCE((SELECT due_ms FROM f), 9223372036854775807)))",
                0},
    [S_COUNT_ALL] = {"SELECT COALESCE(SUM(n), 0) FROM tenant_counts", 0},
    [S_COUNT_FN] = {"SELECT COALESCE(SUM(n), 0) FROM fn_counts WHERE tenant = $1"
                    " AND function = $2",
                    2},
    [S_FAILED_FN] = {"SELECT id, function, qualifier, payload, attempts, error_type,"
                     " error_message, enqueued_ms, failed_ms FROM failed WHERE tenant = $1"
                     " AND function = $2 ORDER BY seq DESC LIMIT $3::bigint",
                     3},
    [S_FAILED_TENANT] = {"SELECT id, function, qualifier, payload, attempts, error_type,"
                         " error_message, enqueued_ms, failed_ms FROM failed WHERE tenant = $1"
                         " ORDER BY seq DESC LIMIT $2::bigint",
                         2},
    /* The count rows stay (their sums go to 0 with the events' trigger):
     * deleting them here would race with a concurrent enqueue's increment. */
    [S_FORGET] = {"WITH a AS (DELETE FROM events WHERE tenant = $1 AND function = $2),"
                  " b AS (DELETE FROM failed WHERE tenant = $1 AND function = $2)"
                  " DELETE FROM parked_fns WHERE tenant = $1 AND function = $2",
                  2},
    [S_XACT_STATUS] = {"SELECT pg_xact_status($1::xid8)", 1},
    /* The old session, only while it still runs that transaction. */
    [S_END_SESSION] = {"SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                       " WHERE pid = $1::integer AND backend_xid = $2::xid8::xid",
                       2},
    /* $1 until, $2 ids, $3 their tokens (arrays): the leases still current. */
    [S_RENEW] = {"UPDATE events e SET lease_until_ms = $1::bigint FROM unnest($2::bigint[],"
                 " $3::bigint[]) AS l(id, lease) WHERE e.id = l.id AND e.lease = l.lease",
                 3},
    /* The lease owners of this machine's pid space ($1: "SPACE:"), and one's leases. */
    [S_LEASE_OWNERS] = {"SELECT DISTINCT lease_owner FROM events"
                        " WHERE lease_owner IS NOT NULL AND left(lease_owner, length($1)) = $1",
                        1},
    [S_LEASE_DROP] = {"UPDATE events SET " UNLEASE " WHERE lease_owner = $1", 1},
};

#define P(s) ((pg_t *)(s))

/* Runs statement idx (text parameters) and counts its rows (stats). */
static PGresult *run(pg_t *p, int idx, const char *const *params)
{
    PGresult *r = realm_pg_exec(p, (size_t)idx, params, NULL);
    if (r) p->q_rows += (uint64_t)PQntuples(r) + (uint64_t)realm_pg_changes(r);
    return r;
}

/* Runs a write whose count does not matter: 0 or -1. */
static int run_done(pg_t *p, int idx, const char *const *params)
{
    PGresult *r = run(p, idx, params);
    if (!r) return -1;
    PQclear(r);
    return 0;
}

/* text as well-formed UTF-8 (a TEXT column refuses anything else; SQLite
 * keeps the bytes and the listing repairs them: the same output). */
static const char *utf8(realm_buf_t *b, const char *text)
{
    if (!text) return NULL;
    realm_buf_init(b);
    realm_str_utf8_repair(text, strlen(text), b);
    return b->data ? b->data : "";
}

static uint64_t random_token_base(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 40);
    }
    return v & ((UINT64_C(1) << 62) - 1); /* + a row number: > 0 and < 2^63 */
}

/* ---- push ---- */

/* Ends the push's own transaction after a failed statement. */
static void push_abort(pg_t *p)
{
    p->in_txn = 0;
    if (PQstatus(p->conn) == CONNECTION_OK) realm_pg_simple(p, "ROLLBACK");
}

/* COMMIT of the push: 0 committed, -1 failed (rolled back), -2 in doubt (the
 * connection was lost while it ran: it may or may not have committed). */
static int push_commit(pg_t *p)
{
    p->in_txn = 0;
    PGresult *r = PQexec(p->conn, "COMMIT");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
    if (!ok && PQstatus(p->conn) != CONNECTION_OK) {
        realm_pg_fail(p, "COMMIT of an enqueue (its outcome is checked)", r);
        PQclear(r);
        return -2;
    }
    if (!ok) realm_pg_fail(p, "COMMIT of an enqueue", r);
    PQclear(r);
    if (!ok && PQtransactionStatus(p->conn) != PQTRANS_IDLE) realm_pg_simple(p, "ROLLBACK");
    return ok ? 0 : -1;
}

int realm_pg_q_committed(pg_t *p, const char *xid, int old_pid)
{
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", old_pid);
    for (int round = 0; round < 2; round++) {
        PGresult *r = run(p, S_XACT_STATUS, (const char *[]){xid});
        if (!r) return -1;
        const char *st = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0) : "";
        int rc = strcmp(st, "committed") == 0 ? 1 : strcmp(st, "aborted") == 0 ? 0 : -2;
        int is_running = strcmp(st, "in progress") == 0;
        PQclear(r);
        if (rc >= 0) return rc;
        if (!is_running) break; /* too old to tell (NULL): not after a lost COMMIT */
        /* The old session has not finished its COMMIT (or noticed the lost
         * connection) yet: end it; then the status is final. */
        r = run(p, S_END_SESSION, (const char *[]){pid, xid});
        if (!r) return -1;
        PQclear(r);
    }
    realm_warn("store: %s: transaction %s: outcome unknown", p->where, xid);
    return -1;
}

static int64_t q_push(realm_store_t *s, const char *t, const char *f, const char *qual,
                      const void *payload, size_t len, int64_t now_ms, uint64_t max_fn,
                      uint64_t max_tenant, char *which)
{
    pg_t *p = P(s);
    if (len > INT32_MAX) return realm_pg_fail(p, "enqueue: payload too large", NULL);
    char now[24], mf[24], mt[24];
    snprintf(now, sizeof(now), "%" PRId64, now_ms);
    snprintf(mf, sizeof(mf), "%" PRIu64, max_fn > INT64_MAX ? (uint64_t)INT64_MAX : max_fn);
    snprintf(mt, sizeof(mt), "%" PRIu64, max_tenant > INT64_MAX ? (uint64_t)INT64_MAX : max_tenant);
    const char *params[] = {t, f, qual, len ? payload : "", now, mf, mt};
    const int lengths[] = {0, 0, 0, (int)len, 0, 0, 0};
    const int formats[] = {0, 0, 0, 1, 0, 0, 0};
    /* Inside the caller's transaction, its COMMIT decides; otherwise our own. */
    const int own = !p->in_txn;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (own) {
            if (realm_pg_simple(p, "BEGIN") != 0) {
                if (PQstatus(p->conn) != CONNECTION_OK) continue; /* nothing sent but BEGIN */
                return -1;
            }
            p->in_txn = 1; /* a lost connection now fails the calls, never resets */
        }
        PGresult *r = realm_pg_exec_bin(p, S_PUSH, params, lengths, formats, 0, NULL);
        if (!r) {
            if (!own) return -1;
            int is_lost = PQstatus(p->conn) != CONNECTION_OK;
            push_abort(p);
            if (is_lost) continue; /* no COMMIT was sent: nothing is queued; once more */
            return -1;
        }
        p->q_rows += 2;
        int64_t id = realm_pg_int(r, 0, 0);
        char full = PQgetvalue(r, 0, 1)[0];
        char xid[32];
        snprintf(xid, sizeof(xid), "%s", PQgetvalue(r, 0, 2));
        PQclear(r);
        if (full) {
            if (own) push_abort(p);
            *which = full;
            return -2;
        }
        if (!own) return id;
        if (p->q_before_commit) p->q_before_commit(p->q_hook_arg, xid);
        int old_pid = PQbackendPID(p->conn);
        int rc = push_commit(p);
        if (rc == 0) return id;
        if (rc == -1) return -1;
        /* In doubt: ask the database (on a new connection) what became of it. */
        int committed = realm_pg_q_committed(p, xid, old_pid);
        if (committed == 1) {
            realm_info("store: %s: enqueue of event %" PRId64 " was committed", p->where, id);
            return id;
        }
        if (committed < 0) {
            /* The database did not answer again (it is down): an error,
             * the event maybe queued; the log names the transaction. */
            realm_warn("store: %s: enqueue of event %" PRId64 " (transaction %s): outcome unknown",
                       p->where, id, xid);
            return -1;
        }
        realm_info("store: %s: enqueue was not committed; once more", p->where);
    }
    return -1;
}

/* ---- claim, payload ---- */

static int cmp_lease(const void *a, const void *b)
{
    const realm_store_event_t *x = a, *y = b;
    return (x->lease > y->lease) - (x->lease < y->lease);
}

static size_t q_claim(realm_store_t *s, int64_t now_ms, int64_t lease_until_ms,
                      realm_store_event_t *out, size_t max)
{
    pg_t *p = P(s);
    char now[24], until[24], lim[24], base[24];
    snprintf(now, sizeof(now), "%" PRId64, now_ms);
    snprintf(until, sizeof(until), "%" PRId64, lease_until_ms);
    snprintf(lim, sizeof(lim), "%zu", max);
    snprintf(base, sizeof(base), "%" PRIu64, random_token_base());
    PGresult *r = run(p, S_CLAIM, (const char *[]){now, until, lim, base, p->owner});
    if (!r) return 0;
    size_t n = (size_t)PQntuples(r);
    if (n > max) n = max; /* never: LIMIT */
    for (size_t i = 0; i < n; i++) {
        int row = (int)i;
        out[i] = (realm_store_event_t){
            .id = realm_pg_int(r, row, 0),
            .tenant = realm_strdup(PQgetvalue(r, row, 1)),
            .function = realm_strdup(PQgetvalue(r, row, 2)),
            .qualifier = realm_strdup(PQgetvalue(r, row, 3)),
            .attempts = (int)realm_pg_int(r, row, 4),
            .enqueued_ms = realm_pg_int(r, row, 5),
            .lease = (uint64_t)realm_pg_int(r, row, 6),
        };
    }
    PQclear(r);
    /* Tokens follow (due_ms, id): RETURNING's order is not promised. */
    qsort(out, n, sizeof(*out), cmp_lease);
    return n;
}

static int q_payload(realm_store_t *s, int64_t id, char **data, size_t *len)
{
    pg_t *p = P(s);
    char v[24];
    snprintf(v, sizeof(v), "%" PRId64, id);
    PGresult *r = realm_pg_exec_bin(p, S_PAYLOAD, (const char *[]){v}, NULL, NULL, 1, NULL);
    if (!r) return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 1;
    }
    size_t n = (size_t)PQgetlength(r, 0, 0);
    *data = realm_malloc(n + 1);
    if (n) memcpy(*data, PQgetvalue(r, 0, 0), n);
    (*data)[n] = '\0';
    *len = n;
    PQclear(r);
    p->q_rows++;
    p->q_payload_reads++;
    p->q_payload_bytes += n;
    return 0;
}

/* ---- outcomes (fenced: a stale token changes nothing, and answers 0) ---- */

static int outcome(realm_store_t *s, int idx, int64_t id, uint64_t lease, const char *a,
                   const char *b)
{
    char v[24], l[24];
    snprintf(v, sizeof(v), "%" PRId64, id);
    snprintf(l, sizeof(l), "%" PRIu64, lease);
    return run_done(P(s), idx, (const char *[]){v, l, a, b});
}

static int q_complete(realm_store_t *s, int64_t id, uint64_t lease)
{
    return outcome(s, S_DONE, id, lease, NULL, NULL);
}

static int q_retry(realm_store_t *s, int64_t id, uint64_t lease, int64_t due_ms, const char *error)
{
    char d[24];
    snprintf(d, sizeof(d), "%" PRId64, due_ms);
    realm_buf_t b;
    int rc = outcome(s, S_RETRY, id, lease, d, utf8(&b, error));
    if (error) realm_buf_dispose(&b);
    return rc;
}

static int q_defer(realm_store_t *s, int64_t id, uint64_t lease, int64_t due_ms)
{
    char d[24];
    snprintf(d, sizeof(d), "%" PRId64, due_ms);
    return outcome(s, S_DEFER, id, lease, d, NULL);
}

static int q_release(realm_store_t *s, int64_t id, uint64_t lease)
{
    return outcome(s, S_RELEASE, id, lease, NULL, NULL);
}

static int q_fail(realm_store_t *s, int64_t id, uint64_t lease, const char *etype, const char *emsg,
                  int64_t now_ms, int64_t keep)
{
    char v[24], l[24], n[24], k[24];
    snprintf(v, sizeof(v), "%" PRId64, id);
    snprintf(l, sizeof(l), "%" PRIu64, lease);
    snprintf(n, sizeof(n), "%" PRId64, now_ms);
    snprintf(k, sizeof(k), "%" PRId64, keep);
    realm_buf_t bt, bm;
    const char *type = utf8(&bt, etype), *msg = utf8(&bm, emsg);
    int rc = run_done(P(s), S_FAIL, (const char *[]){v, l, type, msg, n, k});
    if (etype) realm_buf_dispose(&bt);
    if (emsg) realm_buf_dispose(&bm);
    return rc;
}

static int q_park(realm_store_t *s, int64_t id, uint64_t lease, int64_t until_ms)
{
    char u[24];
    snprintf(u, sizeof(u), "%" PRId64, until_ms);
    return outcome(s, S_PARK, id, lease, u, NULL);
}

/* "{1,2,3}": an array literal of n integers. */
static char *int_array(const void *v, size_t n, int is_signed)
{
    realm_buf_t b;
    realm_buf_init(&b);
    realm_buf_appends(&b, "{");
    for (size_t i = 0; i < n; i++) {
        if (is_signed)
            realm_buf_appendf(&b, "%s%" PRId64, i ? "," : "", ((const int64_t *)v)[i]);
        else
            realm_buf_appendf(&b, "%s%" PRIu64, i ? "," : "", ((const uint64_t *)v)[i]);
    }
    realm_buf_appends(&b, "}");
    return realm_buf_steal(&b, NULL);
}

static int64_t q_renew(realm_store_t *s, const int64_t *ids, const uint64_t *leases, size_t n,
                       int64_t until_ms)
{
    char until[24];
    snprintf(until, sizeof(until), "%" PRId64, until_ms);
    char *a = int_array(ids, n, 1), *l = int_array(leases, n, 0);
    PGresult *r = run(P(s), S_RENEW, (const char *[]){until, a, l});
    free(a);
    free(l);
    if (!r) return -1;
    int64_t renewed = realm_pg_changes(r);
    PQclear(r);
    return renewed;
}

static int64_t q_unpark(realm_store_t *s, const char *t, const char *f, int64_t now_ms)
{
    char n[24];
    snprintf(n, sizeof(n), "%" PRId64, now_ms);
    PGresult *r = run(P(s), S_UNPARK, (const char *[]){t, f, n});
    if (!r) return -1;
    int64_t woken = realm_pg_int(r, 0, 0);
    PQclear(r);
    return woken;
}

static json_t *q_parked(realm_store_t *s)
{
    PGresult *r = run(P(s), S_PARKED, NULL);
    if (!r) return NULL;
    json_t *arr = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(arr, json_pack("[s, s]", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1)));
    PQclear(r);
    return arr;
}

/* ---- inspection ---- */

static int64_t q_next_due(realm_store_t *s)
{
    PGresult *r = run(P(s), S_NEXT, NULL);
    if (!r) return -1;
    int64_t due = PQgetisnull(r, 0, 0) ? -1 : realm_pg_int(r, 0, 0);
    PQclear(r);
    return due == INT64_MAX ? -1 : due; /* leased "forever" (a single server's claim) */
}

static size_t q_pending(realm_store_t *s, const char *t, const char *f)
{
    PGresult *r = f ? run(P(s), S_COUNT_FN, (const char *[]){t, f}) : run(P(s), S_COUNT_ALL, NULL);
    if (!r) return 0;
    int64_t n = realm_pg_int(r, 0, 0);
    PQclear(r);
    return n > 0 ? (size_t)n : 0;
}

static void q_stats(realm_store_t *s, realm_store_q_stats_t *out)
{
    pg_t *p = P(s);
    out->rows = p->q_rows;
    out->payload_reads = p->q_payload_reads;
    out->payload_bytes = p->q_payload_bytes;
}

static json_t *text_or_null(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) return json_null();
    return realm_str_json(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

static json_t *q_failed(realm_store_t *s, const char *t, const char *f, size_t limit)
{
    char lim[24];
    snprintf(lim, sizeof(lim), "%" PRId64, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    PGresult *r = f ? run(P(s), S_FAILED_FN, (const char *[]){t, f, lim})
                    : run(P(s), S_FAILED_TENANT, (const char *[]){t, lim});
    if (!r) return NULL;
    json_t *arr = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        size_t n = 0;
        unsigned char *body = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 3), &n);
        json_t *o = json_object();
        json_object_set_new(o, "Id", json_integer(realm_pg_int(r, i, 0)));
        json_object_set_new(o, "FunctionName", text_or_null(r, i, 1));
        json_object_set_new(o, "Qualifier", text_or_null(r, i, 2));
        json_object_set_new(o, "Payload", realm_str_json(body ? (const char *)body : "", n));
        json_object_set_new(o, "Attempts", json_integer(realm_pg_int(r, i, 4)));
        json_object_set_new(o, "ErrorType", text_or_null(r, i, 5));
        json_object_set_new(o, "ErrorMessage", text_or_null(r, i, 6));
        json_object_set_new(o, "EnqueuedMs", json_integer(realm_pg_int(r, i, 7)));
        json_object_set_new(o, "FailedMs", json_integer(realm_pg_int(r, i, 8)));
        json_array_append_new(arr, o);
        PQfreemem(body);
    }
    PQclear(r);
    return arr;
}

static int q_forget(realm_store_t *s, const char *t, const char *f)
{
    return run_done(P(s), S_FORGET, (const char *[]){t, f});
}

/*
 * A server killed while it held events and started again on this machine:
 * its leases would hold them until they end (--event-lease-ms); the
 * process is gone, so they are released now (its tokens stay stale). Leases
 * of live processes and of other machines wait for their end.
 */
void realm_pg_queue_opened(pg_t *p)
{
    realm_pg_release_dead(p, S_LEASE_OWNERS, S_LEASE_DROP, "taken event(s)");
}

void realm_pg_queue_init(pg_t *p)
{
    realm_store_ops_t *o = &p->ops;
    p->stmts = stmts;
    p->stmt_cnt = S_COUNT;
    _Static_assert(S_COUNT <= PG_STMT_MAX, "PG_STMT_MAX");
    realm_pg_set_owner(p); /* its name in the leases it holds */
    o->q_push = q_push;
    o->q_claim = q_claim;
    o->q_payload = q_payload;
    o->q_complete = q_complete;
    o->q_retry = q_retry;
    o->q_defer = q_defer;
    o->q_release = q_release;
    o->q_fail = q_fail;
    o->q_park = q_park;
    o->q_unpark = q_unpark;
    o->q_parked = q_parked;
    o->q_next_due = q_next_due;
    o->q_pending = q_pending;
    o->q_stats = q_stats;
    o->q_failed = q_failed;
    o->q_forget = q_forget;
    o->q_renew = q_renew;
}
