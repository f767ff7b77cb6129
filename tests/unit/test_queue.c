/*
 * test_queue.c - the durable event queue: push/take/done, order, due times
 * and retries, leases (not re-taken, forgotten by a reopen or a SIGKILL),
 * the failed list (shape, order, bound), forget, binary payloads, a clean
 * refusal to open in a missing directory; the bounds per function and per
 * tenant, payloads read only when asked, parking, a version 1 file moved to
 * version 2, and a backlog of 100,000 events that costs nothing to open,
 * count, take from or push to (measured in SQLite steps, not in time).
 * Built three times: test_queue over SQLite, test_queue_memory
 * (REALM_TEST_MEMORY) over the in-memory store, without the tests about
 * files, and test_queue_pg (REALM_TEST_PG, through tests/unit/with_pg.sh)
 * over PostgreSQL, each test on an emptied database, where leases are rows
 * that outlive a close and expire after REALM_QUEUE_LEASE_MS (the tests
 * about leases and a SIGKILL check that instead of a reopen forgetting them).
 */
#include "queue/queue.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#ifdef REALM_TEST_PG
#include "pg_fixture.h"
/* What next_due answers once everything due was taken at now: when the
 * leases end (PostgreSQL), or never (SQLite, memory: held until the outcome). */
#define LEASED_NEXT(now) ((now) + REALM_QUEUE_LEASE_MS)
#else
#define LEASED_NEXT(now) (-1)
#endif

typedef struct {
    char dir[64];
    char db[512];
    realm_queue_t *q;
} fx_t;

