/*
 * test_keys.c - the tenant and key store: create/list/check/revoke, refusal
 * of wrong, tampered and cross-key secrets, no secret (nor the API key's
 * hash equal to it) in the database file, server.key creation (0600), a
 * group/world-readable or wrong-sized server.key refused, a replaced
 * server.key failing lookups cleanly, a missing server.key refused while
 * keys exist, realm_keys_version seeing another connection's write, account
 * ids (12 digits, unique, stable per tenant), tenant name and limit checks.
 * Built three times: test_keys over SQLite, test_keys_memory
 * (REALM_TEST_MEMORY) over the in-memory store, without the tests about
 * files, and test_keys_pg (REALM_TEST_PG, through tests/unit/with_pg.sh)
 * over PostgreSQL: the same store tests, then servers sharing one database
 * and one server key file (refusals of a missing or different key file).
 */
#include "auth/keys.h"

#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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
    realm_keys_t *k;
} fx_t;

static realm_keys_t *open_k(const char *dir)
{
    char err[512] = "";
#ifdef REALM_TEST_PG
    realm_keys_t *k = realm_keys_open(dir, fx_pg_url(), NULL, err, sizeof(err));
#else
    realm_keys_t *k = realm_keys_open(dir, NULL, NULL, err, sizeof(err));
#endif
    if (k == NULL) fail_msg("open %s: %s", dir, err);
    return k;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/realm-keys-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
#if defined(REALM_TEST_MEMORY)
    f->k = open_k("memory:");
#elif defined(REALM_TEST_PG)
    fx_pg_reset();
    f->k = open_k(f->dir);
#else
    f->k = open_k(f->dir);
#endif
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

typedef struct {
    realm_key_info_t info;
    char api_key[REALM_KEYS_API_KEY_LEN];
    char secret[REALM_KEYS_SECRET_LEN];
} made_t;

static made_t make(realm_keys_t *k, const char *tenant)
{
    made_t m;
    char err[256] = "";
    memset(&m, 0, sizeof(m));
    if (realm_keys_create(k, tenant, 0, 0, &m.info, m.api_key, m.secret, err, sizeof(err)) != 0)
        fail_msg("create %s: %s", tenant, err);
    return m;
}

static int is_digits(const char *s, size_t n)
{
    return strlen(s) == n && strspn(s, "0123456789") == n;
}

/* Does the file (or any file starting with path: -wal, -shm) hold needle? */
static int file_has(const char *path, const char *needle)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    size_t nlen = strlen(needle);
    for (size_t s = 0; s < 3; s++) {
        char p[256];
        snprintf(p, sizeof(p), "%s%s", path, suffixes[s]);
        FILE *fp = fopen(p, "rb");
        if (fp == NULL) continue;
        fseek(fp, 0, SEEK_END);
        long len = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        char *buf = malloc((size_t)len + 1);
        size_t got = fread(buf, 1, (size_t)len, fp);
        fclose(fp);
        int found = got >= nlen && memmem(buf, got, needle, nlen) != NULL;
        free(buf);
        if (found) return 1;
    }
    return 0;
}

