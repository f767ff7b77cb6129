/*
 * test_queue.c - the durable event queue: push/take/done, order, due times
 * and retries, leases (not re-taken, forgotten by a reopen or a SIGKILL),
 * the failed list (shape, order, bound), forget, binary payloads, and a
 * clean refusal to open in a missing directory.
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
#include <unistd.h>

#include <cmocka.h>

typedef struct {
    char dir[64];
    char db[128];
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
    snprintf(f->db, sizeof(f->db), "%s/events.db", f->dir);
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
    realm_queue_close(f->q);
    f->q = open_q(f);
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
    assert_int_equal(it.payload_len, 7);
    assert_string_equal(it.payload, "{\"a\":1}");
    assert_int_equal(it.attempts, 0);
    assert_int_equal(it.enqueued_ms, 1000);
    assert_int_equal(realm_queue_pending(f->q), 1); /* leased is still pending */
    assert_int_equal(realm_queue_next_due(f->q), -1);

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

static void oldest_first(void **state)
{
    fx_t *f = *state;
    int64_t a = push(f->q, "fn", "a", 30); /* pushed first, even if due last */
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
    /* All due: by id, and max is honoured. */
    assert_int_equal(realm_queue_take_due(f->q, 100, it, 2), 2);
    assert_int_equal(it[0].id, a);
    assert_int_equal(it[1].id, b);
    assert_string_equal(it[0].payload, "a");
    dispose_all(it, 2);
    assert_int_equal(realm_queue_take_due(f->q, 100, it, 3), 1);
    assert_int_equal(it[0].id, c);
    dispose_all(it, 1);
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
    assert_int_equal(realm_queue_next_due(f->q), -1);
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
    assert_int_equal(realm_queue_take_due(f->q, 10, it, 6), 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(it[i].id, (int64_t)i + 1);
        assert_int_equal(it[i].attempts, 0);
        assert_string_equal(it[i].payload, "k");
    }
    dispose_all(it, 5);
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
        cmocka_unit_test_setup_teardown(oldest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(due_times_and_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(leases_not_retaken, setup, teardown),
        cmocka_unit_test_setup_teardown(defer_waits_without_counting, setup, teardown),
        cmocka_unit_test_setup_teardown(reopen_forgets_leases, setup, teardown),
        cmocka_unit_test_setup_teardown(survives_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(fail_and_list, setup, teardown),
        cmocka_unit_test_setup_teardown(forget, setup, teardown),
        cmocka_unit_test_setup_teardown(binary_payload, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_list_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_directory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