static realm_queue_t *open_q(const fx_t *f)
{
    char err[256] = "";
    realm_queue_t *q = realm_queue_open(f->db, err, sizeof(err));
    if (!q) fail_msg("open: %s", err);
    return q;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/realm-queue-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
#ifdef REALM_TEST_MEMORY
    snprintf(f->db, sizeof(f->db), "memory:queue");
#elif defined(REALM_TEST_PG)
    fx_pg_reset();
    snprintf(f->db, sizeof(f->db), "%s", fx_pg_url());
#else
    snprintf(f->db, sizeof(f->db), "%s/events.db", f->dir);
#endif
    f->q = open_q(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    realm_queue_close(f->q);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void reopen(fx_t *f)
{
#ifdef REALM_TEST_MEMORY /* nothing survives a close: the same store goes on */
    (void)f;
#else
    realm_queue_close(f->q);
    f->q = open_q(f);
#endif
}

static int64_t push(realm_queue_t *q, const char *fn, const char *payload, int64_t now)
{
    char err[256] = "";
    int64_t id = realm_queue_push(q, "", fn, NULL, payload, strlen(payload), now, err, sizeof(err));
    if (id <= 0) fail_msg("push: %s", err);
    return id;
}

/* Takes exactly one due item (fails otherwise). */
static realm_queue_item_t take1(realm_queue_t *q, int64_t now)
{
    realm_queue_item_t it[2];
    assert_int_equal(realm_queue_take_due(q, now, it, 2), 1);
    return it[0];
}

static void dispose_all(realm_queue_item_t *it, size_t n)
{
    for (size_t i = 0; i < n; i++)
        realm_queue_item_dispose(&it[i]);
}

/* ---- tests ---- */

static void push_take_done(void **state)
{
    fx_t *f = *state;
    char err[256] = "";
    int64_t id = realm_queue_push(f->q, "t1", "fn", "prod", "{\"a\":1}", 7, 1000, err, sizeof(err));
    assert_true(id > 0);
    assert_int_equal(realm_queue_pending(f->q), 1);
    assert_int_equal(realm_queue_next_due(f->q), 1000);

    realm_queue_item_t it = take1(f->q, 1000);
    assert_int_equal(it.id, id);
    assert_string_equal(it.tenant, "t1");
    assert_string_equal(it.function, "fn");
    assert_string_equal(it.qualifier, "prod");
    assert_null(it.payload); /* read only when asked */
    assert_int_equal(realm_queue_load_payload(f->q, &it), 0);
    assert_int_equal(it.payload_len, 7);
    assert_string_equal(it.payload, "{\"a\":1}");
    assert_int_equal(it.attempts, 0);
    assert_int_equal(it.enqueued_ms, 1000);
    assert_int_equal(realm_queue_pending(f->q), 1); /* leased is still pending */
    assert_int_equal(realm_queue_next_due(f->q), LEASED_NEXT(1000));

    assert_int_equal(realm_queue_done(f->q, it.id), 0);
    realm_queue_item_dispose(&it);
    realm_queue_item_dispose(&it); /* twice is fine */
    assert_int_equal(realm_queue_pending(f->q), 0);
    assert_int_equal(realm_queue_next_due(f->q), -1);
    realm_queue_item_t none[1];
    assert_int_equal(realm_queue_take_due(f->q, 5000, none, 1), 0);

    /* Done again (or on an unknown id) is harmless. */
    assert_int_equal(realm_queue_done(f->q, id), 0);
    assert_int_equal(realm_queue_done(f->q, 9999), 0);

    /* No qualifier is "". */
    id = push(f->q, "fn", "x", 2000);
    it = take1(f->q, 2000);
    assert_string_equal(it.qualifier, "");
    assert_string_equal(it.tenant, "");
    assert_int_equal(realm_queue_done(f->q, it.id), 0);
    realm_queue_item_dispose(&it);
}

static void push_refuses_missing_names(void **state)
{
    fx_t *f = *state;
    char err[256] = "";
    assert_int_equal(realm_queue_push(f->q, "", NULL, NULL, "x", 1, 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "function"));
    err[0] = '\0';
    assert_int_equal(realm_queue_push(f->q, "", "f", NULL, NULL, 3, 1, err, sizeof(err)), -1);
    assert_true(err[0] != '\0');
    assert_int_equal(realm_queue_pending(f->q), 0);
}

static void earliest_due_first(void **state)
{
    fx_t *f = *state;
    int64_t a = push(f->q, "fn", "a", 30); /* pushed first, but due last */
    int64_t b = push(f->q, "fn", "b", 10);
    int64_t c = push(f->q, "fn", "c", 20);
    assert_true(a < b && b < c);
    assert_int_equal(realm_queue_next_due(f->q), 10);

    realm_queue_item_t it[3];
    /* At 25 only b and c are due. */
    assert_int_equal(realm_queue_take_due(f->q, 25, it, 3), 2);
    assert_int_equal(it[0].id, b);
    assert_int_equal(it[1].id, c);
    assert_int_equal(realm_queue_next_due(f->q), 30);
    dispose_all(it, 2);

    assert_int_equal(realm_queue_release(f->q, b), 0);
    assert_int_equal(realm_queue_release(f->q, c), 0);
    /* All due: by due time, and max is honoured. */
    assert_int_equal(realm_queue_take_due(f->q, 100, it, 2), 2);
    assert_int_equal(it[0].id, b);
    assert_int_equal(it[1].id, c);
    dispose_all(it, 2);
    assert_int_equal(realm_queue_take_due(f->q, 100, it, 3), 1);
    assert_int_equal(it[0].id, a);
    assert_int_equal(realm_queue_load_payload(f->q, &it[0]), 0);
    assert_string_equal(it[0].payload, "a");
    dispose_all(it, 1);
    /* Equal due times: first pushed first. */
    int64_t d = push(f->q, "fn", "d", 200);
    int64_t e = push(f->q, "fn", "e", 200);
    assert_int_equal(realm_queue_take_due(f->q, 300, it, 3), 2);
    assert_int_equal(it[0].id, d);
    assert_int_equal(it[1].id, e);
    dispose_all(it, 2);
    assert_int_equal(realm_queue_take_due(f->q, 100, it, 0), 0);
}

static void due_times_and_retry(void **state)
{
    fx_t *f = *state;
    realm_queue_item_t none[1];
    int64_t id = push(f->q, "fn", "p", 100);
    assert_int_equal(realm_queue_take_due(f->q, 99, none, 1), 0);

    realm_queue_item_t it = take1(f->q, 100);
    assert_int_equal(it.attempts, 0);
    realm_queue_item_dispose(&it);
    assert_int_equal(realm_queue_retry(f->q, id, 1100, "Unhandled: boom"), 0);
    assert_int_equal(realm_queue_next_due(f->q), 1100);
    assert_int_equal(realm_queue_take_due(f->q, 1099, none, 1), 0);

    it = take1(f->q, 1100);
    assert_int_equal(it.id, id);
    assert_int_equal(it.attempts, 1);
    assert_int_equal(it.enqueued_ms, 100); /* unchanged by retries */
    assert_int_equal(realm_queue_load_payload(f->q, &it), 0);
    assert_string_equal(it.payload, "p");
    realm_queue_item_dispose(&it);
    assert_int_equal(realm_queue_retry(f->q, id, 3100, NULL), 0);
    assert_int_equal(realm_queue_next_due(f->q), 3100);

    /* A newer event due now goes before the retried one that is not. */
    int64_t id2 = push(f->q, "fn", "q", 2000);
    it = take1(f->q, 2000);
    assert_int_equal(it.id, id2);
    realm_queue_item_dispose(&it);
    assert_int_equal(realm_queue_done(f->q, id2), 0);

    it = take1(f->q, 5000);
    assert_int_equal(it.attempts, 2);
    realm_queue_item_dispose(&it);
    assert_int_equal(realm_queue_done(f->q, id), 0);
    assert_int_equal(realm_queue_pending(f->q), 0);
}

static void leases_not_retaken(void **state)
{
    fx_t *f = *state;
    int64_t a = push(f->q, "fn", "a", 1);
    int64_t b = push(f->q, "fn", "b", 1);
    realm_queue_item_t it[2];

    assert_int_equal(realm_queue_take_due(f->q, 10, it, 1), 1);
    assert_int_equal(it[0].id, a);
    dispose_all(it, 1);
    assert_int_equal(realm_queue_take_due(f->q, 10, it, 2), 1);
    assert_int_equal(it[0].id, b);
    dispose_all(it, 1);
    assert_int_equal(realm_queue_take_due(f->q, 10, it, 2), 0);
    assert_int_equal(realm_queue_next_due(f->q), LEASED_NEXT(10));
    assert_int_equal(realm_queue_pending(f->q), 2);

    /* Released: due again, unchanged. */
    assert_int_equal(realm_queue_release(f->q, a), 0);
    assert_int_equal(realm_queue_next_due(f->q), 1);
    assert_int_equal(realm_queue_take_due(f->q, 10, it, 2), 1);
    assert_int_equal(it[0].id, a);
    assert_int_equal(it[0].attempts, 0);
    dispose_all(it, 1);
}

static void defer_waits_without_counting(void **state)
{
    fx_t *f = *state;
    realm_queue_item_t none[1];
    int64_t id = push(f->q, "fn", "p", 100);
    realm_queue_item_t it = take1(f->q, 100);
    realm_queue_item_dispose(&it);
    assert_int_equal(realm_queue_defer(f->q, id, 700), 0);
    assert_int_equal(realm_queue_next_due(f->q), 700);
    assert_int_equal(realm_queue_take_due(f->q, 699, none, 1), 0);
    it = take1(f->q, 700);
    assert_int_equal(it.id, id);
    assert_int_equal(it.attempts, 0);
    realm_queue_item_dispose(&it);
    assert_int_equal(realm_queue_defer(f->q, 424242, 1), 0); /* not pending: a no-op */
    assert_int_equal(realm_queue_pending(f->q), 1);
}

static void reopen_forgets_leases(void **state)
{
    fx_t *f = *state;
    int64_t a = push(f->q, "fn", "a", 1);
    int64_t b = push(f->q, "fn", "b", 1);
    realm_queue_item_t it[3];
    assert_int_equal(realm_queue_take_due(f->q, 10, it, 3), 2);
    dispose_all(it, 2);
    assert_int_equal(realm_queue_retry(f->q, b, 500, "x"), 0);
    it[0] = take1(f->q, 500); /* b leased again */
    realm_queue_item_dispose(&it[0]);

    /* The "crash": no done, just close and reopen. */
    reopen(f);
    assert_int_equal(realm_queue_pending(f->q), 2);
    assert_int_equal(realm_queue_next_due(f->q), 1);
    assert_int_equal(realm_queue_take_due(f->q, 10, it, 3), 1);
    assert_int_equal(it[0].id, a);
    assert_int_equal(it[0].attempts, 0);
    dispose_all(it, 1);
    assert_int_equal(realm_queue_take_due(f->q, 500, it, 3), 1);
    assert_int_equal(it[0].id, b);
    assert_int_equal(it[0].attempts, 1);
    dispose_all(it, 1);

    /* Ids are never reused, even after the newest was removed. */
    assert_int_equal(realm_queue_done(f->q, a), 0);
    assert_int_equal(realm_queue_done(f->q, b), 0);
    reopen(f);
    assert_true(push(f->q, "fn", "c", 1) > b);
}

#ifdef REALM_TEST_PG
/* PostgreSQL: leases are rows. A closed queue's (a server that stopped or
 * died) still hold after a reopen, until they expire; then the events come
 * back unchanged, and the old holder's outcomes (stale) change nothing. */
static void reopen_keeps_leases_until_expiry(void **state)
{
    fx_t *f = *state;
    int64_t a = push(f->q, "fn", "a", 1);
    int64_t b = push(f->q, "fn", "b", 1);
    realm_queue_item_t it[3];
    assert_int_equal(realm_queue_take_due(f->q, 10, it, 3), 2);
    dispose_all(it, 2);
    realm_queue_t *old = f->q;
    f->q = open_q(f); /* a second server on the same database */
    assert_int_equal(realm_queue_take_due(f->q, 10, it, 3), 0);
    assert_int_equal(realm_queue_next_due(f->q), LEASED_NEXT(10));
    const int64_t end = 10 + REALM_QUEUE_LEASE_MS;
    assert_int_equal(realm_queue_take_due(f->q, end - 1, it, 3), 0);
    assert_int_equal(realm_queue_take_due(f->q, end, it, 3), 2);
    assert_int_equal(it[0].id, a);
    assert_int_equal(it[1].id, b);
    assert_int_equal(it[0].attempts, 0);
    dispose_all(it, 2);
    /* The first holder's outcomes are stale now: a is not completed. */
    assert_int_equal(realm_queue_done(old, a), 0);
    assert_int_equal(realm_queue_retry(old, b, 5, "late"), 0);
    realm_queue_close(old);
    assert_int_equal(realm_queue_pending(f->q), 2);
    assert_int_equal(realm_queue_done(f->q, a), 0);
    assert_int_equal(realm_queue_done(f->q, b), 0);
    assert_int_equal(realm_queue_pending(f->q), 0);
    /* Ids are never reused. */
    reopen(f);
    assert_true(push(f->q, "fn", "c", 1) > b);
}
#endif

#ifdef REALM_TEST_PG
/* PostgreSQL: a server that goes on taking renews the leases of the events
 * it still runs (every third of their length), so another server cannot
 * take them at their first expiry, only once the renewals stop. */
static void leases_renewed_while_running(void **state)
{
    fx_t *f = *state;
    int64_t a = push(f->q, "fn", "a", 1);
    int64_t b = push(f->q, "fn", "b", 1);
    realm_queue_item_t it[3];
    assert_int_equal(realm_queue_take_due(f->q, 10, it, 3), 2);
    dispose_all(it, 2);
    const int64_t later = 10 + REALM_QUEUE_LEASE_MS / 2;
    assert_int_equal(realm_queue_take_due(f->q, later, it, 3), 0); /* renews, takes nothing */
    assert_int_equal(realm_queue_done(f->q, b), 0);
    realm_queue_t *other = open_q(f);
    assert_int_equal(realm_queue_take_due(other, 10 + REALM_QUEUE_LEASE_MS, it, 3), 0);
    assert_int_equal(realm_queue_next_due(other), later + REALM_QUEUE_LEASE_MS);
    assert_int_equal(realm_queue_take_due(other, later + REALM_QUEUE_LEASE_MS, it, 3), 1);
    assert_int_equal(it[0].id, a);
    dispose_all(it, 1);
    assert_int_equal(realm_queue_done(f->q, a), 0); /* stale now: other holds it */
    assert_int_equal(realm_queue_pending(other), 1);
    assert_int_equal(realm_queue_done(other, a), 0);
    assert_int_equal(realm_queue_pending(other), 0);
    realm_queue_close(other);
}
#endif

/* A child pushes, takes and is SIGKILLed without closing: nothing is lost. */
static void survives_sigkill(void **state)
{
    fx_t *f = *state;
    realm_queue_close(f->q);
    f->q = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[256];
        realm_queue_t *q = realm_queue_open(f->db, err, sizeof(err));
        if (!q) _exit(1);
        for (int i = 0; i < 5; i++)
            if (realm_queue_push(q, "", "fn", NULL, "k", 1, 1, err, sizeof(err)) <= 0) _exit(2);
        realm_queue_item_t it[2];
        if (realm_queue_take_due(q, 10, it, 2) != 2) _exit(3);
        raise(SIGKILL);
        _exit(4);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);

    f->q = open_q(f);
    assert_int_equal(realm_queue_pending(f->q), 5);
    realm_queue_item_t it[6];
    /* On PostgreSQL too: the dead process was of this machine, so the store
     * opened after it released its two leases (pg_queue.c, realm_pg_queue_opened);
     * another machine's would hold until they end (pg_queue_dead_server). */
    assert_int_equal(realm_queue_take_due(f->q, 10, it, 6), 5);
    const size_t n = 5;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(it[i].id, (int64_t)i + 1);
        assert_int_equal(it[i].attempts, 0);
        assert_int_equal(realm_queue_load_payload(f->q, &it[i]), 0);
        assert_string_equal(it[i].payload, "k");
    }
    dispose_all(it, n);
}

static void fail_and_list(void **state)
{
    fx_t *f = *state;
    char err[256] = "";
    /* 2024-05-01T12:00:00.123Z */
    const int64_t t0 = 1714564800123LL;
    int64_t id =
        realm_queue_push(f->q, "t1", "fn", "prod", "{\"k\":\"v\"}", 9, t0, err, sizeof(err));
    assert_true(id > 0);
    realm_queue_item_t it = take1(f->q, t0);
    realm_queue_item_dispose(&it);
    assert_int_equal(realm_queue_retry(f->q, id, t0 + 60000, "first"), 0);
    it = take1(f->q, t0 + 60000);
    realm_queue_item_dispose(&it);
    assert_int_equal(realm_queue_fail(f->q, id, "Unhandled", "boom", t0 + 61000), 0);
    assert_int_equal(realm_queue_pending(f->q), 0);
    assert_int_equal(realm_queue_next_due(f->q), -1);

    json_t *list = realm_queue_list_failed(f->q, "t1", "fn", 10);
    assert_non_null(list);
    assert_int_equal(json_array_size(list), 1);
    json_t *e = json_array_get(list, 0);
    assert_int_equal(json_object_size(e), 9);
    assert_int_equal(json_integer_value(json_object_get(e, "Id")), id);
    assert_string_equal(json_string_value(json_object_get(e, "FunctionName")), "fn");
    assert_string_equal(json_string_value(json_object_get(e, "Qualifier")), "prod");
    assert_string_equal(json_string_value(json_object_get(e, "Payload")), "{\"k\":\"v\"}");
    assert_int_equal(json_integer_value(json_object_get(e, "Attempts")), 2);
    assert_string_equal(json_string_value(json_object_get(e, "ErrorType")), "Unhandled");
    assert_string_equal(json_string_value(json_object_get(e, "ErrorMessage")), "boom");
    assert_string_equal(json_string_value(json_object_get(e, "EnqueuedAt")),
                        "2024-05-01T12:00:00.123Z");
    assert_string_equal(json_string_value(json_object_get(e, "FailedAt")),
                        "2024-05-01T12:01:01.123Z");
    json_decref(list);

    /* Errors may be NULL; another function and another tenant. */
    int64_t id2 = realm_queue_push(f->q, "t1", "other", NULL, "", 0, t0, err, sizeof(err));
    int64_t id3 = realm_queue_push(f->q, "t2", "fn", NULL, "z", 1, t0, err, sizeof(err));
    realm_queue_item_t two[3];
    assert_int_equal(realm_queue_take_due(f->q, t0, two, 3), 2);
    dispose_all(two, 2);
    assert_int_equal(realm_queue_fail(f->q, id2, NULL, NULL, t0 + 1), 0);
    assert_int_equal(realm_queue_fail(f->q, id3, "Timeout", "late", t0 + 2), 0);

    list = realm_queue_list_failed(f->q, "t1", NULL, 10); /* the whole tenant, newest first */
    assert_int_equal(json_array_size(list), 2);
    e = json_array_get(list, 0);
    assert_int_equal(json_integer_value(json_object_get(e, "Id")), id2);
    assert_string_equal(json_string_value(json_object_get(e, "FunctionName")), "other");
    assert_string_equal(json_string_value(json_object_get(e, "Qualifier")), "");
    assert_string_equal(json_string_value(json_object_get(e, "Payload")), "");
    assert_int_equal(json_integer_value(json_object_get(e, "Attempts")), 1);
    assert_true(json_is_null(json_object_get(e, "ErrorType")));
    assert_true(json_is_null(json_object_get(e, "ErrorMessage")));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 1), "Id")), id);
    json_decref(list);

    list = realm_queue_list_failed(f->q, "t1", NULL, 1); /* limit */
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
    list = realm_queue_list_failed(f->q, "t2", "fn", 10);
    assert_int_equal(json_array_size(list), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "Id")), id3);
    json_decref(list);
    list = realm_queue_list_failed(f->q, "t3", NULL, 10);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);

    /* The failed list is durable. */
    reopen(f);
    list = realm_queue_list_failed(f->q, "t1", "fn", 10);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
}

static void forget(void **state)
{
    fx_t *f = *state;
    int64_t a = push(f->q, "f", "a", 1);
    int64_t b = push(f->q, "f", "b", 1);
    int64_t g = push(f->q, "g", "g", 1);
    int64_t c = push(f->q, "f", "c", 1);
    realm_queue_item_t it[4];
    assert_int_equal(realm_queue_take_due(f->q, 1, it, 2), 2); /* a, b */
    dispose_all(it, 2);
    assert_int_equal(realm_queue_fail(f->q, a, "Unhandled", "x", 2), 0);

    /* b is leased (running) when its function is deleted. */
    assert_int_equal(realm_queue_forget(f->q, "", "f"), 0);
    assert_int_equal(realm_queue_pending(f->q), 1);
    json_t *list = realm_queue_list_failed(f->q, "", "f", 10);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);

    /* Outcomes of the forgotten event are harmless no-ops. */
    assert_int_equal(realm_queue_fail(f->q, b, "Unhandled", "y", 3), 0);
    assert_int_equal(realm_queue_retry(f->q, c, 5, NULL), 0);
    assert_int_equal(realm_queue_done(f->q, b), 0);
    list = realm_queue_list_failed(f->q, "", NULL, 10);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);

    assert_int_equal(realm_queue_take_due(f->q, 100, it, 4), 1);
    assert_int_equal(it[0].id, g);
    assert_string_equal(it[0].function, "g");
    dispose_all(it, 1);
    /* Forgetting a function with nothing queued is fine. */
    assert_int_equal(realm_queue_forget(f->q, "", "nothing"), 0);
}

static void binary_payload(void **state)
{
    fx_t *f = *state;
    static const char bin[] = {'a', 0, 'b', (char)0xff, 0, (char)0xc3, (char)0xa9, 'z'};
    char err[256] = "";
    int64_t id = realm_queue_push(f->q, "", "fn", NULL, bin, sizeof(bin), 1, err, sizeof(err));
    assert_true(id > 0);
    int64_t empty = realm_queue_push(f->q, "", "fn", NULL, NULL, 0, 1, err, sizeof(err));
    assert_true(empty > 0);
    reopen(f);

    realm_queue_item_t it[2];
    assert_int_equal(realm_queue_take_due(f->q, 1, it, 2), 2);
    assert_int_equal(realm_queue_load_payload(f->q, &it[0]), 0);
    assert_int_equal(realm_queue_load_payload(f->q, &it[1]), 0);
    assert_int_equal(it[0].payload_len, sizeof(bin));
    assert_memory_equal(it[0].payload, bin, sizeof(bin));
    assert_int_equal(it[0].payload[sizeof(bin)], '\0');
    assert_int_equal(it[1].payload_len, 0);
    assert_non_null(it[1].payload);
    assert_string_equal(it[1].payload, "");
    dispose_all(it, 2);

    /* As text: NULs kept (\u0000), the invalid byte becomes U+FFFD. */
    assert_int_equal(realm_queue_fail(f->q, id, "E", "m", 2), 0);
    json_t *list = realm_queue_list_failed(f->q, "", "fn", 1);
    json_t *p = json_object_get(json_array_get(list, 0), "Payload");
    static const char want[] = {'a',        0, 'b',        (char)0xef, (char)0xbf,
                                (char)0xbd, 0, (char)0xc3, (char)0xa9, 'z'};
    assert_int_equal(json_string_length(p), sizeof(want));
    assert_memory_equal(json_string_value(p), want, sizeof(want));
    char *text = json_dumps(list, JSON_COMPACT);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"Payload\":\"a\\u0000b\xef\xbf\xbd\\u0000\xc3\xa9z\""));
    free(text);
    json_decref(list);

    /* An error message cut mid-character is still listed, repaired. */
    id = push(f->q, "fn", "x", 3);
    realm_queue_item_t one = take1(f->q, 3);
    realm_queue_item_dispose(&one);
    assert_int_equal(realm_queue_fail(f->q, id, "Unhandled", "caf\xc3", 4), 0);
    list = realm_queue_list_failed(f->q, "", "fn", 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "ErrorMessage")),
                        "caf\xef\xbf\xbd");
    json_decref(list);
}

static void failed_list_is_bounded(void **state)
{
    fx_t *f = *state;
    const size_t n = REALM_QUEUE_FAILED_KEEP + 5;
    int64_t keep_other = push(f->q, "other", "o", 1);
    realm_queue_item_t o = take1(f->q, 1);
    realm_queue_item_dispose(&o);
    assert_int_equal(realm_queue_fail(f->q, keep_other, "E", "m", 1), 0);

    int64_t *ids = calloc(n, sizeof(*ids));
    for (size_t i = 0; i < n; i++)
        ids[i] = push(f->q, "fn", "x", 2);
    realm_queue_item_t *it = calloc(n, sizeof(*it));
    assert_int_equal(realm_queue_take_due(f->q, 2, it, n), n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(it[i].id, ids[i]);
        assert_int_equal(realm_queue_fail(f->q, it[i].id, "E", "m", 3), 0);
        realm_queue_item_dispose(&it[i]);
    }
    free(it);

    json_t *list = realm_queue_list_failed(f->q, "", "fn", 2 * n);
    assert_int_equal(json_array_size(list), REALM_QUEUE_FAILED_KEEP);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "Id")),
                     ids[n - 1]);
    assert_int_equal(json_integer_value(
                         json_object_get(json_array_get(list, REALM_QUEUE_FAILED_KEEP - 1), "Id")),
                     ids[5]);
    json_decref(list);
    /* Another function's failures are not trimmed by this one's. */
    list = realm_queue_list_failed(f->q, "", "other", 10);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
    free(ids);
}

static void bounds_per_function_and_tenant(void **state)
{
    fx_t *f = *state;
    char err[256] = "";
    realm_queue_set_limits(f->q, 3, 5);
    for (int i = 0; i < 3; i++)
        assert_true(realm_queue_push(f->q, "t", "a", NULL, "x", 1, 1, err, sizeof(err)) > 0);
    err[0] = '\0';
    assert_int_equal(realm_queue_push(f->q, "t", "a", NULL, "x", 1, 1, err, sizeof(err)),
                     REALM_QUEUE_FULL);
    assert_non_null(strstr(err, "function"));
    assert_int_equal(realm_queue_pending(f->q), 3);
    /* Another function of the tenant: two more fill the tenant's 5. */
    for (int i = 0; i < 2; i++)
        assert_true(realm_queue_push(f->q, "t", "b", NULL, "x", 1, 1, err, sizeof(err)) > 0);
    err[0] = '\0';
    assert_int_equal(realm_queue_push(f->q, "t", "c", NULL, "x", 1, 1, err, sizeof(err)),
                     REALM_QUEUE_FULL);
    assert_non_null(strstr(err, "account"));
    /* Another tenant is not affected. */
    assert_true(realm_queue_push(f->q, "u", "a", NULL, "x", 1, 1, err, sizeof(err)) > 0);
    assert_int_equal(realm_queue_pending(f->q), 6);

    /* Leased and parked events still count; done, fail and forget free room. */
    realm_queue_item_t it[8];
    assert_int_equal(realm_queue_take_due(f->q, 1, it, 8), 6);
    assert_string_equal(it[0].function, "a");
    assert_int_equal(realm_queue_park(f->q, it[1].id, 1000), 0);
    assert_int_equal(realm_queue_push(f->q, "t", "a", NULL, "x", 1, 1, err, sizeof(err)),
                     REALM_QUEUE_FULL);
    assert_int_equal(realm_queue_done(f->q, it[0].id), 0);
    assert_true(realm_queue_push(f->q, "t", "a", NULL, "x", 1, 1, err, sizeof(err)) > 0);
    assert_int_equal(realm_queue_push(f->q, "t", "a", NULL, "x", 1, 1, err, sizeof(err)),
                     REALM_QUEUE_FULL);
    assert_int_equal(realm_queue_fail(f->q, it[2].id, "E", "m", 2), 0);
    dispose_all(it, 6);

    /* The counts are in the file: a reopened queue holds the same bound. */
    reopen(f);
    realm_queue_set_limits(f->q, 3, 5);
    assert_int_equal(realm_queue_pending(f->q), 5);
    assert_true(realm_queue_push(f->q, "t", "a", NULL, "x", 1, 1, err, sizeof(err)) > 0);
    assert_int_equal(realm_queue_push(f->q, "t", "a", NULL, "x", 1, 1, err, sizeof(err)),
                     REALM_QUEUE_FULL);
    assert_int_equal(realm_queue_forget(f->q, "t", "a"), 0);
    assert_int_equal(realm_queue_pending(f->q), 3); /* b, b and u's a */
    for (int i = 0; i < 3; i++)
        assert_true(realm_queue_push(f->q, "t", "a", NULL, "x", 1, 1, err, sizeof(err)) > 0);
    /* 0 lifts a bound. */
    realm_queue_set_limits(f->q, 0, 0);
    assert_true(realm_queue_push(f->q, "t", "a", NULL, "x", 1, 1, err, sizeof(err)) > 0);
}

static void payloads_are_read_only_when_asked(void **state)
{
    fx_t *f = *state;
    static char big[4096];
    memset(big, 'p', sizeof(big));
    char err[256] = "";
    for (int i = 0; i < 10; i++)
        assert_true(realm_queue_push(f->q, "", "fn", NULL, big, sizeof(big), 1, err, sizeof(err)) >
                    0);
    realm_queue_stats_t st;
    realm_queue_item_t it[10];
    assert_int_equal(realm_queue_take_due(f->q, 1, it, 10), 10);
    /* Taken, deferred, taken again, parked: not one payload byte read. */
    for (int i = 0; i < 10; i++) {
        assert_null(it[i].payload);
        assert_int_equal(realm_queue_defer(f->q, it[i].id, 2), 0);
    }
    dispose_all(it, 10);
    assert_int_equal(realm_queue_take_due(f->q, 2, it, 10), 10);
    for (int i = 1; i < 10; i++)
        assert_int_equal(realm_queue_park(f->q, it[i].id, 100), 0);
    realm_queue_stats(f->q, &st);
    assert_int_equal(st.payload_reads, 0);
    assert_int_equal(st.payload_bytes, 0);

    /* The one about to run is read, once. */
    assert_int_equal(realm_queue_load_payload(f->q, &it[0]), 0);
    assert_int_equal(it[0].payload_len, sizeof(big));
    assert_memory_equal(it[0].payload, big, sizeof(big));
    realm_queue_stats(f->q, &st);
    assert_int_equal(st.payload_reads, 1);
    assert_int_equal(st.payload_bytes, sizeof(big));
    assert_int_equal(realm_queue_done(f->q, it[0].id), 0);
    /* Its payload went with it. */
    assert_int_equal(realm_queue_load_payload(f->q, &it[0]), -1);
    dispose_all(it, 10);
}

static void parked_events_wait_for_unpark_or_expiry(void **state)
{
    fx_t *f = *state;
    int64_t a = push(f->q, "zero", "a", 10);
    int64_t b = push(f->q, "zero", "b", 11);
    int64_t o = push(f->q, "other", "o", 12);
    realm_queue_item_t it[4];
    assert_int_equal(realm_queue_take_due(f->q, 20, it, 4), 3);
    assert_int_equal(realm_queue_park(f->q, a, 10 + 5000), 0);
    assert_int_equal(realm_queue_park(f->q, b, 11 + 5000), 0);
    assert_int_equal(realm_queue_defer(f->q, o, 40), 0);
    dispose_all(it, 3);

    json_t *parked = realm_queue_parked(f->q);
    assert_int_equal(json_array_size(parked), 1); /* one row per function */
    assert_string_equal(json_string_value(json_array_get(json_array_get(parked, 0), 0)), "");
    assert_string_equal(json_string_value(json_array_get(json_array_get(parked, 0), 1)), "zero");
    json_decref(parked);

    /* Not due, not walked: only the deferred one comes. */
    assert_int_equal(realm_queue_next_due(f->q), 40);
    assert_int_equal(realm_queue_take_due(f->q, 1000, it, 4), 1);
    assert_int_equal(it[0].id, o);
    assert_int_equal(realm_queue_done(f->q, o), 0);
    dispose_all(it, 1);
    assert_int_equal(realm_queue_next_due(f->q), 5010); /* the first expiry */

    /* Unpark wakes the function's events, due now, oldest first, attempts unchanged. */
    assert_int_equal(realm_queue_unpark(f->q, "", "zero", 2000), 2);
    assert_int_equal(realm_queue_unpark(f->q, "", "zero", 2000), 0);
    parked = realm_queue_parked(f->q);
    assert_int_equal(json_array_size(parked), 0);
    json_decref(parked);
    assert_int_equal(realm_queue_take_due(f->q, 2000, it, 4), 2);
    assert_int_equal(it[0].id, a);
    assert_int_equal(it[1].id, b);
    assert_int_equal(it[0].attempts, 0);

    /* Parked again, they come back at their expiry, even after a reopen. */
    assert_int_equal(realm_queue_park(f->q, a, 10 + 5000), 0);
    assert_int_equal(realm_queue_park(f->q, b, 11 + 5000), 0);
    dispose_all(it, 2);
    reopen(f);
    assert_int_equal(realm_queue_take_due(f->q, 5009, it, 4), 0);
    assert_int_equal(realm_queue_take_due(f->q, 5010, it, 4), 1);
    assert_int_equal(it[0].id, a);
    dispose_all(it, 1);
    /* Forget drops the parked list too. */
    assert_int_equal(realm_queue_forget(f->q, "", "zero"), 0);
    parked = realm_queue_parked(f->q);
    assert_int_equal(json_array_size(parked), 0);
    json_decref(parked);
}

/* Runs SQL on the queue's file behind its back (it must be closed). */
static void exec_sql(const char *path, const char *text)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, text, NULL, NULL, &msg);
    if (rc != SQLITE_OK) fail_msg("%s: %s", text, msg ? msg : "?");
    sqlite3_close(db);
}

static void version_1_file_is_moved(void **state)
{
    fx_t *f = *state;
    realm_queue_close(f->q);
    f->q = NULL;
    assert_int_equal(unlink(f->db), 0);
    /* The version 1 schema, as it was, with two events and a removed newer one. */
    exec_sql(f->db,
             "CREATE TABLE pending(id INTEGER PRIMARY KEY AUTOINCREMENT,"
             " tenant TEXT NOT NULL, function TEXT NOT NULL, qualifier TEXT NOT NULL,"
             " payload BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
             " enqueued_ms INTEGER NOT NULL, due_ms INTEGER NOT NULL, last_error TEXT);"
             "CREATE INDEX pending_due ON pending(due_ms, id);"
             "CREATE TABLE failed(seq INTEGER PRIMARY KEY AUTOINCREMENT, id INTEGER NOT NULL,"
             " tenant TEXT NOT NULL, function TEXT NOT NULL, qualifier TEXT NOT NULL,"
             " payload BLOB NOT NULL, attempts INTEGER NOT NULL, error_type TEXT,"
             " error_message TEXT, enqueued_ms INTEGER NOT NULL, failed_ms INTEGER NOT NULL);"
             "INSERT INTO pending(tenant, function, qualifier, payload, attempts, enqueued_ms,"
             " due_ms) VALUES('t', 'fn', 'prod', 'one', 1, 5, 6), ('t', 'fn', '', 'two', 0, 7, 7),"
             " ('t', 'fn', '', 'gone', 0, 8, 8);"
             "DELETE FROM pending WHERE payload = 'gone';"
             "PRAGMA user_version = 1;");
    f->q = open_q(f);
    realm_queue_set_limits(f->q, 2, 0);
    assert_int_equal(realm_queue_pending(f->q), 2);
    char err[256] = "";
    assert_int_equal(realm_queue_push(f->q, "t", "fn", NULL, "x", 1, 1, err, sizeof(err)),
                     REALM_QUEUE_FULL); /* counted */
    realm_queue_item_t it[3];
    assert_int_equal(realm_queue_take_due(f->q, 10, it, 3), 2);
    assert_int_equal(it[0].id, 1);
    assert_string_equal(it[0].qualifier, "prod");
    assert_int_equal(it[0].attempts, 1);
    assert_int_equal(realm_queue_load_payload(f->q, &it[0]), 0);
    assert_string_equal(it[0].payload, "one");
    assert_int_equal(realm_queue_load_payload(f->q, &it[1]), 0);
    assert_string_equal(it[1].payload, "two");
    assert_int_equal(realm_queue_done(f->q, it[1].id), 0);
    dispose_all(it, 2);
    /* Ids go on after the removed one (3), never reused. */
    assert_int_equal(realm_queue_push(f->q, "t", "fn", NULL, "x", 1, 1, err, sizeof(err)), 4);
    reopen(f); /* and a version 2 file opens as it is */
    assert_int_equal(realm_queue_pending(f->q), 2);
}

/*
 * 100,000 events put in the file in one transaction (as a flood leaves it):
 * opening, counting, taking a batch, the next due time and a bounded push
 * each touch a few rows, not the backlog. The measure is SQLite's virtual
 * machine steps (a walk over the backlog costs at least one per event).
 */
static void large_backlog_costs_nothing(void **state)
{
    fx_t *f = *state;
    enum { N = 100000 };
    realm_queue_close(f->q);
    f->q = NULL;
    exec_sql(f->db,
             "BEGIN;"
             "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)"
             " INSERT INTO events(tenant, function, qualifier, enqueued_ms, due_ms)"
             " SELECT '', 'flood', '', x, x FROM c;"
             "INSERT INTO payloads(id, payload) SELECT id, zeroblob(1024) FROM events;"
             "COMMIT;");
    f->q = open_q(f);
    realm_queue_set_limits(f->q, 200000, 200000);
    realm_queue_stats_t st;
    realm_queue_stats(f->q, &st);
    assert_int_equal(st.vm_steps, 0); /* opening read no events */

    assert_int_equal(realm_queue_pending(f->q), N);
    assert_int_equal(realm_queue_next_due(f->q), 1);
    realm_queue_item_t it[16];
    assert_int_equal(realm_queue_take_due(f->q, 200000, it, 16), 16);
    assert_int_equal(it[0].id, 1);
    assert_int_equal(realm_queue_next_due(f->q), 17);
    char err[256] = "";
    assert_true(realm_queue_push(f->q, "", "flood", NULL, "x", 1, 300000, err, sizeof(err)) > 0);
    /* Another batch skips the 16 leased events, no more. */
    realm_queue_item_t more[16];
    assert_int_equal(realm_queue_take_due(f->q, 200000, more, 16), 16);
    assert_int_equal(more[0].id, 17);
    realm_queue_stats(f->q, &st);
    print_message("backlog of %d: %llu SQLite steps for count, take 2x16, next due x2, push\n", N,
                  (unsigned long long)st.vm_steps);
    assert_true(st.vm_steps < 5000);
    assert_int_equal(st.payload_reads, 0);

    /* Parking a batch and taking again: still a few rows each. */
    for (int i = 0; i < 16; i++)
        assert_int_equal(realm_queue_park(f->q, it[i].id, 1000000), 0);
    dispose_all(it, 16);
    dispose_all(more, 16);
    uint64_t before = st.vm_steps;
    assert_int_equal(realm_queue_take_due(f->q, 200000, it, 16), 16);
    assert_int_equal(it[0].id, 33);
    realm_queue_stats(f->q, &st);
    assert_true(st.vm_steps - before < 2000);
    dispose_all(it, 16);
}

