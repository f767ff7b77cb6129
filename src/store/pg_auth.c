/*
 * pg_auth.c - the PostgreSQL backend's tenants and keys (docs/storage.md,
 * "PostgreSQL backend (auth)"): the same rows and answers as SQLite's
 * auth.db (sqlite_auth.c), shared by every server on the database.
 *
 * SCHEMA (version 1, recorded in realm_schema under 'auth'; the steps below):
 *   tenants(name PK, account_id UNIQUE, created)
 *   keys(key_id PK, tenant, api_key_salt, api_key_hash, access_key_id UNIQUE,
 *        secret_enc, rate, burst, revoked_at NULL, created)
 *   realm_auth_version(id = 1, value)     the shared change counter
 *   realm_auth_meta(name PK, value)       'server_key_check': auth/keys.c's
 *                                         check value of the server key
 * Times are Unix epoch milliseconds, blobs BYTEA, names compare bytewise
 * (COLLATE "C"). Keys are never deleted: a revoked row keeps its key id and
 * access key id taken, so neither is ever reissued.
 *
 * Inserts use ON CONFLICT DO NOTHING (no row: "taken", 1): a unique
 * violation would abort the caller's transaction, and auth/keys.c draws a
 * new id and tries again inside it.
 *
 * realm_store_auth_version reads realm_auth_version, a row bumped by a
 * statement-level trigger on tenants and keys in the writing transaction:
 * every server sees it move when a change commits (a revocation made by
 * `realm keys revoke` or another server included), never before, and a
 * rollback takes the bump back.
 */
#include "store/pg.h"

#include "base/alloc.h"
#include "base/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The migrations (append-only: store/internal.h). */
static const realm_store_migration_t steps[] = {
    {"tenants, keys, change counter, server key check",
     "CREATE TABLE tenants("
     " name TEXT COLLATE \"C\" NOT NULL PRIMARY KEY,"
     " account_id TEXT COLLATE \"C\" NOT NULL UNIQUE CHECK(length(account_id) = 12),"
     " created BIGINT NOT NULL);"
     "CREATE TABLE keys("
     " key_id TEXT COLLATE \"C\" NOT NULL PRIMARY KEY,"
     " tenant TEXT COLLATE \"C\" NOT NULL REFERENCES tenants(name),"
     " api_key_salt BYTEA NOT NULL, api_key_hash BYTEA NOT NULL,"
     " access_key_id TEXT COLLATE \"C\" NOT NULL UNIQUE, secret_enc BYTEA NOT NULL,"
     " rate DOUBLE PRECISION NOT NULL DEFAULT 0, burst DOUBLE PRECISION NOT NULL DEFAULT 0,"
     " revoked_at BIGINT, created BIGINT NOT NULL);"
     "CREATE INDEX keys_tenant ON keys(tenant, created);"
     "CREATE TABLE realm_auth_version(id INTEGER PRIMARY KEY CHECK(id = 1),"
     " value BIGINT NOT NULL);"
     "INSERT INTO realm_auth_version(id, value) VALUES(1, 1);"
     "CREATE TABLE realm_auth_meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);"
     "CREATE FUNCTION realm_auth_bump() RETURNS trigger LANGUAGE plpgsql AS $$"
     " BEGIN UPDATE realm_auth_version SET value = value + 1 WHERE id = 1;"
     " RETURN NULL; END $$;"
     "CREATE TRIGGER tenants_version AFTER INSERT OR UPDATE OR DELETE ON tenants"
     " FOR EACH STATEMENT EXECUTE FUNCTION realm_auth_bump();"
     "CREATE TRIGGER keys_version AFTER INSERT OR UPDATE OR DELETE ON keys"
     " FOR EACH STATEMENT EXECUTE FUNCTION realm_auth_bump();"},
};
const realm_store_schema_t realm_pg_auth_schema = {steps, sizeof(steps) / sizeof(steps[0])};

#define KEY_COLS                                                                                   \
    "k.key_id, k.tenant, t.account_id, k.access_key_id, k.rate, k.burst, k.revoked_at,"            \
    " k.created, k.api_key_salt, k.api_key_hash, k.secret_enc"                                     \
    " FROM keys k JOIN tenants t ON t.name = k.tenant"

enum {
    S_TENANT_GET,
    S_TENANT_ADD,
    S_KEY_ADD,
    S_KEY_BY_ID,
    S_KEY_BY_AKID,
    S_LIST,
    S_REVOKE,
    S_KEY_EXISTS,
    S_HAS_KEYS,
    S_VERSION,
    S_CHECK_GET,
    S_CHECK_SET,
    S_COUNT
};

