/*
 * sqlite_auth.c - the SQLite backend's tenants and keys (auth.db).
 *
 * SCHEMA (version 1, recorded in realm_schema; the steps below):
 *   tenants(name PK, account_id UNIQUE, created)
 *   keys(key_id PK, tenant, api_key_salt, api_key_hash, access_key_id UNIQUE,
 *        secret_enc, rate, burst, revoked_at NULL, created)
 * Times are Unix epoch milliseconds. Keys are never deleted: a revoked row
 * keeps its key id and access key id taken, so neither is ever reissued.
 *
 * realm_store_auth_version reads PRAGMA data_version, which changes when
 * another connection commits (never for this connection's own commits).
 */
#include "store/sqlite.h"

#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The migrations (append-only: store/internal.h). Step 1 is the schema of
 * every release before realm_schema, word for word (IF NOT EXISTS: a file
 * from then may hold part of it). */
static const realm_store_migration_t steps[] = {
    {"tenants, keys", "CREATE TABLE IF NOT EXISTS tenants("
                      " name TEXT PRIMARY KEY,"
                      " account_id TEXT NOT NULL UNIQUE CHECK(length(account_id) = 12),"
                      " created INTEGER NOT NULL);"
                      "CREATE TABLE IF NOT EXISTS keys("
                      " key_id TEXT PRIMARY KEY,"
                      " tenant TEXT NOT NULL REFERENCES tenants(name),"
                      " api_key_salt BLOB NOT NULL, api_key_hash BLOB NOT NULL,"
                      " access_key_id TEXT NOT NULL UNIQUE, secret_enc BLOB NOT NULL,"
                      " rate REAL NOT NULL DEFAULT 0, burst REAL NOT NULL DEFAULT 0,"
                      " revoked_at INTEGER, created INTEGER NOT NULL);"
                      "CREATE INDEX IF NOT EXISTS keys_tenant ON keys(tenant, created);"},
};
const realm_store_schema_t realm_sqlite_auth_schema = {steps, sizeof(steps) / sizeof(steps[0])};

#define KEY_COLS                                                                                   \
    "k.key_id, k.tenant, t.account_id, k.access_key_id, k.rate, k.burst, k.revoked_at,"            \
    " k.created, k.api_key_salt, k.api_key_hash, k.secret_enc"                                     \
    " FROM keys k JOIN tenants t ON t.name = k.tenant"

static const char S_TENANT_GET[] = "SELECT account_id FROM tenants WHERE name = ?1";
static const char S_TENANT_ADD[] =
    "INSERT INTO tenants(name, account_id, created) VALUES(?1, ?2, ?3)";
static const char S_KEY_ADD[] =
    "INSERT INTO keys(key_id, tenant, api_key_salt, api_key_hash, access_key_id, secret_enc,"
    " rate, burst, revoked_at, created) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9)";
static const char S_KEY_BY_ID[] = "SELECT " KEY_COLS " WHERE k.key_id = ?1";
static const char S_KEY_BY_AKID[] = "SELECT " KEY_COLS " WHERE k.access_key_id = ?1";
static const char S_LIST[] = "SELECT " KEY_COLS " ORDER BY k.tenant, k.created, k.key_id";
static const char S_REVOKE[] =
    "UPDATE keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL";
static const char S_KEY_EXISTS[] = "SELECT 1 FROM keys WHERE key_id = ?1";
static const char S_HAS_KEYS[] = "SELECT EXISTS(SELECT 1 FROM keys)";
static const char S_DATA_VERSION[] = "PRAGMA data_version";

/* Columns of KEY_COLS, by position. */
enum {
    C_KEY_ID,
    C_TENANT,
    C_ACCOUNT,
    C_AKID,
    C_RATE,
    C_BURST,
    C_REVOKED,
    C_CREATED,
    C_SALT,
    C_HASH,
    C_SECRET_ENC
};

static size_t copy_blob(unsigned char *out, size_t cap, sqlite3_stmt *st, int col)
{
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    if (n > cap) return cap + 1; /* too long: the caller's checks refuse it */
    if (n) memcpy(out, sqlite3_column_blob(st, col), n);
    return n;
}

static void read_key(sqlite3_stmt *st, realm_store_key_t *k)
{
    memset(k, 0, sizeof(*k));
    realm_sqlite_column_copy(k->key_id, sizeof(k->key_id), st, C_KEY_ID);
    realm_sqlite_column_copy(k->tenant, sizeof(k->tenant), st, C_TENANT);
    realm_sqlite_column_copy(k->account_id, sizeof(k->account_id), st, C_ACCOUNT);
    realm_sqlite_column_copy(k->access_key_id, sizeof(k->access_key_id), st, C_AKID);
    k->rate = sqlite3_column_double(st, C_RATE);
    k->burst = sqlite3_column_double(st, C_BURST);
    k->revoked_ms =
        sqlite3_column_type(st, C_REVOKED) == SQLITE_NULL
            ? 0
            : (sqlite3_column_int64(st, C_REVOKED) ? sqlite3_column_int64(st, C_REVOKED) : 1);
    k->created_ms = sqlite3_column_int64(st, C_CREATED);
    k->salt_len = copy_blob(k->salt, sizeof(k->salt), st, C_SALT);
    k->hash_len = copy_blob(k->hash, sizeof(k->hash), st, C_HASH);
    k->secret_enc_len = copy_blob(k->secret_enc, sizeof(k->secret_enc), st, C_SECRET_ENC);
}

