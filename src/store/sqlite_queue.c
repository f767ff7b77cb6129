/*
 * sqlite_queue.c - the SQLite backend's Event queue (events.db).
 *
 * SCHEMA (version 2, recorded in realm_schema; the steps below):
 *   events(id, tenant, function, qualifier, attempts, enqueued_ms, due_ms,
 *          is_parked, last_error)                   one row per live event
 *   payloads(id, payload)                            its payload, by id
 *   fn_counts(tenant, function, n), tenant_counts(tenant, n)
 *                                                    pending events, kept by
 *                                                    triggers on events
 *   parked_fns(tenant, function)                     functions with parked events
 *   failed(seq, id, tenant, function, qualifier, payload, attempts,
 *          error_type, error_message, enqueued_ms, failed_ms)
 * events.id is AUTOINCREMENT so an id is never reused, even after the
 * newest event was removed and the file reopened: a stale id held by a
 * caller can never name a newer event. failed.seq orders failures (newest
 * first) independently of the caller's clock; failed.id is the event's id.
 * Version 1 kept the payload in its `pending` table; open moves such a file
 * to version 2 once, in one transaction (the migrations, below).
 *
 * DESIGN: no operation's cost grows with the backlog.
 *   - Payloads (up to 256 KB each) sit in their own table: walking events
 *     never touches them (SQLite would read a row's overflow pages to reach
 *     the columns stored after a blob), and they are read once, when an
 *     event is about to run.
 *   - claim walks the index on (due_ms, id) from the front and stops once
 *     it has max events. What it skips is leased events (a sorted array of
 *     leases in this process's memory, not a column, so claiming costs no
 *     write and a crash needs no recovery: a reopened queue has no leases),
 *     which are at most the events in flight. Events waiting for a retry or
 *     parked sit later in the index and are not walked.
 *   - Parked events (reserved concurrency 0) have due_ms = their expiry and
 *     is_parked = 1; parked_fns lists their functions so the caller can
 *     check a handful of functions, not the events, and unpark wakes one
 *     function's events through the (tenant, function, is_parked) index.
 *   - The bound check and `pending` read the count tables, which triggers
 *     keep in step with every insert and delete of events (the delete
 *     trigger also drops the payload).
 *
 * Leases: one process owns a file's leases (they are not in the file); a
 * lease token is a counter of this store. Lease 0 in an outcome means
 * "unfenced" (the caller holds no token). Statements are prepared once
 * (realm_sqlite_prep's cache); push, fail, park, unpark and forget are one BEGIN
 * IMMEDIATE transaction each, the other calls one statement in autocommit.
 */
#include "store/sqlite.h"

#include "base/alloc.h"
#include "base/log.h"
#include "base/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The migrations (append-only: store/internal.h), each as its release wrote
 * it. Version 1 kept events with their payloads in `pending`; version 2
 * moves them out (ids and the id sequence kept; the triggers count the
 * moved events). A new file runs both: creating and dropping an empty
 * `pending` costs nothing, and one path serves new and old files alike.
 * IF NOT EXISTS: a file from before realm_schema may hold part of a step
 * (releases before it made the schema outside a transaction).
 */
