/*
 * sqlite_registry.c - the SQLite backend's registry (realm.db).
 *
 * SCHEMA (version 1, recorded in realm_schema; the steps below):
 *   functions(tenant, name, next_version, reserved, tags)    one per function
 *   versions(tenant, name, num, code, config)                num 0 is $LATEST
 *   aliases(tenant, name, alias, config)
 * `config` columns hold JSON: for versions the stored FunctionConfiguration
 * fields, for aliases {FunctionVersion, Description, RoutingConfig,
 * RevisionId}. Deleting a function cascades to its versions and aliases.
 */
#include "store/sqlite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The migrations (append-only: store/internal.h). Step 1 is the schema of
 * every release before realm_schema, word for word; IF NOT EXISTS because a
 * file from then may hold part of it (it was not made in one transaction). */
static const realm_store_migration_t steps[] = {
    {"functions, versions, aliases",
     "CREATE TABLE IF NOT EXISTS functions("
     " tenant TEXT NOT NULL, name TEXT NOT NULL,"
     " next_version INTEGER NOT NULL DEFAULT 1,"
     " reserved INTEGER,"
     " tags TEXT NOT NULL DEFAULT '{}',"
     " PRIMARY KEY(tenant, name));"
     "CREATE TABLE IF NOT EXISTS versions("
     " tenant TEXT NOT NULL, name TEXT NOT NULL, num INTEGER NOT NULL,"
     " code TEXT NOT NULL, config TEXT NOT NULL,"
     " PRIMARY KEY(tenant, name, num),"
     " FOREIGN KEY(tenant, name) REFERENCES functions(tenant, name) ON DELETE CASCADE);"
     "CREATE INDEX IF NOT EXISTS versions_code ON versions(code);"
     "CREATE TABLE IF NOT EXISTS aliases("
     " tenant TEXT NOT NULL, name TEXT NOT NULL, alias TEXT NOT NULL, config TEXT NOT NULL,"
     " PRIMARY KEY(tenant, name, alias),"
     " FOREIGN KEY(tenant, name) REFERENCES functions(tenant, name) ON DELETE CASCADE);"},
};
const realm_store_schema_t realm_sqlite_registry_schema = {steps, sizeof(steps) / sizeof(steps[0])};

static const char S_FN_GET[] =
    "SELECT next_version, reserved, tags FROM functions WHERE tenant=?1 AND name=?2";
static const char S_FN_INSERT[] = "INSERT INTO functions(tenant, name, tags) VALUES(?1, ?2, ?3)";
static const char S_FN_DELETE[] = "DELETE FROM functions WHERE tenant=?1 AND name=?2";
static const char S_FN_RESERVED[] = "UPDATE functions SET reserved=?3 WHERE tenant=?1 AND name=?2";
static const char S_FN_TAGS[] = "UPDATE functions SET tags=?3 WHERE tenant=?1 AND name=?2";
static const char S_FN_TAKE[] = "UPDATE functions SET next_version = next_version + 1 "
                                "WHERE tenant=?1 AND name=?2 RETURNING next_version - 1";
static const char S_FN_SUM[] = "SELECT COALESCE(SUM(reserved), 0) FROM functions "
                               "WHERE tenant=?1 AND name != ?2";
static const char S_FN_USAGE[] =
    "SELECT (SELECT COUNT(*) FROM functions WHERE tenant=?1), "
    "(SELECT COALESCE(SUM(json_extract(config, '$.CodeSize')), 0) FROM versions "
    "WHERE tenant=?1)";
static const char S_VER_GET[] =
    "SELECT config, code FROM versions WHERE tenant=?1 AND name=?2 AND num=?3";
static const char S_VER_LAST[] = "SELECT num, config, code FROM versions WHERE tenant=?1 AND "
                                 "name=?2 AND num>0 ORDER BY num DESC LIMIT 1";
static const char S_VER_INSERT[] =
    "INSERT INTO versions(tenant, name, num, code, config) VALUES(?1, ?2, ?3, ?4, ?5)";
static const char S_VER_UPDATE[] =
    "UPDATE versions SET code=?4, config=?5 WHERE tenant=?1 AND name=?2 AND num=?3";
static const char S_VER_UPDATE_CFG[] =
    "UPDATE versions SET config=?5 WHERE tenant=?1 AND name=?2 AND num=?3";