static const pg_stmt_t stmts[S_COUNT] = {
    [S_TENANT_GET] = {"SELECT account_id FROM tenants WHERE name = $1", 1},
    [S_TENANT_ADD] = {"INSERT INTO tenants(name, account_id, created) VALUES($1, $2, $3)"
                      " ON CONFLICT DO NOTHING",
                      3},
    [S_KEY_ADD] = {"INSERT INTO keys(key_id, tenant, api_key_salt, api_key_hash, access_key_id,"
                   " secret_enc, rate, burst, revoked_at, created)"
                   " VALUES($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9) ON CONFLICT DO NOTHING",
                   9},
    [S_KEY_BY_ID] = {"SELECT " KEY_COLS " WHERE k.key_id = $1", 1},
    [S_KEY_BY_AKID] = {"SELECT " KEY_COLS " WHERE k.access_key_id = $1", 1},
    [S_LIST] = {"SELECT " KEY_COLS " ORDER BY k.tenant, k.created, k.key_id", 0},
    [S_REVOKE] = {"UPDATE keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL", 2},
    [S_KEY_EXISTS] = {"SELECT 1 FROM keys WHERE key_id = $1", 1},
    [S_HAS_KEYS] = {"SELECT EXISTS(SELECT 1 FROM keys)", 0},
    [S_VERSION] = {"SELECT value FROM realm_auth_version WHERE id = 1", 0},
    [S_CHECK_GET] = {"SELECT value FROM realm_auth_meta WHERE name = 'server_key_check'", 0},
    [S_CHECK_SET] = {"INSERT INTO realm_auth_meta(name, value) VALUES('server_key_check', $1)"
                     " ON CONFLICT DO NOTHING",
                     1},
};

#define P(s) ((pg_t *)(s))

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

static void copy_text(char *out, size_t len, const PGresult *r, int row, int col)
{
    snprintf(out, len, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

/* A BYTEA column (text format: "\x..."), as copy_blob of sqlite_auth.c: cap + 1 when too long. */
static size_t copy_blob(unsigned char *out, size_t cap, const PGresult *r, int row, int col)
{
    size_t n = 0;
    unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &n);
    if (!b) return cap + 1;
    if (n > cap) {
        PQfreemem(b);
        return cap + 1;
    }
    if (n) memcpy(out, b, n);
    PQfreemem(b);
    return n;
}

static void read_key(const PGresult *r, int row, realm_store_key_t *k)
{
    memset(k, 0, sizeof(*k));
    copy_text(k->key_id, sizeof(k->key_id), r, row, C_KEY_ID);
    copy_text(k->tenant, sizeof(k->tenant), r, row, C_TENANT);
    copy_text(k->account_id, sizeof(k->account_id), r, row, C_ACCOUNT);
    copy_text(k->access_key_id, sizeof(k->access_key_id), r, row, C_AKID);
    k->rate = strtod(PQgetvalue(r, row, C_RATE), NULL);
    k->burst = strtod(PQgetvalue(r, row, C_BURST), NULL);
    if (!PQgetisnull(r, row, C_REVOKED)) {
        int64_t v = realm_pg_int(r, row, C_REVOKED);
        k->revoked_ms = v ? v : 1;
    }
    k->created_ms = realm_pg_int(r, row, C_CREATED);
    k->salt_len = copy_blob(k->salt, sizeof(k->salt), r, row, C_SALT);
    k->hash_len = copy_blob(k->hash, sizeof(k->hash), r, row, C_HASH);
    k->secret_enc_len = copy_blob(k->secret_enc, sizeof(k->secret_enc), r, row, C_SECRET_ENC);
}

/* Runs a write: 0 when it changed a row, 1 when none, -1. */
static int write_rc(pg_t *p, int idx, const char *const *params, const int *lengths,
                    const int *formats)
{
    PGresult *r = realm_pg_exec_bin(p, (size_t)idx, params, lengths, formats, 0, NULL);
    if (!r) return -1;
    int64_t n = realm_pg_changes(r);
    PQclear(r);
    return n > 0 ? 0 : 1;
}

/* Runs a query: 0 with a row (res kept in *out), 1 without (cleared), -1. */
static int query_row(pg_t *p, int idx, const char *const *params, PGresult **out)
{
    PGresult *r = realm_pg_exec(p, (size_t)idx, params, NULL);
    if (!r) return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 1;
    }
    *out = r;
    return 0;
}