static const realm_store_migration_t steps[] = {
    {"pending events with their payloads, failed events",
     "CREATE TABLE IF NOT EXISTS pending("
     " id INTEGER PRIMARY KEY AUTOINCREMENT,"
     " tenant TEXT NOT NULL, function TEXT NOT NULL, qualifier TEXT NOT NULL,"
     " payload BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
     " enqueued_ms INTEGER NOT NULL, due_ms INTEGER NOT NULL, last_error TEXT);"
     "CREATE INDEX IF NOT EXISTS pending_due ON pending(due_ms, id);"
     "CREATE INDEX IF NOT EXISTS pending_fn ON pending(tenant, function);"
     "CREATE TABLE IF NOT EXISTS failed("
     " seq INTEGER PRIMARY KEY AUTOINCREMENT, id INTEGER NOT NULL,"
     " tenant TEXT NOT NULL, function TEXT NOT NULL, qualifier TEXT NOT NULL,"
     " payload BLOB NOT NULL, attempts INTEGER NOT NULL,"
     " error_type TEXT, error_message TEXT,"
     " enqueued_ms INTEGER NOT NULL, failed_ms INTEGER NOT NULL);"
     "CREATE INDEX IF NOT EXISTS failed_fn ON failed(tenant, function, seq);"
     "CREATE INDEX IF NOT EXISTS failed_tenant ON failed(tenant, seq);"},
    {"payloads in their own table, counts kept by triggers, parked functions",
     "CREATE TABLE IF NOT EXISTS events("
     " id INTEGER PRIMARY KEY AUTOINCREMENT,"
     " tenant TEXT NOT NULL, function TEXT NOT NULL, qualifier TEXT NOT NULL,"
     " attempts INTEGER NOT NULL DEFAULT 0, enqueued_ms INTEGER NOT NULL,"
     " due_ms INTEGER NOT NULL, is_parked INTEGER NOT NULL DEFAULT 0, last_error TEXT);"
     "CREATE INDEX IF NOT EXISTS events_due ON events(due_ms, id);"
     "CREATE INDEX IF NOT EXISTS events_fn ON events(tenant, function, is_parked);"
     "CREATE TABLE IF NOT EXISTS payloads(id INTEGER PRIMARY KEY, payload BLOB NOT NULL);"
     "CREATE TABLE IF NOT EXISTS fn_counts(tenant TEXT NOT NULL, function TEXT NOT NULL,"
     " n INTEGER NOT NULL, PRIMARY KEY(tenant, function)) WITHOUT ROWID;"
     "CREATE TABLE IF NOT EXISTS tenant_counts(tenant TEXT NOT NULL PRIMARY KEY,"
     " n INTEGER NOT NULL) WITHOUT ROWID;"
     "CREATE TABLE IF NOT EXISTS parked_fns(tenant TEXT NOT NULL, function TEXT NOT NULL,"
     " PRIMARY KEY(tenant, function)) WITHOUT ROWID;"
     "CREATE TRIGGER IF NOT EXISTS events_added AFTER INSERT ON events BEGIN"
     " INSERT INTO fn_counts(tenant, function, n) VALUES(NEW.tenant, NEW.function, 1)"
     "  ON CONFLICT(tenant, function) DO UPDATE SET n = n + 1;"
     " INSERT INTO tenant_counts(tenant, n) VALUES(NEW.tenant, 1)"
     "  ON CONFLICT(tenant) DO UPDATE SET n = n + 1;"
     " END;"
     "CREATE TRIGGER IF NOT EXISTS events_removed AFTER DELETE ON events BEGIN"
     " UPDATE fn_counts SET n = n - 1 WHERE tenant = OLD.tenant AND function = OLD.function;"
     " UPDATE tenant_counts SET n = n - 1 WHERE tenant = OLD.tenant;"
     " DELETE FROM payloads WHERE id = OLD.id;"
     " END;"
     "INSERT INTO events(id, tenant, function, qualifier, attempts, enqueued_ms, due_ms,"
     " last_error) SELECT id, tenant, function, qualifier, attempts, enqueued_ms, due_ms,"
     " last_error FROM pending;"
     "INSERT INTO payloads(id, payload) SELECT id, payload FROM pending;"
     "DELETE FROM sqlite_sequence WHERE name = 'events';"
     "INSERT INTO sqlite_sequence(name, seq) SELECT 'events', seq FROM sqlite_sequence"
     " WHERE name = 'pending';"
     "DROP TABLE pending;"},
};
const realm_store_schema_t realm_sqlite_queue_schema = {steps, sizeof(steps) / sizeof(steps[0])};

static const char S_COUNTS[] =
    "SELECT (SELECT n FROM fn_counts WHERE tenant = ?1 AND function = ?2),"
    " (SELECT n FROM tenant_counts WHERE tenant = ?1)";
static const char S_PUSH[] = "INSERT INTO events(tenant, function, qualifier, enqueued_ms, due_ms)"
                             " VALUES(?1, ?2, ?3, ?4, ?4)";
static const char S_PUSH_PAYLOAD[] = "INSERT INTO payloads(id, payload) VALUES(?1, ?2)";
static const char S_DUE[] = "SELECT id, tenant, function, qualifier, attempts, enqueued_ms"
                            " FROM events WHERE due_ms <= ?1 ORDER BY due_ms, id";
static const char S_PAYLOAD[] = "SELECT payload FROM payloads WHERE id = ?1";
static const char S_NEXT[] = "SELECT id, due_ms FROM events ORDER BY due_ms, id";
static const char S_COUNT[] = "SELECT COALESCE(SUM(n), 0) FROM tenant_counts";
static const char S_DONE[] = "DELETE FROM events WHERE id = ?1";
static const char S_DEFER[] = "UPDATE events SET due_ms = ?2 WHERE id = ?1";
static const char S_RETRY[] = "UPDATE events SET attempts = attempts + 1, due_ms = ?2,"
                              " last_error = ?3 WHERE id = ?1";
static const char S_PARK[] = "UPDATE events SET is_parked = 1, due_ms = ?2 WHERE id = ?1";
static const char S_PARK_FN[] = "INSERT OR IGNORE INTO parked_fns(tenant, function)"
                                " SELECT tenant, function FROM events WHERE id = ?1";
static const char S_UNPARK[] = "UPDATE events SET is_parked = 0, due_ms = ?3"
                               " WHERE tenant = ?1 AND function = ?2 AND is_parked = 1";
static const char S_UNPARK_FN[] = "DELETE FROM parked_fns WHERE tenant = ?1 AND function = ?2";
static const char S_PARKED[] = "SELECT tenant, function FROM parked_fns";
static const char S_TO_FAILED[] =
    "INSERT INTO failed(id, tenant, function, qualifier, payload, attempts,"
    " error_type, error_message, enqueued_ms, failed_ms)"
    " SELECT e.id, e.tenant, e.function, e.qualifier, COALESCE(p.payload, x''),"
    " e.attempts + 1, ?2, ?3, e.enqueued_ms, ?4"
    " FROM events e LEFT JOIN payloads p ON p.id = e.id WHERE e.id = ?1"
    " RETURNING tenant, function";
/* Deletes all but the newest ?3 failures of one function: everything at or
 * below the seq of the (?3+1)-th newest (NULL when there are fewer, and then
 * nothing matches). */
static const char S_TRIM_FAILED[] = "DELETE FROM failed WHERE tenant = ?1 AND function = ?2 AND"
                                    " seq <= (SELECT seq FROM failed WHERE tenant = ?1 AND"
                                    " function = ?2 ORDER BY seq DESC LIMIT 1 OFFSET ?3)";
static const char S_LIST_FN[] = "SELECT id, function, qualifier, payload, attempts, error_type,"
                                " error_message, enqueued_ms, failed_ms FROM failed"
                                " WHERE tenant = ?1 AND function = ?2 ORDER BY seq DESC LIMIT ?3";
static const char S_LIST_TENANT[] = "SELECT id, function, qualifier, payload, attempts,"
                                    " error_type, error_message, enqueued_ms, failed_ms FROM"
                                    " failed WHERE tenant = ?1 ORDER BY seq DESC LIMIT ?3";
static const char S_FORGET_PENDING[] = "DELETE FROM events WHERE tenant = ?1 AND function = ?2";
static const char S_FORGET_FAILED[] = "DELETE FROM failed WHERE tenant = ?1 AND function = ?2";
static const char S_FORGET_COUNTS[] = "DELETE FROM fn_counts WHERE tenant = ?1 AND function = ?2";
static const char S_FORGET_PARKED[] = "DELETE FROM parked_fns WHERE tenant = ?1 AND function = ?2";

/* ---- leases ---- */

/* Index of id in the lease array, or of where it would be inserted. */
static size_t lease_pos(const sq_t *q, int64_t id)
{
    size_t lo = 0, hi = q->lease_cnt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (q->leases[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static sq_lease_t *lease_of(sq_t *q, int64_t id)
{
    size_t i = lease_pos(q, id);
    return i < q->lease_cnt && q->leases[i].id == id ? &q->leases[i] : NULL;
}

static uint64_t lease(sq_t *q, int64_t id, int64_t until_ms)
{
    size_t i = lease_pos(q, id);
    if (!(i < q->lease_cnt && q->leases[i].id == id)) {
        if (q->lease_cnt == q->lease_cap) {
            q->lease_cap = q->lease_cap ? q->lease_cap * 2 : 16;
            q->leases = realm_realloc(q->leases, q->lease_cap * sizeof(*q->leases));
        }
        memmove(q->leases + i + 1, q->leases + i, (q->lease_cnt - i) * sizeof(*q->leases));
        q->lease_cnt++;
    }
    q->leases[i] = (sq_lease_t){id, q->next_token++, until_ms};
    return q->leases[i].token;
}

/* Ends the lease the caller names: 1 when the caller may act on the event
 * (its lease, or lease 0: unfenced), 0 when the token is stale. */
static int unlease(sq_t *q, int64_t id, uint64_t token)
{
    size_t i = lease_pos(q, id);
    if (i == q->lease_cnt || q->leases[i].id != id) return token == 0;
    if (token && q->leases[i].token != token) return 0;
    memmove(q->leases + i, q->leases + i + 1, (q->lease_cnt - i - 1) * sizeof(*q->leases));
    q->lease_cnt--;
    return 1;
}

/* Runs a statement that returns no rows and hands it back. 0 or -1. */
static int run(sq_t *q, sqlite3_stmt *st)
{
    if (!st) return -1;
    return realm_sqlite_step_done(q, st) == SQLITE_DONE ? 0 : -1;
}

static sqlite3_stmt *prep_id(sq_t *q, const char *sql, int64_t id)
{
    sqlite3_stmt *st = realm_sqlite_prep(q, sql);
    if (st) sqlite3_bind_int64(st, 1, id);
    return st;
}

static sqlite3_stmt *prep_tf(sq_t *q, const char *sql, const char *t, const char *f)
{
    sqlite3_stmt *st = realm_sqlite_prep(q, sql);
    if (!st) return NULL;
    realm_sqlite_text(st, 1, t);
    realm_sqlite_text(st, 2, f);
    return st;
}

static int begin(sq_t *q)
{
    return realm_sqlite_exec(q, "BEGIN IMMEDIATE");
}

static int commit(sq_t *q)
{
    if (realm_sqlite_exec(q, "COMMIT") == 0) return 0;
    realm_sqlite_exec(q, "ROLLBACK");
    return -1;
}

static int rollback(sq_t *q)
{
    realm_sqlite_exec(q, "ROLLBACK");
    return -1;
}

/* ---- push / claim ---- */

static int64_t q_push(realm_store_t *s, const char *t, const char *f, const char *qual,
                      const void *payload, size_t len, int64_t now_ms, uint64_t max_fn,
                      uint64_t max_tenant, char *which)
{
    sq_t *q = (sq_t *)s;
    if (begin(q) != 0) return -1;
    if (max_fn || max_tenant) {
        sqlite3_stmt *st = prep_tf(q, S_COUNTS, t, f);
        if (!st || sqlite3_step(st) != SQLITE_ROW) {
            realm_sqlite_fail(q, S_COUNTS);
            realm_sqlite_done(q, st);
            return rollback(q);
        }
        uint64_t fn_n = (uint64_t)sqlite3_column_int64(st, 0);
        uint64_t tenant_n = (uint64_t)sqlite3_column_int64(st, 1);
        realm_sqlite_done(q, st);
        if ((max_fn && fn_n >= max_fn) || (max_tenant && tenant_n >= max_tenant)) {
            *which = max_fn && fn_n >= max_fn ? 'f' : 't';
            rollback(q);
            return -2;
        }
    }
    sqlite3_stmt *st = prep_tf(q, S_PUSH, t, f);
    if (!st) return rollback(q);
    realm_sqlite_text(st, 3, qual);
    sqlite3_bind_int64(st, 4, now_ms);
    int64_t id = -1;
    if (realm_sqlite_step_done(q, st) == SQLITE_DONE) id = sqlite3_last_insert_rowid(q->db);
    if (id > 0) {
        st = prep_id(q, S_PUSH_PAYLOAD, id);
        /* A NULL pointer would bind SQL NULL: an empty payload is an empty blob. */
        if (st) sqlite3_bind_blob64(st, 2, len ? payload : "", len, SQLITE_STATIC);
        if (run(q, st) != 0) id = -1; /* realm_sqlite_done dropped the payload pointer */
    }
    if (id < 0) return rollback(q);
    return commit(q) == 0 ? id : -1;
}

static size_t q_claim(realm_store_t *s, int64_t now_ms, int64_t lease_until_ms,
                      realm_store_event_t *out, size_t max)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = realm_sqlite_prep(q, S_DUE);
    if (!st) return 0;
    sqlite3_bind_int64(st, 1, now_ms);
    size_t n = 0;
    int rc = SQLITE_DONE;
    while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        sq_lease_t *l = lease_of(q, id);
        if (l && l->until_ms > now_ms) continue;
        realm_store_event_t *ev = &out[n++];
        memset(ev, 0, sizeof(*ev));
        ev->id = id;
        ev->tenant = realm_sqlite_column_dup(st, 1);
        ev->function = realm_sqlite_column_dup(st, 2);
        ev->qualifier = realm_sqlite_column_dup(st, 3);
        ev->attempts = sqlite3_column_int(st, 4);
        ev->enqueued_ms = sqlite3_column_int64(st, 5);
    }
    if (n < max && rc != SQLITE_DONE) {
        realm_sqlite_fail(q, S_DUE);
        for (size_t i = 0; i < n; i++)
            realm_store_event_dispose(&out[i]);
        n = 0;
    }
    realm_sqlite_done(q, st);
    for (size_t i = 0; i < n; i++)
        out[i].lease = lease(q, out[i].id, lease_until_ms);
    return n;
}

static int q_payload(realm_store_t *s, int64_t id, char **data, size_t *len)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_id(q, S_PAYLOAD, id);
    if (!st) return -1;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        if (rc != SQLITE_DONE) realm_sqlite_fail(q, S_PAYLOAD);
        realm_sqlite_done(q, st);
        return rc == SQLITE_DONE ? 1 : -1;
    }
    const void *p = sqlite3_column_blob(st, 0);
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    *data = realm_malloc(n + 1);
    if (n) memcpy(*data, p, n);
    (*data)[n] = '\0';
    *len = n;
    realm_sqlite_done(q, st);
    q->payload_reads++;
    q->payload_bytes += n;
    return 0;
}

/* ---- outcomes ---- */

static int q_complete(realm_store_t *s, int64_t id, uint64_t token)
{
    sq_t *q = (sq_t *)s;
    if (!unlease(q, id, token)) return 0;
    return run(q, prep_id(q, S_DONE, id));
}

static int q_retry(realm_store_t *s, int64_t id, uint64_t token, int64_t due_ms, const char *error)
{
    sq_t *q = (sq_t *)s;
    if (!unlease(q, id, token)) return 0;
    sqlite3_stmt *st = prep_id(q, S_RETRY, id);
    if (!st) return -1;
    sqlite3_bind_int64(st, 2, due_ms);
    realm_sqlite_text(st, 3, error);
    return run(q, st);
}

static int q_defer(realm_store_t *s, int64_t id, uint64_t token, int64_t due_ms)
{
    sq_t *q = (sq_t *)s;
    if (!unlease(q, id, token)) return 0;
    sqlite3_stmt *st = prep_id(q, S_DEFER, id);
    if (!st) return -1;
    sqlite3_bind_int64(st, 2, due_ms);
    return run(q, st);
}

static int q_release(realm_store_t *s, int64_t id, uint64_t token)
{
    unlease((sq_t *)s, id, token);
    return 0;
}

static int q_fail(realm_store_t *s, int64_t id, uint64_t token, const char *etype, const char *emsg,
                  int64_t now_ms, int64_t keep)
{
    sq_t *q = (sq_t *)s;
    if (!unlease(q, id, token)) return 0;
    if (begin(q) != 0) return -1;
    sqlite3_stmt *st = prep_id(q, S_TO_FAILED, id);
    if (!st) return rollback(q);
    realm_sqlite_text(st, 2, etype);
    realm_sqlite_text(st, 3, emsg);
    sqlite3_bind_int64(st, 4, now_ms);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) { /* no longer pending (forgotten): nothing to move */
        realm_sqlite_done(q, st);
        return commit(q);
    }
    if (rc != SQLITE_ROW) {
        realm_sqlite_fail(q, S_TO_FAILED);
        realm_sqlite_done(q, st);
        return rollback(q);
    }
    char *tenant = realm_sqlite_column_dup(st, 0), *function = realm_sqlite_column_dup(st, 1);
    rc = sqlite3_step(st); /* finish the INSERT .. RETURNING */
    realm_sqlite_done(q, st);
    int ok = rc == SQLITE_DONE;
    if (!ok) realm_sqlite_fail(q, S_TO_FAILED);
    if (ok) ok = run(q, prep_id(q, S_DONE, id)) == 0;
    if (ok) {
        st = prep_tf(q, S_TRIM_FAILED, tenant, function);
        if (st) sqlite3_bind_int64(st, 3, keep);
        ok = run(q, st) == 0;
    }
    free(tenant);
    free(function);
    return ok ? commit(q) : rollback(q);
}

static int q_park(realm_store_t *s, int64_t id, uint64_t token, int64_t until_ms)
{
    sq_t *q = (sq_t *)s;
    if (!unlease(q, id, token)) return 0;
    if (begin(q) != 0) return -1;
    if (run(q, prep_id(q, S_PARK_FN, id)) != 0) return rollback(q);
    sqlite3_stmt *st = prep_id(q, S_PARK, id);
    if (st) sqlite3_bind_int64(st, 2, until_ms);
    if (run(q, st) != 0) return rollback(q);
    return commit(q);
}

static int64_t q_unpark(realm_store_t *s, const char *t, const char *f, int64_t now_ms)
{
    sq_t *q = (sq_t *)s;
    if (begin(q) != 0) return -1;
    sqlite3_stmt *st = prep_tf(q, S_UNPARK, t, f);
    if (st) sqlite3_bind_int64(st, 3, now_ms);
    if (run(q, st) != 0) return rollback(q);
    int64_t n = sqlite3_changes64(q->db);
    if (run(q, prep_tf(q, S_UNPARK_FN, t, f)) != 0) return rollback(q);
    return commit(q) == 0 ? n : -1;
}

static json_t *q_parked(realm_store_t *s)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = realm_sqlite_prep(q, S_PARKED);
    if (!st) return NULL;
    json_t *arr = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(arr, json_pack("[s, s]", (const char *)sqlite3_column_text(st, 0),
                                             (const char *)sqlite3_column_text(st, 1)));
    if (rc != SQLITE_DONE) {
        realm_sqlite_fail(q, S_PARKED);
        json_decref(arr);
        arr = NULL;
    }
    realm_sqlite_done(q, st);
    return arr;
}

/* ---- inspection ---- */

static int64_t q_next_due(realm_store_t *s)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = realm_sqlite_prep(q, S_NEXT);
    if (!st) return -1;
    int64_t due = -1;
    int rc = SQLITE_DONE;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (lease_of(q, sqlite3_column_int64(st, 0))) continue;
        due = sqlite3_column_int64(st, 1);
        break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) realm_sqlite_fail(q, S_NEXT);
    realm_sqlite_done(q, st);
    return due;
}

static size_t q_pending(realm_store_t *s, const char *t, const char *f)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = f ? prep_tf(q, S_COUNTS, t, f) : realm_sqlite_prep(q, S_COUNT);
    if (!st) return 0;
    size_t n = 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = (size_t)sqlite3_column_int64(st, 0);
    else
        realm_sqlite_fail(q, f ? S_COUNTS : S_COUNT);
    realm_sqlite_done(q, st);
    return n;
}

static void q_stats(realm_store_t *s, realm_store_q_stats_t *out)
{
    sq_t *q = (sq_t *)s;
    for (size_t i = 0; i < q->stmt_cnt; i++)
        out->rows += (uint64_t)sqlite3_stmt_status(q->stmts[i].st, SQLITE_STMTSTATUS_VM_STEP, 0);
    out->payload_reads = q->payload_reads;
    out->payload_bytes = q->payload_bytes;
}

/* A text column as a JSON string (NULL: null); callers' text may be cut mid-character. */
static json_t *column_json_text(sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    if (!s) return json_null();
    return realm_str_json(s, (size_t)sqlite3_column_bytes(st, col));
}

static json_t *q_failed(realm_store_t *s, const char *t, const char *f, size_t limit)
{
    sq_t *q = (sq_t *)s;
    const char *sql = f ? S_LIST_FN : S_LIST_TENANT;
    sqlite3_stmt *st = prep_tf(q, sql, t, f);
    if (!st) return NULL;
    sqlite3_bind_int64(st, 3, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    json_t *arr = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *o = json_object();
        json_object_set_new(o, "Id", json_integer(sqlite3_column_int64(st, 0)));
        json_object_set_new(o, "FunctionName", column_json_text(st, 1));
        json_object_set_new(o, "Qualifier", column_json_text(st, 2));
        json_object_set_new(
            o, "Payload",
            realm_str_json(sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3)));
        json_object_set_new(o, "Attempts", json_integer(sqlite3_column_int64(st, 4)));
        json_object_set_new(o, "ErrorType", column_json_text(st, 5));
        json_object_set_new(o, "ErrorMessage", column_json_text(st, 6));
        json_object_set_new(o, "EnqueuedMs", json_integer(sqlite3_column_int64(st, 7)));
        json_object_set_new(o, "FailedMs", json_integer(sqlite3_column_int64(st, 8)));
        json_array_append_new(arr, o);
    }
    if (rc != SQLITE_DONE) {
        realm_sqlite_fail(q, sql);
        json_decref(arr);
        arr = NULL;
    }
    realm_sqlite_done(q, st);
    return arr;
}

static int q_forget(realm_store_t *s, const char *t, const char *f)
{
    sq_t *q = (sq_t *)s;
    static const char *const all[] = {S_FORGET_PENDING, S_FORGET_FAILED, S_FORGET_COUNTS,
                                      S_FORGET_PARKED};
    if (begin(q) != 0) return -1;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (run(q, prep_tf(q, all[i], t, f)) != 0) return rollback(q);
    return commit(q);
}

void realm_sqlite_queue_ops(realm_store_ops_t *o)
{
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
}