static const char S_VER_DELETE[] = "DELETE FROM versions WHERE tenant=?1 AND name=?2 AND num=?3";
static const char S_VER_LIST_FN[] = "SELECT name, num, config FROM versions WHERE tenant=?1 AND "
                                    "name=?2 AND num > ?4 ORDER BY num LIMIT ?5";
static const char S_VER_LIST_ALL[] =
    "SELECT name, num, config FROM versions WHERE tenant=?1 AND "
    "(name > ?3 OR (name = ?3 AND num > ?4)) ORDER BY name, num LIMIT ?5";
static const char S_VER_LIST_LATEST[] = "SELECT name, num, config FROM versions WHERE tenant=?1 "
                                        "AND num=0 AND name > ?3 ORDER BY name LIMIT ?5";
static const char S_CODE_USED[] = "SELECT 1 FROM versions WHERE code=?1 LIMIT 1";
static const char S_CODE_OWNED[] = "SELECT 1 FROM versions WHERE code=?1 AND tenant=?2 LIMIT 1";
static const char S_ALIAS_GET[] =
    "SELECT config FROM aliases WHERE tenant=?1 AND name=?2 AND alias=?3";
static const char S_ALIAS_INSERT[] =
    "INSERT INTO aliases(tenant, name, alias, config) VALUES(?1, ?2, ?3, ?4)";
static const char S_ALIAS_UPDATE[] =
    "UPDATE aliases SET config=?4 WHERE tenant=?1 AND name=?2 AND alias=?3";
static const char S_ALIAS_DELETE[] = "DELETE FROM aliases WHERE tenant=?1 AND name=?2 AND alias=?3";
static const char S_ALIAS_LIST[] =
    "SELECT alias, config FROM aliases WHERE tenant=?1 AND name=?2 AND alias > ?3 "
    "AND (?4 = '' OR json_extract(config, '$.FunctionVersion') = ?4) ORDER BY alias LIMIT ?5";
static const char S_ALIAS_USING[] =
    "SELECT alias FROM aliases WHERE tenant=?1 AND name=?2 AND "
    "(json_extract(config, '$.FunctionVersion') = ?3 OR "
    "json_type(config, '$.RoutingConfig.AdditionalVersionWeights.\"' || ?3 || '\"') IS NOT NULL)";

/* A statement for sql with tenant and name bound to ?1 and ?2. */
static sqlite3_stmt *prep_tn(sq_t *q, const char *sql, const char *t, const char *n)
{
    sqlite3_stmt *st = realm_sqlite_prep(q, sql);
    if (!st) return NULL;
    realm_sqlite_text(st, 1, t);
    realm_sqlite_text(st, 2, n);
    return st;
}

static char *dump(json_t *j)
{
    return json_dumps(j, JSON_COMPACT);
}

/* Runs a write: 0, 1 when it changed no row (missing), -1. */
static int write_rc(sq_t *q, sqlite3_stmt *st)
{
    if (!st) return -1;
    int rc = realm_sqlite_step_done(q, st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return -1;
    return sqlite3_changes(q->db) > 0 ? 0 : 1;
}

static int fn_get(realm_store_t *s, const char *t, const char *n, realm_store_fn_t *out)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_tn(q, S_FN_GET, t, n);
    if (!st) return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && out) {
        out->next_version = sqlite3_column_int64(st, 0);
        out->reserved =
            sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 1);
        out->tags = realm_sqlite_column_json(st, 2);
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) realm_sqlite_fail(q, S_FN_GET);
    realm_sqlite_done(q, st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

static int fn_insert(realm_store_t *s, const char *t, const char *n, json_t *tags)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_tn(q, S_FN_INSERT, t, n);
    if (!st) return -1;
    char *ts = tags ? dump(tags) : NULL;
    realm_sqlite_text(st, 3, ts ? ts : "{}");
    free(ts);
    int rc = realm_sqlite_step_done(q, st);
    return rc == SQLITE_DONE ? 0 : (rc & 0xff) == SQLITE_CONSTRAINT ? 1 : -1;
}

static int fn_delete(realm_store_t *s, const char *t, const char *n)
{
    sq_t *q = (sq_t *)s;
    return write_rc(q, prep_tn(q, S_FN_DELETE, t, n));
}

static int fn_set_reserved(realm_store_t *s, const char *t, const char *n, int64_t reserved)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_tn(q, S_FN_RESERVED, t, n);
    if (!st) return -1;
    if (reserved >= 0)
        sqlite3_bind_int64(st, 3, reserved);
    else
        sqlite3_bind_null(st, 3);
    return write_rc(q, st) < 0 ? -1 : 0;
}