static int tenant_get(realm_store_t *s, const char *t, char *account_id)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = realm_sqlite_prep(q, S_TENANT_GET);
    if (!st) return -1;
    realm_sqlite_text(st, 1, t);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) realm_sqlite_column_copy(account_id, 13, st, 0);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) realm_sqlite_fail(q, S_TENANT_GET);
    realm_sqlite_done(q, st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

static int tenant_add(realm_store_t *s, const char *t, const char *account_id, int64_t now_ms)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = realm_sqlite_prep(q, S_TENANT_ADD);
    if (!st) return -1;
    realm_sqlite_text(st, 1, t);
    realm_sqlite_text(st, 2, account_id);
    sqlite3_bind_int64(st, 3, now_ms);
    int rc = realm_sqlite_step_done(q, st);
    return rc == SQLITE_DONE ? 0 : (rc & 0xff) == SQLITE_CONSTRAINT ? 1 : -1;
}

static int key_add(realm_store_t *s, const realm_store_key_t *k)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = realm_sqlite_prep(q, S_KEY_ADD);
    if (!st) return -1;
    realm_sqlite_text(st, 1, k->key_id);
    realm_sqlite_text(st, 2, k->tenant);
    sqlite3_bind_blob(st, 3, k->salt, (int)k->salt_len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, k->hash, (int)k->hash_len, SQLITE_STATIC);
    realm_sqlite_text(st, 5, k->access_key_id);
    sqlite3_bind_blob(st, 6, k->secret_enc, (int)k->secret_enc_len, SQLITE_STATIC);
    sqlite3_bind_double(st, 7, k->rate);
    sqlite3_bind_double(st, 8, k->burst);
    sqlite3_bind_int64(st, 9, k->created_ms);
    int rc = realm_sqlite_step_done(
        q, st); /* realm_sqlite_done drops the pointers to the caller's key */
    return rc == SQLITE_DONE ? 0 : (rc & 0xff) == SQLITE_CONSTRAINT ? 1 : -1;
}

static int key_get(realm_store_t *s, const char *id, int by_access_key, realm_store_key_t *out)
{
    sq_t *q = (sq_t *)s;
    const char *sql = by_access_key ? S_KEY_BY_AKID : S_KEY_BY_ID;
    sqlite3_stmt *st = realm_sqlite_prep(q, sql);
    if (!st) return -1;
    realm_sqlite_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) read_key(st, out);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) realm_sqlite_fail(q, sql);
    realm_sqlite_done(q, st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

static int key_list(realm_store_t *s, realm_store_key_t **out, size_t *n)
{
    sq_t *q = (sq_t *)s;
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = realm_sqlite_prep(q, S_LIST);
    if (!st) return -1;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            *out = realm_realloc(*out, cap * sizeof(**out));
        }
        read_key(st, &(*out)[(*n)++]);
    }
    if (rc != SQLITE_DONE) realm_sqlite_fail(q, S_LIST);
    realm_sqlite_done(q, st);
    if (rc == SQLITE_DONE) return 0;
    free(*out);
    *out = NULL;
    *n = 0;
    return -1;
}

static int key_revoke(realm_store_t *s, const char *key_id, int64_t now_ms)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = realm_sqlite_prep(q, S_REVOKE);
    if (!st) return -1;
    realm_sqlite_text(st, 1, key_id);
    sqlite3_bind_int64(st, 2, now_ms);
    if (realm_sqlite_step_done(q, st) != SQLITE_DONE) return -1;
    if (sqlite3_changes(q->db) > 0) return 0;
    st = realm_sqlite_prep(q, S_KEY_EXISTS);
    if (!st) return -1;
    realm_sqlite_text(st, 1, key_id);
    int rc = realm_sqlite_step_done(q, st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 2 : -1;
}

static int key_any(realm_store_t *s)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = realm_sqlite_prep(q, S_HAS_KEYS);
    if (!st) return -1;
    int rc = sqlite3_step(st), any = -1;
    if (rc == SQLITE_ROW)
        any = sqlite3_column_int(st, 0) != 0;
    else
        realm_sqlite_fail(q, S_HAS_KEYS);
    realm_sqlite_done(q, st);
    return any;
}

static int64_t auth_version(realm_store_t *s)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = realm_sqlite_prep(q, S_DATA_VERSION);
    if (!st) return q->data_version;
    if (sqlite3_step(st) == SQLITE_ROW) q->data_version = sqlite3_column_int64(st, 0);
    realm_sqlite_done(q, st);
    return q->data_version;
}

void realm_sqlite_auth_ops(realm_store_ops_t *o)
{
    o->tenant_get = tenant_get;
    o->tenant_add = tenant_add;
    o->key_add = key_add;
    o->key_get = key_get;
    o->key_list = key_list;
    o->key_revoke = key_revoke;
    o->key_any = key_any;
    o->auth_version = auth_version;
}