#ifdef REALM_TEST_PG
static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/*
 * PostgreSQL: 100,000 events put in the database in one transaction (as a
 * flood leaves it): counting, the next due time, taking two batches (the
 * second past the first's leases) and a capped push each answer right and
 * touch a few rows through the indexes. The times are printed, never
 * asserted (docs/storage.md).
 */
static void pg_large_backlog(void **state)
{
    fx_t *f = *state;
    enum { N = 100000, R = 10 };
    fx_pg_query("BEGIN;"
                "INSERT INTO events(tenant, function, qualifier, enqueued_ms, due_ms)"
                " SELECT '', 'flood', '', x, x FROM generate_series(1, 100000) x;"
                "INSERT INTO payloads(id, payload)"
                " SELECT id, decode(repeat('00', 1024), 'hex') FROM events;"
                "COMMIT; ANALYZE events",
                NULL, 0);
    realm_queue_close(f->q);
    f->q = open_q(f);
    realm_queue_set_limits(f->q, 200000, 200000);
    /* The first round prepares the statements: timed are the next R. */
    double t[5] = {0};
    realm_queue_item_t it[16];
    char err[256] = "";
    for (int round = 0; round <= R; round++) {
        double a = now_us();
        assert_int_equal(realm_queue_pending(f->q), N + (size_t)round);
        double b = now_us();
        assert_int_equal(realm_queue_next_due(f->q), 1 + 16 * round);
        double c = now_us();
        assert_int_equal(realm_queue_take_due(f->q, 200000, it, 16), 16);
        assert_int_equal(it[0].id, 1 + 16 * round); /* past the leases of the rounds before */
        double d = now_us();
        assert_true(realm_queue_push(f->q, "", "flood", NULL, "x", 1, 300000, err, sizeof(err)) >
                    0);
        double e = now_us();
        dispose_all(it, 16);
        if (round == 0) continue;
        t[0] += b - a;
        t[1] += c - b;
        t[2] += d - c;
        t[3] += e - d;
    }
    realm_queue_stats_t st;
    realm_queue_stats(f->q, &st);
    assert_int_equal(st.payload_reads, 0);
    print_message("backlog of %d on PostgreSQL (means of %d): count %.0f us, next due %.0f us, "
                  "take 16 past the leased ones %.0f us, capped push %.0f us\n",
                  N, R, t[0] / R, t[1] / R, t[2] / R, t[3] / R);
}
#endif

static void missing_directory(void **state)
{
    fx_t *f = *state;
    char path[200], err[256] = "";
    snprintf(path, sizeof(path), "%s/no/such/dir/events.db", f->dir);
    assert_null(realm_queue_open(path, err, sizeof(err)));
    assert_non_null(strstr(err, path));
    assert_true(strlen(err) > strlen(path) + 2); /* says why */
    assert_int_equal(access(path, F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(push_take_done, setup, teardown),
        cmocka_unit_test_setup_teardown(push_refuses_missing_names, setup, teardown),
        cmocka_unit_test_setup_teardown(earliest_due_first, setup, teardown),
        cmocka_unit_test_setup_teardown(due_times_and_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(leases_not_retaken, setup, teardown),
        cmocka_unit_test_setup_teardown(defer_waits_without_counting, setup, teardown),
#if !defined(REALM_TEST_MEMORY) && !defined(REALM_TEST_PG) /* leases in memory: SQLite */
        cmocka_unit_test_setup_teardown(reopen_forgets_leases, setup, teardown),
#endif
#ifdef REALM_TEST_PG
        cmocka_unit_test_setup_teardown(reopen_keeps_leases_until_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(leases_renewed_while_running, setup, teardown),
        cmocka_unit_test_setup_teardown(pg_large_backlog, setup, teardown),
#endif
#ifndef REALM_TEST_MEMORY /* files: SQLite only */
        cmocka_unit_test_setup_teardown(survives_sigkill, setup, teardown),
#endif
        cmocka_unit_test_setup_teardown(fail_and_list, setup, teardown),
        cmocka_unit_test_setup_teardown(forget, setup, teardown),
        cmocka_unit_test_setup_teardown(binary_payload, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_list_is_bounded, setup, teardown),
#if !defined(REALM_TEST_MEMORY) && !defined(REALM_TEST_PG) /* files: SQLite only */
        cmocka_unit_test_setup_teardown(missing_directory, setup, teardown),
#endif
        cmocka_unit_test_setup_teardown(bounds_per_function_and_tenant, setup, teardown),
        cmocka_unit_test_setup_teardown(payloads_are_read_only_when_asked, setup, teardown),
        cmocka_unit_test_setup_teardown(parked_events_wait_for_unpark_or_expiry, setup, teardown),
#if !defined(REALM_TEST_MEMORY) && !defined(REALM_TEST_PG) /* files: SQLite only */
        cmocka_unit_test_setup_teardown(version_1_file_is_moved, setup, teardown),
        cmocka_unit_test_setup_teardown(large_backlog_costs_nothing, setup, teardown),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