static int tenant_get(realm_store_t *s, const char *t, char *account_id)
{
    PGresult *r = NULL;
    int rc = query_row(P(s), S_TENANT_GET, (const char *[]){t}, &r);
    if (rc != 0) return rc;
    copy_text(account_id, 13, r, 0, 0);
    PQclear(r);
    return 0;
}

static int tenant_add(realm_store_t *s, const char *t, const char *account_id, int64_t now_ms)
{
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, now_ms);
    return write_rc(P(s), S_TENANT_ADD, (const char *[]){t, account_id, now}, NULL, NULL);
}

static int key_add(realm_store_t *s, const realm_store_key_t *k)
{
    char rate[32], burst[32], created[24];
    snprintf(rate, sizeof(rate), "%.17g", k->rate);
    snprintf(burst, sizeof(burst), "%.17g", k->burst);
    snprintf(created, sizeof(created), "%" PRId64, k->created_ms);
    const char *params[9] = {k->key_id,
                             k->tenant,
                             (const char *)k->salt,
                             (const char *)k->hash,
                             k->access_key_id,
                             (const char *)k->secret_enc,
                             rate,
                             burst,
                             created};
    const int lengths[9] = {0, 0, (int)k->salt_len, (int)k->hash_len, 0, (int)k->secret_enc_len, 0,
                            0, 0};
    const int formats[9] = {0, 0, 1, 1, 0, 1, 0, 0, 0};
    return write_rc(P(s), S_KEY_ADD, params, lengths, formats);
}

static int key_get(realm_store_t *s, const char *id, int by_access_key, realm_store_key_t *out)
{
    PGresult *r = NULL;
    int rc = query_row(P(s), by_access_key ? S_KEY_BY_AKID : S_KEY_BY_ID, (const char *[]){id}, &r);
    if (rc != 0) return rc;
    read_key(r, 0, out);
    PQclear(r);
    return 0;
}

static int key_list(realm_store_t *s, realm_store_key_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    PGresult *r = realm_pg_exec(P(s), S_LIST, NULL, NULL);
    if (!r) return -1;
    int rows = PQntuples(r);
    *out = realm_malloc((size_t)(rows ? rows : 1) * sizeof(**out));
    for (int i = 0; i < rows; i++)
        read_key(r, i, &(*out)[i]);
    *n = (size_t)rows;
    PQclear(r);
    return 0;
}

static int key_revoke(realm_store_t *s, const char *key_id, int64_t now_ms)
{
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, now_ms);
    int rc = write_rc(P(s), S_REVOKE, (const char *[]){key_id, now}, NULL, NULL);
    if (rc != 1) return rc; /* 0 revoked now, -1 */
    PGresult *r = NULL;
    rc = query_row(P(s), S_KEY_EXISTS, (const char *[]){key_id}, &r);
    if (rc == 0) PQclear(r);
    return rc == 0 ? 1 : rc == 1 ? 2 : -1;
}

static int key_any(realm_store_t *s)
{
    PGresult *r = NULL;
    if (query_row(P(s), S_HAS_KEYS, NULL, &r) != 0) return -1;
    int any = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return any;
}

static int64_t auth_version(realm_store_t *s)
{
    pg_t *p = P(s);
    PGresult *r = NULL;
    /* On an error the last value read stands (logged): nothing cached is
     * dropped on a guess, and the next call that works catches up. */
    if (query_row(p, S_VERSION, NULL, &r) == 0) {
        p->last_generation = (uint64_t)realm_pg_int(r, 0, 0);
        PQclear(r);
    }
    return (int64_t)p->last_generation;
}

static int auth_key_check(realm_store_t *s, const char *check, char *stored)
{
    pg_t *p = P(s);
    if (check && write_rc(p, S_CHECK_SET, (const char *[]){check}, NULL, NULL) < 0) return -1;
    PGresult *r = NULL;
    int rc = query_row(p, S_CHECK_GET, NULL, &r);
    if (rc != 0) return rc;
    copy_text(stored, REALM_STORE_HEX_LEN + 1, r, 0, 0);
    PQclear(r);
    return 0;
}

void realm_pg_auth_init(pg_t *p)
{
    realm_store_ops_t *o = &p->ops;
    p->stmts = stmts;
    p->stmt_cnt = S_COUNT;
    _Static_assert(S_COUNT <= PG_STMT_MAX, "PG_STMT_MAX");
    o->tenant_get = tenant_get;
    o->tenant_add = tenant_add;
    o->key_add = key_add;
    o->key_get = key_get;
    o->key_list = key_list;
    o->key_revoke = key_revoke;
    o->key_any = key_any;
    o->auth_version = auth_version;
    o->auth_key_check = auth_key_check;
}
