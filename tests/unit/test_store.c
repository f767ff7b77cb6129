/*
 * test_store.c - the storage interface itself (store/store.h), every test
 * run against both backends (SQLite in a temporary directory, then
 * memory:): registry rows (functions, versions, aliases, reservations,
 * tags, package references, paging), transactions, the write generation,
 * creates/updates in flight, the Event queue (caps, claim order, lease
 * tokens fencing every outcome, lease expiry, the failed list and its
 * bound, parking), tenants and keys. Last, a timing loop prints what the
 * typical calls cost on the calling thread (no timed assertion): the
 * figures in docs/storage.md.
 *
 * Built again as test_store_pg (REALM_TEST_PG, run by ctest through
 * tests/unit/with_pg.sh, which starts a throwaway PostgreSQL): the registry
 * and queue tests, tenants and keys, packages and the timing loop against
 * the PostgreSQL backend (its registry, queue and auth kinds, in one
 * database), then what only a shared
 * database has: two stores on one database, concurrent migrations,
 * refusals, a lost connection; for the queue, two servers claiming at once
 * (disjoint), a dead server's leases (back after they expire, its tokens
 * stale), the caps held exactly by two servers pushing at once, and an
 * enqueue whose COMMIT is lost (queued exactly once); the concurrency
 * leases of a cluster (the caps of a function and a tenant across nodes,
 * exact when four nodes take at once, renewals that report what ended,
 * drops), a kind the other backends refuse.
 */
#include "store/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#ifdef REALM_TEST_PG
#include "pg_fixture.h"

#include "store/pg.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#endif

typedef struct {
    const char *backend; /* "sqlite", "memory" or "postgresql" */
    char dir[64];
    realm_store_t *reg, *q, *auth;
} fx_t;

static realm_store_t *open_kind(fx_t *f, realm_store_kind_t kind, const char *file)
{
    char loc[512], err[512] = "";
    if (strcmp(f->backend, "memory") == 0) snprintf(loc, sizeof(loc), "memory:%s", file);
#ifdef REALM_TEST_PG
    else if (strcmp(f->backend, "postgresql") == 0)
        snprintf(loc, sizeof(loc), "%s", fx_pg_url());
#endif
    else
        snprintf(loc, sizeof(loc), "%s/%s", f->dir, file);
    if (kind == REALM_STORE_AUTH && strcmp(f->backend, "sqlite") == 0) {
        FILE *fp = fopen(loc, "a"); /* auth/keys.c makes the file (0600) first */
        assert_non_null(fp);
        fclose(fp);
    }
    realm_store_t *s = realm_store_open(kind, loc, err, sizeof(err));
    if (!s) fail_msg("open %s: %s", loc, err);
    assert_string_equal(realm_store_backend(s), f->backend);
    return s;
}

static int setup(void **state, const char *backend)
{
    fx_t *f = calloc(1, sizeof(*f));
    f->backend = backend;
    snprintf(f->dir, sizeof(f->dir), "/tmp/realm-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
#ifdef REALM_TEST_PG
    if (strcmp(backend, "postgresql") == 0) { /* the registry and auth kinds, so far */
        fx_pg_reset();
        f->reg = open_kind(f, REALM_STORE_REGISTRY, "realm.db");
        f->auth = open_kind(f, REALM_STORE_AUTH, "auth.db");
        f->q = open_kind(f, REALM_STORE_QUEUE, "events.db");
        *state = f;
        return 0;
    }
#endif
    f->reg = open_kind(f, REALM_STORE_REGISTRY, "realm.db");
    f->q = open_kind(f, REALM_STORE_QUEUE, "events.db");
    f->auth = open_kind(f, REALM_STORE_AUTH, "auth.db");
    *state = f;
    return 0;
}

static int setup_sqlite(void **state)
{
    return setup(state, "sqlite");
}

static int setup_memory(void **state)
{
    return setup(state, "memory");
}

static int teardown(void **state)
{
    fx_t *f = *state;
    realm_store_close(f->reg);
    realm_store_close(f->q);
    realm_store_close(f->auth);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static char *hex_of(char c, char *out)
{
    memset(out, c, REALM_STORE_HEX_LEN);
    out[REALM_STORE_HEX_LEN] = '\0';
    return out;
}

static void add_fn(realm_store_t *s, const char *t, const char *n, char code, int64_t size)
{
    char hex[REALM_STORE_HEX_LEN + 1];
    json_t *cfg = json_pack("{s:s, s:I}", "FunctionName", n, "CodeSize", (json_int_t)size);
    assert_int_equal(realm_store_fn_insert(s, t, n, NULL), 0);
    assert_int_equal(realm_store_ver_insert(s, t, n, 0, hex_of(code, hex), cfg), 0);
    json_decref(cfg);
}

/* "name:num,name:num" of a ver_list page. */
static void rows_str(json_t *rows, char *out, size_t len)
{
    size_t i, n = 0;
    json_t *r;
    out[0] = '\0';
    json_array_foreach(rows, i, r)
    {
        n += (size_t)snprintf(out + n, len - n, "%s%s:%lld", i ? "," : "",
                              json_string_value(json_object_get(r, "name")),
                              (long long)json_integer_value(json_object_get(r, "num")));
    }
}

/* ---- registry ---- */

static void functions_and_versions(void **state)
{
    fx_t *f = *state;
    realm_store_t *s = f->reg;
    char hex[REALM_STORE_HEX_LEN + 1], code[REALM_STORE_HEX_LEN + 1], buf[256];
    add_fn(s, "", "b", 'a', 10);
    add_fn(s, "", "a", 'a', 20);
    add_fn(s, "t2", "a", 'c', 5);
    assert_int_equal(realm_store_fn_insert(s, "", "a", NULL), 1); /* taken */

    realm_store_fn_t fn;
    assert_int_equal(realm_store_fn_get(s, "", "a", &fn), 0);
    assert_int_equal(fn.next_version, 1);
    assert_int_equal(fn.reserved, -1);
    assert_int_equal(json_object_size(fn.tags), 0);
    realm_store_fn_dispose(&fn);
    assert_int_equal(realm_store_fn_get(s, "", "zz", NULL), 1);

    /* Publishing: take numbers, insert rows, the last one answers. */
    json_t *cfg = NULL;
    int64_t num = 0;
    assert_int_equal(realm_store_ver_last(s, "", "a", &num, NULL, NULL), 1);
    assert_int_equal(realm_store_fn_take_version(s, "", "a"), 1);
    assert_int_equal(realm_store_fn_take_version(s, "", "a"), 2);
    json_t *v = json_pack("{s:s}", "Description", "one");
    assert_int_equal(realm_store_ver_insert(s, "", "a", 1, hex_of('a', hex), v), 0);
    json_object_set_new(v, "Description", json_string("two"));
    assert_int_equal(realm_store_ver_insert(s, "", "a", 2, hex_of('b', hex), v), 0);
    json_decref(v);
    assert_int_equal(realm_store_ver_last(s, "", "a", &num, &cfg, code), 0);
    assert_int_equal(num, 2);
    assert_string_equal(json_string_value(json_object_get(cfg, "Description")), "two");
    assert_string_equal(code, hex_of('b', hex));
    json_decref(cfg);

    /* Update: config only keeps the code; with code replaces both. */
    v = json_pack("{s:s}", "Description", "new");
    assert_int_equal(realm_store_ver_update(s, "", "a", 0, NULL, v), 0);
    assert_int_equal(realm_store_ver_get(s, "", "a", 0, &cfg, code), 0);
    assert_string_equal(code, hex_of('a', hex));
    assert_true(json_equal(cfg, v));
    json_decref(cfg);
    assert_int_equal(realm_store_ver_update(s, "", "a", 0, hex_of('d', hex), v), 0);
    assert_int_equal(realm_store_ver_get(s, "", "a", 0, NULL, code), 0);
    assert_string_equal(code, hex_of('d', hex));
    json_decref(v);
    assert_int_equal(realm_store_ver_get(s, "", "a", 7, NULL, NULL), 1);

    /* Lists: one function's, all (name, num), $LATEST only; pages. */
    json_t *rows = realm_store_ver_list(s, "", "a", NULL, -1, 0, 10);
    rows_str(rows, buf, sizeof(buf));
    assert_string_equal(buf, "a:0,a:1,a:2");
    json_decref(rows);
    rows = realm_store_ver_list(s, "", "a", NULL, 0, 0, 1);
    rows_str(rows, buf, sizeof(buf));
    assert_string_equal(buf, "a:1");
    json_decref(rows);
    rows = realm_store_ver_list(s, "", NULL, "", -1, 0, 10);
    rows_str(rows, buf, sizeof(buf));
    assert_string_equal(buf, "a:0,a:1,a:2,b:0");
    json_decref(rows);
    rows = realm_store_ver_list(s, "", NULL, "a", 1, 0, 10);
    rows_str(rows, buf, sizeof(buf));
    assert_string_equal(buf, "a:2,b:0");
    json_decref(rows);
    rows = realm_store_ver_list(s, "", NULL, "", -1, 1, 10);
    rows_str(rows, buf, sizeof(buf));
    assert_string_equal(buf, "a:0,b:0");
    json_decref(rows);
    rows = realm_store_ver_list(s, "", NULL, "a", -1, 1, 10);
    rows_str(rows, buf, sizeof(buf));
    assert_string_equal(buf, "b:0");
    json_decref(rows);

    /* Packages: owned per tenant, used by anyone. */
    assert_int_equal(realm_store_code_used(s, NULL, hex_of('c', hex)), 1);
    assert_int_equal(realm_store_code_used(s, "", hex_of('c', hex)), 0);
    assert_int_equal(realm_store_code_used(s, "t2", hex_of('c', hex)), 1);
    assert_int_equal(realm_store_code_used(s, NULL, hex_of('e', hex)), 0);

    /* Reservations, tags, usage. */
    assert_int_equal(realm_store_fn_set_reserved(s, "", "a", 4), 0);
    assert_int_equal(realm_store_fn_set_reserved(s, "", "b", 3), 0);
    assert_int_equal(realm_store_fn_set_reserved(s, "t2", "a", 9), 0);
    assert_int_equal(realm_store_fn_sum_reserved(s, "", NULL), 7);
    assert_int_equal(realm_store_fn_sum_reserved(s, "", "a"), 3);
    assert_int_equal(realm_store_fn_set_reserved(s, "", "b", -1), 0);
    assert_int_equal(realm_store_fn_sum_reserved(s, "", NULL), 4);
    json_t *tags = json_pack("{s:s}", "team", "x");
    assert_int_equal(realm_store_fn_set_tags(s, "", "a", tags), 0);
    json_decref(tags);
    assert_int_equal(realm_store_fn_get(s, "", "a", &fn), 0);
    assert_string_equal(json_string_value(json_object_get(fn.tags, "team")), "x");
    assert_int_equal(fn.reserved, 4);
    assert_int_equal(fn.next_version, 3);
    realm_store_fn_dispose(&fn);
    int64_t count = 0, size = 0;
    assert_int_equal(realm_store_fn_usage(s, "", &count, &size), 0);
    assert_int_equal(count, 2);
    assert_int_equal(size, 10); /* a's rows hold no CodeSize now, b's 10 */

    /* Deletes: a version, then the function with everything. */
    assert_int_equal(realm_store_ver_delete(s, "", "a", 1), 0);
    assert_int_equal(realm_store_ver_delete(s, "", "a", 1), 1);
    assert_int_equal(realm_store_fn_delete(s, "", "a"), 0);
    assert_int_equal(realm_store_fn_delete(s, "", "a"), 1);
    assert_int_equal(realm_store_ver_get(s, "", "a", 2, NULL, NULL), 1);
    assert_int_equal(realm_store_code_used(s, NULL, hex_of('b', hex)), 0);
    add_fn(s, "", "a", 'a', 1); /* the name is free again, numbering restarts */
    assert_int_equal(realm_store_fn_take_version(s, "", "a"), 1);
}

static void aliases(void **state)
{
    fx_t *f = *state;
    realm_store_t *s = f->reg;
    add_fn(s, "", "fn", 'a', 1);
    json_t *a = json_pack("{s:s}", "FunctionVersion", "1");
    json_t *b = json_pack("{s:s, s:{s:{s:f}}}", "FunctionVersion", "2", "RoutingConfig",
                          "AdditionalVersionWeights", "3", 0.5);
    assert_int_equal(realm_store_alias_put(s, "", "fn", "prod", a, 1), 0);
    assert_int_equal(realm_store_alias_put(s, "", "fn", "beta", b, 1), 0);
    json_t *got = NULL;
    assert_int_equal(realm_store_alias_get(s, "", "fn", "prod", &got), 0);
    assert_true(json_equal(got, a));
    json_decref(got);
    assert_int_equal(realm_store_alias_get(s, "", "fn", "nope", &got), 1);

    json_t *rows = realm_store_alias_list(s, "", "fn", NULL, NULL, 10);
    assert_int_equal(json_array_size(rows), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "alias")),
                        "beta");
    json_decref(rows);
    rows = realm_store_alias_list(s, "", "fn", "beta", "", 10);
    assert_int_equal(json_array_size(rows), 1);
    json_decref(rows);
    rows = realm_store_alias_list(s, "", "fn", NULL, "2", 10);
    assert_int_equal(json_array_size(rows), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "alias")),
                        "beta");
    json_decref(rows);

    char which[129] = "";
    assert_int_equal(realm_store_alias_using(s, "", "fn", "1", which), 1);
    assert_string_equal(which, "prod");
    assert_int_equal(realm_store_alias_using(s, "", "fn", "3", which), 1); /* weights */
    assert_string_equal(which, "beta");
    assert_int_equal(realm_store_alias_using(s, "", "fn", "4", which), 0);

    json_object_set_new(a, "FunctionVersion", json_string("4"));
    assert_int_equal(realm_store_alias_put(s, "", "fn", "prod", a, 0), 0);
    assert_int_equal(realm_store_alias_using(s, "", "fn", "4", which), 1);
    assert_int_equal(realm_store_alias_delete(s, "", "fn", "prod"), 0);
    assert_int_equal(realm_store_alias_delete(s, "", "fn", "prod"), 1);
    assert_int_equal(realm_store_fn_delete(s, "", "fn"), 0);
    add_fn(s, "", "fn", 'a', 1);
    assert_int_equal(realm_store_alias_get(s, "", "fn", "beta", &got), 1); /* went with it */
    json_decref(a);
    json_decref(b);
}

