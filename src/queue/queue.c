/*
 * queue.c - the durable queue of asynchronous invocations (see queue.h).
 *
 * SCHEMA (PRAGMA user_version 1):
 *   pending(id, tenant, function, qualifier, payload, attempts,
 *           enqueued_ms, due_ms, last_error)         one row per live event
 *   failed(seq, id, tenant, function, qualifier, payload, attempts,
 *          error_type, error_message, enqueued_ms, failed_ms)
 * pending.id is AUTOINCREMENT so an id is never reused, even after the
 * newest event was removed and the file reopened: a stale id held by a
 * caller can never name a newer event. failed.seq orders failures (newest
 * first) independently of the caller's clock; failed.id is the event's id.
 *
 * DESIGN: leases are a sorted array of ids in memory, not a column, so
 * taking an event costs no write and a crash needs no recovery: a reopened
 * queue has no leases. take_due and next_due walk pending rows in order and
 * skip leased ids; the leased set is bounded by the events in flight, so the
 * skipping is cheap. take_due walks the table in id order (oldest first) and
 * stops once it has max events, so a large backlog of due events costs
 * nothing extra; what it does skip is events waiting for a retry delay,
 * which are few (at most the events that failed in the last few minutes).
 *
 * Statements are prepared once at open. Operations of one statement run in
 * autocommit; fail and forget use one BEGIN IMMEDIATE transaction.
 *
 * LIFETIME: the queue owns its connection, statements and lease array until
 * realm_queue_close. THREADS: loop thread only.
 */
#include "queue/queue.h"

#include "db/db.h"
#include "base/alloc.h"
#include "base/str.h"
#include "base/log.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char schema[] =
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
    "CREATE INDEX IF NOT EXISTS failed_tenant ON failed(tenant, seq);"
    "PRAGMA user_version = 1;";

/* The prepared statements, by purpose; sql[] below is in the same order. */
enum {
    S_PUSH,
    S_DUE,
    S_NEXT,
    S_COUNT,
    S_DONE,
    S_RETRY,
    S_DEFER,
    S_TO_FAILED,
    S_TRIM_FAILED,
    S_LIST_FN,
    S_LIST_TENANT,
    S_FORGET_PENDING,
    S_FORGET_FAILED,
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_CNT
};

static const char *const sql[S_CNT] = {
    [S_PUSH] = "INSERT INTO pending(tenant, function, qualifier, payload, enqueued_ms, due_ms)"
               " VALUES(?1, ?2, ?3, ?4, ?5, ?5)",
    [S_DUE] = "SELECT id, tenant, function, qualifier, payload, attempts, enqueued_ms"
              " FROM pending WHERE due_ms <= ?1 ORDER BY id",
    [S_NEXT] = "SELECT id, due_ms FROM pending ORDER BY due_ms, id",
    [S_COUNT] = "SELECT COUNT(*) FROM pending",
    [S_DONE] = "DELETE FROM pending WHERE id = ?1",
    [S_DEFER] = "UPDATE pending SET due_ms = ?2 WHERE id = ?1",
    [S_RETRY] = "UPDATE pending SET attempts = attempts + 1, due_ms = ?2, last_error = ?3"
                " WHERE id = ?1",
    [S_TO_FAILED] = "INSERT INTO failed(id, tenant, function, qualifier, payload, attempts,"
                    " error_type, error_message, enqueued_ms, failed_ms)"
                    " SELECT id, tenant, function, qualifier, payload, attempts + 1,"
                    " ?2, ?3, enqueued_ms, ?4 FROM pending WHERE id = ?1"
                    " RETURNING tenant, function",
    /* Deletes all but the newest ?3 failures of one function: everything at
     * or below the seq of the (?3+1)-th newest (NULL when there are fewer,
     * and then nothing matches). */
    [S_TRIM_FAILED] = "DELETE FROM failed WHERE tenant = ?1 AND function = ?2 AND seq <="
                      " (SELECT seq FROM failed WHERE tenant = ?1 AND function = ?2"
                      " ORDER BY seq DESC LIMIT 1 OFFSET ?3)",
    [S_LIST_FN] = "SELECT id, function, qualifier, payload, attempts, error_type,"
                  " error_message, enqueued_ms, failed_ms FROM failed"
                  " WHERE tenant = ?1 AND function = ?2 ORDER BY seq DESC LIMIT ?3",
    [S_LIST_TENANT] = "SELECT id, function, qualifier, payload, attempts, error_type,"
                      " error_message, enqueued_ms, failed_ms FROM failed"
                      " WHERE tenant = ?1 ORDER BY seq DESC LIMIT ?3",
    [S_FORGET_PENDING] = "DELETE FROM pending WHERE tenant = ?1 AND function = ?2",
    [S_FORGET_FAILED] = "DELETE FROM failed WHERE tenant = ?1 AND function = ?2",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
};

struct realm_queue_s {
    sqlite3 *db;
    sqlite3_stmt *st[S_CNT]; /* prepared at open; reset after every use */
    int64_t *leased;         /* sorted ascending, no duplicates */
    size_t leased_cnt;
    size_t leased_cap;
};

/* ---- leases ---- */

/* Index of id in the lease array, or of where it would be inserted. */
static size_t lease_pos(const realm_queue_t *q, int64_t id)
{
    size_t lo = 0, hi = q->leased_cnt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (q->leased[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int is_leased(const realm_queue_t *q, int64_t id)
{
    size_t i = lease_pos(q, id);
    return i < q->leased_cnt && q->leased[i] == id;
}

static void lease(realm_queue_t *q, int64_t id)
{
    size_t i = lease_pos(q, id);
    if (i < q->leased_cnt && q->leased[i] == id) return;
    if (q->leased_cnt == q->leased_cap) {
        q->leased_cap = q->leased_cap ? q->leased_cap * 2 : 16;
        q->leased = realm_realloc(q->leased, q->leased_cap * sizeof(*q->leased));
    }
    memmove(q->leased + i + 1, q->leased + i, (q->leased_cnt - i) * sizeof(*q->leased));
    q->leased[i] = id;
    q->leased_cnt++;
}

static void unlease(realm_queue_t *q, int64_t id)
{
    size_t i = lease_pos(q, id);
    if (i == q->leased_cnt || q->leased[i] != id) return;
    memmove(q->leased + i, q->leased + i + 1, (q->leased_cnt - i - 1) * sizeof(*q->leased));
    q->leased_cnt--;
}

/* ---- statements ---- */

static int db_fail(realm_queue_t *q, const char *what)
{
    realm_error("queue: %s: %s", what, sqlite3_errmsg(q->db));
    return -1;
}

/* Takes statement s, cleared and reset, ready for binding. */
static sqlite3_stmt *stmt(realm_queue_t *q, int s)
{
    sqlite3_stmt *st = q->st[s];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

/* Runs a statement that returns no rows; resets it. Returns 0 or -1. */
static int run(realm_queue_t *q, int s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return db_fail(q, sql[s]);
    return 0;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static int begin(realm_queue_t *q)
{
    return run(q, S_BEGIN, stmt(q, S_BEGIN));
}

static int commit(realm_queue_t *q)
{
    if (run(q, S_COMMIT, stmt(q, S_COMMIT)) == 0) return 0;
    run(q, S_ROLLBACK, stmt(q, S_ROLLBACK));
    return -1;
}

static int rollback(realm_queue_t *q)
{
    run(q, S_ROLLBACK, stmt(q, S_ROLLBACK));
    return -1;
}

static char *column_dup(sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    return realm_strdup(s ? (const char *)s : "");
}

/* ---- open / close ---- */

realm_queue_t *realm_queue_open(const char *path, char *err, size_t err_len)
{
    realm_queue_t *q = realm_calloc(1, sizeof(*q));
    q->db = realm_db_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, schema, err, err_len);
    if (!q->db || realm_db_prepare_all(q->db, path, sql, S_CNT, q->st, err, err_len) != 0)
        goto fail;
    return q;
fail:
    realm_queue_close(q);
    return NULL;
}

void realm_queue_close(realm_queue_t *q)
{
    if (!q) return;
    for (int s = 0; s < S_CNT; s++)
        sqlite3_finalize(q->st[s]);
    sqlite3_close(q->db);
    free(q->leased);
    free(q);
}

/* ---- push / take ---- */

int64_t realm_queue_push(realm_queue_t *q, const char *tenant, const char *function,
                         const char *qualifier, const void *payload, size_t len, int64_t now_ms,
                         char *err, size_t err_len)
{
    if (!tenant || !function || (!payload && len)) {
        snprintf(err, err_len, "queue: push needs a tenant, a function and a payload");
        return -1;
    }
    sqlite3_stmt *st = stmt(q, S_PUSH);
    bind_text(st, 1, tenant);
    bind_text(st, 2, function);
    bind_text(st, 3, qualifier ? qualifier : "");
    /* A NULL pointer would bind SQL NULL: an empty payload is an empty blob. */
    sqlite3_bind_blob64(st, 4, len ? payload : "", len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now_ms);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st); /* drop the SQLITE_STATIC payload pointer */
    if (rc != SQLITE_DONE) {
        snprintf(err, err_len, "queue: push: %s", sqlite3_errmsg(q->db));
        return -1;
    }
    return sqlite3_last_insert_rowid(q->db);
}

size_t realm_queue_take_due(realm_queue_t *q, int64_t now_ms, realm_queue_item_t *items, size_t max)
{
    if (max == 0) return 0;
    sqlite3_stmt *st = stmt(q, S_DUE);
    sqlite3_bind_int64(st, 1, now_ms);
    size_t n = 0;
    int rc = SQLITE_DONE;
    while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (is_leased(q, id)) continue;
        realm_queue_item_t *it = &items[n++];
        it->id = id;
        it->tenant = column_dup(st, 1);
        it->function = column_dup(st, 2);
        it->qualifier = column_dup(st, 3);
        const void *p = sqlite3_column_blob(st, 4);
        it->payload_len = (size_t)sqlite3_column_bytes(st, 4);
        it->payload = realm_malloc(it->payload_len + 1);
        if (it->payload_len) memcpy(it->payload, p, it->payload_len);
        it->payload[it->payload_len] = '\0';
        it->attempts = sqlite3_column_int(st, 5);
        it->enqueued_ms = sqlite3_column_int64(st, 6);
    }
    if (n < max && rc != SQLITE_DONE) {
        db_fail(q, sql[S_DUE]);
        for (size_t i = 0; i < n; i++)
            realm_queue_item_dispose(&items[i]);
        n = 0;
    }
    sqlite3_reset(st);
    for (size_t i = 0; i < n; i++)
        lease(q, items[i].id);
    return n;
}

void realm_queue_item_dispose(realm_queue_item_t *it)
{
    free(it->tenant);
    free(it->function);
    free(it->qualifier);
    free(it->payload);
    memset(it, 0, sizeof(*it));
}

/* ---- outcomes ---- */

int realm_queue_done(realm_queue_t *q, int64_t id)
{
    unlease(q, id);
    sqlite3_stmt *st = stmt(q, S_DONE);
    sqlite3_bind_int64(st, 1, id);
    return run(q, S_DONE, st);
}

int realm_queue_retry(realm_queue_t *q, int64_t id, int64_t due_ms, const char *error)
{
    unlease(q, id);
    sqlite3_stmt *st = stmt(q, S_RETRY);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, due_ms);
    bind_text(st, 3, error);
    return run(q, S_RETRY, st);
}

int realm_queue_fail(realm_queue_t *q, int64_t id, const char *error_type,
                     const char *error_message, int64_t now_ms)
{
    unlease(q, id);
    if (begin(q) != 0) return -1;
    sqlite3_stmt *st = stmt(q, S_TO_FAILED);
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, error_type);
    bind_text(st, 3, error_message);
    sqlite3_bind_int64(st, 4, now_ms);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) { /* no longer pending (forgotten): nothing to move */
        sqlite3_reset(st);
        return commit(q);
    }
    if (rc != SQLITE_ROW) {
        db_fail(q, sql[S_TO_FAILED]);
        sqlite3_reset(st);
        return rollback(q);
    }
    char *tenant = column_dup(st, 0), *function = column_dup(st, 1);
    rc = sqlite3_step(st); /* finish the INSERT .. RETURNING */
    sqlite3_reset(st);
    int ok = rc == SQLITE_DONE;
    if (!ok) db_fail(q, sql[S_TO_FAILED]);
    if (ok) {
        st = stmt(q, S_DONE);
        sqlite3_bind_int64(st, 1, id);
        ok = run(q, S_DONE, st) == 0;
    }
    if (ok) {
        st = stmt(q, S_TRIM_FAILED);
        bind_text(st, 1, tenant);
        bind_text(st, 2, function);
        sqlite3_bind_int64(st, 3, REALM_QUEUE_FAILED_KEEP);
        ok = run(q, S_TRIM_FAILED, st) == 0;
    }
    free(tenant);
    free(function);
    return ok ? commit(q) : rollback(q);
}

int realm_queue_release(realm_queue_t *q, int64_t id)
{
    unlease(q, id);
    return 0;
}

int realm_queue_defer(realm_queue_t *q, int64_t id, int64_t due_ms)
{
    unlease(q, id);
    sqlite3_stmt *st = stmt(q, S_DEFER);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, due_ms);
    return run(q, S_DEFER, st);
}

/* ---- inspection ---- */

int64_t realm_queue_next_due(realm_queue_t *q)
{
    sqlite3_stmt *st = stmt(q, S_NEXT);
    int64_t due = -1;
    int rc = SQLITE_DONE;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (is_leased(q, sqlite3_column_int64(st, 0))) continue;
        due = sqlite3_column_int64(st, 1);
        break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) db_fail(q, sql[S_NEXT]);
    sqlite3_reset(st);
    return due;
}

size_t realm_queue_pending(realm_queue_t *q)
{
    sqlite3_stmt *st = stmt(q, S_COUNT);
    size_t n = 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = (size_t)sqlite3_column_int64(st, 0);
    else
        db_fail(q, sql[S_COUNT]);
    sqlite3_reset(st);
    return n;
}

/* ISO-8601 UTC with milliseconds: "2024-05-01T12:00:00.000Z". */
static json_t *iso_time(int64_t ms)
{
    int64_t secs = ms / 1000, frac = ms % 1000;
    if (frac < 0) { /* floor for times before 1970 */
        frac += 1000;
        secs--;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    char out[48];
    if (!gmtime_r(&t, &tm)) return json_null();
    size_t n = strftime(out, sizeof(out), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, sizeof(out) - n, ".%03dZ", (int)frac);
    return json_string(out);
}

/* Bytes as a JSON string, invalid UTF-8 replaced by U+FFFD per byte. */
static json_t *payload_text(const void *data, size_t len)
{
    json_t *j = json_stringn(len ? (const char *)data : "", len);
    if (j) return j;
    realm_buf_t b;
    realm_buf_init(&b);
    realm_str_utf8_repair(data, len, &b);
    j = json_stringn(b.data ? b.data : "", b.len);
    realm_buf_dispose(&b);
    return j;
}

/* A text column as a JSON string (NULL: null); callers' text may be cut mid-character. */
static json_t *column_json_text(sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    if (!s) return json_null();
    return payload_text(s, (size_t)sqlite3_column_bytes(st, col));
}

json_t *realm_queue_list_failed(realm_queue_t *q, const char *tenant, const char *function,
                                size_t limit)
{
    int s = function ? S_LIST_FN : S_LIST_TENANT;
    sqlite3_stmt *st = stmt(q, s);
    bind_text(st, 1, tenant ? tenant : "");
    if (function) bind_text(st, 2, function);
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
            payload_text(sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3)));
        json_object_set_new(o, "Attempts", json_integer(sqlite3_column_int64(st, 4)));
        json_object_set_new(o, "ErrorType", column_json_text(st, 5));
        json_object_set_new(o, "ErrorMessage", column_json_text(st, 6));
        json_object_set_new(o, "EnqueuedAt", iso_time(sqlite3_column_int64(st, 7)));
        json_object_set_new(o, "FailedAt", iso_time(sqlite3_column_int64(st, 8)));
        json_array_append_new(arr, o);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        db_fail(q, sql[s]);
        json_decref(arr);
        return NULL;
    }
    return arr;
}

int realm_queue_forget(realm_queue_t *q, const char *tenant, const char *function)
{
    if (begin(q) != 0) return -1;
    sqlite3_stmt *st = stmt(q, S_FORGET_PENDING);
    bind_text(st, 1, tenant);
    bind_text(st, 2, function);
    if (run(q, S_FORGET_PENDING, st) != 0) return rollback(q);
    st = stmt(q, S_FORGET_FAILED);
    bind_text(st, 1, tenant);
    bind_text(st, 2, function);
    if (run(q, S_FORGET_FAILED, st) != 0) return rollback(q);
    return commit(q);
}