static int fn_set_tags(realm_store_t *s, const char *t, const char *n, json_t *tags)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_tn(q, S_FN_TAGS, t, n);
    if (!st) return -1;
    char *ts = dump(tags);
    realm_sqlite_text(st, 3, ts);
    free(ts);
    return write_rc(q, st) < 0 ? -1 : 0;
}

static int64_t fn_take_version(realm_store_t *s, const char *t, const char *n)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_tn(q, S_FN_TAKE, t, n);
    if (!st) return -1;
    int64_t v = -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_DONE) {
        realm_sqlite_fail(q, S_FN_TAKE);
        v = -1;
    }
    realm_sqlite_done(q, st);
    return v;
}

static int64_t fn_sum_reserved(realm_store_t *s, const char *t, const char *except)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_tn(q, S_FN_SUM, t, except ? except : "");
    if (!st) return -1;
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0)
                                               : realm_sqlite_fail(q, S_FN_SUM);
    realm_sqlite_done(q, st);
    return v;
}

static int fn_usage(realm_store_t *s, const char *t, int64_t *count, int64_t *code_size)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = realm_sqlite_prep(q, S_FN_USAGE);
    if (!st) return -1;
    realm_sqlite_text(st, 1, t);
    int rc = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *count = sqlite3_column_int64(st, 0);
        *code_size = sqlite3_column_int64(st, 1);
        rc = 0;
    } else {
        realm_sqlite_fail(q, S_FN_USAGE);
    }
    realm_sqlite_done(q, st);
    return rc;
}

/* ---- versions ---- */

static int ver_get(realm_store_t *s, const char *t, const char *n, int64_t num, json_t **config,
                   char *code)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_tn(q, S_VER_GET, t, n);
    if (!st) return -1;
    sqlite3_bind_int64(st, 3, num);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (config) *config = realm_sqlite_column_json(st, 0);
        if (code) realm_sqlite_column_copy(code, REALM_STORE_HEX_LEN + 1, st, 1);
    } else if (rc != SQLITE_DONE) {
        realm_sqlite_fail(q, S_VER_GET);
    }
    realm_sqlite_done(q, st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

static int ver_last(realm_store_t *s, const char *t, const char *n, int64_t *num, json_t **config,
                    char *code)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_tn(q, S_VER_LAST, t, n);
    if (!st) return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *num = sqlite3_column_int64(st, 0);
        if (config) *config = realm_sqlite_column_json(st, 1);
        if (code) realm_sqlite_column_copy(code, REALM_STORE_HEX_LEN + 1, st, 2);
    } else if (rc != SQLITE_DONE) {
        realm_sqlite_fail(q, S_VER_LAST);
    }
    realm_sqlite_done(q, st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

static int ver_write(sq_t *q, const char *sql, const char *t, const char *n, int64_t num,
                     const char *code, json_t *config)
{
    sqlite3_stmt *st = prep_tn(q, sql, t, n);
    if (!st) return -1;
    sqlite3_bind_int64(st, 3, num);
    if (code) realm_sqlite_text(st, 4, code);
    char *cs = dump(config);
    realm_sqlite_text(st, 5, cs);
    free(cs);
    return write_rc(q, st) < 0 ? -1 : 0;
}

static int ver_insert(realm_store_t *s, const char *t, const char *n, int64_t num, const char *code,
                      json_t *config)
{
    return ver_write((sq_t *)s, S_VER_INSERT, t, n, num, code, config);
}

static int ver_update(realm_store_t *s, const char *t, const char *n, int64_t num, const char *code,
                      json_t *config)
{
    return ver_write((sq_t *)s, code ? S_VER_UPDATE : S_VER_UPDATE_CFG, t, n, num, code, config);
}

static int ver_delete(realm_store_t *s, const char *t, const char *n, int64_t num)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_tn(q, S_VER_DELETE, t, n);
    if (!st) return -1;
    sqlite3_bind_int64(st, 3, num);
    return write_rc(q, st);
}

static json_t *ver_list(realm_store_t *s, const char *t, const char *n, const char *after_name,
                        int64_t after_num, int latest_only, size_t limit)
{
    sq_t *q = (sq_t *)s;
    const char *sql = n ? S_VER_LIST_FN : latest_only ? S_VER_LIST_LATEST : S_VER_LIST_ALL;
    sqlite3_stmt *st = prep_tn(q, sql, t, n);
    if (!st) return NULL;
    realm_sqlite_text(st, 3, after_name);
    sqlite3_bind_int64(st, 4, after_num);
    sqlite3_bind_int64(st, 5, (int64_t)limit);
    json_t *list = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(list, json_pack("{s:s, s:I, s:o}", "name",
                                              (const char *)sqlite3_column_text(st, 0), "num",
                                              (json_int_t)sqlite3_column_int64(st, 1), "config",
                                              realm_sqlite_column_json(st, 2)));
    if (rc != SQLITE_DONE) {
        realm_sqlite_fail(q, sql);
        json_decref(list);
        list = NULL;
    }
    realm_sqlite_done(q, st);
    return list;
}

static int code_used(realm_store_t *s, const char *t, const char *hex)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = realm_sqlite_prep(q, t ? S_CODE_OWNED : S_CODE_USED);
    if (!st) return -1;
    realm_sqlite_text(st, 1, hex);
    if (t) realm_sqlite_text(st, 2, t);
    int rc = realm_sqlite_step_done(q, st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* ---- aliases ---- */

static int alias_get(realm_store_t *s, const char *t, const char *n, const char *a, json_t **config)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_tn(q, S_ALIAS_GET, t, n);
    if (!st) return -1;
    realm_sqlite_text(st, 3, a);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && config) *config = realm_sqlite_column_json(st, 0);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) realm_sqlite_fail(q, S_ALIAS_GET);
    realm_sqlite_done(q, st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

static int alias_put(realm_store_t *s, const char *t, const char *n, const char *a, json_t *config,
                     int is_insert)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_tn(q, is_insert ? S_ALIAS_INSERT : S_ALIAS_UPDATE, t, n);
    if (!st) return -1;
    realm_sqlite_text(st, 3, a);
    char *cs = dump(config);
    realm_sqlite_text(st, 4, cs);
    free(cs);
    return write_rc(q, st) < 0 ? -1 : 0;
}

static int alias_delete(realm_store_t *s, const char *t, const char *n, const char *a)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_tn(q, S_ALIAS_DELETE, t, n);
    if (!st) return -1;
    realm_sqlite_text(st, 3, a);
    return write_rc(q, st);
}

static json_t *alias_list(realm_store_t *s, const char *t, const char *n, const char *after,
                          const char *version, size_t limit)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_tn(q, S_ALIAS_LIST, t, n);
    if (!st) return NULL;
    realm_sqlite_text(st, 3, after);
    realm_sqlite_text(st, 4, version);
    sqlite3_bind_int64(st, 5, (int64_t)limit);
    json_t *list = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(list, json_pack("{s:s, s:o}", "alias",
                                              (const char *)sqlite3_column_text(st, 0), "config",
                                              realm_sqlite_column_json(st, 1)));
    if (rc != SQLITE_DONE) {
        realm_sqlite_fail(q, S_ALIAS_LIST);
        json_decref(list);
        list = NULL;
    }
    realm_sqlite_done(q, st);
    return list;
}

static int alias_using(realm_store_t *s, const char *t, const char *n, const char *version,
                       char *alias_out)
{
    sq_t *q = (sq_t *)s;
    sqlite3_stmt *st = prep_tn(q, S_ALIAS_USING, t, n);
    if (!st) return -1;
    realm_sqlite_text(st, 3, version);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) realm_sqlite_column_copy(alias_out, 129, st, 0);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) realm_sqlite_fail(q, S_ALIAS_USING);
    realm_sqlite_done(q, st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

void realm_sqlite_registry_ops(realm_store_ops_t *o)
{
    o->fn_get = fn_get;
    o->fn_insert = fn_insert;
    o->fn_delete = fn_delete;
    o->fn_set_reserved = fn_set_reserved;
    o->fn_set_tags = fn_set_tags;
    o->fn_take_version = fn_take_version;
    o->fn_sum_reserved = fn_sum_reserved;
    o->fn_usage = fn_usage;
    o->ver_get = ver_get;
    o->ver_last = ver_last;
    o->ver_insert = ver_insert;
    o->ver_update = ver_update;
    o->ver_delete = ver_delete;
    o->ver_list = ver_list;
    o->code_used = code_used;
    o->alias_get = alias_get;
    o->alias_put = alias_put;
    o->alias_delete = alias_delete;
    o->alias_list = alias_list;
    o->alias_using = alias_using;
}