static void write_key_file(const char *dir, mode_t mode, const unsigned char *bytes, size_t len)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/server.key", dir);
    unlink(p);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(p, mode), 0);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_create_list_check_revoke(void **state)
{
    fx_t *f = *state;
    realm_key_info_t info, got;
    char api_key[REALM_KEYS_API_KEY_LEN], secret[REALM_KEYS_SECRET_LEN], err[256] = "";
    assert_int_equal(
        realm_keys_create(f->k, "acme", 10, 20, &info, api_key, secret, err, sizeof(err)), 0);

    /* Shapes. */
    assert_string_equal(info.tenant, "acme");
    assert_int_equal(strlen(info.key_id), 13);
    assert_int_equal(info.key_id[0], 'k');
    assert_int_equal(strspn(info.key_id + 1, "0123456789abcdef"), 12);
    assert_true(is_digits(info.account_id, 12));
    assert_int_equal(strlen(info.access_key_id), 20);
    assert_memory_equal(info.access_key_id, "AKIA", 4);
    assert_int_equal(strspn(info.access_key_id + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), 16);
    assert_int_equal(strlen(secret), 40);
    assert_int_equal(
        strspn(secret, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+"), 40);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "rk_%s_", info.key_id);
    assert_memory_equal(api_key, prefix, strlen(prefix));
    assert_int_equal(strlen(api_key), strlen(prefix) + 32);
    assert_true(info.created_ms > 1600000000000LL);

    /* check */
    memset(&got, 0, sizeof(got));
    assert_int_equal(realm_keys_check_api_key(f->k, api_key, &got), 1);
    assert_string_equal(got.key_id, info.key_id);
    assert_string_equal(got.tenant, "acme");
    assert_string_equal(got.account_id, info.account_id);
    assert_string_equal(got.access_key_id, info.access_key_id);
    assert_true(got.rate == 10 && got.burst == 20);
    assert_int_equal(got.is_revoked, 0);
    assert_true(got.created_ms == info.created_ms);

    /* find */
    char dec[REALM_KEYS_SECRET_LEN];
    memset(&got, 0, sizeof(got));
    assert_int_equal(realm_keys_find_access_key(f->k, info.access_key_id, &got, dec, sizeof(dec)),
                     1);
    assert_string_equal(dec, secret);
    assert_string_equal(got.key_id, info.key_id);
    assert_int_equal(
        realm_keys_find_access_key(f->k, "AKIAAAAAAAAAAAAAAAAA", &got, dec, sizeof(dec)), 0);
    assert_string_equal(dec, "");
    assert_int_equal(realm_keys_find_access_key(f->k, info.access_key_id, NULL, dec, 10), 0);

    assert_int_equal(realm_keys_is_active(f->k, info.key_id), 1);
    assert_int_equal(realm_keys_is_active(f->k, "k000000000000"), 0);

    /* list */
    made_t other = make(f->k, "beta");
    json_t *list = realm_keys_list(f->k);
    assert_non_null(list);
    assert_int_equal(json_array_size(list), 2);
    json_t *e = json_array_get(list, 0); /* ordered by tenant: acme first */
    assert_string_equal(json_string_value(json_object_get(e, "key_id")), info.key_id);
    assert_string_equal(json_string_value(json_object_get(e, "tenant")), "acme");
    assert_string_equal(json_string_value(json_object_get(e, "account_id")), info.account_id);
    assert_string_equal(json_string_value(json_object_get(e, "access_key_id")), info.access_key_id);
    assert_true(json_real_value(json_object_get(e, "rate")) == 10);
    assert_true(json_real_value(json_object_get(e, "burst")) == 20);
    assert_true(json_is_false(json_object_get(e, "revoked")));
    assert_int_equal(json_integer_value(json_object_get(e, "created")), info.created_ms);
    assert_int_equal(json_object_size(e), 8); /* and nothing else: no secret, no hash */
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "tenant")),
                        "beta");
    json_decref(list);

    /* revoke */
    uint64_t v = realm_keys_version(f->k);
    assert_int_equal(realm_keys_revoke(f->k, info.key_id, err, sizeof(err)), 0);
    assert_true(realm_keys_version(f->k) != v);
    assert_int_equal(realm_keys_check_api_key(f->k, api_key, &got), 0);
    assert_int_equal(realm_keys_find_access_key(f->k, info.access_key_id, &got, dec, sizeof(dec)),
                     0);
    assert_int_equal(realm_keys_is_active(f->k, info.key_id), 0);
    assert_int_equal(realm_keys_revoke(f->k, info.key_id, err, sizeof(err)), 0); /* no-op */
    list = realm_keys_list(f->k);
    assert_true(json_is_true(json_object_get(json_array_get(list, 0), "revoked")));
    json_decref(list);
    /* The other key is untouched. */
    assert_int_equal(realm_keys_check_api_key(f->k, other.api_key, NULL), 1);

    err[0] = '\0';
    assert_int_equal(realm_keys_revoke(f->k, "k123456789abc", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "k123456789abc"));
}

static void test_wrong_keys_refused(void **state)
{
    fx_t *f = *state;
    made_t a = make(f->k, "acme"), b = make(f->k, "acme");
    assert_string_not_equal(a.info.key_id, b.info.key_id);
    assert_string_not_equal(a.api_key, b.api_key);
    assert_string_not_equal(a.secret, b.secret);
    assert_string_not_equal(a.info.access_key_id, b.info.access_key_id);
    assert_int_equal(realm_keys_check_api_key(f->k, a.api_key, NULL), 1);
    assert_int_equal(realm_keys_check_api_key(f->k, b.api_key, NULL), 1);

    char bad[128];
    size_t pre = strlen("rk_") + strlen(a.info.key_id) + 1;
    /* One character of the secret changed, at each position. */
    for (size_t i = pre; i < strlen(a.api_key); i++) {
        snprintf(bad, sizeof(bad), "%s", a.api_key);
        bad[i] = bad[i] == 'a' ? 'b' : 'a';
        assert_int_equal(realm_keys_check_api_key(f->k, bad, NULL), 0);
    }
    /* a's id with b's secret. */
    snprintf(bad, sizeof(bad), "rk_%s_%s", a.info.key_id, b.api_key + pre);
    assert_int_equal(realm_keys_check_api_key(f->k, bad, NULL), 0);
    /* Truncated, extended, wrong prefix, unknown id, garbage. */
    snprintf(bad, sizeof(bad), "%s", a.api_key);
    bad[strlen(bad) - 1] = '\0';
    assert_int_equal(realm_keys_check_api_key(f->k, bad, NULL), 0);
    snprintf(bad, sizeof(bad), "%sa", a.api_key);
    assert_int_equal(realm_keys_check_api_key(f->k, bad, NULL), 0);
    snprintf(bad, sizeof(bad), "xk%s", a.api_key + 2);
    assert_int_equal(realm_keys_check_api_key(f->k, bad, NULL), 0);
    snprintf(bad, sizeof(bad), "rk_k000000000000_%s", a.api_key + pre);
    assert_int_equal(realm_keys_check_api_key(f->k, bad, NULL), 0);
    assert_int_equal(realm_keys_check_api_key(f->k, "", NULL), 0);
    assert_int_equal(realm_keys_check_api_key(f->k, "rk_", NULL), 0);
    assert_int_equal(realm_keys_check_api_key(f->k, "rk__", NULL), 0);
    assert_int_equal(realm_keys_check_api_key(f->k, NULL, NULL), 0);
    assert_int_equal(realm_keys_check_api_key(f->k, "rk_' OR 1=1 --_aaaa", NULL), 0);
    /* Upper case is another key (the alphabet is lower case). */
    snprintf(bad, sizeof(bad), "%s", a.api_key);
    for (size_t i = pre; bad[i]; i++)
        if (bad[i] >= 'a' && bad[i] <= 'z') bad[i] = (char)(bad[i] - 'a' + 'A');
    assert_int_equal(realm_keys_check_api_key(f->k, bad, NULL), 0);
    /* Access key ids: case matters, no prefix match. */
    char dec[REALM_KEYS_SECRET_LEN], akid[32];
    snprintf(akid, sizeof(akid), "%.19s", a.info.access_key_id);
    assert_int_equal(realm_keys_find_access_key(f->k, akid, NULL, dec, sizeof(dec)), 0);
    assert_int_equal(realm_keys_find_access_key(f->k, "", NULL, dec, sizeof(dec)), 0);
    assert_int_equal(realm_keys_find_access_key(f->k, NULL, NULL, dec, sizeof(dec)), 0);
}

static void test_no_secret_in_db(void **state)
{
    fx_t *f = *state;
    made_t m[4];
    for (int i = 0; i < 4; i++)
        m[i] = make(f->k, i % 2 ? "acme" : "beta");
    char db[128];
    snprintf(db, sizeof(db), "%s/auth.db", f->dir);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 4; i++) {
            const char *sec = m[i].api_key + strlen("rk_") + strlen(m[i].info.key_id) + 1;
            assert_false(file_has(db, m[i].api_key));
            assert_false(file_has(db, sec));
            assert_false(file_has(db, m[i].secret));
            /* What is stored is findable: the ids are (a sanity check of file_has). */
            if (pass == 1) assert_true(file_has(db, m[i].info.access_key_id));
        }
        /* Second pass: checkpointed into the main file. */
        realm_keys_close(f->k);
        f->k = open_k(f->dir);
    }
    /* Mode 0600 for the database too. */
    struct stat st;
    assert_int_equal(stat(db, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
}

static void test_hash_not_key(void **state)
{
    /* Only salt and SHA-256(salt||secret) are stored: the same secret under two salts
     * hashes differently. Checked through sqlite3 by hand: the stored hash is 32 bytes
     * and neither the secret nor its unsalted hash. */
    fx_t *f = *state;
    made_t m = make(f->k, "acme");
    char cmd[512], out[512] = "";
    snprintf(cmd, sizeof(cmd),
             "sqlite3 %s/auth.db \"SELECT length(api_key_salt), length(api_key_hash),"
             " hex(api_key_hash), length(secret_enc) FROM keys\" 2>&1",
             f->dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    if (st != 0 && strstr(out, "not found")) {
        skip();
    }
    assert_int_equal(st, 0);
    assert_memory_equal(out, "16|32|", 6);
    assert_non_null(strstr(out, "|68")); /* 12 nonce + 40 + 16 tag */
    const char *sec = m.api_key + strlen("rk_") + strlen(m.info.key_id) + 1;
    assert_null(strstr(out, sec));
}

static void test_server_key_mode(void **state)
{
    fx_t *f = *state;
    char p[128], err[512] = "";
    struct stat st;
    snprintf(p, sizeof(p), "%s/server.key", f->dir);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 32);

    /* Group or world access: refused. */
    static const mode_t bad_modes[] = {0644, 0640, 0604, 0660, 0606};
    for (size_t i = 0; i < sizeof(bad_modes) / sizeof(bad_modes[0]); i++) {
        assert_int_equal(chmod(p, bad_modes[i]), 0);
        err[0] = '\0';
        realm_keys_t *k = realm_keys_open(f->dir, NULL, NULL, err, sizeof(err));
        assert_null(k);
        assert_non_null(strstr(err, "server.key"));
        assert_non_null(strstr(err, "chmod 600"));
    }
    assert_int_equal(chmod(p, 0400), 0); /* owner read-only is fine */
    realm_keys_close(open_k(f->dir));
    assert_int_equal(chmod(p, 0600), 0);

    /* Wrong size: refused. */
    unsigned char short_key[16] = {0};
    write_key_file(f->dir, 0600, short_key, sizeof(short_key));
    assert_null(realm_keys_open(f->dir, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "bytes"));

    /* A symlink is not followed. */
    unlink(p);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    assert_null(realm_keys_open(f->dir, NULL, NULL, err, sizeof(err)));
    unlink(p);

    /* No keys yet: a missing server.key is simply created. */
    realm_keys_t *k = open_k(f->dir);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    made_t m = make(k, "acme");
    (void)m;
    realm_keys_close(k);

    /* With keys, a missing server.key is an error (a new one could decrypt nothing). */
    char moved[128];
    snprintf(moved, sizeof(moved), "%s/moved.key", f->dir);
    assert_int_equal(rename(p, moved), 0);
    err[0] = '\0';
    assert_null(realm_keys_open(f->dir, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "missing"));
    assert_int_equal(access(p, F_OK), -1); /* and it did not create one */
    assert_int_equal(rename(moved, p), 0);
    realm_keys_close(open_k(f->dir));

    /* A new data dir (nested, missing) is created 0700. */
    char sub[128];
    snprintf(sub, sizeof(sub), "%s/a/b", f->dir);
    k = open_k(sub);
    realm_keys_close(k);
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

static void test_replaced_server_key(void **state)
{
    fx_t *f = *state;
    made_t m = make(f->k, "acme");
    realm_keys_close(f->k);
    f->k = NULL;

    unsigned char other[32];
    for (int i = 0; i < 32; i++)
        other[i] = (unsigned char)(i * 7 + 1);
    char p[128], saved[128];
    snprintf(p, sizeof(p), "%s/server.key", f->dir);
    snprintf(saved, sizeof(saved), "%s/server.key.orig", f->dir);
    assert_int_equal(rename(p, saved), 0);
    write_key_file(f->dir, 0600, other, sizeof(other));

    realm_keys_t *k = open_k(f->dir);
    char dec[REALM_KEYS_SECRET_LEN] = "x";
    realm_key_info_t info;
    assert_int_equal(realm_keys_find_access_key(k, m.info.access_key_id, &info, dec, sizeof(dec)),
                     0);
    assert_string_equal(dec, "");
    /* The API key does not depend on the server key. */
    assert_int_equal(realm_keys_check_api_key(k, m.api_key, NULL), 1);
    realm_keys_close(k);

    /* The right key back: the secret decrypts again. */
    assert_int_equal(rename(saved, p), 0);
    f->k = open_k(f->dir);
    assert_int_equal(
        realm_keys_find_access_key(f->k, m.info.access_key_id, &info, dec, sizeof(dec)), 1);
    assert_string_equal(dec, m.secret);
}

static void test_moved_ciphertext_refused(void **state)
{
    /* The access key id is authenticated: b's row holding a's ciphertext does not open. */
    fx_t *f = *state;
    made_t a = make(f->k, "acme"), b = make(f->k, "acme");
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "sqlite3 %s/auth.db \"UPDATE keys SET secret_enc = (SELECT secret_enc FROM keys"
             " WHERE key_id = '%s') WHERE key_id = '%s'\" >/dev/null 2>&1",
             f->dir, a.info.key_id, b.info.key_id);
    if (system(cmd) != 0) skip();
    char dec[REALM_KEYS_SECRET_LEN];
    assert_int_equal(realm_keys_find_access_key(f->k, b.info.access_key_id, NULL, dec, sizeof(dec)),
                     0);
    assert_int_equal(realm_keys_find_access_key(f->k, a.info.access_key_id, NULL, dec, sizeof(dec)),
                     1);
    assert_string_equal(dec, a.secret);
}

static void test_version_sees_other_connection(void **state)
{
    fx_t *f = *state;
    realm_keys_t *other = open_k(f->dir);
    uint64_t v0 = realm_keys_version(f->k);
    assert_true(realm_keys_version(f->k) == v0); /* stable while nothing changes */

    made_t m = make(other, "acme");
    uint64_t v1 = realm_keys_version(f->k);
    assert_true(v1 > v0);
    assert_true(realm_keys_version(f->k) == v1);
    /* The first store sees the new key at once. */
    assert_int_equal(realm_keys_check_api_key(f->k, m.api_key, NULL), 1);

    char err[256];
    assert_int_equal(realm_keys_revoke(other, m.info.key_id, err, sizeof(err)), 0);
    uint64_t v2 = realm_keys_version(f->k);
    assert_true(v2 > v1);
    assert_int_equal(realm_keys_is_active(f->k, m.info.key_id), 0);

    /* Own writes count too. */
    uint64_t o = realm_keys_version(other);
    make(other, "acme");
    assert_true(realm_keys_version(other) > o);
    realm_keys_close(other);
}

static void test_account_ids(void **state)
{
    fx_t *f = *state;
    char names[40][16], ids[40][13];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof(names[i]), "t-%d", i);
        made_t m = make(f->k, names[i]);
        assert_true(is_digits(m.info.account_id, 12));
        assert_string_not_equal(m.info.account_id, "000000000000");
        memcpy(ids[i], m.info.account_id, 13);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(ids[i], ids[j]);
    }
    /* Stable: a second key for a tenant, and a reopen, keep its account id. */
    made_t again = make(f->k, names[7]);
    assert_string_equal(again.info.account_id, ids[7]);
#ifndef REALM_TEST_MEMORY /* memory keeps nothing across a close */
    realm_keys_close(f->k);
    f->k = open_k(f->dir);
#endif
    char acct[13] = "";
    assert_int_equal(realm_keys_tenant_account(f->k, names[12], acct), 1);
    assert_string_equal(acct, ids[12]);
    assert_int_equal(realm_keys_tenant_account(f->k, "nobody", acct), 0);
    assert_int_equal(realm_keys_check_api_key(f->k, again.api_key, NULL), 1);
}

static void test_bad_input_refused(void **state)
{
    fx_t *f = *state;
    static const char *const bad[] = {"",     "a b",     "a/b",  "a.b", "ä",
                                      "a\nb", "tenant!", "a;--", "x'y", NULL};
    char api_key[REALM_KEYS_API_KEY_LEN], secret[REALM_KEYS_SECRET_LEN], err[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(
            realm_keys_create(f->k, bad[i], 0, 0, NULL, api_key, secret, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "tenant"));
        assert_int_equal(realm_keys_tenant_name_is_valid(bad[i]), 0);
    }
    char long_name[70];
    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    assert_int_equal(
        realm_keys_create(f->k, long_name, 0, 0, NULL, api_key, secret, err, sizeof(err)), -1);
    long_name[64] = '\0';
    assert_int_equal(
        realm_keys_create(f->k, long_name, 0, 0, NULL, api_key, secret, err, sizeof(err)), 0);
    assert_int_equal(
        realm_keys_create(f->k, "A_z-09", 0, 0, NULL, api_key, secret, err, sizeof(err)), 0);
    /* Limits: negative, NaN and infinity refused. */
    assert_int_equal(
        realm_keys_create(f->k, "acme", -1, 0, NULL, api_key, secret, err, sizeof(err)), -1);
    assert_int_equal(
        realm_keys_create(f->k, "acme", 0, -1, NULL, api_key, secret, err, sizeof(err)), -1);
    assert_int_equal(
        realm_keys_create(f->k, "acme", NAN, 0, NULL, api_key, secret, err, sizeof(err)), -1);
    assert_int_equal(
        realm_keys_create(f->k, "acme", INFINITY, 0, NULL, api_key, secret, err, sizeof(err)), -1);
    /* Nothing half-made: two keys, and no "acme" tenant. */
    json_t *list = realm_keys_list(f->k);
    assert_int_equal(json_array_size(list), 2);
    json_decref(list);
    char acct[13];
    assert_int_equal(realm_keys_tenant_account(f->k, "acme", acct), 0);
}

/* --server-key-file: a path of its own (made 0600 there, not in the data
 * dir), "DATA_DIR/..." in the data dir; a directory that does not exist is
 * an error; a bad --db is refused. */
static void test_server_key_file_path(void **state)
{
    fx_t *f = *state;
    char dir[128], key[160], err[512] = "", path[200];
    struct stat st;
    snprintf(dir, sizeof(dir), "%s/d2", f->dir);
    snprintf(key, sizeof(key), "%s/elsewhere.key", f->dir);
    realm_keys_t *k = realm_keys_open(dir, "sqlite", key, err, sizeof(err));
    if (k == NULL) fail_msg("open: %s", err);
    made_t m = make(k, "acme");
    realm_keys_close(k);
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof(path), "%s/server.key", dir);
    assert_int_equal(access(path, F_OK), -1);
    /* Reopened with it, the secret decrypts; with the data dir's default, the
     * missing key is refused (the keys exist). */
    k = realm_keys_open(dir, NULL, key, err, sizeof(err));
    if (k == NULL) fail_msg("reopen: %s", err);
    char dec[REALM_KEYS_SECRET_LEN];
    assert_int_equal(realm_keys_find_access_key(k, m.info.access_key_id, NULL, dec, sizeof(dec)),
                     1);
    assert_string_equal(dec, m.secret);
    realm_keys_close(k);
    assert_null(realm_keys_open(dir, NULL, "DATA_DIR/server.key", err, sizeof(err)));
    assert_non_null(strstr(err, "is missing"));
    /* "DATA_DIR/x.key" is made in the data dir. */
    snprintf(dir, sizeof(dir), "%s/d3", f->dir);
    k = realm_keys_open(dir, NULL, "DATA_DIR/x.key", err, sizeof(err));
    if (k == NULL) fail_msg("open: %s", err);
    realm_keys_close(k);
    snprintf(path, sizeof(path), "%s/x.key", dir);
    assert_int_equal(stat(path, &st), 0);
    snprintf(key, sizeof(key), "%s/no/such/dir.key", f->dir);
    assert_null(realm_keys_open(dir, NULL, key, err, sizeof(err)));
    assert_null(realm_keys_open(dir, "mysql://x", NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "use sqlite or a postgresql:// URL"));
}

static void test_open_errors(void **state)
{
    (void)state;
    char err[256] = "";
    assert_null(realm_keys_open("/proc/realm-no-such/dir", NULL, NULL, err, sizeof(err)));
    assert_true(strlen(err) > 0);
    assert_null(realm_keys_open("", NULL, NULL, err, sizeof(err)));
}

#ifdef REALM_TEST_PG

/* Opens a second server's store: its own data dir, the database, key_file. */
static realm_keys_t *open_second(const char *dir, const char *key_file, char *err, size_t len)
{
    err[0] = '\0';
    return realm_keys_open(dir, fx_pg_url(), key_file, err, len);
}

/* Two servers on one database (each its data dir, one key file): the
 * second sees the first's key, decrypts its secret with the same key file,
 * notices its revocation (realm_keys_version); without the key file, or
 * with another one, it is refused and says why, and makes no key file; a
 * lost check row does not let another key in (the keys must decrypt). */
static void test_pg_shared_server_key(void **state)
{
    fx_t *f = *state;
    char dir2[128], shared[160], other[160], err[1024], path[160];
    snprintf(dir2, sizeof(dir2), "%s/second", f->dir);
    snprintf(shared, sizeof(shared), "%s/server.key", f->dir);
    made_t m = make(f->k, "acme");

    realm_keys_t *b = open_second(dir2, shared, err, sizeof(err));
    if (b == NULL) fail_msg("open: %s", err);
    char dec[REALM_KEYS_SECRET_LEN] = "";
    realm_key_info_t info;
    assert_int_equal(realm_keys_find_access_key(b, m.info.access_key_id, &info, dec, sizeof(dec)),
                     1);
    assert_string_equal(dec, m.secret);
    assert_string_equal(info.account_id, m.info.account_id);
    assert_int_equal(realm_keys_check_api_key(b, m.api_key, NULL), 1);
    uint64_t v = realm_keys_version(b);
    assert_int_equal(realm_keys_revoke(f->k, m.info.key_id, err, sizeof(err)), 0);
    assert_true(realm_keys_version(b) > v);
    assert_int_equal(realm_keys_check_api_key(b, m.api_key, NULL), 0);
    made_t m2 = make(b, "beta"); /* and the first server opens the second's secret */
    assert_int_equal(
        realm_keys_find_access_key(f->k, m2.info.access_key_id, NULL, dec, sizeof(dec)), 1);
    assert_string_equal(dec, m2.secret);
    realm_keys_close(b);

    /* No key file: refused, and none is made. */
    assert_null(open_second(dir2, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "is missing"));
    assert_non_null(strstr(err, "every server on one database needs the same server key file"));
    snprintf(path, sizeof(path), "%s/server.key", dir2);
    assert_int_equal(access(path, F_OK), -1);
    /* Another key file: refused. */
    unsigned char bytes[32];
    for (int i = 0; i < 32; i++)
        bytes[i] = (unsigned char)(i * 11 + 3);
    write_key_file(dir2, 0600, bytes, sizeof(bytes));
    snprintf(other, sizeof(other), "%s/server.key", dir2);
    assert_null(open_second(dir2, other, err, sizeof(err)));
    assert_non_null(strstr(err, "is not the server key the keys in the database were made with"));
    /* The check row lost: the keys still tell, and the wrong key records nothing. */
    fx_pg_query("DELETE FROM realm_auth_meta", NULL, 0);
    assert_null(open_second(dir2, other, err, sizeof(err)));
    assert_non_null(strstr(err, "is not the server key"));
    char out[8];
    fx_pg_query("SELECT count(*) FROM realm_auth_meta", out, sizeof(out));
    assert_string_equal(out, "0");
    b = open_second(dir2, shared, err, sizeof(err)); /* the right one records it again */
    if (b == NULL) fail_msg("open: %s", err);
    realm_keys_close(b);
    fx_pg_query("SELECT count(*) FROM realm_auth_meta", out, sizeof(out));
    assert_string_equal(out, "1");
}

/* An empty database: the first server made its key file and recorded its
 * check; a second server without a key file is refused even before any
 * key exists (its fresh key would seal secrets no other server opens),
 * and works once given a copy ("DATA_DIR/..." names the data dir's file). */
static void test_pg_first_key_wins(void **state)
{
    fx_t *f = *state;
    char dir2[128], err[1024], cmd[400], path[160];
    snprintf(dir2, sizeof(dir2), "%s/second", f->dir);
    assert_null(open_second(dir2, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "is missing"));
    assert_null(open_second(dir2, "DATA_DIR/server.key", err, sizeof(err)));
    snprintf(path, sizeof(path), "%s/server.key", dir2);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(cmd, sizeof(cmd), "cp -p %s/server.key %s/copy.key", f->dir, dir2);
    assert_int_equal(system(cmd), 0);
    realm_keys_t *b = open_second(dir2, "DATA_DIR/copy.key", err, sizeof(err));
    if (b == NULL) fail_msg("open: %s", err);
    made_t m = make(b, "acme");
    assert_int_equal(realm_keys_check_api_key(f->k, m.api_key, NULL), 1);
    realm_keys_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_list_check_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_keys_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_sees_other_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_shared_server_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_first_key_wins, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_list_check_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_keys_refused, setup, teardown),
#ifndef REALM_TEST_MEMORY /* files: SQLite only */
        cmocka_unit_test_setup_teardown(test_no_secret_in_db, setup, teardown),
#endif
#ifndef REALM_TEST_MEMORY /* files: SQLite only */
        cmocka_unit_test_setup_teardown(test_hash_not_key, setup, teardown),
#endif
#ifndef REALM_TEST_MEMORY /* files: SQLite only */
        cmocka_unit_test_setup_teardown(test_server_key_mode, setup, teardown),
#endif
#ifndef REALM_TEST_MEMORY /* files: SQLite only */
        cmocka_unit_test_setup_teardown(test_replaced_server_key, setup, teardown),
#endif
#ifndef REALM_TEST_MEMORY /* files: SQLite only */
        cmocka_unit_test_setup_teardown(test_moved_ciphertext_refused, setup, teardown),
#endif
#ifndef REALM_TEST_MEMORY /* files: SQLite only */
        cmocka_unit_test_setup_teardown(test_version_sees_other_connection, setup, teardown),
#endif
        cmocka_unit_test_setup_teardown(test_account_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input_refused, setup, teardown),
#ifndef REALM_TEST_MEMORY
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test_setup_teardown(test_server_key_file_path, setup, teardown),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif
