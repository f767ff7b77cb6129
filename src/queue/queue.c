/*
 * queue.c - the durable queue of asynchronous invocations (see queue.h).
 *
 * SCHEMA (PRAGMA user_version 2):
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
 * to version 2 once, in one transaction.
 *
 * DESIGN: no operation's cost grows with the backlog.
 *   - Payloads (up to 256 KB each) sit in their own table: walking events
 *     never touches them (SQLite would read a row's overflow pages to reach
 *     the columns stored after a blob), and they are read once, when an
 *     event is about to run.
 *   - take_due walks the index on (due_ms, id) from the front and stops
 *     once it has max events. What it skips is leased events (a sorted array
 *     of ids in memory, not a column, so taking costs no write and a crash
 *     needs no recovery: a reopened queue has no leases), which are at most
 *     the events in flight. Events waiting for a retry or parked sit later
 *     in the index and are not walked.
 *   - Parked events (reserved concurrency 0) have due_ms = their expiry and
 *     is_parked = 1; parked_fns lists their functions so the caller can
 *     check a handful of functions, not the events, and unpark wakes one
 *     function's events through the (tenant, function, is_parked) index.
 *   - The bound check and `pending` read the count tables, which triggers
 *     keep in step with every insert and delete of events (the delete
 *     trigger also drops the payload).
 *
 * Statements are prepared once at open. Operations of one statement run in
 * autocommit; push, fail, park, unpark and forget use one BEGIN IMMEDIATE
 * transaction.
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
    "CREATE TABLE IF NOT EXISTS failed("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, id INTEGER NOT NULL,"
    " tenant TEXT NOT NULL, function TEXT NOT NULL, qualifier TEXT NOT NULL,"
    " payload BLOB NOT NULL, attempts INTEGER NOT NULL,"
    " error_type TEXT, error_message TEXT,"
    " enqueued_ms INTEGER NOT NULL, failed_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS failed_fn ON failed(tenant, function, seq);"
    "CREATE INDEX IF NOT EXISTS failed_tenant ON failed(tenant, seq);";

/* Version 1 to 2: events and payloads out of `pending` (the triggers count them). */
static const char migrate_v1[] =
    "BEGIN IMMEDIATE;"
    "INSERT INTO events(id, tenant, function, qualifier, attempts, enqueued_ms, due_ms,"
    " last_error) SELECT id, tenant, function, qualifier, attempts, enqueued_ms, due_ms,"
    " last_error FROM pending;"
    "INSERT INTO payloads(id, payload) SELECT id, payload FROM pending;"
    "DELETE FROM sqlite_sequence WHERE name = 'events';"
    "INSERT INTO sqlite_sequence(name, seq) SELECT 'events', seq FROM sqlite_sequence"
    " WHERE name = 'pending';"
    "DROP TABLE pending;"
    "PRAGMA user_version = 2;"
    "COMMIT;";

/* The prepared statements, by purpose; sql[] below is in the same order. */
enum {
    S_COUNTS,
    S_PUSH,
    S_PUSH_PAYLOAD,
    S_DUE,
    S_PAYLOAD,
    S_NEXT,
    S_COUNT,
    S_DONE,
    S_RETRY,
    S_DEFER,
    S_PARK,
    S_PARK_FN,
    S_UNPARK,
    S_UNPARK_FN,
    S_PARKED,
    S_TO_FAILED,
    S_TRIM_FAILED,
    S_LIST_FN,
    S_LIST_TENANT,
    S_FORGET_PENDING,
    S_FORGET_FAILED,
    S_FORGET_COUNTS,
    S_FORGET_PARKED,
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_CNT
};

static const char *const sql[S_CNT] = {
    [S_COUNTS] = "SELECT (SELECT n FROM fn_counts WHERE tenant = ?1 AND function = ?2),"
                 " (SELECT n FROM tenant_counts WHERE tenant = ?1)",
    [S_PUSH] = "INSERT INTO events(tenant, function, qualifier, enqueued_ms, due_ms)"
               " VALUES(?1, ?2, ?3, ?4, ?4)",
    [S_PUSH_PAYLOAD] = "INSERT INTO payloads(id, payload) VALUES(?1, ?2)",
    [S_DUE] = "SELECT id, tenant, function, qualifier, attempts, enqueued_ms"
              " FROM events WHERE due_ms <= ?1 ORDER BY due_ms, id",
    [S_PAYLOAD] = "SELECT payload FROM payloads WHERE id = ?1",
    [S_NEXT] = "SELECT id, due_ms FROM events ORDER BY due_ms, id",
    [S_COUNT] = "SELECT COALESCE(SUM(n), 0) FROM tenant_counts",
    [S_DONE] = "DELETE FROM events WHERE id = ?1",
    [S_DEFER] = "UPDATE events SET due_ms = ?2 WHERE id = ?1",
    [S_RETRY] = "UPDATE events SET attempts = attempts + 1, due_ms = ?2, last_error = ?3"
                " WHERE id = ?1",
    [S_PARK] = "UPDATE events SET is_parked = 1, due_ms = ?2 WHERE id = ?1",
    [S_PARK_FN] = "INSERT OR IGNORE INTO parked_fns(tenant, function)"
                  " SELECT tenant, function FROM events WHERE id = ?1",
    [S_UNPARK] = "UPDATE events SET is_parked = 0, due_ms = ?3"
                 " WHERE tenant = ?1 AND function = ?2 AND is_parked = 1",
    [S_UNPARK_FN] = "DELETE FROM parked_fns WHERE tenant = ?1 AND function = ?2",
    [S_PARKED] = "SELECT tenant, function FROM parked_fns",
    [S_TO_FAILED] = "INSERT INTO failed(id, tenant, function, qualifier, payload, attempts,"
                    " error_type, error_message, enqueued_ms, failed_ms)"
                    " SELECT e.id, e.tenant, e.function, e.qualifier, COALESCE(p.payload, x''),"
                    " e.attempts + 1, ?2, ?3, e.enqueued_ms, ?4"
                    " FROM events e LEFT JOIN payloads p ON p.id = e.id WHERE e.id = ?1"
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
    [S_FORGET_PENDING] = "DELETE FROM events WHERE tenant = ?1 AND function = ?2",
    [S_FORGET_FAILED] = "DELETE FROM failed WHERE tenant = ?1 AND function = ?2",
    [S_FORGET_COUNTS] = "DELETE FROM fn_counts WHERE tenant = ?1 AND function = ?2",
    [S_FORGET_PARKED] = "DELETE FROM parked_fns WHERE tenant = ?1 AND function = ?2",
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
    uint64_t max_per_function; /* pending events of one function; 0: no cap */
    uint64_t max_per_tenant;   /* pending events of one tenant; 0: no cap */
    uint64_t payload_reads, payload_bytes;
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

/* A version 1 file (payloads in `pending`) becomes version 2. 0, or -1 with err. */
static int migrate(sqlite3 *db, const char *path, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int has_v1 = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pending'",
                           -1, &st, NULL) == SQLITE_OK)
        has_v1 = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    char *msg = NULL;
    if (sqlite3_exec(db, has_v1 ? migrate_v1 : "PRAGMA user_version = 2", NULL, NULL, &msg) !=
        SQLITE_OK) {
        snprintf(err, err_len, "%s: moving the queue to version 2: %s", path,
                 msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (has_v1) realm_info("%s: queue moved to version 2 (payloads in their own table)", path);
    return 0;
}

realm_queue_t *realm_queue_open(const char *path, char *err, size_t err_len)
{
    realm_queue_t *q = realm_calloc(1, sizeof(*q));
    q->db = realm_db_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, schema, err, err_len);
    if (!q->db || migrate(q->db, path, err, err_len) != 0 ||
        realm_db_prepare_all(q->db, path, sql, S_CNT, q->st, err, err_len) != 0)
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

void realm_queue_set_limits(realm_queue_t *q, uint64_t per_function, uint64_t per_tenant)
{
    q->max_per_function = per_function;
    q->max_per_tenant = per_tenant;
}

/* ---- push / take ---- */

/* Inside push's transaction: REALM_QUEUE_FULL (err says which cap), 0, or -1. */
static int check_bounds(realm_queue_t *q, const char *tenant, const char *function, char *err,
                        size_t err_len)
{
    if (!q->max_per_function && !q->max_per_tenant) return 0;
    sqlite3_stmt *st = stmt(q, S_COUNTS);
    bind_text(st, 1, tenant);
    bind_text(st, 2, function);
    if (sqlite3_step(st) != SQLITE_ROW) {
        snprintf(err, err_len, "queue: push: %s", sqlite3_errmsg(q->db));
        sqlite3_reset(st);
        return -1;
    }
    uint64_t fn_n = (uint64_t)sqlite3_column_int64(st, 0);
    uint64_t tenant_n = (uint64_t)sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    if (q->max_per_function && fn_n >= q->max_per_function) {
        snprintf(err, err_len, "The function's event queue is full (%llu events).",
                 (unsigned long long)q->max_per_function);
        return REALM_QUEUE_FULL;
    }
    if (q->max_per_tenant && tenant_n >= q->max_per_tenant) {
        snprintf(err, err_len, "The account's event queue is full (%llu events).",
                 (unsigned long long)q->max_per_tenant);
        return REALM_QUEUE_FULL;
    }
    return 0;
}

int64_t realm_queue_push(realm_queue_t *q, const char *tenant, const char *function,
                         const char *qualifier, const void *payload, size_t len, int64_t now_ms,
                         char *err, size_t err_len)
{
    if (!tenant || !function || (!payload && len)) {
        snprintf(err, err_len, "queue: push needs a tenant, a function and a payload");
        return -1;
    }
    if (begin(q) != 0) {
        snprintf(err, err_len, "queue: push: %s", sqlite3_errmsg(q->db));
        return -1;
    }
    int rc = check_bounds(q, tenant, function, err, err_len);
    if (rc != 0) {
        rollback(q);
        return rc;
    }
    sqlite3_stmt *st = stmt(q, S_PUSH);
    bind_text(st, 1, tenant);
    bind_text(st, 2, function);
    bind_text(st, 3, qualifier ? qualifier : "");
    sqlite3_bind_int64(st, 4, now_ms);
    int64_t id = -1;
    if (sqlite3_step(st) == SQLITE_DONE) id = sqlite3_last_insert_rowid(q->db);
    sqlite3_reset(st);
    if (id > 0) {
        st = stmt(q, S_PUSH_PAYLOAD);
        sqlite3_bind_int64(st, 1, id);
        /* A NULL pointer would bind SQL NULL: an empty payload is an empty blob. */
        sqlite3_bind_blob64(st, 2, len ? payload : "", len, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) id = -1;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st); /* drop the SQLITE_STATIC payload pointer */
    }
    if (id < 0 || commit(q) != 0) {
        snprintf(err, err_len, "queue: push: %s", sqlite3_errmsg(q->db));
        if (id > 0) return -1; /* commit rolled back */
        rollback(q);
        return -1;
    }
    return id;
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
        memset(it, 0, sizeof(*it));
        it->id = id;
        it->tenant = column_dup(st, 1);
        it->function = column_dup(st, 2);
        it->qualifier = column_dup(st, 3);
        it->attempts = sqlite3_column_int(st, 4);
        it->enqueued_ms = sqlite3_column_int64(st, 5);
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

int realm_queue_load_payload(realm_queue_t *q, realm_queue_item_t *it)
{
    sqlite3_stmt *st = stmt(q, S_PAYLOAD);
    sqlite3_bind_int64(st, 1, it->id);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        if (rc != SQLITE_DONE) db_fail(q, sql[S_PAYLOAD]);
        sqlite3_reset(st);
        return -1;
    }
    const void *p = sqlite3_column_blob(st, 0);
    size_t len = (size_t)sqlite3_column_bytes(st, 0);
    free(it->payload);
    it->payload = realm_malloc(len + 1);
    if (len) memcpy(it->payload, p, len);
    it->payload[len] = '\0';
    it->payload_len = len;
    sqlite3_reset(st);
    q->payload_reads++;
    q->payload_bytes += len;
    return 0;
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

int realm_queue_park(realm_queue_t *q, int64_t id, int64_t until_ms)
{
    unlease(q, id);
    if (begin(q) != 0) return -1;
    sqlite3_stmt *st = stmt(q, S_PARK_FN);
    sqlite3_bind_int64(st, 1, id);
    if (run(q, S_PARK_FN, st) != 0) return rollback(q);
    st = stmt(q, S_PARK);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, until_ms);
    if (run(q, S_PARK, st) != 0) return rollback(q);
    return commit(q);
}

int64_t realm_queue_unpark(realm_queue_t *q, const char *tenant, const char *function,
                           int64_t now_ms)
{
    if (begin(q) != 0) return -1;
    sqlite3_stmt *st = stmt(q, S_UNPARK);
    bind_text(st, 1, tenant);
    bind_text(st, 2, function);
    sqlite3_bind_int64(st, 3, now_ms);
    if (run(q, S_UNPARK, st) != 0) return rollback(q);
    int64_t n = sqlite3_changes64(q->db);
    st = stmt(q, S_UNPARK_FN);
    bind_text(st, 1, tenant);
    bind_text(st, 2, function);
    if (run(q, S_UNPARK_FN, st) != 0) return rollback(q);
    return commit(q) == 0 ? n : -1;
}

json_t *realm_queue_parked(realm_queue_t *q)
{
    sqlite3_stmt *st = stmt(q, S_PARKED);
    json_t *arr = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(arr, json_pack("[s, s]", (const char *)sqlite3_column_text(st, 0),
                                             (const char *)sqlite3_column_text(st, 1)));
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        db_fail(q, sql[S_PARKED]);
        json_decref(arr);
        return NULL;
    }
    return arr;
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

size_t realm_queue_pending_of(realm_queue_t *q, const char *tenant, const char *function)
{
    sqlite3_stmt *st = stmt(q, S_COUNTS);
    bind_text(st, 1, tenant);
    bind_text(st, 2, function);
    size_t n = 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = (size_t)sqlite3_column_int64(st, 0);
    else
        db_fail(q, sql[S_COUNTS]);
    sqlite3_reset(st);
    return n;
}

void realm_queue_stats(realm_queue_t *q, realm_queue_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int s = 0; s < S_CNT; s++)
        out->vm_steps += (uint64_t)sqlite3_stmt_status(q->st[s], SQLITE_STMTSTATUS_VM_STEP, 0);
    out->payload_reads = q->payload_reads;
    out->payload_bytes = q->payload_bytes;
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
    return realm_str_json(data, len);
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
    static const int also[] = {S_FORGET_FAILED, S_FORGET_COUNTS, S_FORGET_PARKED};
    for (size_t i = 0; i < sizeof(also) / sizeof(also[0]); i++) {
        st = stmt(q, also[i]);
        bind_text(st, 1, tenant);
        bind_text(st, 2, function);
        if (run(q, also[i], st) != 0) return rollback(q);
    }
    return commit(q);
}