static void transactions_and_generation(void **state)
{
    fx_t *f = *state;
    realm_store_t *s = f->reg;
    uint64_t g0 = realm_store_generation(s);
    assert_int_equal(realm_store_fn_get(s, "", "x", NULL), 1);
    assert_true(realm_store_generation(s) == g0); /* reads leave it */

    assert_int_equal(realm_store_begin(s), 0);
    add_fn(s, "", "x", 'a', 1);
    realm_store_rollback(s);
    uint64_t g1 = realm_store_generation(s);
    assert_true(g1 > g0); /* a write, even rolled back, moves it */
    assert_int_equal(realm_store_fn_get(s, "", "x", NULL), 1);

    assert_int_equal(realm_store_begin(s), 0);
    add_fn(s, "", "x", 'a', 1);
    assert_int_equal(realm_store_commit(s), 0);
    assert_int_equal(realm_store_fn_get(s, "", "x", NULL), 0);
    assert_true(realm_store_generation(s) > g1);

    /* Creates and updates in flight. */
    assert_int_equal(realm_store_pending_count(s), 0);
    assert_int_equal(realm_store_pending_add(s, "", "x", 0), 0);
    assert_int_equal(realm_store_pending_add(s, "", "x", 1), 1);
    assert_int_equal(realm_store_pending_add(s, "t", "y", 1), 0);
    assert_int_equal(realm_store_pending_get(s, "", "x"), 1);
    assert_int_equal(realm_store_pending_get(s, "t", "y"), 2);
    assert_int_equal(realm_store_pending_get(s, "t", "x"), 0);
    assert_int_equal(realm_store_pending_count(s), 2);
    realm_store_pending_remove(s, "", "x");
    realm_store_pending_remove(s, "", "x");
    assert_int_equal(realm_store_pending_count(s), 1);
}

/* ---- queue ---- */

static int64_t push(realm_store_t *s, const char *t, const char *fn, int64_t now)
{
    char which = 0;
    int64_t id = realm_store_q_push(s, t, fn, NULL, "pay", 3, now, 0, 0, &which);
    assert_true(id > 0);
    return id;
}

static void queue_leases(void **state)
{
    fx_t *f = *state;
    realm_store_t *s = f->q;
    int64_t a = push(s, "", "fn", 10), b = push(s, "", "fn", 5), c = push(s, "", "fn", 50);
    assert_true(a < b && b < c);
    assert_int_equal(realm_store_q_pending(s, NULL, NULL), 3);
    assert_int_equal(realm_store_q_next_due(s), 5);

    realm_store_event_t ev[4];
    assert_int_equal(realm_store_q_claim(s, 20, 100, ev, 4), 2);
    assert_int_equal(ev[0].id, b); /* earliest due first */
    assert_int_equal(ev[1].id, a);
    assert_true(ev[0].lease != 0 && ev[0].lease != ev[1].lease);
    assert_int_equal(realm_store_q_claim(s, 20, 100, ev + 2, 2), 0); /* leased */
    assert_int_equal(realm_store_q_next_due(s), 50);

    /* The lease of b expires at 100: claimed again with a new token, and
     * the old token then changes nothing. */
    realm_store_event_t again;
    assert_int_equal(realm_store_q_claim(s, 100, 200, &again, 1), 1);
    assert_int_equal(again.id, b);
    assert_true(again.lease != ev[0].lease);
    assert_int_equal(realm_store_q_complete(s, b, ev[0].lease), 0);
    assert_int_equal(realm_store_q_pending(s, NULL, NULL), 3); /* still there */
    assert_int_equal(realm_store_q_retry(s, b, again.lease, 8, "boom"), 0);
    realm_store_event_t r;
    assert_int_equal(realm_store_q_claim(s, 300, 400, &r, 1), 1); /* due 8: before a */
    assert_int_equal(r.id, b);
    assert_int_equal(r.attempts, 1);
    /* The stale tokens of b fence defer and fail too. */
    assert_int_equal(realm_store_q_defer(s, b, again.lease, 9999), 0);
    assert_int_equal(realm_store_q_fail(s, b, ev[0].lease, "E", "m", 1, 10), 0);
    assert_int_equal(realm_store_q_pending(s, "", "fn"), 3);
    assert_int_equal(realm_store_q_complete(s, b, r.lease), 0);
    assert_int_equal(realm_store_q_pending(s, "", "fn"), 2);

    /* Payloads: read while pending, gone after. */
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(realm_store_q_payload(s, a, &data, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(data, "pay", 3);
    free(data);
    assert_int_equal(realm_store_q_payload(s, b, &data, &len), 1);
    realm_store_q_stats_t st;
    realm_store_q_stats(s, &st);
    assert_int_equal(st.payload_reads, 1);

    /* Release: a's lease dropped, due as before. */
    assert_int_equal(realm_store_q_release(s, a, ev[1].lease), 0);
    assert_int_equal(realm_store_q_next_due(s), 10);
    for (int i = 0; i < 2; i++)
        realm_store_event_dispose(&ev[i]);
    realm_store_event_dispose(&again);
    realm_store_event_dispose(&r);
}

static void queue_caps_failed_parked(void **state)
{
    fx_t *f = *state;
    realm_store_t *s = f->q;
    char which = 0;
    assert_true(realm_store_q_push(s, "t", "a", "prod", "x", 1, 1, 2, 3, &which) > 0);
    assert_true(realm_store_q_push(s, "t", "a", NULL, "x", 1, 1, 2, 3, &which) > 0);
    assert_int_equal(realm_store_q_push(s, "t", "a", NULL, "x", 1, 1, 2, 3, &which), -2);
    assert_int_equal(which, 'f');
    assert_true(realm_store_q_push(s, "t", "b", NULL, "x", 1, 1, 2, 3, &which) > 0);
    assert_int_equal(realm_store_q_push(s, "t", "c", NULL, "x", 1, 1, 2, 3, &which), -2);
    assert_int_equal(which, 't');
    assert_int_equal(realm_store_q_pending(s, "t", "a"), 2);

    /* Failures: newest first, bounded per function by keep. */
    realm_store_event_t ev[3];
    assert_int_equal(realm_store_q_claim(s, 1, INT64_MAX, ev, 3), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(realm_store_q_fail(s, ev[i].id, ev[i].lease, "Unhandled", "bad\xff", 5, 1),
                         0);
    json_t *list = realm_store_q_failed(s, "t", NULL, 10);
    assert_int_equal(json_array_size(list), 2); /* a kept one of its two, b its one */
    json_t *top = json_array_get(list, 0);
    assert_int_equal(json_integer_value(json_object_get(top, "Id")), ev[2].id);
    assert_int_equal(json_integer_value(json_object_get(top, "Attempts")), 1);
    assert_int_equal(json_integer_value(json_object_get(top, "FailedMs")), 5);
    assert_int_equal(json_integer_value(json_object_get(top, "EnqueuedMs")), 1);
    assert_string_equal(json_string_value(json_object_get(top, "ErrorMessage")), "bad\xef\xbf\xbd");
    json_decref(list);
    list = realm_store_q_failed(s, "t", "a", 10);
    assert_int_equal(json_array_size(list), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "Id")), ev[1].id);
    json_decref(list);
    for (int i = 0; i < 3; i++)
        realm_store_event_dispose(&ev[i]);

    /* Parking: out of the way until unpark or expiry. */
    int64_t p = push(s, "u", "z", 10);
    assert_int_equal(realm_store_q_claim(s, 10, INT64_MAX, ev, 1), 1);
    assert_int_equal(realm_store_q_park(s, p, ev[0].lease, 1000), 0);
    realm_store_event_dispose(&ev[0]);
    json_t *parked = realm_store_q_parked(s);
    assert_int_equal(json_array_size(parked), 1);
    json_decref(parked);
    assert_int_equal(realm_store_q_claim(s, 500, INT64_MAX, ev, 1), 0);
    assert_int_equal(realm_store_q_unpark(s, "u", "z", 600), 1);
    parked = realm_store_q_parked(s);
    assert_int_equal(json_array_size(parked), 0);
    json_decref(parked);
    assert_int_equal(realm_store_q_claim(s, 600, INT64_MAX, ev, 1), 1);
    realm_store_event_dispose(&ev[0]);

    /* Forget: pending and failed of one function. */
    assert_int_equal(realm_store_q_forget(s, "u", "z"), 0);
    assert_int_equal(realm_store_q_forget(s, "t", "a"), 0);
    assert_int_equal(realm_store_q_pending(s, NULL, NULL), 0);
    list = realm_store_q_failed(s, "t", NULL, 10);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
}

/* ---- auth ---- */

static realm_store_key_t key_row(const char *id, const char *akid, const char *tenant,
                                 int64_t created)
{
    realm_store_key_t k;
    memset(&k, 0, sizeof(k));
    snprintf(k.key_id, sizeof(k.key_id), "%s", id);
    snprintf(k.access_key_id, sizeof(k.access_key_id), "%s", akid);
    snprintf(k.tenant, sizeof(k.tenant), "%s", tenant);
    memset(k.salt, 1, sizeof(k.salt));
    k.salt_len = sizeof(k.salt);
    memset(k.hash, 2, sizeof(k.hash));
    k.hash_len = sizeof(k.hash);
    memset(k.secret_enc, 3, 68);
    k.secret_enc_len = 68;
    k.rate = 1.5;
    k.created_ms = created;
    return k;
}

static void tenants_and_keys(void **state)
{
    fx_t *f = *state;
    realm_store_t *s = f->auth;
    char acct[13];
    assert_int_equal(realm_store_key_any(s), 0);
    assert_int_equal(realm_store_tenant_get(s, "acme", acct), 1);
    assert_int_equal(realm_store_tenant_add(s, "acme", "111111111111", 1), 0);
    assert_int_equal(realm_store_tenant_add(s, "acme", "222222222222", 1), 1);
    assert_int_equal(realm_store_tenant_add(s, "other", "111111111111", 1), 1); /* id taken */
    assert_int_equal(realm_store_tenant_add(s, "beta", "333333333333", 1), 0);
    assert_int_equal(realm_store_tenant_get(s, "acme", acct), 0);
    assert_string_equal(acct, "111111111111");

    realm_store_key_t k1 = key_row("k1", "AKIA1", "beta", 5);
    realm_store_key_t k2 = key_row("k2", "AKIA2", "acme", 7);
    realm_store_key_t k3 = key_row("k0", "AKIA3", "acme", 7);
    assert_int_equal(realm_store_key_add(s, &k1), 0);
    assert_int_equal(realm_store_key_add(s, &k2), 0);
    assert_int_equal(realm_store_key_add(s, &k3), 0);
    realm_store_key_t dup = key_row("k9", "AKIA1", "acme", 1);
    assert_int_equal(realm_store_key_add(s, &dup), 1);
    assert_int_equal(realm_store_key_any(s), 1);

    realm_store_key_t got;
    assert_int_equal(realm_store_key_get(s, "AKIA2", 1, &got), 0);
    assert_string_equal(got.key_id, "k2");
    assert_string_equal(got.account_id, "111111111111");
    assert_int_equal(got.revoked_ms, 0);
    assert_int_equal(got.secret_enc_len, 68);
    assert_memory_equal(got.secret_enc, k2.secret_enc, 68);
    assert_true(got.rate == 1.5);
    assert_int_equal(realm_store_key_get(s, "k1", 0, &got), 0);
    assert_string_equal(got.tenant, "beta");
    assert_int_equal(realm_store_key_get(s, "nope", 0, &got), 1);

    realm_store_key_t *all = NULL;
    size_t n = 0;
    assert_int_equal(realm_store_key_list(s, &all, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(all[0].key_id, "k0"); /* acme, created 7, k0 < k2 */
    assert_string_equal(all[1].key_id, "k2");
    assert_string_equal(all[2].key_id, "k1");
    free(all);

    assert_int_equal(realm_store_key_revoke(s, "k2", 99), 0);
    assert_int_equal(realm_store_key_revoke(s, "k2", 100), 1);
    assert_int_equal(realm_store_key_revoke(s, "zz", 100), 2);
    assert_int_equal(realm_store_key_get(s, "k2", 0, &got), 0);
    assert_true(got.revoked_ms != 0);

    /* A rolled-back transaction leaves no tenant and no key. */
    assert_int_equal(realm_store_begin(s), 0);
    assert_int_equal(realm_store_tenant_add(s, "gone", "444444444444", 1), 0);
    realm_store_key_t k4 = key_row("k4", "AKIA4", "gone", 1);
    assert_int_equal(realm_store_key_add(s, &k4), 0);
    realm_store_rollback(s);
    assert_int_equal(realm_store_tenant_get(s, "gone", acct), 1);
    assert_int_equal(realm_store_key_get(s, "k4", 0, &got), 1);
}

/* ---- cost on the calling thread ---- */

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

#ifdef REALM_TEST_PG
static realm_store_t *open_pg_queue(void)
{
    char err[512] = "";
    realm_store_t *s = realm_store_open(REALM_STORE_QUEUE, fx_pg_url(), err, sizeof(err));
    if (!s) fail_msg("open: %s", err);
    return s;
}

enum { RATE_N = 500 };

typedef struct {
    pthread_barrier_t *go;
    realm_store_t *s;
    const char *tenant;
    double start, end;
} rate_t;

static void *push_rate(void *arg)
{
    rate_t *r = arg;
    pthread_barrier_wait(r->go);
    r->start = now_us();
    for (int i = 0; i < RATE_N; i++) {
        char which;
        if (realm_store_q_push(r->s, r->tenant, "fn", NULL, "{}", 2, 1, 100000, 200000, &which) <=
            0)
            fail_msg("push");
    }
    r->end = now_us();
    return NULL;
}
#endif

/* Prints what a create, a resolve and an enqueue + claim + complete cost
 * (means over N runs, microseconds). Measured, never asserted. */
static void timing(void **state)
{
    fx_t *f = *state;
    enum { N = 300 };
    char hex[REALM_STORE_HEX_LEN + 1], name[32];
    hex_of('a', hex);
    json_t *cfg = json_pack("{s:s, s:s, s:i, s:i, s:s}", "FunctionName", "f", "Runtime",
                            "nodejs22.x", "Timeout", 3, "MemorySize", 128, "Handler", "i.h");
    double t0 = now_us();
    for (int i = 0; i < N; i++) { /* CreateFunction's storage: one transaction */
        snprintf(name, sizeof(name), "fn%d", i);
        assert_int_equal(realm_store_begin(f->reg), 0);
        assert_int_equal(realm_store_fn_insert(f->reg, "", name, NULL), 0);
        assert_int_equal(realm_store_ver_insert(f->reg, "", name, 0, hex, cfg), 0);
        assert_int_equal(realm_store_commit(f->reg), 0);
    }
    double t1 = now_us();
    for (int i = 0; i < N; i++) { /* resolve: the version row, then the function row */
        snprintf(name, sizeof(name), "fn%d", i);
        json_t *c = NULL;
        char code[REALM_STORE_HEX_LEN + 1];
        realm_store_fn_t fn;
        assert_int_equal(realm_store_ver_get(f->reg, "", name, 0, &c, code), 0);
        assert_int_equal(realm_store_fn_get(f->reg, "", name, &fn), 0);
        json_decref(c);
        realm_store_fn_dispose(&fn);
    }
    double t2 = now_us();
    for (int i = 0; f->q && i < N; i++) { /* an Event: enqueue, claim, complete */
        char which;
        int64_t id =
            realm_store_q_push(f->q, "", "fn", NULL, "{\"k\":1}", 7, 1000 + i, 1000, 10000, &which);
        assert_true(id > 0);
        realm_store_event_t ev;
        assert_int_equal(realm_store_q_claim(f->q, 1000 + i, INT64_MAX, &ev, 1), 1);
        assert_int_equal(realm_store_q_complete(f->q, ev.id, ev.lease), 0);
        realm_store_event_dispose(&ev);
    }
    double t3 = now_us();
    json_decref(cfg);
    if (strcmp(f->backend, "postgresql") == 0) { /* the shared generation is a round trip */
        uint64_t g = 0;
        for (int i = 0; i < N; i++)
            g += realm_store_generation(f->reg);
        assert_true(g > 0);
        double t4 = now_us();
        print_message("store %s: create %.1f us, resolve %.1f us, generation %.1f us, "
                      "enqueue+claim+complete %.1f us (means of %d; this build's flags)\n",
                      f->backend, (t1 - t0) / N, (t2 - t1) / N, (t4 - t3) / N, (t3 - t2) / N, N);
        /* The queue's rates on one connection: enqueues (one commit each,
         * the caps checked), then claims of 16 with a complete each. */
        enum { M = 2000, B = 16 };
        double e0 = now_us();
        for (int i = 0; i < M; i++) {
            char which;
            assert_true(realm_store_q_push(f->q, "", "fn", NULL, "{\"k\":1}", 7, 5000, 100000,
                                           200000, &which) > 0);
        }
        double e1 = now_us();
        size_t done = 0;
        realm_store_event_t ev[B];
        for (size_t n; (n = realm_store_q_claim(f->q, 5000, INT64_MAX, ev, B)) > 0;) {
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(realm_store_q_complete(f->q, ev[i].id, ev[i].lease), 0);
                realm_store_event_dispose(&ev[i]);
            }
            done += n;
        }
        double e2 = now_us();
        assert_int_equal(done, M);
        print_message("queue %s: %.0f enqueues/s, %.0f claimed+completed/s (batches of %d; "
                      "%d events, one connection)\n",
                      f->backend, M / ((e1 - e0) / 1e6), M / ((e2 - e1) / 1e6), B, M);
#ifdef REALM_TEST_PG
        /* Two servers enqueueing at once: one tenant (its cap check is
         * serialised by the tenant's lock), then two tenants. */
        for (int tenants = 1; tenants <= 2; tenants++) {
            pthread_barrier_t go;
            pthread_barrier_init(&go, NULL, 2);
            rate_t r[2] = {{.go = &go, .s = f->q, .tenant = "t0"},
                           {.go = &go, .s = open_pg_queue(), .tenant = tenants == 1 ? "t0" : "t1"}};
            pthread_t th[2];
            for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&th[i], NULL, push_rate, &r[i]), 0);
            for (int i = 0; i < 2; i++)
                pthread_join(th[i], NULL);
            pthread_barrier_destroy(&go);
            double secs = (r[0].end > r[1].end ? r[0].end : r[1].end) -
                          (r[0].start < r[1].start ? r[0].start : r[1].start);
            print_message("queue %s: %.0f enqueues/s from two servers, %d tenant%s\n", f->backend,
                          2 * RATE_N / (secs / 1e6), tenants, tenants == 1 ? "" : "s");
            realm_store_close(r[1].s);
        }
#endif
        return;
    }
    print_message("store %s: create %.1f us, resolve %.1f us, enqueue+claim+complete %.1f us "
                  "(means of %d; this build's flags)\n",
                  f->backend, (t1 - t0) / N, (t2 - t1) / N, (t3 - t2) / N, N);
}

