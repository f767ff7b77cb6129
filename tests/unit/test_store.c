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
 * tests and the timing loop against the PostgreSQL backend (the only kind
 * it has so far), then what only a shared database has: two stores on one
 * database, concurrent migrations, refusals, a lost connection.
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

#include <pthread.h>
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
    if (strcmp(backend, "postgresql") == 0) { /* the registry only, so far */
        fx_pg_reset();
        f->reg = open_kind(f, REALM_STORE_REGISTRY, "realm.db");
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
    if (!f->q) { /* PostgreSQL: the registry only; the shared generation is a round trip */
        uint64_t g = 0;
        for (int i = 0; i < N; i++)
            g += realm_store_generation(f->reg);
        assert_true(g > 0);
        double t4 = now_us();
        print_message("store %s: create %.1f us, resolve %.1f us, generation %.1f us "
                      "(means of %d; this build's flags)\n",
                      f->backend, (t1 - t0) / N, (t2 - t1) / N, (t4 - t3) / N, N);
        return;
    }
    print_message("store %s: create %.1f us, resolve %.1f us, enqueue+claim+complete %.1f us "
                  "(means of %d; this build's flags)\n",
                  f->backend, (t1 - t0) / N, (t2 - t1) / N, (t3 - t2) / N, N);
}

#ifdef REALM_TEST_PG

static int setup_pg(void **state)
{
    return setup(state, "postgresql");
}

static realm_store_t *open_pg(void)
{
    char err[512] = "";
    realm_store_t *s = realm_store_open(REALM_STORE_REGISTRY, fx_pg_url(), err, sizeof(err));
    if (!s) fail_msg("open: %s", err);
    return s;
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
        assert_int_equal(realm_store_schema_version(o[i].s), 1);
    }
    char out[64];
    fx_pg_query("SELECT string_agg(kind || '=' || version, ',') FROM realm_schema", out,
                sizeof(out));
    assert_string_equal(out, "registry=1");
    fx_pg_query("SELECT count(*) FROM realm_generation", out, sizeof(out));
    assert_string_equal(out, "1");
    for (int i = 0; i < N; i++)
        realm_store_close(o[i].s);
}

/* What is refused, clearly: the kinds not built yet, a database newer than
 * the binary (untouched), a server that cannot be reached (and the
 * password never shows). */
static void pg_refusals(void **state)
{
    fx_t *f = *state;
    char err[512] = "";
    assert_null(realm_store_open(REALM_STORE_QUEUE, fx_pg_url(), err, sizeof(err)));
    assert_non_null(strstr(err, "the queue is not yet implemented on PostgreSQL"));
    assert_null(realm_store_open(REALM_STORE_AUTH, fx_pg_url(), err, sizeof(err)));
    assert_non_null(strstr(err, "the auth is not yet implemented on PostgreSQL"));
    assert_non_null(strstr(err, "(auth)"));

    realm_store_close(f->reg);
    f->reg = NULL;
    fx_pg_query("UPDATE realm_schema SET version = 2 WHERE kind = 'registry'", NULL, 0);
    assert_null(realm_store_open(REALM_STORE_REGISTRY, fx_pg_url(), err, sizeof(err)));
    assert_non_null(strstr(err, "(registry): schema version 2 is newer than this realm (knows "
                                "up to 1); upgrade realm"));
    char out[16];
    fx_pg_query("SELECT version FROM realm_schema WHERE kind = 'registry'", out, sizeof(out));
    assert_string_equal(out, "2");

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

#define PG(fn) cmocka_unit_test_setup_teardown(fn, setup_pg, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        PG(functions_and_versions),
        PG(aliases),
        PG(transactions_and_generation),
        PG(pg_two_stores),
        PG(pg_refusals),
        PG(pg_lost_connection),
        PG(pg_migrations_at_once),
        PG(pg_dead_process_pending),
        PG(timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else

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
        BOTH(timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif
