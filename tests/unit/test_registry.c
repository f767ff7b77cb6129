/*
 * test_registry.c - the registry's rules without HTTP: names and ARNs,
 * field validation, versions, aliases, concurrency, tags, paging, reopening.
 * Built twice: test_registry over SQLite, test_registry_memory (with
 * REALM_TEST_MEMORY) over the in-memory store, which skips only reopening,
 * and test_registry_pg (REALM_TEST_PG) over PostgreSQL, each test on an
 * emptied database (tests/unit/with_pg.sh starts one for ctest).
 */
#include "registry/registry.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#ifdef REALM_TEST_PG
#include "pg_fixture.h"
#endif

typedef struct {
    char dir[64];
    char db[512];
    realm_registry_t *r;
} fx_t;

static const realm_registry_opts_t opts = {.region = "us-east-1",
                                           .account_id = "123456789012",
                                           .concurrency_limit = 10,
                                           .max_zip_bytes = 1000,
                                           .max_unzipped_bytes = 5000};

static realm_registry_t *open_db(fx_t *f)
{
    char err[512];
    realm_registry_t *r = realm_registry_open(f->db, &opts, err, sizeof(err));
    if (!r) fail_msg("open: %s", err);
    return r;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/realm-reg-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
#if defined(REALM_TEST_MEMORY)
    snprintf(f->db, sizeof(f->db), "memory:registry");
#elif defined(REALM_TEST_PG)
    fx_pg_reset();
    snprintf(f->db, sizeof(f->db), "%s", fx_pg_url());
#else
    snprintf(f->db, sizeof(f->db), "%s/realm.db", f->dir);
#endif
    f->r = open_db(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    realm_registry_close(f->r);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static realm_pkg_info_t pkg(char c)
{
    realm_pkg_info_t p = {0};
    memset(p.hex, c, REALM_PKG_HEX_LEN);
    snprintf(p.sha256_b64, sizeof(p.sha256_b64), "sha-%c", c);
    p.zip_bytes = 100;
    return p;
}

/* Creates a function through both steps; returns its configuration. */
static json_t *create(realm_registry_t *r, const char *json, char code, realm_error_t *e)
{
    json_t *req = json_loads(json, 0, NULL);
    assert_non_null(req);
    json_t *out = NULL;
    char name[65];
    if (realm_registry_create_check(r, "", req, name, e)) {
        realm_pkg_info_t p = pkg(code);
        out = realm_registry_create_commit(r, "", req, &p, e);
    }
    json_decref(req);
    return out;
}

#define SIMPLE(name)                                                                               \
    "{\"FunctionName\":\"" name "\",\"Runtime\":\"nodejs20.x\",\"Handler\":\"index.handler\","     \
    "\"Code\":{\"ZipFile\":\"UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==\"}}"

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void test_names(void **state)
{
    fx_t *f = *state;
    char name[65], q[129];
    realm_error_t e;
    assert_int_equal(realm_registry_parse_name(f->r, "", "hello", 1, name, q, &e), 0);
    assert_string_equal(name, "hello");
    assert_string_equal(q, "");
    assert_int_equal(realm_registry_parse_name(f->r, "", "hello:$LATEST", 1, name, q, &e), 0);
    assert_string_equal(q, "$LATEST");
    assert_int_equal(
        realm_registry_parse_name(f->r, "", "123456789012:function:hello:prod", 1, name, q, &e), 0);
    assert_string_equal(name, "hello");
    assert_string_equal(q, "prod");
    assert_int_equal(
        realm_registry_parse_name(
            f->r, "", "arn:aws:lambda:us-east-1:123456789012:function:hello:7", 1, name, q, &e),
        0);
    assert_string_equal(q, "7");
    /* Another account or region reads as a missing function. */
    assert_int_equal(
        realm_registry_parse_name(f->r, "", "arn:aws:lambda:us-east-1:999999999999:function:hello",
                                  1, name, q, &e),
        -1);
    assert_int_equal(realm_err_http_status(e.code), 404);
    assert_int_equal(
        realm_registry_parse_name(f->r, "", "arn:aws:lambda:eu-west-1:123456789012:function:hello",
                                  1, name, q, &e),
        -1);
    assert_int_equal(realm_err_http_status(e.code), 404);
    static const char *const bad[] = {
        "",
        "bad name",
        "a:b:c:d:e",
        "hello:",
        "hello:bad!",
        "arn:aws:s3:us-east-1:123456789012:function:x",
        "12345:function:x",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(realm_registry_parse_name(f->r, "", bad[i], 1, name, q, &e), -1);
        assert_int_equal(realm_err_http_status(e.code), 400);
        assert_string_equal(realm_err_aws_type(e.code), "InvalidParameterValueException");
    }
    /* Control characters anywhere (a name, a qualifier, an ARN), before any lookup. */
    static const char *const ctl[] = {"hel\001lo", "hello\n", "\177hello", "hello:\037",
                                      "arn:aws:lambda:us-east-1:123456789012:function:he\tllo"};
    for (size_t i = 0; i < sizeof(ctl) / sizeof(ctl[0]); i++) {
        assert_int_equal(realm_registry_parse_name(f->r, "", ctl[i], 1, name, q, &e), -1);
        assert_int_equal(realm_err_http_status(e.code), 400);
        assert_string_equal(realm_err_aws_type(e.code), "InvalidParameterValueException");
        assert_string_equal(e.message, "FunctionName must not contain control characters");
    }
    /* No qualifier where none is allowed. */
    assert_int_equal(realm_registry_parse_name(f->r, "", "hello:1", 0, name, q, &e), -1);
    /* A tenant whose namespace is an account id owns that account's ARNs, and
     * only those: the server's account reads as missing for it. */
    assert_int_equal(realm_registry_parse_name(f->r, "111122223333",
                                               "arn:aws:lambda:us-east-1:111122223333:function:hi",
                                               1, name, q, &e),
                     0);
    assert_string_equal(name, "hi");
    assert_int_equal(realm_registry_parse_name(f->r, "111122223333",
                                               "arn:aws:lambda:us-east-1:123456789012:function:hi",
                                               1, name, q, &e),
                     -1);
    assert_int_equal(realm_err_http_status(e.code), 404);
}

/* A tenant's functions carry its account id in their ARNs and stay apart. */
static void test_tenant_accounts(void **state)
{
    fx_t *f = *state;
    realm_error_t e;
    static const char *req = "{\"FunctionName\":\"same\",\"Runtime\":\"nodejs20.x\","
                             "\"Handler\":\"i.h\",\"Role\":\"arn:aws:iam::1:role/x\","
                             "\"Code\":{\"ZipFile\":\"UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==\"}}";
    const char *tenants[] = {"111122223333", "444455556666"};
    for (int i = 0; i < 2; i++) {
        json_t *j = json_loads(req, 0, NULL);
        char nm[65];
        assert_non_null(realm_registry_create_check(f->r, tenants[i], j, nm, &e));
        realm_pkg_info_t p = pkg((char)('a' + i));
        json_t *out = realm_registry_create_commit(f->r, tenants[i], j, &p, &e);
        assert_non_null(out);
        char want[128];
        snprintf(want, sizeof(want), "arn:aws:lambda:us-east-1:%s:function:same", tenants[i]);
        assert_string_equal(json_string_value(json_object_get(out, "FunctionArn")), want);
        json_decref(out);
        json_decref(j);
    }
    /* Each sees only its own; the other's ARN is a missing function. */
    json_t *got = realm_registry_get_configuration(
        f->r, "111122223333", "arn:aws:lambda:us-east-1:444455556666:function:same", NULL, &e);
    assert_null(got);
    assert_int_equal(realm_err_http_status(e.code), 404);
    json_t *list = realm_registry_list_functions(f->r, "444455556666", NULL, 0, 0, &e);
    assert_int_equal(json_array_size(json_object_get(list, "Functions")), 1);
    json_decref(list);
}

static void test_create_validation(void **state)
{
    fx_t *f = *state;
    realm_error_t e;
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"Runtime\":\"nodejs20.x\",\"Handler\":\"a.b\",\"Code\":{\"ZipFile\":\"AA==\"}}",
         "FunctionName is required"},
        {"{\"FunctionName\":\"f\",\"Runtime\":\"java8\",\"Handler\":\"a.b\",\"Code\":{\"ZipFile\":"
         "\"AA==\"}}",
         "python3.11"},
        {"{\"FunctionName\":\"f\",\"Runtime\":\"nodejs20.x\",\"Code\":{\"ZipFile\":\"AA==\"}}",
         "Handler is required"},
        {"{\"FunctionName\":\"f\",\"Runtime\":\"nodejs20.x\",\"Handler\":\"a.b\",\"Timeout\":901,"
         "\"Code\":{\"ZipFile\":\"AA==\"}}",
         "Timeout"},
        {"{\"FunctionName\":\"f\",\"Runtime\":\"nodejs20.x\",\"Handler\":\"a.b\",\"MemorySize\":"
         "127,\"Code\":{\"ZipFile\":\"AA==\"}}",
         "MemorySize"},
        {"{\"FunctionName\":\"f\",\"Runtime\":\"nodejs20.x\",\"Handler\":\"a.b\",\"Environment\":{"
         "\"Variables\":{\"AWS_REGION\":\"x\"}},\"Code\":{\"ZipFile\":\"AA==\"}}",
         "reserved"},
        {"{\"FunctionName\":\"f\",\"Runtime\":\"nodejs20.x\",\"Handler\":\"a.b\",\"Code\":{"
         "\"S3Bucket\":\"b\",\"S3Key\":\"k\"}}",
         "S3Bucket"},
        {"{\"FunctionName\":\"f\",\"Runtime\":\"nodejs20.x\",\"Handler\":\"a.b\",\"Architectures\":"
         "[\"arm64\"],\"Code\":{\"ZipFile\":\"AA==\"}}",
         "arm64"},
        {"{\"FunctionName\":\"f\",\"Runtime\":\"nodejs20.x\",\"Handler\":\"a.b\",\"Layers\":[\"x\"]"
         ","
         "\"Code\":{\"ZipFile\":\"AA==\"}}",
         "Layers"},
        {"{\"FunctionName\":\"f\",\"Runtime\":\"nodejs20.x\",\"Handler\":\"a.b\",\"Timeout\":\"3\","
         "\"Code\":{\"ZipFile\":\"AA==\"}}",
         "integer"},
        /* A real beyond long long (converting it was undefined; fuzz_registry). */
        {"{\"FunctionName\":\"f\",\"Runtime\":\"nodejs20.x\",\"Handler\":\"a.b\","
         "\"Timeout\":8.8e67,\"Code\":{\"ZipFile\":\"AA==\"}}",
         "integer"},
        {"{\"FunctionName\":\"f\",\"Runtime\":\"nodejs20.x\",\"Handler\":\"a.b\","
         "\"MemorySize\":-1e300,\"Code\":{\"ZipFile\":\"AA==\"}}",
         "integer"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *out = create(f->r, cases[i].json, 'a', &e);
        if (out) fail_msg("case %zu accepted", i);
        assert_int_equal(realm_err_http_status(e.code), 400);
        if (!strstr(e.message, cases[i].needle))
            fail_msg("case %zu: '%s' lacks '%s'", i, e.message, cases[i].needle);
    }
    /* Nothing half-created: the name is free. */
    json_t *ok = create(f->r, SIMPLE("f"), 'a', &e);
    assert_non_null(ok);
    assert_string_equal(str(ok, "FunctionArn"), "arn:aws:lambda:us-east-1:123456789012:function:f");
    assert_string_equal(str(ok, "Version"), "$LATEST");
    assert_string_equal(str(ok, "State"), "Active");
    assert_int_equal(json_integer_value(json_object_get(ok, "Timeout")), 3);
    assert_int_equal(json_integer_value(json_object_get(ok, "MemorySize")), 128);
    json_decref(ok);
    assert_null(create(f->r, SIMPLE("f"), 'a', &e));
    assert_int_equal(realm_err_http_status(e.code), 409);
}

static void test_seed_form(void **state)
{
    fx_t *f = *state;
    realm_error_t e;
    json_t *out = create(f->r,
                         "{\"function_name\":\"seed\",\"runtime\":\"python311\",\"handler\":"
                         "\"app.handler\",\"code\":{\"zip_file\":\"AA==\"},\"environment\":{"
                         "\"KEY\":\"v\"}}",
                         'b', &e);
    assert_non_null(out);
    assert_string_equal(str(out, "Runtime"), "python3.11");
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(out, "Environment"), "Variables"), "KEY")),
        "v");
    json_decref(out);
}

static void test_pending_blocks_duplicate(void **state)
{
    fx_t *f = *state;
    realm_error_t e;
    json_t *a = json_loads(SIMPLE("p"), 0, NULL), *b = json_loads(SIMPLE("p"), 0, NULL);
    char nm[65];
    assert_non_null(realm_registry_create_check(f->r, "", a, nm, &e));
    assert_string_equal(nm, "p");
    assert_null(realm_registry_create_check(f->r, "", b, nm, &e));
    assert_int_equal(realm_err_http_status(e.code), 409);
    /* While a create is pending, every package counts as used. */
    assert_int_equal(realm_registry_code_used(f->r, "zz"), 1);
    realm_registry_update_abort(f->r, "", "p");
    assert_int_equal(realm_registry_code_used(f->r, "zz"), 0);
    assert_non_null(realm_registry_create_check(f->r, "", b, nm, &e));
    realm_registry_update_abort(f->r, "", "p");
    json_decref(a);
    json_decref(b);
}

static void test_versions_and_aliases(void **state)
{
    fx_t *f = *state;
    realm_error_t e;
    json_decref(create(f->r, SIMPLE("v"), 'a', &e));
    json_t *empty = json_object();
    json_t *v1 = realm_registry_publish_version(f->r, "", "v", empty, &e);
    assert_non_null(v1);
    assert_string_equal(str(v1, "Version"), "1");
    assert_string_equal(str(v1, "FunctionArn"),
                        "arn:aws:lambda:us-east-1:123456789012:function:v:1");
    /* Unchanged: the same version again. */
    json_t *again = realm_registry_publish_version(f->r, "", "v", empty, &e);
    assert_string_equal(str(again, "Version"), "1");
    json_decref(again);
    /* Change the code: version 2. */
    json_t *upd = json_pack("{s:s}", "ZipFile", "AA==");
    char name[65];
    assert_non_null(realm_registry_code_check(f->r, "", "v", upd, name, &e));
    json_t *g = realm_registry_get_configuration(f->r, "", "v", NULL, &e);
    assert_string_equal(str(g, "LastUpdateStatus"), "InProgress");
    json_decref(g);
    realm_pkg_info_t p = pkg('c');
    json_t *after = realm_registry_code_commit(f->r, "", name, upd, &p, &e);
    assert_non_null(after);
    assert_string_equal(str(after, "CodeSha256"), "sha-c");
    assert_string_equal(str(after, "LastUpdateStatus"), "Successful");
    json_decref(after);
    json_t *v2 = realm_registry_publish_version(f->r, "", "v", empty, &e);
    assert_string_equal(str(v2, "Version"), "2");
    /* Alias with routing to 2. */
    json_t *areq = json_loads("{\"Name\":\"live\",\"FunctionVersion\":\"1\",\"RoutingConfig\":{"
                              "\"AdditionalVersionWeights\":{\"2\":0.25}}}",
                              0, NULL);
    json_t *alias = realm_registry_create_alias(f->r, "", "v", areq, &e);
    assert_non_null(alias);
    assert_string_equal(str(alias, "AliasArn"),
                        "arn:aws:lambda:us-east-1:123456789012:function:v:live");
    assert_null(realm_registry_create_alias(f->r, "", "v", areq, &e));
    assert_int_equal(realm_err_http_status(e.code), 409);
    /* Routing picks by weight. */
    realm_fn_version_t fv;
    assert_int_equal(realm_registry_resolve(f->r, "", "v", "live", 0.1, &fv, &e), 0);
    assert_string_equal(fv.version, "2");
    assert_string_equal(fv.code_hex, pkg('c').hex);
    realm_fn_version_dispose(&fv);
    assert_int_equal(realm_registry_resolve(f->r, "", "v:live", NULL, 0.9, &fv, &e), 0);
    assert_string_equal(fv.version, "1");
    realm_fn_version_dispose(&fv);
    /* Version 1 and 2 are in use by the alias. */
    assert_int_equal(realm_registry_delete_function(f->r, "", "v", "2", &e), -1);
    assert_int_equal(realm_err_http_status(e.code), 409);
    assert_int_equal(realm_registry_delete_function(f->r, "", "v", "$LATEST", &e), -1);
    assert_int_equal(realm_err_http_status(e.code), 400);
    /* Bad weights and $LATEST with routing. */
    json_t *bad =
        json_loads("{\"RoutingConfig\":{\"AdditionalVersionWeights\":{\"2\":1.5}}}", 0, NULL);
    assert_null(realm_registry_update_alias(f->r, "", "v", "live", bad, &e));
    assert_int_equal(realm_err_http_status(e.code), 400);
    json_decref(bad);
    bad = json_loads("{\"FunctionVersion\":\"$LATEST\"}", 0, NULL);
    assert_null(realm_registry_update_alias(f->r, "", "v", "live", bad, &e));
    assert_int_equal(realm_err_http_status(e.code), 400);
    json_decref(bad);
    /* Revision precondition. */
    bad = json_loads("{\"Description\":\"x\",\"RevisionId\":\"nope\"}", 0, NULL);
    assert_null(realm_registry_update_alias(f->r, "", "v", "live", bad, &e));
    assert_int_equal(realm_err_http_status(e.code), 412);
    json_decref(bad);
    assert_int_equal(realm_registry_delete_alias(f->r, "", "v", "live", &e), 0);
    assert_int_equal(realm_registry_delete_alias(f->r, "", "v", "live", &e), -1);
    assert_int_equal(realm_err_http_status(e.code), 404);
    assert_int_equal(realm_registry_delete_function(f->r, "", "v", "2", &e), 0);
    /* Numbers are never reused. */
    json_t *cfg = json_pack("{s:i}", "Timeout", 9);
    json_decref(realm_registry_update_configuration(f->r, "", "v", cfg, &e));
    json_t *v3 = realm_registry_publish_version(f->r, "", "v", empty, &e);
    assert_string_equal(str(v3, "Version"), "3");
    json_t *lv = realm_registry_list_versions(f->r, "", "v", NULL, 0, &e);
    json_t *vs = json_object_get(lv, "Versions");
    assert_int_equal(json_array_size(vs), 3);
    assert_string_equal(str(json_array_get(vs, 0), "Version"), "$LATEST");
    assert_string_equal(str(json_array_get(vs, 2), "Version"), "3");
    json_decref(lv);
    json_decref(v3);
    json_decref(cfg);
    json_decref(alias);
    json_decref(areq);
    json_decref(v2);
    json_decref(upd);
    json_decref(v1);
    json_decref(empty);
}

/* Reads leave the generation alone; every write moves it. */
static void test_generation(void **state)
{
    fx_t *f = *state;
    realm_error_t e;
    json_decref(create(f->r, SIMPLE("g"), 'a', &e));
    uint64_t g0 = realm_registry_generation(f->r);
    realm_fn_version_t v;
    assert_int_equal(realm_registry_resolve(f->r, "", "g", NULL, 0, &v, &e), 0);
    realm_fn_version_dispose(&v);
    json_decref(
        realm_registry_list_tags(f->r, "", "arn:aws:lambda:us-east-1:123456789012:function:g", &e));
    assert_true(realm_registry_generation(f->r) == g0);
    json_t *tags = json_pack("{s:{s:s}}", "Tags", "realm:network", "none");
    assert_int_equal(
        realm_registry_tag(f->r, "", "arn:aws:lambda:us-east-1:123456789012:function:g", tags, &e),
        0);
    json_decref(tags);
    uint64_t g1 = realm_registry_generation(f->r);
    assert_true(g1 != g0);
    assert_int_equal(realm_registry_delete_function(f->r, "", "g", NULL, &e), 0);
    assert_true(realm_registry_generation(f->r) != g1);
}

static void test_paging_and_reopen(void **state)
{
    fx_t *f = *state;
    realm_error_t e;
    char json[256];
    for (int i = 0; i < 7; i++) {
        snprintf(json, sizeof(json), SIMPLE("fn%d"), i);
        json_t *out = create(f->r, json, 'd', &e);
        assert_non_null(out);
        json_decref(out);
    }
    char marker[128] = "";
    int seen = 0, pages = 0;
    do {
        json_t *page = realm_registry_list_functions(f->r, "", *marker ? marker : NULL, 3, 0, &e);
        assert_non_null(page);
        json_t *fns = json_object_get(page, "Functions");
        assert_true(json_array_size(fns) <= 3);
        for (size_t i = 0; i < json_array_size(fns); i++) {
            char want[16];
            snprintf(want, sizeof(want), "fn%d", seen++);
            assert_string_equal(str(json_array_get(fns, i), "FunctionName"), want);
        }
        const char *next = str(page, "NextMarker");
        snprintf(marker, sizeof(marker), "%s", next);
        json_decref(page);
        pages++;
    } while (*marker);
    assert_int_equal(seen, 7);
    assert_int_equal(pages, 3);
    /* Concurrency: the sum over functions stays within the limit (10). */
    json_t *c6 = json_pack("{s:i}", "ReservedConcurrentExecutions", 6);
    json_decref(realm_registry_put_concurrency(f->r, "", "fn0", c6, &e));
    assert_null(realm_registry_put_concurrency(f->r, "", "fn1", c6, &e));
    assert_int_equal(realm_err_http_status(e.code), 400);
    json_t *acct = realm_registry_account_settings(f->r, "", &e);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(acct, "AccountLimit"),
                                                        "UnreservedConcurrentExecutions")),
                     4);
    json_decref(acct);
    json_t *tags = json_loads("{\"Tags\":{\"team\":\"a\"}}", 0, NULL);
    assert_int_equal(realm_registry_tag(
                         f->r, "", "arn:aws:lambda:us-east-1:123456789012:function:fn0", tags, &e),
                     0);
    json_t *before = realm_registry_get_function(f->r, "", "fn0", NULL, "http://x", &e);
    /* Reopen: everything reads back identically. */
#ifndef REALM_TEST_MEMORY /* memory keeps nothing across a close */
    realm_registry_close(f->r);
    f->r = open_db(f);
#endif
    json_t *after = realm_registry_get_function(f->r, "", "fn0", NULL, "http://x", &e);
    assert_true(json_equal(before, after));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(after, "Concurrency"),
                                                        "ReservedConcurrentExecutions")),
                     6);
    json_decref(before);
    json_decref(after);
    json_decref(tags);
    json_decref(c6);
    assert_int_equal(realm_registry_delete_function(f->r, "", "fn0", NULL, &e), 0);
    assert_int_equal(realm_registry_code_used(f->r, pkg('d').hex), 1); /* fn1.. still use it */
    assert_null(realm_registry_get_configuration(f->r, "", "fn0", NULL, &e));
    assert_int_equal(realm_err_http_status(e.code), 404);
    assert_string_equal(realm_err_aws_type(e.code), "ResourceNotFoundException");
}

/* A file of n pseudo-random bytes (deflate cannot shrink it) at path. */
static void write_noise(const char *path, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        fputc((int)(x & 0xff), fp);
    }
    fclose(fp);
}

/* Packages kept in the registry's database (code.c): a 2.5 MiB package
 * (three chunks) kept, fetched into a fresh package store and unpacked the
 * same; a package in the local store is not fetched again; a corrupted
 * chunk is refused by the hash check (PostgreSQL); forget_unused keeps what
 * a version names. SQLite keeps nothing: keep is a no-op, fetch finds
 * nothing. */
static void test_code_in_db(void **state)
{
    fx_t *f = *state;
    char src[128], file[160], root[128], err[512] = "";
    snprintf(src, sizeof(src), "%s/src", f->dir);
    snprintf(root, sizeof(root), "%s/pkgs", f->dir);
    snprintf(file, sizeof(file), "%s/noise.bin", src);
    assert_int_equal(mkdir(src, 0700), 0);
    write_noise(file, 5 * 1024 * 1024 / 2);
    realm_buf_t zip;
    realm_buf_init(&zip);
    assert_int_equal(realm_pkg_zip_dir(src, &zip, err, sizeof(err)), 0);
    assert_true(zip.len > 2 * 1024 * 1024);
    realm_pkg_info_t info;
    realm_pkg_hash(zip.data, zip.len, &info);
    realm_pkg_store_t *pkgs = realm_pkg_store_open(root, err, sizeof(err));
    assert_non_null(pkgs);

    assert_int_equal(realm_registry_code_keep(f->r, info.hex, zip.data, zip.len), 0);
    assert_int_equal(realm_registry_code_keep(f->r, info.hex, zip.data, zip.len), 0);
    assert_int_equal(realm_registry_code_keep(f->r, "not-a-hash", zip.data, zip.len), -1);
    assert_int_equal(realm_registry_code_fetch(f->r, pkgs, "../x", err, sizeof(err)), -1);
#if !defined(REALM_TEST_MEMORY) && !defined(REALM_TEST_PG)
    /* SQLite: the data dir is the truth; nothing is kept in the database. */
    assert_int_equal(realm_registry_code_fetch(f->r, pkgs, info.hex, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is not in the database"));
    assert_int_equal(realm_registry_code_forget_unused(f->r), 0);
#else
    err[0] = '\0';
    if (realm_registry_code_fetch(f->r, pkgs, info.hex, err, sizeof(err)) != 0)
        fail_msg("fetch: %s", err);
    assert_int_equal(realm_pkg_store_has(pkgs, info.hex), 1);
    char tree[256], path[320], cmd[800];
    realm_pkg_store_tree_path(pkgs, info.hex, tree, sizeof(tree));
    snprintf(path, sizeof(path), "%s/noise.bin", tree);
    snprintf(cmd, sizeof(cmd), "cmp -s %s %s", file, path);
    assert_int_equal(system(cmd), 0);
    /* There already: not read again (a function that would fail otherwise). */
    assert_int_equal(realm_registry_code_fetch(f->r, pkgs, info.hex, err, sizeof(err)), 0);

    /* A version names it: forget_unused keeps it; an unused one goes. */
    json_t *req = json_loads(SIMPLE("withcode"), 0, NULL);
    char name[65];
    realm_error_t e;
    assert_non_null(realm_registry_create_check(f->r, "", req, name, &e));
    json_t *cfg = realm_registry_create_commit(f->r, "", req, &info, &e);
    assert_non_null(cfg);
    json_decref(cfg);
    json_decref(req);
    realm_pkg_info_t other;
    realm_pkg_hash("other", 5, &other);
    assert_int_equal(realm_registry_code_keep(f->r, other.hex, "other", 5), 0);
#ifdef REALM_TEST_PG
    assert_int_equal(realm_registry_code_forget_unused(f->r), 0); /* within the grace period */
    fx_pg_query("UPDATE realm_packages SET touched = now() - interval '1 hour'", NULL, 0);
#endif
    assert_int_equal(realm_registry_code_forget_unused(f->r), 1);
    assert_int_equal(realm_registry_code_fetch(f->r, pkgs, other.hex, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is not in the database"));

#ifdef REALM_TEST_PG
    /* A byte of a chunk changed in the database: the hash check refuses it,
     * and nothing is written to the package store. */
    assert_int_equal(realm_pkg_store_remove(pkgs, info.hex), 0);
    fx_pg_query("UPDATE realm_package_chunks SET bytes = overlay(bytes placing"
                " decode(CASE WHEN get_byte(bytes, 1000) = 0 THEN '01' ELSE '00' END, 'hex')"
                " from 1001 for 1) WHERE n = 1",
                NULL, 0);
    err[0] = '\0';
    assert_int_equal(realm_registry_code_fetch(f->r, pkgs, info.hex, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "do not match its hash"));
    assert_int_equal(realm_pkg_store_has(pkgs, info.hex), 0);
    /* A missing chunk: refused too. */
    fx_pg_query("DELETE FROM realm_package_chunks WHERE n = 2", NULL, 0);
    assert_int_equal(realm_registry_code_fetch(f->r, pkgs, info.hex, err, sizeof(err)), -1);
    assert_int_equal(realm_pkg_store_has(pkgs, info.hex), 0);
#endif
#endif
    realm_pkg_store_close(pkgs);
    realm_buf_dispose(&zip);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tenant_accounts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seed_form, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_blocks_duplicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_versions_and_aliases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paging_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_code_in_db, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