/* Package bytes (store.h): a multi-chunk round trip, idempotent puts, a put
 * rolled back with its transaction, delete_unused keeping what a version
 * names; SQLite keeps none (the data dir is the truth there). PostgreSQL:
 * the chunks' rows, and the grace period (a touched package is kept). */
static void packages(void **state)
{
    fx_t *f = *state;
    realm_store_t *s = f->reg;
    char ha[REALM_STORE_HEX_LEN + 1], hb[REALM_STORE_HEX_LEN + 1], hc[REALM_STORE_HEX_LEN + 1];
    hex_of('a', ha);
    hex_of('b', hb);
    hex_of('c', hc);
    size_t len = 5 * (size_t)REALM_STORE_PKG_CHUNK / 2; /* 2.5 MiB: 3 chunks */
    unsigned char *big = malloc(len);
    for (size_t i = 0; i < len; i++)
        big[i] = (unsigned char)(i * 131 + (i >> 20)); /* NULs and every byte value */
    char *got = NULL;
    size_t got_len = 0;
    if (strcmp(f->backend, "sqlite") == 0) {
        assert_int_equal(realm_store_pkg_put(s, ha, big, len), REALM_STORE_NOT_KEPT);
        assert_int_equal(realm_store_pkg_has(s, ha), 0);
        assert_int_equal(realm_store_pkg_get(s, ha, &got, &got_len), 1);
        assert_null(got);
        assert_int_equal(realm_store_pkg_delete_unused(s), 0);
        free(big);
        return;
    }
    assert_int_equal(realm_store_pkg_has(s, ha), 0);
    assert_int_equal(realm_store_pkg_get(s, ha, &got, &got_len), 1);
    assert_int_equal(realm_store_pkg_put(s, ha, big, len), 0);
    assert_int_equal(realm_store_pkg_put(s, ha, big, len), 0); /* idempotent */
    assert_int_equal(realm_store_pkg_has(s, ha), 1);
    assert_int_equal(realm_store_pkg_get(s, ha, &got, &got_len), 0);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, big, len);
    assert_int_equal(got[len], 0);
    free(got);
    assert_int_equal(realm_store_pkg_put(s, hb, "xyz", 3), 0);
    assert_int_equal(realm_store_pkg_get(s, hb, &got, &got_len), 0);
    assert_int_equal(got_len, 3);
    assert_memory_equal(got, "xyz", 3);
    free(got);
    /* In a transaction: gone with its rollback, kept with its commit. */
    assert_int_equal(realm_store_begin(s), 0);
    assert_int_equal(realm_store_pkg_put(s, hc, "c", 1), 0);
    assert_int_equal(realm_store_pkg_has(s, hc), 1);
    realm_store_rollback(s);
    assert_int_equal(realm_store_pkg_has(s, hc), 0);
    assert_int_equal(realm_store_begin(s), 0);
    assert_int_equal(realm_store_pkg_put(s, hc, "c", 1), 0);
    add_fn(s, "t1", "fc", 'c', 1);
    assert_int_equal(realm_store_commit(s), 0);
    assert_int_equal(realm_store_pkg_has(s, hc), 1);
    add_fn(s, "t2", "fa", 'a', 10); /* another tenant's version names a */

    int is_pg = strcmp(f->backend, "postgresql") == 0;
#ifdef REALM_TEST_PG
    if (is_pg) {
        char out[64];
        fx_pg_query("SELECT count(*) || ':' || sum(length(bytes)) FROM realm_package_chunks"
                    " WHERE hex = repeat('a', 64)",
                    out, sizeof(out));
        assert_string_equal(out, "3:2621440");
        /* Within the grace period nothing goes; then b (unused) does. */
        assert_int_equal(realm_store_pkg_delete_unused(s), 0);
        fx_pg_query("UPDATE realm_packages SET touched = now() - interval '1 hour'", NULL, 0);
    }
#endif
    assert_int_equal(realm_store_pkg_delete_unused(s), 1);
    assert_int_equal(realm_store_pkg_has(s, hb), 0);
    assert_int_equal(realm_store_pkg_has(s, ha), 1);
    assert_int_equal(realm_store_pkg_has(s, hc), 1);
    /* a's last version goes: a is unused, but touched by that delete (PostgreSQL). */
    assert_int_equal(realm_store_ver_delete(s, "t2", "fa", 0), 0);
    assert_int_equal(realm_store_pkg_delete_unused(s), is_pg ? 0 : 1);
#ifdef REALM_TEST_PG
    if (is_pg) {
        char out[64];
        fx_pg_query("UPDATE realm_packages SET touched = now() - interval '1 hour'", NULL, 0);
        assert_int_equal(realm_store_pkg_delete_unused(s), 1);
        fx_pg_query("SELECT count(*) FROM realm_package_chunks WHERE hex = repeat('a', 64)", out,
                    sizeof(out));
        assert_string_equal(out, "0"); /* the chunks went with it */
    }
#endif
    assert_int_equal(realm_store_pkg_has(s, ha), 0);
    assert_int_equal(realm_store_pkg_has(s, hc), 1);

    /* What a put and a get of this 2.5 MiB package cost (printed, not asserted). */
    enum { N = 5 };
    double put_us = 0, get_us = 0;
    for (int i = 0; i < N; i++) {
        char hx[REALM_STORE_HEX_LEN + 1];
        hex_of((char)('d' + i), hx);
        double t0 = now_us();
        assert_int_equal(realm_store_pkg_put(s, hx, big, len), 0);
        double t1 = now_us();
        assert_int_equal(realm_store_pkg_get(s, hx, &got, &got_len), 0);
        double t2 = now_us();
        assert_int_equal(got_len, len);
        free(got);
        put_us += t1 - t0;
        get_us += t2 - t1;
    }
    print_message("store %s: package of %zu bytes: put %.0f us, get %.0f us (means of %d)\n",
                  f->backend, len, put_us / N, get_us / N, N);
    free(big);
}

#ifdef REALM_TEST_PG

static int setup_pg(void **state)
{
    return setup(state, "postgresql");
}

static realm_store_t *open_pg_kind(realm_store_kind_t kind)
{
    char err[512] = "";
    realm_store_t *s = realm_store_open(kind, fx_pg_url(), err, sizeof(err));
    if (!s) fail_msg("open: %s", err);
    return s;
}

static realm_store_t *open_pg(void)
{
    return open_pg_kind(REALM_STORE_REGISTRY);
}

/* Two stores on one database (two servers): each sees the other's writes,
 * the shared generation moves for both, and the creates in flight are one
 * set, with an owner (only it removes its entry) and an expiry (a dead
 * server's entry is taken over once it has expired). */
static void pg_two_stores(void **state)
{
    fx_t *f = *state;
    realm_store_t *a = f->reg, *b = open_pg();
    uint64_t ga = realm_store_generation(a), gb = realm_store_generation(b);
    add_fn(a, "", "x", 'a', 10);
    assert_int_equal(realm_store_fn_get(b, "", "x", NULL), 0);
    assert_true(realm_store_generation(b) > gb); /* b wrote nothing: the shared part moved */
    assert_true(realm_store_generation(a) > ga);
    gb = realm_store_generation(b);
    ga = realm_store_generation(a);
    json_t *cfg = json_pack("{s:s}", "FunctionVersion", "$LATEST");
    assert_int_equal(realm_store_alias_put(b, "", "x", "live", cfg, 1), 0);
    json_decref(cfg);
    json_t *got = NULL;
    assert_int_equal(realm_store_alias_get(a, "", "x", "live", &got), 0);
    assert_string_equal(json_string_value(json_object_get(got, "FunctionVersion")), "$LATEST");
    json_decref(got);
    assert_true(realm_store_generation(a) > ga);
    /* A transaction of a is seen by b only once committed, and then moves
     * b's generation. */
    assert_int_equal(realm_store_begin(a), 0);
    assert_int_equal(realm_store_fn_set_reserved(a, "", "x", 3), 0);
    realm_store_fn_t fn;
    assert_int_equal(realm_store_fn_get(b, "", "x", &fn), 0);
    assert_int_equal(fn.reserved, -1);
    realm_store_fn_dispose(&fn);
    gb = realm_store_generation(b);
    assert_int_equal(realm_store_commit(a), 0);
    assert_true(realm_store_generation(b) > gb);
    assert_int_equal(realm_store_fn_get(b, "", "x", &fn), 0);
    assert_int_equal(fn.reserved, 3);
    realm_store_fn_dispose(&fn);

    /* Creates and updates in flight: one set for both. */
    assert_int_equal(realm_store_pending_add(a, "", "y", 1), 0);
    assert_int_equal(realm_store_pending_add(b, "", "y", 0), 1);
    assert_int_equal(realm_store_pending_get(b, "", "y"), 2);
    assert_int_equal(realm_store_pending_count(b), 1);
    realm_store_pending_remove(b, "", "y"); /* not b's: nothing */
    assert_int_equal(realm_store_pending_count(a), 1);
    realm_store_pending_remove(a, "", "y");
    assert_int_equal(realm_store_pending_count(b), 0);
    /* a dies holding one; once it expires, it no longer counts and b may take the name */
    assert_int_equal(realm_store_pending_add(a, "", "z", 1), 0);
    realm_store_close(a);
    f->reg = NULL;
    assert_int_equal(realm_store_pending_add(b, "", "z", 1), 1);
    fx_pg_query("UPDATE realm_pending SET expires = now() - interval '1 second'", NULL, 0);
    assert_int_equal(realm_store_pending_get(b, "", "z"), 0);
    assert_int_equal(realm_store_pending_count(b), 0);
    assert_int_equal(realm_store_pending_add(b, "", "z", 0), 0);
    assert_int_equal(realm_store_pending_get(b, "", "z"), 1);
    realm_store_close(b);
}

typedef struct {
    pthread_barrier_t *go;
    realm_store_t *s;
    char err[512];
} opener_t;

static void *open_at_once(void *arg)
{
    opener_t *o = arg;
    pthread_barrier_wait(o->go);
    o->s = realm_store_open(REALM_STORE_REGISTRY, fx_pg_url(), o->err, sizeof(o->err));
    return NULL;
}

/* Four stores opening an empty database at the same moment: each opens,
 * the schema is made once (the advisory lock; a second run of the step
 * would fail on CREATE TABLE, and record a second generation row). */
static void pg_migrations_at_once(void **state)
{
    (void)state;
    fx_pg_reset();
    enum { N = 4 };
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    opener_t o[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        o[i] = (opener_t){.go = &go};
        assert_int_equal(pthread_create(&th[i], NULL, open_at_once, &o[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < N; i++) {
        if (!o[i].s) fail_msg("open %d: %s", i, o[i].err);
        assert_int_equal(realm_store_schema_version(o[i].s), 2);
    }
    char out[64];
    fx_pg_query("SELECT string_agg(kind || '=' || version, ',') FROM realm_schema", out,
                sizeof(out));
    assert_string_equal(out, "registry=2");
    fx_pg_query("SELECT count(*) FROM realm_generation", out, sizeof(out));
    assert_string_equal(out, "1");
    for (int i = 0; i < N; i++)
        realm_store_close(o[i].s);
}

/* What is refused, clearly: a database newer than the binary (untouched), a server that cannot be
 * reached (and the password never shows). */
static void pg_refusals(void **state)
{
    fx_t *f = *state;
    char err[512] = "";

    realm_store_close(f->reg);
    f->reg = NULL;
    fx_pg_query("UPDATE realm_schema SET version = 3 WHERE kind = 'registry'", NULL, 0);
    assert_null(realm_store_open(REALM_STORE_REGISTRY, fx_pg_url(), err, sizeof(err)));
    assert_non_null(strstr(err, "(registry): schema version 3 is newer than this realm (knows "
                                "up to 2); upgrade realm"));
    char out[16];
    fx_pg_query("SELECT version FROM realm_schema WHERE kind = 'registry'", out, sizeof(out));
    assert_string_equal(out, "3");

    /* Port 1 on loopback: nothing listens (refused at once). */
    assert_null(realm_store_open(
        REALM_STORE_REGISTRY, "postgresql://someone:s3cretpw@127.0.0.1:1/realm", err, sizeof(err)));
    assert_null(strstr(err, "s3cretpw"));
    assert_non_null(strstr(err, "postgresql://someone@127.0.0.1:1/realm (registry): "));
}

/* The server ends the store's session (a restart, a dropped network): the
 * next call fails (-1, logged), the one after reconnects and works, its
 * statements prepared again. */
static void pg_lost_connection(void **state)
{
    fx_t *f = *state;
    realm_store_t *s = f->reg;
    add_fn(s, "", "x", 'a', 10);
    assert_int_equal(realm_store_fn_get(s, "", "x", NULL), 0);
    char out[16];
    /* With a timeout, pg_terminate_backend returns once the session is gone. */
    fx_pg_query("SELECT bool_and(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity"
                " WHERE application_name = 'realm'",
                out, sizeof(out));
    assert_string_equal(out, "t");
    assert_int_equal(realm_store_fn_get(s, "", "x", NULL), -1);
    assert_int_equal(realm_store_fn_get(s, "", "x", NULL), 0);
    assert_int_equal(realm_store_fn_get(s, "", "nope", NULL), 1);
    add_fn(s, "", "y", 'b', 10);
    /* Lost inside a transaction: its other calls fail too (none runs on a
     * new connection, outside the transaction), the commit fails, nothing
     * of it is kept, and the next call reconnects. */
    assert_int_equal(realm_store_begin(s), 0);
    assert_int_equal(realm_store_fn_insert(s, "", "z1", NULL), 0);
    fx_pg_query("SELECT bool_and(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity"
                " WHERE application_name = 'realm'",
                out, sizeof(out));
    assert_string_equal(out, "t");
    assert_int_equal(realm_store_fn_insert(s, "", "z2", NULL), -1);
    assert_int_equal(realm_store_fn_insert(s, "", "z3", NULL), -1);
    assert_int_equal(realm_store_commit(s), -1);
    assert_int_equal(realm_store_fn_get(s, "", "z1", NULL), 1);
    assert_int_equal(realm_store_fn_get(s, "", "z3", NULL), 1);
    assert_int_equal(realm_store_fn_get(s, "", "y", NULL), 0);
}

/* Two auth stores on one database (two servers): a tenant and a key added
 * or revoked through one are seen by the other and move its auth_version
 * (how a server notices a key revoked elsewhere); a rolled-back change
 * does not; an id taken inside a transaction leaves it usable (ON
 * CONFLICT: auth/keys.c draws again in it); the server key check is
 * recorded once (the first wins). */
static void pg_auth_two_stores(void **state)
{
    fx_t *f = *state;
    char err[512] = "", acct[13];
    realm_store_t *a = f->auth,
                  *b = realm_store_open(REALM_STORE_AUTH, fx_pg_url(), err, sizeof(err));
    if (!b) fail_msg("open: %s", err);
    int64_t va = realm_store_auth_version(a), vb = realm_store_auth_version(b);
    assert_int_equal(realm_store_tenant_add(a, "acme", "111111111111", 1), 0);
    assert_true(realm_store_auth_version(b) != vb);
    vb = realm_store_auth_version(b);
    assert_int_equal(realm_store_tenant_get(b, "acme", acct), 0);
    assert_string_equal(acct, "111111111111");
    realm_store_key_t k1 = key_row("k1", "AKIA1", "acme", 5);
    assert_int_equal(realm_store_key_add(a, &k1), 0);
    assert_true(realm_store_auth_version(b) != vb);
    vb = realm_store_auth_version(b);
    assert_int_equal(realm_store_key_any(b), 1);
    realm_store_key_t got;
    assert_int_equal(realm_store_key_get(b, "AKIA1", 1, &got), 0);
    assert_int_equal(got.revoked_ms, 0);
    assert_int_equal(got.salt_len, 16);
    assert_memory_equal(got.secret_enc, k1.secret_enc, 68);
    /* b revokes: a sees it, and a's version moved. */
    va = realm_store_auth_version(a);
    assert_int_equal(realm_store_key_revoke(b, "k1", 42), 0);
    assert_true(realm_store_auth_version(a) != va);
    assert_int_equal(realm_store_key_get(a, "k1", 0, &got), 0);
    assert_int_equal(got.revoked_ms, 42);
    /* Uncommitted: neither seen nor counted; rolled back: never. */
    va = realm_store_auth_version(a);
    assert_int_equal(realm_store_begin(b), 0);
    realm_store_key_t k2 = key_row("k2", "AKIA2", "acme", 6);
    realm_store_key_t dup = key_row("k1", "AKIA9", "acme", 6);
    assert_int_equal(realm_store_key_add(b, &dup), 1); /* taken: the transaction goes on */
    assert_int_equal(realm_store_key_add(b, &k2), 0);
    assert_int_equal(realm_store_auth_version(a), va);
    assert_int_equal(realm_store_key_get(a, "k2", 0, &got), 1);
    realm_store_rollback(b);
    assert_int_equal(realm_store_auth_version(a), va);
    assert_int_equal(realm_store_key_get(a, "k2", 0, &got), 1);
    /* The server key check: none, then the first recorded wins. */
    char held[REALM_STORE_HEX_LEN + 1] = "", c1[REALM_STORE_HEX_LEN + 1],
                                    c2[REALM_STORE_HEX_LEN + 1];
    hex_of('1', c1);
    hex_of('2', c2);
    assert_int_equal(realm_store_auth_key_check(a, NULL, held), 1);
    assert_int_equal(realm_store_auth_key_check(a, c1, held), 0);
    assert_string_equal(held, c1);
    assert_int_equal(realm_store_auth_key_check(b, c2, held), 0);
    assert_string_equal(held, c1);
    assert_int_equal(realm_store_auth_key_check(b, NULL, held), 0);
    assert_string_equal(held, c1);
    char out[16];
    fx_pg_query("SELECT version FROM realm_schema WHERE kind = 'auth'", out, sizeof(out));
    assert_string_equal(out, "1");
    realm_store_close(b);
}

typedef struct {
    realm_store_t *s;
    const char *hex;
    const unsigned char *data;
    size_t len;
    int64_t deleted; /* gc: what delete_unused answered */
    int rc;          /* create: 0 when every call worked */
} pkg_job_t;

static void *gc_job(void *arg)
{
    pkg_job_t *j = arg;
    j->deleted = realm_store_pkg_delete_unused(j->s);
    return NULL;
}

/* A create on another server: the package and a version naming it, one transaction. */
static void *create_job(void *arg)
{
    pkg_job_t *j = arg;
    json_t *cfg = json_object();
    j->rc = realm_store_begin(j->s) == 0 &&
                    realm_store_pkg_put(j->s, j->hex, j->data, j->len) == 0 &&
                    realm_store_fn_insert(j->s, "t9", j->hex, NULL) == 0 &&
                    realm_store_ver_insert(j->s, "t9", j->hex, 0, j->hex, cfg) == 0 &&
                    realm_store_commit(j->s) == 0
                ? 0
                : -1;
    json_decref(cfg);
    return NULL;
}

/* Until a session of Realm's waits on a lock (polling the database, no sleep). */
static void wait_for_lock_waiter(void)
{
    char out[16] = "";
    for (int i = 0; i < 100000; i++) {
        fx_pg_query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'realm'"
                    " AND wait_event_type = 'Lock'",
                    out, sizeof(out));
        if (strcmp(out, "0") != 0) return;
    }
    fail_msg("no session waited on a lock");
}

/* delete_unused racing a create on another server, both orders (docs/storage.md,
 * "Deleting unused packages"): the create holds the package row first, so
 * the collection waits and then skips it; the collection deletes it first,
 * so the create waits and then puts it back whole. Either way the version's
 * package is there, every byte. */
static void pg_packages_gc_races_create(void **state)
{
    fx_t *f = *state;
    realm_store_t *a = f->reg, *b = open_pg();
    size_t len = 3 * (size_t)REALM_STORE_PKG_CHUNK / 2;
    unsigned char *bytes = malloc(len);
    for (size_t i = 0; i < len; i++)
        bytes[i] = (unsigned char)(i * 7 + 1);
    char hp[REALM_STORE_HEX_LEN + 1], hq[REALM_STORE_HEX_LEN + 1];
    hex_of('p', hp);
    hex_of('q', hq);
    char *got = NULL;
    size_t got_len = 0;

    /* 1. The create first: an old, unused package P put again inside a's
     * transaction; b's collection waits on its row, then skips it. */
    assert_int_equal(realm_store_pkg_put(a, hp, bytes, len), 0);
    fx_pg_query("UPDATE realm_packages SET touched = now() - interval '1 hour'", NULL, 0);
    assert_int_equal(realm_store_begin(a), 0);
    assert_int_equal(realm_store_pkg_put(a, hp, bytes, len), 0);
    pkg_job_t gc = {.s = b};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, gc_job, &gc), 0);
    wait_for_lock_waiter();
    json_t *cfg = json_object();
    assert_int_equal(realm_store_fn_insert(a, "t1", "p", NULL), 0);
    assert_int_equal(realm_store_ver_insert(a, "t1", "p", 0, hp, cfg), 0);
    json_decref(cfg);
    assert_int_equal(realm_store_commit(a), 0);
    pthread_join(th, NULL);
    assert_int_equal(gc.deleted, 0);
    assert_int_equal(realm_store_pkg_get(b, hp, &got, &got_len), 0);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, bytes, len);
    free(got);

    /* 2. The collection first: b deletes the old, unused Q in its transaction;
     * a's create (put Q + version) waits on the row, then puts Q back whole. */
    assert_int_equal(realm_store_pkg_put(a, hq, bytes, len), 0);
    fx_pg_query("UPDATE realm_packages SET touched = now() - interval '1 hour'"
                " WHERE hex = repeat('q', 64)",
                NULL, 0);
    assert_int_equal(realm_store_begin(b), 0);
    assert_int_equal(realm_store_pkg_delete_unused(b), 1);
    pkg_job_t cr = {.s = a, .hex = hq, .data = bytes, .len = len, .rc = 1};
    assert_int_equal(pthread_create(&th, NULL, create_job, &cr), 0);
    wait_for_lock_waiter();
    assert_int_equal(realm_store_commit(b), 0);
    pthread_join(th, NULL);
    assert_int_equal(cr.rc, 0);
    assert_int_equal(realm_store_code_used(b, NULL, hq), 1);
    assert_int_equal(realm_store_pkg_get(b, hq, &got, &got_len), 0);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, bytes, len);
    free(got);
    char out[16];
    fx_pg_query("SELECT count(*) FROM realm_package_chunks WHERE hex = repeat('q', 64)", out,
                sizeof(out));
    assert_string_equal(out, "2");
    realm_store_close(b);
    free(bytes);
}

/* ---- the queue on a shared database ---- */

enum { SERVER_EVENTS = 300 };

typedef struct {
    pthread_barrier_t *go;
    realm_store_t *s;
    int64_t ids[SERVER_EVENTS];
    size_t n;
    int failed;
} claimer_t;

/* One server's loop: claim up to 8 due events, complete them, until none is left. */
static void *claim_all(void *arg)
{
    claimer_t *c = arg;
    pthread_barrier_wait(c->go);
    realm_store_event_t ev[8];
    for (size_t n; (n = realm_store_q_claim(c->s, 100, 1000000, ev, 8)) > 0;) {
        for (size_t i = 0; i < n; i++) {
            if (c->n < SERVER_EVENTS)
                c->ids[c->n++] = ev[i].id;
            else
                c->failed = 1;
            if (realm_store_q_complete(c->s, ev[i].id, ev[i].lease) != 0) c->failed = 1;
            realm_store_event_dispose(&ev[i]);
        }
    }
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Two servers (two stores, two connections) claiming from one database at
 * the same time: every event is claimed by exactly one of them. */
static void pg_queue_two_servers_claim(void **state)
{
    fx_t *f = *state;
    int64_t first = 0;
    for (int i = 0; i < SERVER_EVENTS; i++) {
        int64_t id = push(f->q, "", i % 2 ? "a" : "b", i % 7);
        if (!first) first = id;
    }
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    claimer_t *c = calloc(2, sizeof(*c));
    c[0] = (claimer_t){.go = &go, .s = f->q};
    c[1] = (claimer_t){.go = &go, .s = open_pg_queue()};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, claim_all, &c[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    assert_false(c[0].failed || c[1].failed);
    print_message("two servers claimed %zu and %zu events\n", c[0].n, c[1].n);
    assert_int_equal(c[0].n + c[1].n, SERVER_EVENTS);
    int64_t all[SERVER_EVENTS];
    memcpy(all, c[0].ids, c[0].n * sizeof(int64_t));
    memcpy(all + c[0].n, c[1].ids, c[1].n * sizeof(int64_t));
    qsort(all, SERVER_EVENTS, sizeof(int64_t), cmp_id);
    for (int i = 0; i < SERVER_EVENTS; i++)
        assert_int_equal(all[i], first + i); /* each once: disjoint, and all of them */
    assert_int_equal(realm_store_q_pending(f->q, NULL, NULL), 0);
    realm_store_close(c[1].s);
    free(c);
}

/* A server claims and dies (closed without an outcome): its events stay
 * leased until lease_until_ms, then another server claims them with new
 * tokens, and the dead server's tokens change nothing. */
static void pg_queue_dead_server(void **state)
{
    fx_t *f = *state;
    realm_store_t *dead = open_pg_queue(), *live = f->q;
    int64_t a = push(live, "", "fn", 10), b = push(live, "", "fn", 20);
    realm_store_event_t ev[3], got[3];
    assert_int_equal(realm_store_q_claim(dead, 50, 1000, ev, 3), 2);
    char out[64];
    fx_pg_query("SELECT count(DISTINCT lease_owner) FROM events WHERE lease_until_ms = 1000", out,
                sizeof(out));
    assert_string_equal(out, "1");
    realm_store_close(dead);

    assert_int_equal(realm_store_q_claim(live, 999, 5000, got, 3), 0);
    assert_int_equal(realm_store_q_next_due(live), 1000); /* when the leases end */
    assert_int_equal(realm_store_q_claim(live, 1000, 5000, got, 3), 2);
    assert_int_equal(got[0].id, a);
    assert_int_equal(got[1].id, b);
    assert_true(got[0].lease != ev[0].lease && got[1].lease != ev[1].lease);
    assert_int_equal(got[0].attempts, 0);

    /* The dead server's tokens: stale, for every outcome, and a renewal. */
    int64_t ids[2] = {a, b};
    uint64_t old_leases[2] = {ev[0].lease, ev[1].lease};
    assert_int_equal(realm_store_q_renew(live, ids, old_leases, 2, 9999), 0);
    assert_int_equal(realm_store_q_complete(live, a, ev[0].lease), 0);
    assert_int_equal(realm_store_q_retry(live, a, ev[0].lease, 1, "x"), 0);
    assert_int_equal(realm_store_q_defer(live, b, ev[1].lease, 1), 0);
    assert_int_equal(realm_store_q_release(live, b, ev[1].lease), 0);
    assert_int_equal(realm_store_q_park(live, b, ev[1].lease, 1), 0);
    assert_int_equal(realm_store_q_fail(live, a, ev[0].lease, "E", "m", 1, 10), 0);
    assert_int_equal(realm_store_q_pending(live, NULL, NULL), 2);
    fx_pg_query("SELECT string_agg(id || ':' || attempts || ':' || due_ms || ':' || is_parked"
                " || ':' || lease_until_ms, ',' ORDER BY id) FROM events",
                out, sizeof(out));
    char want[64];
    snprintf(want, sizeof(want), "%lld:0:10:false:5000,%lld:0:20:false:5000", (long long)a,
             (long long)b);
    assert_string_equal(out, want);
    /* The live ones renew (only b's here: a's lease stays as it was). */
    uint64_t live_leases[2] = {got[1].lease, got[0].lease};
    assert_int_equal(realm_store_q_renew(live, ids, live_leases, 2, 6000), 0);
    assert_int_equal(realm_store_q_renew(live, ids + 1, live_leases, 1, 6000), 1);
    fx_pg_query("SELECT string_agg(lease_until_ms::text, ',' ORDER BY id) FROM events", out,
                sizeof(out));
    assert_string_equal(out, "5000,6000");
    json_t *failed = realm_store_q_failed(live, "", NULL, 10);
    assert_int_equal(json_array_size(failed), 0);
    json_decref(failed);
    /* The live tokens work. */
    assert_int_equal(realm_store_q_complete(live, a, got[0].lease), 0);
    assert_int_equal(realm_store_q_release(live, b, got[1].lease), 0);
    assert_int_equal(realm_store_q_pending(live, NULL, NULL), 1);
    assert_int_equal(realm_store_q_next_due(live), 20);
    for (int i = 0; i < 2; i++) {
        realm_store_event_dispose(&ev[i]);
        realm_store_event_dispose(&got[i]);
    }
}

typedef struct {
    pthread_barrier_t *go;
    realm_store_t *s;
    int accepted, full_fn, full_tenant, errors;
} pusher_t;

static void *push_many(void *arg)
{
    pusher_t *p = arg;
    pthread_barrier_wait(p->go);
    for (int i = 0; i < 60; i++) {
        char which = 0;
        int64_t id =
            realm_store_q_push(p->s, "t", i % 3 ? "a" : "b", NULL, "x", 1, 1, 40, 50, &which);
        if (id > 0)
            p->accepted++;
        else if (id == -2 && which == 'f')
            p->full_fn++;
        else if (id == -2 && which == 't')
            p->full_tenant++;
        else
            p->errors++;
    }
    return NULL;
}

/* Two servers pushing at once against the caps (40 per function, 50 per
 * tenant): together they queue exactly what the caps allow. */
static void pg_queue_caps_two_servers(void **state)
{
    fx_t *f = *state;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    pusher_t p[2] = {{.go = &go, .s = f->q}, {.go = &go, .s = open_pg_queue()}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, push_many, &p[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    assert_int_equal(p[0].errors + p[1].errors, 0);
    assert_int_equal(p[0].accepted + p[1].accepted, 50);
    assert_int_equal(realm_store_q_pending(f->q, NULL, NULL), 50);
    assert_true(realm_store_q_pending(f->q, "t", "a") <= 40);
    char out[32];
    fx_pg_query("SELECT count(*) FROM events", out, sizeof(out));
    assert_string_equal(out, "50");
    fx_pg_query("SELECT count(*) FROM events WHERE function = 'a'", out, sizeof(out));
    assert_int_equal(atoi(out), (int)realm_store_q_pending(f->q, "t", "a"));
    realm_store_close(p[1].s);
}

typedef struct {
    pthread_barrier_t *go;
    realm_store_t *s;
    atomic_int *arrived;
    int64_t id;
    char which;
} racer_t;

/* Before its COMMIT, a push waits until the other one has either come this
 * far too or waits on a lock: the tenant's (it will read the count after
 * this one commits), or a row this one holds (it read the count before this
 * one committed: the cap can be passed, and the test fails). */
static void race_hook(void *arg, const char *xid)
{
    (void)xid;
    atomic_int *arrived = arg;
    atomic_fetch_add(arrived, 1);
    for (;;) {
        if (atomic_load(arrived) >= 2) return;
        char out[16];
        fx_pg_query("SELECT count(*) FROM pg_locks WHERE NOT granted", out, sizeof(out));
        if (strcmp(out, "0") != 0) return;
    }
}

static void *push_one(void *arg)
{
    racer_t *r = arg;
    pthread_barrier_wait(r->go);
    r->id = realm_store_q_push(r->s, "t", "a", NULL, "x", 1, 1, 0, 50, &r->which);
    return NULL;
}

/* The last place under a cap, taken by two servers at once: one gets it. */
static void pg_queue_caps_race(void **state)
{
    fx_t *f = *state;
    for (int i = 0; i < 49; i++)
        push(f->q, "t", "a", 1);
    atomic_int arrived = 0;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    racer_t r[2] = {{.go = &go, .s = f->q, .arrived = &arrived},
                    {.go = &go, .s = open_pg_queue(), .arrived = &arrived}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        ((pg_t *)r[i].s)->q_before_commit = race_hook;
        ((pg_t *)r[i].s)->q_hook_arg = &arrived;
        assert_int_equal(pthread_create(&th[i], NULL, push_one, &r[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    ((pg_t *)f->q)->q_before_commit = NULL;
    assert_int_equal((r[0].id > 0) + (r[1].id > 0), 1);
    assert_int_equal(r[0].id > 0 ? r[1].id : r[0].id, -2);
    assert_int_equal(r[0].id > 0 ? r[1].which : r[0].which, 't');
    assert_int_equal(realm_store_q_pending(f->q, NULL, NULL), 50);
    realm_store_close(r[1].s);
}

typedef struct {
    int calls, terminate_on;
    char xid[2][32];
} hook_t;

/* Between the enqueue's statement and its COMMIT: records the transaction,
 * and on call terminate_on the server ends the session (a restart, a
 * dropped network), so the COMMIT is lost. */
static void before_commit(void *arg, const char *xid)
{
    hook_t *h = arg;
    if (h->calls < 2) snprintf(h->xid[h->calls], sizeof(h->xid[0]), "%s", xid);
    if (h->calls++ != h->terminate_on) return;
    char sql[256], out[16];
    snprintf(sql, sizeof(sql),
             "SELECT bool_and(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity"
             " WHERE backend_xid = '%s'::xid8::xid",
             xid);
    fx_pg_query(sql, out, sizeof(out));
    assert_string_equal(out, "t");
}

/* An enqueue whose connection is lost at its COMMIT is queued exactly once,
 * and the check of a lost COMMIT tells committed from not, even once the
 * event has been run and removed. */
static void pg_queue_push_in_doubt(void **state)
{
    fx_t *f = *state;
    pg_t *p = (pg_t *)f->q;
    hook_t h = {.terminate_on = 0};
    p->q_before_commit = before_commit;
    p->q_hook_arg = &h;
    char which = 0;
    int64_t id = realm_store_q_push(f->q, "", "fn", NULL, "once", 4, 1, 0, 0, &which);
    assert_true(id > 0);
    assert_int_equal(h.calls, 2); /* the first transaction was lost, the second committed */
    assert_int_equal(realm_store_q_pending(f->q, NULL, NULL), 1);
    realm_store_event_t ev[2];
    assert_int_equal(realm_store_q_claim(f->q, 1, 100, ev, 2), 1);
    assert_int_equal(ev[0].id, id);
    assert_int_equal(realm_pg_q_committed(p, h.xid[0], 0), 0);
    assert_int_equal(realm_pg_q_committed(p, h.xid[1], 0), 1);
    assert_int_equal(realm_store_q_complete(f->q, id, ev[0].lease), 0);
    realm_store_event_dispose(&ev[0]);
    /* Run and removed: its transaction still reads as committed (a second
     * enqueue would be a second run). */
    assert_int_equal(realm_pg_q_committed(p, h.xid[1], 0), 1);

    /* A transaction still open in another session (its client gone, the
     * server not yet aware) reads as in progress: that session is ended,
     * and the answer is final: aborted. */
    PGconn *other = PQconnectdb(fx_pg_url());
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    PGresult *r = PQexec(other, "BEGIN; INSERT INTO parked_fns VALUES('x', 'y');"
                                " SELECT pg_current_xact_id()::text");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    char open_xid[32];
    snprintf(open_xid, sizeof(open_xid), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    assert_int_equal(realm_pg_q_committed(p, open_xid, PQbackendPID(other)), 0);
    r = PQexec(other, "COMMIT");
    assert_true(PQresultStatus(r) != PGRES_COMMAND_OK); /* its session is gone */
    PQclear(r);
    PQfinish(other);
    json_t *parked = realm_store_q_parked(f->q);
    assert_int_equal(json_array_size(parked), 0);
    json_decref(parked);

    /* Without a loss: one transaction. */
    h = (hook_t){.terminate_on = -1};
    assert_true(realm_store_q_push(f->q, "", "fn", NULL, "x", 1, 1, 0, 0, &which) > id);
    assert_int_equal(h.calls, 1);
    assert_int_equal(realm_pg_q_committed(p, h.xid[0], 0), 1);
    p->q_before_commit = NULL;
    assert_int_equal(realm_store_q_pending(f->q, NULL, NULL), 1);
}

/* A server killed between a create's two steps, started again: its entry
 * in flight died with it on SQLite; here the next store opened on this
 * machine drops it at once (the process is gone), and keeps the entries of
 * live processes and of other machines (those wait for their expiry). */
static void pg_dead_process_pending(void **state)
{
    fx_t *f = *state;
    assert_int_equal(realm_store_pending_add(f->reg, "", "live", 1), 0);
    fx_pg_query("INSERT INTO realm_pending VALUES('', 'elsewhere', true,"
                " 'other-host/0123abcd/4026531836:1:1.1', now() + interval '15 minutes')",
                NULL, 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char err[512];
        realm_store_t *s = realm_store_open(REALM_STORE_REGISTRY, fx_pg_url(), err, sizeof(err));
        _exit(s && realm_store_pending_add(s, "", "dead", 1) == 0 ? 0 : 1); /* killed: no close */
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* Already open stores still see it (nothing is judged but at open). */
    assert_int_equal(realm_store_pending_get(f->reg, "", "dead"), 2);
    assert_int_equal(realm_store_pending_count(f->reg), 3);
    realm_store_t *again = open_pg();
    assert_int_equal(realm_store_pending_get(again, "", "dead"), 0);
    assert_int_equal(realm_store_pending_add(again, "", "dead", 1), 0);
    assert_int_equal(realm_store_pending_get(again, "", "live"), 2);      /* this process */
    assert_int_equal(realm_store_pending_get(again, "", "elsewhere"), 2); /* another machine */
    assert_int_equal(realm_store_pending_count(again), 3);
    realm_store_close(again);
}

/* ---- concurrency leases (REALM_STORE_LEASES, PostgreSQL only) ---- */

static realm_store_t *open_leases(void)
{
    return open_pg_kind(REALM_STORE_LEASES);
}

/* The caps of the function and the tenant, across two nodes' stores;
 * renewals keep what is live and report what ended; drops free places. */
static void pg_leases_caps_renew_drop(void **state)
{
    (void)state;
    realm_store_t *a = open_leases(), *b = open_leases();
    /* Reserved 2 for "f", tenant limit 3. */
    int64_t l1 = realm_store_lease_take(a, "n1", "t", "f", 2, 3, 60000);
    int64_t l2 = realm_store_lease_take(b, "n2", "t", "f", 2, 3, 60000);
    assert_true(l1 > 0 && l2 > 0 && l1 != l2);
    assert_int_equal(realm_store_lease_take(a, "n1", "t", "f", 2, 3, 60000), 0);
    /* Another function of the tenant: the tenant's third place, then full. */
    int64_t g = realm_store_lease_take(b, "n2", "t", "g", -1, 3, 60000);
    assert_true(g > 0);
    assert_int_equal(realm_store_lease_take(b, "n2", "t", "h", -1, 3, 60000),
                     REALM_STORE_LEASE_TENANT_FULL);
    /* Another tenant counts on its own. */
    assert_true(realm_store_lease_take(a, "n1", "u", "f", 2, 3, 60000) > 0);
    /* A drop frees a place; a node drops only its own. */
    assert_int_equal(realm_store_lease_drop(a, "n1", &l2, 1), 0); /* n2's: kept */
    assert_int_equal(realm_store_lease_take(a, "n1", "t", "f", 2, 3, 60000), 0);
    assert_int_equal(realm_store_lease_drop(b, "n2", &l2, 1), 0);
    int64_t l3 = realm_store_lease_take(a, "n1", "t", "f", 2, 3, 60000);
    assert_true(l3 > 0);
    /* A short lease ends by itself: its place is free again, and a renewal
     * says it is lost (never brought back). */
    int64_t ids[2] = {l1, l3};
    unsigned char kept[2] = {9, 9};
    assert_int_equal(realm_store_lease_renew(a, "n1", ids, 2, 60000, kept), 0);
    assert_true(kept[0] == 1 && kept[1] == 1);
    assert_int_equal(realm_store_lease_renew(a, "n1", ids, 1, 1, kept), 0); /* l1: 1 ms left */
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    int64_t l4 = realm_store_lease_take(b, "n2", "t", "f", 2, 3, 60000);
    assert_true(l4 > 0);
    assert_int_equal(realm_store_lease_renew(a, "n1", ids, 2, 60000, kept), 0);
    assert_true(kept[0] == 0 && kept[1] == 1);
    /* Another node's id renews nothing of n1's. */
    assert_int_equal(realm_store_lease_renew(b, "n2", ids + 1, 1, 60000, kept), 0);
    assert_int_equal(kept[0], 0);
    /* Every lease of a node at once (a node started again). */
    assert_int_equal(realm_store_lease_drop(a, "n1", NULL, 0), 0);
    char out[32];
    fx_pg_query("SELECT count(*) FROM env_leases WHERE node = 'n1'", out, sizeof(out));
    assert_string_equal(out, "0");
    realm_store_close(a);
    realm_store_close(b);
}

typedef struct {
    realm_store_t *s;
    char node[8];
    int granted;
} taker_t;

static void *take_many(void *arg)
{
    taker_t *t = arg;
    for (int i = 0; i < 20; i++)
        if (realm_store_lease_take(t->s, t->node, "t", "f", 5, 100, 60000) > 0) t->granted++;
    return NULL;
}

/* Four nodes taking at once: exactly the reserved five are granted. */
static void pg_leases_race(void **state)
{
    (void)state;
    taker_t t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (taker_t){open_leases(), "", 0};
        snprintf(t[i].node, sizeof(t[i].node), "n%d", i);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, take_many, &t[i]), 0);
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += t[i].granted;
        realm_store_close(t[i].s);
    }
    assert_int_equal(total, 5);
}

#define PG(fn) cmocka_unit_test_setup_teardown(fn, setup_pg, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        PG(functions_and_versions),
        PG(aliases),
        PG(transactions_and_generation),
        PG(queue_leases),
        PG(queue_caps_failed_parked),
        PG(pg_two_stores),
        PG(pg_refusals),
        PG(pg_lost_connection),
        PG(pg_migrations_at_once),
        PG(timing),
        PG(tenants_and_keys),
        PG(packages),
        PG(pg_auth_two_stores),
        PG(pg_packages_gc_races_create),
        PG(pg_queue_two_servers_claim),
        PG(pg_queue_dead_server),
        PG(pg_queue_caps_two_servers),
        PG(pg_queue_caps_race),
        PG(pg_queue_push_in_doubt),
        PG(pg_dead_process_pending),
        PG(pg_leases_caps_renew_drop),
        PG(pg_leases_race),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else

/* Leases are kept in PostgreSQL only: SQLite and memory refuse the kind. */
static void leases_need_postgresql(void **state)
{
    fx_t *f = *state;
    char loc[512], err[512] = "";
    if (strcmp(f->backend, "memory") == 0)
        snprintf(loc, sizeof(loc), "memory:leases");
    else
        snprintf(loc, sizeof(loc), "%s/leases.db", f->dir);
    assert_null(realm_store_open(REALM_STORE_LEASES, loc, err, sizeof(err)));
    assert_non_null(strstr(err, "concurrency leases are kept in PostgreSQL only"));
}

#define BOTH(fn)                                                                                   \
    cmocka_unit_test_setup_teardown(fn, setup_sqlite, teardown),                                   \
        cmocka_unit_test_setup_teardown(fn, setup_memory, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(functions_and_versions),
        BOTH(aliases),
        BOTH(transactions_and_generation),
        BOTH(queue_leases),
        BOTH(queue_caps_failed_parked),
        BOTH(tenants_and_keys),
        BOTH(packages),
        BOTH(timing),
        BOTH(leases_need_postgresql),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif
