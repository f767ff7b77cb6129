/*
 * test_admit.c - admission against a real key store in a temp dir: API key
 * check (tenant key, admin key, wrong and revoked keys), the overall and
 * per-tenant connection limits, per-key rate limits with retry_after (on a
 * test clock), draining and its exemptions, acting for a tenant (own name or
 * account id, admin by name or account id, unknown tenant), a SigV4
 * identity (secret lookup, a signature made with it verifying), auth off.
 */
#include "admit/admit.h"

#include "auth/keys.h"
#include "auth/sigv4.h"
#include "base/buf.h"
#include "base/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define ADMIN "admin-key-for-tests-0123456789"

static uint64_t clock_ns = 1000000000ull;

static uint64_t test_now(void)
{
    return clock_ns;
}

typedef struct {
    realm_key_info_t info;
    char api_key[REALM_KEYS_API_KEY_LEN];
    char secret[REALM_KEYS_SECRET_LEN];
} made_t;

typedef struct {
    char dir[64];
    realm_keys_t *k;
    made_t a1, a2, b; /* tenant "alpha" (two keys), tenant "beta" */
    made_t slow;      /* tenant "gamma": 0.25 requests/s, burst 1 */
} fx_t;

static made_t make(realm_keys_t *k, const char *tenant, double rate, double burst)
{
    made_t m;
    char err[256] = "";
    memset(&m, 0, sizeof(m));
    if (realm_keys_create(k, tenant, rate, burst, &m.info, m.api_key, m.secret, err, sizeof(err)) !=
        0)
        fail_msg("create %s: %s", tenant, err);
    return m;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/realm-admit-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char err[512] = "";
    f->k = realm_keys_open(f->dir, NULL, NULL, err, sizeof(err));
    if (!f->k) fail_msg("open: %s", err);
    f->a1 = make(f->k, "alpha", 0, 0);
    f->a2 = make(f->k, "alpha", 0, 0);
    f->b = make(f->k, "beta", 0, 0);
    f->slow = make(f->k, "gamma", 0.25, 1);
    clock_ns = 1000000000ull;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    realm_keys_close(f->k);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static realm_admit_t *admit_on(const fx_t *f, size_t max_conns, size_t max_tenant_conns)
{
    realm_admit_config_t c = {
        .auth = 1,
        .data_dir = f->dir,
        .admin_key = ADMIN,
        .rate_limit = 2,
        .rate_burst = 3,
        .max_connections = max_conns,
        .max_tenant_connections = max_tenant_conns,
        .now_ns = test_now,
    };
    char err[512] = "";
    realm_admit_t *ad = realm_admit_new(&c, err, sizeof(err));
    if (!ad) fail_msg("admit: %s", err);
    assert_true(realm_admit_is_on(ad));
    return ad;
}

/* An API key identifies a connection: the store function, then the tenant's cap. */
static int identify(realm_admit_t *ad, realm_admit_conn_t *c, const char *key,
                    realm_admit_verdict_t *v)
{
    realm_admit_principal_t who = {0};
    if (realm_admit_is_on(ad) && realm_admit_api_key(ad, key, &who, v) != 0) return v->err;
    return realm_admit_conn_identify(ad, c, &who, v);
}

/* One call: whom it acts for (the store, for an admin naming a tenant), then the limits. */
static int call(realm_admit_t *ad, const realm_admit_principal_t *who, const char *act_as,
                unsigned flags, realm_admit_principal_t *as, realm_admit_verdict_t *v)
{
    if (realm_admit_tenant(ad, who, act_as, as, v) != 0) return v->err;
    return realm_admit_call(ad, as, flags, v);
}

static void test_api_keys(void **state)
{
    fx_t *f = *state;
    realm_admit_t *ad = admit_on(f, 100, 100);
    realm_admit_principal_t who;
    realm_admit_verdict_t v;

    assert_int_equal(realm_admit_api_key(ad, f->a1.api_key, &who, &v), 0);
    assert_int_equal(v.err, 0);
    assert_string_equal(who.tenant, "alpha");
    assert_string_equal(who.ns, f->a1.info.account_id);
    assert_string_equal(who.key_id, f->a1.info.key_id);
    assert_false(who.is_admin);

    assert_int_equal(realm_admit_api_key(ad, ADMIN, &who, &v), 0);
    assert_true(who.is_admin);
    assert_string_equal(who.key_id, "admin");
    assert_string_equal(who.ns, "");
    assert_true(realm_admit_is_admin_key(ad, ADMIN));
    assert_false(realm_admit_is_admin_key(ad, ADMIN "x"));
    assert_false(realm_admit_is_admin_key(ad, f->a1.api_key));

    /* A wrong secret, garbage, nothing. */
    char bad[REALM_KEYS_API_KEY_LEN];
    snprintf(bad, sizeof(bad), "%s", f->a1.api_key);
    bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == 'a' ? 'b' : 'a';
    const char *wrong[] = {bad, "rk_nope", "", NULL};
    for (size_t i = 0; i < sizeof(wrong) / sizeof(*wrong); i++) {
        assert_int_equal(realm_admit_api_key(ad, wrong[i], &who, &v), REALM_ERR_UNAUTHORIZED);
        assert_int_equal(v.err, REALM_ERR_UNAUTHORIZED);
        assert_string_equal(v.message, "invalid API key");
        assert_int_equal(v.retry_after, 0);
    }

    /* Revocation: refused from then on, and is_active turns 0. */
    assert_int_equal(realm_admit_api_key(ad, f->b.api_key, &who, &v), 0);
    assert_true(realm_admit_is_active(ad, &who));
    uint64_t ver = realm_admit_version(ad);
    char err[256];
    assert_int_equal(realm_keys_revoke(f->k, f->b.info.key_id, err, sizeof(err)), 0);
    assert_true(realm_admit_version(ad) != ver);
    assert_false(realm_admit_is_active(ad, &who));
    assert_int_equal(realm_admit_api_key(ad, f->b.api_key, &who, &v), REALM_ERR_UNAUTHORIZED);
    realm_admit_free(ad);
}

static void test_connection_limits(void **state)
{
    fx_t *f = *state;
    realm_admit_t *ad = admit_on(f, 5, 2);
    realm_admit_conn_t c[6];
    realm_admit_verdict_t v;

    /* Two connections of alpha (two different keys: the limit is the tenant's). */
    assert_int_equal(realm_admit_conn_open(ad, &c[0], &v), 0);
    assert_int_equal(identify(ad, &c[0], f->a1.api_key, &v), 0);
    assert_int_equal(realm_admit_conn_open(ad, &c[1], &v), 0);
    assert_int_equal(identify(ad, &c[1], f->a2.api_key, &v), 0);
    assert_int_equal(identify(ad, &c[1], f->a2.api_key, &v), 0); /* no-op */
    assert_string_equal(c[1].who.tenant, "alpha");
    /* A third is refused; beta and the admin are not affected. */
    assert_int_equal(realm_admit_conn_open(ad, &c[2], &v), 0);
    assert_int_equal(identify(ad, &c[2], f->a1.api_key, &v),
                     REALM_ERR_TOO_MANY_CONNECTIONS);
    assert_string_equal(v.message, "too many connections for this tenant");
    assert_int_equal(v.retry_after, 1);
    assert_false(c[2].is_identified);
    assert_int_equal(identify(ad, &c[2], "rk_bad", &v), REALM_ERR_UNAUTHORIZED);
    assert_int_equal(identify(ad, &c[2], f->b.api_key, &v), 0);
    assert_int_equal(realm_admit_conn_open(ad, &c[3], &v), 0);
    assert_int_equal(identify(ad, &c[3], ADMIN, &v), 0);
    assert_true(c[3].who.is_admin);
    assert_int_equal(realm_admit_conn_open(ad, &c[4], &v), 0); /* not identified yet */
    assert_int_equal(realm_admit_connections(ad), 5);

    /* The overall limit counts every open connection, identified or not. */
    assert_int_equal(realm_admit_conn_open(ad, &c[5], &v), REALM_ERR_TOO_MANY_CONNECTIONS);
    assert_string_equal(v.message, "too many connections");
    assert_int_equal(v.retry_after, 1);
    assert_false(c[5].is_open);
    realm_admit_conn_close(ad, &c[5]); /* never opened: fine */
    assert_int_equal(realm_admit_connections(ad), 5);

    /* Closing an alpha connection makes room for another. */
    realm_admit_conn_close(ad, &c[0]);
    realm_admit_conn_close(ad, &c[0]); /* twice: fine */
    assert_int_equal(realm_admit_connections(ad), 4);
    assert_int_equal(identify(ad, &c[4], f->a1.api_key, &v), 0);
    for (int i = 1; i < 5; i++)
        realm_admit_conn_close(ad, &c[i]);
    assert_int_equal(realm_admit_connections(ad), 0);
    /* All gone: alpha may have two again. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(realm_admit_conn_open(ad, &c[i], &v), 0);
        assert_int_equal(identify(ad, &c[i], f->a1.api_key, &v), 0);
    }
    for (int i = 0; i < 2; i++)
        realm_admit_conn_close(ad, &c[i]);
    realm_admit_free(ad);
}

static void test_rate_limit(void **state)
{
    fx_t *f = *state;
    realm_admit_t *ad = admit_on(f, 10, 10);
    realm_admit_principal_t who, as;
    realm_admit_verdict_t v;

    /* The default: 2/s, burst 3. */
    assert_int_equal(realm_admit_api_key(ad, f->a1.api_key, &who, &v), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(call(ad, &who, NULL, 0, &as, &v), 0);
    assert_string_equal(as.ns, who.ns);
    assert_int_equal(call(ad, &who, NULL, 0, &as, &v), REALM_ERR_RATE_LIMIT_EXCEEDED);
    assert_int_equal(v.retry_after, 1);
    assert_string_equal(v.message, "rate limit of this key exceeded: retry in 1 s");
    /* Cancel-like calls pass; another key of the same tenant has its own bucket. */
    assert_int_equal(call(ad, &who, NULL, REALM_ADMIT_ENDS_WORK, &as, &v), 0);
    realm_admit_principal_t who2;
    assert_int_equal(realm_admit_api_key(ad, f->a2.api_key, &who2, &v), 0);
    assert_int_equal(call(ad, &who2, NULL, 0, &as, &v), 0);
    /* Half a second later one token is back. */
    clock_ns += 500000000ull;
    assert_int_equal(call(ad, &who, NULL, 0, &as, &v), 0);
    assert_int_equal(call(ad, &who, NULL, 0, &as, &v), REALM_ERR_RATE_LIMIT_EXCEEDED);

    /* A key's own rate: 0.25/s, burst 1: retry in 4 s, then 3 s after one more. */
    realm_admit_principal_t slow;
    assert_int_equal(realm_admit_api_key(ad, f->slow.api_key, &slow, &v), 0);
    assert_int_equal(call(ad, &slow, NULL, 0, &as, &v), 0);
    assert_int_equal(call(ad, &slow, NULL, 0, &as, &v), REALM_ERR_RATE_LIMIT_EXCEEDED);
    assert_int_equal(v.retry_after, 4);
    assert_string_equal(v.message, "rate limit of this key exceeded: retry in 4 s");
    clock_ns += 1000000000ull;
    assert_int_equal(call(ad, &slow, NULL, 0, &as, &v), REALM_ERR_RATE_LIMIT_EXCEEDED);
    assert_int_equal(v.retry_after, 3);
    clock_ns += 3000000000ull;
    assert_int_equal(call(ad, &slow, NULL, 0, &as, &v), 0);

    /* The admin has no limit. */
    realm_admit_principal_t adm;
    assert_int_equal(realm_admit_api_key(ad, ADMIN, &adm, &v), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(call(ad, &adm, NULL, 0, &as, &v), 0);

    /* The refusals are counted per tenant (account id) for /metrics. */
    realm_buf_t out;
    realm_buf_init(&out);
    realm_admit_collect(&out, ad);
    char line[128];
    snprintf(line, sizeof(line), "realm_rate_limited_total{tenant=\"%s\"} 2",
             f->a1.info.account_id);
    if (!strstr(out.data, line)) fail_msg("no '%s' in:\n%s", line, out.data);
    snprintf(line, sizeof(line), "realm_rate_limited_total{tenant=\"%s\"} 2",
             f->slow.info.account_id);
    if (!strstr(out.data, line)) fail_msg("no '%s' in:\n%s", line, out.data);
    realm_buf_dispose(&out);
    realm_admit_free(ad);
}

static void test_draining(void **state)
{
    fx_t *f = *state;
    realm_admit_t *ad = admit_on(f, 10, 10);
    realm_admit_conn_t c;
    realm_admit_principal_t who, as;
    realm_admit_verdict_t v;
    assert_int_equal(realm_admit_conn_open(ad, &c, &v), 0);
    assert_int_equal(identify(ad, &c, f->a1.api_key, &v), 0);
    assert_false(realm_admit_is_draining(ad));
    realm_admit_drain(ad);
    assert_true(realm_admit_is_draining(ad));

    realm_admit_conn_t c2;
    assert_int_equal(realm_admit_conn_open(ad, &c2, &v), REALM_ERR_SHUTTING_DOWN);
    assert_string_equal(v.message, "the server is shutting down");
    assert_int_equal(v.retry_after, 1);
    assert_int_equal(call(ad, &c.who, NULL, 0, &as, &v), REALM_ERR_SHUTTING_DOWN);
    assert_string_equal(v.message, "the server is shutting down");
    /* Stopping work, and the control API, still pass. */
    assert_int_equal(call(ad, &c.who, NULL, REALM_ADMIT_ENDS_WORK, &as, &v), 0);
    assert_int_equal(call(ad, &c.who, NULL, REALM_ADMIT_IN_DRAIN, &as, &v), 0);
    /* A call acting for its own tenant is refused too. */
    assert_int_equal(realm_admit_api_key(ad, f->b.api_key, &who, &v), 0);
    assert_int_equal(call(ad, &who, "beta", 0, &as, &v), REALM_ERR_SHUTTING_DOWN);
    realm_admit_conn_close(ad, &c);
    realm_admit_free(ad);
}

static void test_act_as(void **state)
{
    fx_t *f = *state;
    realm_admit_t *ad = admit_on(f, 10, 10);
    realm_admit_principal_t who, as;
    realm_admit_verdict_t v;

    assert_int_equal(realm_admit_api_key(ad, f->a1.api_key, &who, &v), 0);
    assert_int_equal(call(ad, &who, "alpha", 0, &as, &v), 0);
    assert_string_equal(as.ns, f->a1.info.account_id);
    assert_int_equal(call(ad, &who, f->a1.info.account_id, 0, &as, &v), 0);
    assert_int_equal(call(ad, &who, "beta", 0, &as, &v), REALM_ERR_UNAUTHORIZED);
    assert_string_equal(v.message, "this connection's key does not act for that tenant_id");
    assert_int_equal(call(ad, &who, f->b.info.account_id, 0, &as, &v),
                     REALM_ERR_UNAUTHORIZED);

    /* The admin acts for any tenant, by name or account id, keeping is_admin. */
    assert_int_equal(realm_admit_api_key(ad, ADMIN, &who, &v), 0);
    assert_int_equal(call(ad, &who, NULL, 0, &as, &v), 0);
    assert_string_equal(as.ns, "");
    assert_int_equal(call(ad, &who, "beta", 0, &as, &v), 0);
    assert_string_equal(as.tenant, "beta");
    assert_string_equal(as.ns, f->b.info.account_id);
    assert_true(as.is_admin);
    assert_int_equal(call(ad, &who, f->a1.info.account_id, 0, &as, &v), 0);
    assert_string_equal(as.tenant, "alpha");
    assert_string_equal(as.ns, f->a1.info.account_id);
    assert_int_equal(call(ad, &who, "nobody", 0, &as, &v), REALM_ERR_TENANT_NOT_FOUND);
    assert_string_equal(v.message, "no such tenant");
    assert_int_equal(realm_err_http_status(v.err), 404);
    realm_admit_free(ad);
}

static void test_sigv4_identity(void **state)
{
    fx_t *f = *state;
    realm_admit_t *ad = admit_on(f, 10, 10);
    realm_admit_principal_t who;
    realm_admit_verdict_t v;
    char secret[128];

    assert_int_equal(
        realm_admit_sigv4_key(ad, f->b.info.access_key_id, &who, secret, sizeof(secret), &v), 0);
    assert_string_equal(secret, f->b.secret);
    assert_string_equal(who.tenant, "beta");
    assert_string_equal(who.ns, f->b.info.account_id);

    /* A request signed with that key verifies with the secret handed back. */
    int64_t now_ms = 1767225600000; /* 2026-01-01 */
    char date[17], authz[512];
    realm_sigv4_amz_date(now_ms, date);
    realm_sigv4_header_t hs[] = {{"Host", "localhost:9001"}, {"X-Amz-Date", date}};
    realm_sigv4_req_t req = {.method = "GET",
                             .path = "/2015-03-31/functions/",
                             .query = "",
                             .headers = hs,
                             .headers_cnt = 2};
    assert_int_equal(realm_sigv4_sign(&req, f->b.info.access_key_id, f->b.secret, "us-east-1",
                                      "lambda", date, authz, sizeof(authz)),
                     REALM_SIGV4_OK);
    realm_sigv4_auth_t sa;
    char msg[256];
    assert_int_equal(realm_sigv4_parse(authz, &sa, msg, sizeof(msg)), REALM_SIGV4_OK);
    assert_int_equal(realm_admit_sigv4_key(ad, sa.access_key_id, &who, secret, sizeof(secret), &v),
                     0);
    assert_int_equal(realm_sigv4_verify(&req, &sa, secret, now_ms, msg, sizeof(msg)),
                     REALM_SIGV4_OK);
    /* ...and the verified identity is admitted like any other. */
    realm_admit_principal_t as;
    assert_int_equal(call(ad, &who, NULL, REALM_ADMIT_IN_DRAIN, &as, &v), 0);
    assert_string_equal(as.ns, f->b.info.account_id);

    /* The admin's access key id is "admin", its secret the admin key. */
    assert_int_equal(realm_admit_sigv4_key(ad, "admin", &who, secret, sizeof(secret), &v), 0);
    assert_string_equal(secret, ADMIN);
    assert_true(who.is_admin);

    /* Unknown and revoked access keys. */
    const char *unknown = "AKIAAAAAAAAAAAAAAAAA";
    assert_int_equal(realm_admit_sigv4_key(ad, unknown, &who, secret, sizeof(secret), &v),
                     REALM_ERR_UNAUTHORIZED);
    assert_string_equal(v.message, "The security token included in the request is invalid.");
    assert_string_equal(secret, "");
    char err[256];
    assert_int_equal(realm_keys_revoke(f->k, f->b.info.key_id, err, sizeof(err)), 0);
    assert_int_equal(
        realm_admit_sigv4_key(ad, f->b.info.access_key_id, &who, secret, sizeof(secret), &v),
        REALM_ERR_UNAUTHORIZED);
    realm_admit_free(ad);

    /* Without an admin key, "admin" is no access key. */
    realm_admit_config_t c = {.auth = 1,
                              .data_dir = f->dir,
                              .admin_key = "none",
                              .rate_limit = 2,
                              .rate_burst = 3,
                              .max_connections = 10,
                              .max_tenant_connections = 10};
    ad = realm_admit_new(&c, err, sizeof(err));
    assert_non_null(ad);
    assert_int_equal(realm_admit_sigv4_key(ad, "admin", &who, secret, sizeof(secret), &v),
                     REALM_ERR_UNAUTHORIZED);
    assert_int_equal(realm_admit_api_key(ad, "none", &who, &v), REALM_ERR_UNAUTHORIZED);
    assert_false(realm_admit_is_admin_key(ad, "none"));
    realm_admit_free(ad);
}

static void test_auth_off(void **state)
{
    (void)state;
    realm_admit_config_t c = {.auth = 0, .admin_key = "none", .max_connections = 1};
    char err[256] = "";
    realm_admit_t *ad = realm_admit_new(&c, err, sizeof(err));
    assert_non_null(ad);
    assert_false(realm_admit_is_on(ad));
    realm_admit_conn_t a, b;
    realm_admit_principal_t as;
    realm_admit_verdict_t v;
    assert_int_equal(realm_admit_conn_open(ad, &a, &v), 0);
    assert_int_equal(identify(ad, &a, "anything", &v), 0);
    assert_string_equal(a.who.ns, "");
    assert_false(a.who.is_admin);
    /* No tenant checks and no rate limit, but still the connection limit. */
    for (int i = 0; i < 50; i++)
        assert_int_equal(call(ad, &a.who, "whoever", 0, &as, &v), 0);
    assert_string_equal(as.ns, "");
    assert_int_equal(realm_admit_conn_open(ad, &b, &v), REALM_ERR_TOO_MANY_CONNECTIONS);
    assert_int_equal(realm_admit_version(ad), 0);
    assert_true(realm_admit_is_active(ad, &a.who));
    realm_buf_t out;
    realm_buf_init(&out);
    realm_admit_collect(&out, ad);
    assert_int_equal(out.len, 0);
    realm_buf_dispose(&out);
    realm_admit_conn_close(ad, &a);
    assert_int_equal(realm_admit_conn_open(ad, &b, &v), 0);
    realm_admit_conn_close(ad, &b);
    realm_admit_free(ad);
}

/* ---- the lookups on the worker ---- */

typedef struct {
    int calls, status;
    realm_admit_found_t f;
} got_t;

static void on_found(realm_admit_found_t *f, int status, void *data)
{
    got_t *g = data;
    g->calls++;
    g->status = status;
    g->f = *f;
}

static got_t find(uv_loop_t *loop, realm_admit_t *ad, realm_admit_query_t q)
{
    got_t g = {0};
    assert_int_equal(realm_admit_find(ad, &q, on_found, &g), 0);
    assert_int_equal(g.calls, 0); /* never before find returns */
    while (g.calls == 0)
        uv_run(loop, UV_RUN_ONCE);
    assert_int_equal(g.calls, 1);
    return g;
}

typedef struct {
    int calls;
    size_t n;
    char ids[4][32];
} revoked_t;

static void on_revoked(const char *const *ids, size_t n, int status, void *data)
{
    revoked_t *r = data;
    assert_int_equal(status, 0);
    r->calls++;
    r->n = n;
    for (size_t i = 0; i < n && i < 4; i++)
        snprintf(r->ids[i], sizeof(r->ids[i]), "%s", ids[i]);
}

static void on_closed(void *data)
{
    (*(int *)data)++;
}

static void test_worker_lookups(void **state)
{
    fx_t *f = *state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    realm_admit_config_t c = {.auth = 1,
                              .data_dir = f->dir,
                              .admin_key = ADMIN,
                              .rate_limit = 2,
                              .rate_burst = 3,
                              .max_connections = 10,
                              .max_tenant_connections = 10,
                              .loop = &loop};
    char err[256] = "";
    realm_admit_t *ad = realm_admit_new(&c, err, sizeof(err));
    if (!ad) fail_msg("admit: %s", err);

    got_t g = find(&loop, ad, (realm_admit_query_t){.api_key = f->a1.api_key});
    assert_int_equal(g.status, 0);
    assert_int_equal(g.f.v.err, 0);
    assert_string_equal(g.f.who.tenant, "alpha");
    assert_string_equal(g.f.as.ns, f->a1.info.account_id);
    g = find(&loop, ad, (realm_admit_query_t){.api_key = "rk_bad"});
    assert_int_equal(g.f.v.err, REALM_ERR_UNAUTHORIZED);
    assert_string_equal(g.f.v.message, "invalid API key");
    /* A SigV4 key comes back with its secret. */
    g = find(&loop, ad, (realm_admit_query_t){.access_key_id = f->b.info.access_key_id});
    assert_int_equal(g.f.v.err, 0);
    assert_string_equal(g.f.secret, f->b.secret);
    assert_string_equal(g.f.who.ns, f->b.info.account_id);
    /* A key acting for another tenant; the admin for any, by name or account id. */
    g = find(&loop, ad, (realm_admit_query_t){.api_key = f->a1.api_key, .act_as = "beta"});
    assert_int_equal(g.f.v.err, 0);
    assert_int_equal(g.f.as_v.err, REALM_ERR_UNAUTHORIZED);
    g = find(&loop, ad, (realm_admit_query_t){.access_key_id = "admin", .act_as = "beta"});
    assert_string_equal(g.f.secret, ADMIN);
    assert_int_equal(g.f.as_v.err, 0);
    assert_true(g.f.as.is_admin);
    assert_string_equal(g.f.as.ns, f->b.info.account_id);
    realm_admit_principal_t admin = g.f.who, as;
    realm_admit_verdict_t v;
    assert_int_equal(realm_admit_act_as(ad, &admin, "alpha", &as, &v), REALM_ADMIT_FIND);
    g = find(&loop, ad, (realm_admit_query_t){.who = &admin, .act_as = f->a1.info.account_id});
    assert_int_equal(g.f.as_v.err, 0);
    assert_string_equal(g.f.as.tenant, "alpha");
    g = find(&loop, ad, (realm_admit_query_t){.who = &admin, .act_as = "nobody"});
    assert_int_equal(g.f.as_v.err, REALM_ERR_TENANT_NOT_FOUND);

    /* A revocation: the version moves and the key is named revoked. */
    uint64_t ver = realm_admit_version(ad);
    assert_int_equal(realm_keys_revoke(f->k, f->a2.info.key_id, err, sizeof(err)), 0);
    const char *ids[] = {f->a1.info.key_id, f->a2.info.key_id, "admin"};
    revoked_t r = {0};
    assert_int_equal(realm_admit_find_revoked(ad, ids, 3, on_revoked, &r), 0);
    while (r.calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ids[0], f->a2.info.key_id);
    assert_true(realm_admit_version(ad) != ver);

    /* Closing answers every lookup once: run (0) or cancelled (SHUTTING_DOWN). */
    got_t many[8];
    memset(many, 0, sizeof(many));
    for (int i = 0; i < 8; i++)
        assert_int_equal(realm_admit_find(ad, &(realm_admit_query_t){.api_key = f->b.api_key},
                                          on_found, &many[i]),
                         0);
    int closed = 0;
    realm_admit_close(ad, on_closed, &closed);
    assert_int_equal(realm_admit_find(ad, &(realm_admit_query_t){.api_key = f->b.api_key},
                                      on_found, &many[0]),
                     REALM_ERR_SHUTTING_DOWN);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(many[i].calls, 1);
        if (many[i].status != 0) {
            assert_int_equal(many[i].status, REALM_ERR_SHUTTING_DOWN);
            assert_int_equal(many[i].f.v.err, REALM_ERR_SHUTTING_DOWN);
        } else {
            assert_string_equal(many[i].f.who.tenant, "beta");
        }
    }
    realm_admit_free(ad);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_api_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_draining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_act_as, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigv4_identity, setup, teardown),
        cmocka_unit_test(test_auth_off),
        cmocka_unit_test_setup_teardown(test_worker_lookups, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
