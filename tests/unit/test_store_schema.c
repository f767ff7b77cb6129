/*
 * test_store_schema.c - versioned schemas and migrations (store/internal.h,
 * docs/storage.md "Schema versions and migrations"), over SQLite files:
 *   - a new file gets each kind's latest version, recorded in realm_schema,
 *     and reopening it changes nothing (no DDL runs again) and takes no
 *     write lock (it opens while another connection holds that lock);
 *   - files made by the releases before realm_schema (their exact SQL,
 *     below, as the fixture) are recognised, keep every row and end with
 *     exactly the schema a new file gets;
 *   - a file whose version is newer than the binary is refused, untouched,
 *     with the message the server prints;
 *   - a migration that fails midway leaves the file at its old version
 *     (steps of the test's own, run by the same procedure as the real ones;
 *     a foreign key a step breaks counts as a failure);
 *   - processes opening one old file at the same time migrate it once.
 * The memory backend's version is a constant.
 */
#include "store/memory.h"
#include "store/sqlite.h"
#include "store/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "fixture.h"

/* ---- the releases before realm_schema, word for word (the fixture) ---- */

/* realm.db: sqlite_registry.c's schema string as released. */
static const char old_registry[] =
    "PRAGMA foreign_keys=ON;"
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
    " FOREIGN KEY(tenant, name) REFERENCES functions(tenant, name) ON DELETE CASCADE);"
    "PRAGMA user_version = 1;";

/* events.db as a new file was left: the version 2 schema, then the
 * migration function's "PRAGMA user_version = 2". */
static const char old_queue[] =
    "CREATE TABLE IF NOT EXISTS events("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " tenant TEXT NOT NULL, function TEXT NOT NULL, qualifier TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, enqueued_ms INTEGER NOT NULL,"
    " due_ms INTEGER NOT NULL, is_parked INTEGER NOT NULL DEFAULT 0, last_error TEXT);"
    "CREATE INDEX IF NOT EXISTS events_due ON events(due_ms, id);"
    "CREATE INDEX IF NOT EXISTS events_fn ON events(tenant, function, is_parked);"
    "CREATE TABLE IF NOT EXISTS payloads(id INTEGER PRIMARY KEY, payload BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS fn_counts(tenant TEXT NOT NULL, function TEXT NOT NULL,"
    " n INTEGER NOT NULL, PRIMARY KEY(tenant, function)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS tenant_counts(tenant TEXT NOT NULL PRIMARY KEY,"
    " n INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS parked_fns(tenant TEXT NOT NULL, function TEXT NOT NULL,"
    " PRIMARY KEY(tenant, function)) WITHOUT ROWID;"
    "CREATE TRIGGER IF NOT EXISTS events_added AFTER INSERT ON events BEGIN"
    " INSERT INTO fn_counts(tenant, function, n) VALUES(NEW.tenant, NEW.function, 1)"
    "  ON CONFLICT(tenant, function) DO UPDATE SET n = n + 1;"
    " INSERT INTO tenant_counts(tenant, n) VALUES(NEW.tenant, 1)"
    "  ON CONFLICT(tenant) DO UPDATE SET n = n + 1;"
    " END;"
    "CREATE TRIGGER IF NOT EXISTS events_removed AFTER DELETE ON events BEGIN"
    " UPDATE fn_counts SET n = n - 1 WHERE tenant = OLD.tenant AND function = OLD.function;"
    " UPDATE tenant_counts SET n = n - 1 WHERE tenant = OLD.tenant;"
    " DELETE FROM payloads WHERE id = OLD.id;"
    " END;"
    "CREATE TABLE IF NOT EXISTS failed("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, id INTEGER NOT NULL,"
    " tenant TEXT NOT NULL, function TEXT NOT NULL, qualifier TEXT NOT NULL,"
    " payload BLOB NOT NULL, attempts INTEGER NOT NULL,"
    " error_type TEXT, error_message TEXT,"
    " enqueued_ms INTEGER NOT NULL, failed_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS failed_fn ON failed(tenant, function, seq);"
    "CREATE INDEX IF NOT EXISTS failed_tenant ON failed(tenant, seq);"
    "PRAGMA user_version = 2";

/* events.db of the first release (version 1): events with their payloads. */
static const char old_queue_v1[] =
    "CREATE TABLE IF NOT EXISTS pending("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " tenant TEXT NOT NULL, function TEXT NOT NULL, qualifier TEXT NOT NULL,"
    " payload BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " enqueued_ms INTEGER NOT NULL, due_ms INTEGER NOT NULL, last_error TEXT);"
    "CREATE INDEX IF NOT EXISTS pending_due ON pending(due_ms, id);"
    "CREATE INDEX IF NOT EXISTS pending_fn ON pending(tenant, function);"
    "CREATE TABLE IF NOT EXISTS failed("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, id INTEGER NOT NULL,"
    " tenant TEXT NOT NULL, function TEXT NOT NULL, qualifier TEXT NOT NULL,"
    " payload BLOB NOT NULL, attempts INTEGER NOT NULL,"
    " error_type TEXT, error_message TEXT,"
    " enqueued_ms INTEGER NOT NULL, failed_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS failed_fn ON failed(tenant, function, seq);"
    "CREATE INDEX IF NOT EXISTS failed_tenant ON failed(tenant, seq);"
    "PRAGMA user_version = 1;";

/* auth.db: sqlite_auth.c's schema string as released. */
static const char old_auth[] = "CREATE TABLE IF NOT EXISTS tenants("
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
                               "CREATE INDEX IF NOT EXISTS keys_tenant ON keys(tenant, created);"
                               "PRAGMA user_version = 1;";

/* ---- helpers ---- */

static const char *const file_of[] = {"realm.db", "events.db", "auth.db"};
static const char *const kind_name[] = {"registry", "queue", "auth"};

static const realm_store_schema_t *schema_of(realm_store_kind_t kind)
{
    static const realm_store_schema_t *const s[] = {
        &realm_sqlite_registry_schema, &realm_sqlite_queue_schema, &realm_sqlite_auth_schema};
    return s[kind];
}

typedef struct {
    char dir[64];
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    assert_int_equal(fx_tmpdir_make(f->dir, sizeof(f->dir), "schema"), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    assert_int_equal(fx_tmpdir_remove(f->dir), 0);
    free(f);
    return 0;
}

static void path_of(const fx_t *f, realm_store_kind_t kind, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", f->dir, file_of[kind]);
}

/* Runs SQL on a file behind the store's back (no store has it open). */
static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* One integer from a query on the file (-1 when there is no row). */
static int64_t query_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* The file's recorded version of kind (-1: none). */
static int64_t recorded(const char *path, realm_store_kind_t kind)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT version FROM realm_schema WHERE kind = '%s'",
             kind_name[kind]);
    return query_int(path, sql);
}

/* The whole schema of a file as text, one object a line, by name. */
static char *schema_dump(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT type || ' ' || name || ' ' || tbl_name || ': ' ||"
                                        " COALESCE(sql, '') FROM sqlite_master ORDER BY name",
                                        -1, &st, NULL),
                     SQLITE_OK);
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int n = snprintf(out + len, cap - len, "%s\n", (const char *)sqlite3_column_text(st, 0));
        assert_cmp_size((size_t)n, <, cap - len);
        len += (size_t)n;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

static realm_store_t *open_kind(const char *path, realm_store_kind_t kind)
{
    char err[512] = "";
    if (kind == REALM_STORE_AUTH) { /* auth/keys.c makes the file (0600) first */
        FILE *fp = fopen(path, "a");
        assert_non_null(fp);
        fclose(fp);
    }
    realm_store_t *s = realm_store_open(kind, path, err, sizeof(err));
    if (!s) fail_msg("open %s: %s", path, err);
    return s;
}

/* ---- a new file ---- */

static void new_files_get_the_latest_version(void **state)
{
    fx_t *f = *state;
    for (realm_store_kind_t k = REALM_STORE_REGISTRY; k <= REALM_STORE_AUTH; k++) {
        char path[128];
        path_of(f, k, path, sizeof(path));
        realm_store_t *s = open_kind(path, k);
        int64_t latest = (int64_t)schema_of(k)->n;
        assert_cmp_int(latest, >=, 1);
        assert_int_equal(realm_store_schema_version(s), latest);
        realm_store_close(s);
        assert_int_equal(recorded(path, k), latest);
        assert_int_equal(query_int(path, "SELECT count(*) FROM realm_schema"), 1);
        /* Reopening runs no DDL: SQLite's schema cookie stays. */
        int64_t cookie = query_int(path, "PRAGMA schema_version");
        s = open_kind(path, k);
        assert_int_equal(realm_store_schema_version(s), latest);
        realm_store_close(s);
        assert_int_equal(query_int(path, "PRAGMA schema_version"), cookie);
        assert_int_equal(recorded(path, k), latest);
    }
    /* An up-to-date file opens without the write lock: it opens while
     * another connection holds it (as a running server or `realm keys` may). */
    char reg[128], err[512] = "";
    path_of(f, REALM_STORE_REGISTRY, reg, sizeof(reg));
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(reg, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE; DELETE FROM functions;", NULL, NULL, NULL),
                     SQLITE_OK);
    realm_store_t *s = realm_store_open(REALM_STORE_REGISTRY, reg, err, sizeof(err));
    if (!s) fail_msg("open while locked: %s", err);
    realm_store_close(s);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);

    /* The queue's history: a new file ran both steps, `pending` is gone. */
    char path[128];
    path_of(f, REALM_STORE_QUEUE, path, sizeof(path));
    assert_int_equal(query_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'pending'"),
                     0);
}

static void memory_has_a_constant_version(void **state)
{
    (void)state;
    for (realm_store_kind_t k = REALM_STORE_REGISTRY; k <= REALM_STORE_AUTH; k++) {
        char err[256] = "";
        realm_store_t *s = realm_store_open(k, "memory:schema", err, sizeof(err));
        assert_non_null(s);
        assert_int_equal(realm_store_schema_version(s), REALM_MEMORY_SCHEMA_VERSION);
        realm_store_close(s);
    }
}

/* ---- files of the releases before realm_schema ---- */

/* A new file and an old one, both opened: the same schema, object for object. */
static void old_files_end_with_the_new_schema(void **state)
{
    fx_t *f = *state;
    static const char *const old_sql[] = {old_registry, old_queue, old_auth};
    for (realm_store_kind_t k = REALM_STORE_REGISTRY; k <= REALM_STORE_AUTH; k++) {
        char fresh[128], old[128];
        path_of(f, k, fresh, sizeof(fresh));
        snprintf(old, sizeof(old), "%s/old-%s", f->dir, file_of[k]);
        realm_store_close(open_kind(fresh, k));
        exec_sql(old, old_sql[k]);
        assert_int_equal(
            query_int(old, "SELECT count(*) FROM sqlite_master WHERE name = 'realm_schema'"), 0);
        realm_store_t *s = open_kind(old, k);
        assert_int_equal(realm_store_schema_version(s), (int64_t)schema_of(k)->n);
        realm_store_close(s);
        assert_int_equal(recorded(old, k), (int64_t)schema_of(k)->n);
        char *a = schema_dump(fresh), *b = schema_dump(old);
        assert_contains(a, "table realm_schema realm_schema");
        assert_string_equal(a, b);
        free(a);
        free(b);
    }
    /* And the first queue release's file, through both steps' worth. */
    char fresh[128], old[128];
    path_of(f, REALM_STORE_QUEUE, fresh, sizeof(fresh));
    snprintf(old, sizeof(old), "%s/old-v1-events.db", f->dir);
    exec_sql(old, old_queue_v1);
    realm_store_close(open_kind(old, REALM_STORE_QUEUE));
    assert_int_equal(recorded(old, REALM_STORE_QUEUE), 2);
    char *a = schema_dump(fresh), *b = schema_dump(old);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

static void old_registry_keeps_its_rows(void **state)
{
    fx_t *f = *state;
    char path[128];
    path_of(f, REALM_STORE_REGISTRY, path, sizeof(path));
    exec_sql(path, old_registry);
    exec_sql(path, "INSERT INTO functions(tenant, name, next_version, reserved, tags)"
                   " VALUES('', 'hello', 3, 5, '{\"team\":\"core\"}'), ('acme', 'two', 1, NULL,"
                   " '{}');"
                   "INSERT INTO versions(tenant, name, num, code, config) VALUES"
                   " ('', 'hello', 0, 'abc0', '{\"Runtime\":\"x\",\"Description\":\"latest\"}'),"
                   " ('', 'hello', 2, 'abc2', '{\"Description\":\"two\"}'),"
                   " ('acme', 'two', 0, 'def0', '{}');"
                   "INSERT INTO aliases(tenant, name, alias, config) VALUES"
                   " ('', 'hello', 'prod', '{\"FunctionVersion\":\"2\"}');");
    realm_store_t *s = open_kind(path, REALM_STORE_REGISTRY);
    realm_store_fn_t fn;
    assert_int_equal(realm_store_fn_get(s, "", "hello", &fn), 0);
    assert_int_equal(fn.next_version, 3);
    assert_int_equal(fn.reserved, 5);
    assert_string_equal(json_string_value(json_object_get(fn.tags, "team")), "core");
    realm_store_fn_dispose(&fn);
    json_t *cfg = NULL;
    char code[REALM_STORE_HEX_LEN + 1] = "";
    assert_int_equal(realm_store_ver_get(s, "", "hello", 2, &cfg, code), 0);
    assert_string_equal(code, "abc2");
    assert_string_equal(json_string_value(json_object_get(cfg, "Description")), "two");
    json_decref(cfg);
    assert_int_equal(realm_store_alias_get(s, "", "hello", "prod", &cfg), 0);
    assert_string_equal(json_string_value(json_object_get(cfg, "FunctionVersion")), "2");
    json_decref(cfg);
    assert_int_equal(realm_store_fn_get(s, "acme", "two", NULL), 0);
    /* Foreign keys are on after the migration: a delete cascades. */
    assert_int_equal(realm_store_fn_delete(s, "", "hello"), 0);
    assert_int_equal(realm_store_ver_get(s, "", "hello", 2, NULL, NULL), 1);
    assert_int_equal(realm_store_alias_get(s, "", "hello", "prod", NULL), 1);
    realm_store_close(s);
    assert_int_equal(query_int(path, "SELECT count(*) FROM versions WHERE name = 'hello'"), 0);
    assert_int_equal(recorded(path, REALM_STORE_REGISTRY), 1);
}

static void old_queue_keeps_its_rows(void **state)
{
    fx_t *f = *state;
    char path[128];
    path_of(f, REALM_STORE_QUEUE, path, sizeof(path));
    exec_sql(path, old_queue);
    /* Two live events (the newest, id 3, already done: ids go on from 4),
     * one failure. */
    exec_sql(path, "INSERT INTO events(tenant, function, qualifier, attempts, enqueued_ms,"
                   " due_ms) VALUES('t', 'fn', 'prod', 1, 5, 6), ('t', 'fn', '', 0, 7, 7),"
                   " ('t', 'fn', '', 0, 8, 8);"
                   "INSERT INTO payloads(id, payload) VALUES(1, 'one'), (2, 'two'), (3, 'x');"
                   "DELETE FROM events WHERE id = 3;"
                   "INSERT INTO failed(id, tenant, function, qualifier, payload, attempts,"
                   " error_type, error_message, enqueued_ms, failed_ms)"
                   " VALUES(9, 't', 'fn', '', 'bad', 3, 'Handled', 'boom', 1, 2);");
    realm_store_t *s = open_kind(path, REALM_STORE_QUEUE);
    assert_int_equal(realm_store_q_pending(s, NULL, NULL), 2);
    assert_int_equal(realm_store_q_pending(s, "t", "fn"), 2); /* the trigger-kept counts */
    realm_store_event_t ev[3];
    assert_int_equal(realm_store_q_claim(s, 100, INT64_MAX, ev, 3), 2);
    assert_int_equal(ev[0].id, 1);
    assert_string_equal(ev[0].qualifier, "prod");
    assert_int_equal(ev[0].attempts, 1);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(realm_store_q_payload(s, ev[1].id, &data, &len), 0);
    assert_string_equal(data, "two");
    free(data);
    for (int i = 0; i < 2; i++)
        realm_store_event_dispose(&ev[i]);
    json_t *failed = realm_store_q_failed(s, "t", NULL, 10);
    assert_int_equal(json_array_size(failed), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(failed, 0), "Payload")),
                        "bad");
    json_decref(failed);
    char which = 0;
    assert_int_equal(realm_store_q_push(s, "t", "fn", NULL, "x", 1, 9, 0, 0, &which), 4);
    realm_store_close(s);
}

static void old_auth_keeps_its_rows(void **state)
{
    fx_t *f = *state;
    char path[128];
    path_of(f, REALM_STORE_AUTH, path, sizeof(path));
    exec_sql(path, old_auth);
    exec_sql(path, "INSERT INTO tenants(name, account_id, created)"
                   " VALUES('acme', '111111111111', 1);"
                   "INSERT INTO keys(key_id, tenant, api_key_salt, api_key_hash, access_key_id,"
                   " secret_enc, rate, burst, revoked_at, created) VALUES('k1', 'acme',"
                   " x'0102', x'0304', 'AKIA1', x'05060708', 1.5, 3, NULL, 7);");
    realm_store_t *s = open_kind(path, REALM_STORE_AUTH);
    char acct[13] = "";
    assert_int_equal(realm_store_tenant_get(s, "acme", acct), 0);
    assert_string_equal(acct, "111111111111");
    realm_store_key_t k;
    assert_int_equal(realm_store_key_get(s, "AKIA1", 1, &k), 0);
    assert_string_equal(k.key_id, "k1");
    assert_int_equal(k.secret_enc_len, 4);
    assert_memory_equal(k.secret_enc, "\x05\x06\x07\x08", 4);
    assert_true(k.rate == 1.5);
    assert_int_equal(k.created_ms, 7);
    realm_store_close(s);
    assert_int_equal(recorded(path, REALM_STORE_AUTH), 1);
}

/* ---- newer than the binary ---- */

static void newer_files_are_refused_untouched(void **state)
{
    fx_t *f = *state;
    for (realm_store_kind_t k = REALM_STORE_REGISTRY; k <= REALM_STORE_AUTH; k++) {
        char path[128], sql[128], err[512] = "", want[512];
        path_of(f, k, path, sizeof(path));
        realm_store_close(open_kind(path, k));
        int64_t newer = (int64_t)schema_of(k)->n + 1;
        snprintf(sql, sizeof(sql), "UPDATE realm_schema SET version = %lld", (long long)newer);
        exec_sql(path, sql);
        int64_t cookie = query_int(path, "PRAGMA schema_version");
        assert_null(realm_store_open(k, path, err, sizeof(err)));
        snprintf(want, sizeof(want),
                 "%s: schema version %lld is newer than this realm (knows up to %zu); "
                 "upgrade realm",
                 path, (long long)newer, schema_of(k)->n);
        assert_string_equal(err, want);
        assert_int_equal(recorded(path, k), newer);
        assert_int_equal(query_int(path, "PRAGMA schema_version"), cookie);
    }
    /* A file without realm_schema whose user_version is beyond the steps
     * (not one Realm made) is refused too, and left without the table. */
    char path[128], err[512] = "";
    snprintf(path, sizeof(path), "%s/odd.db", f->dir);
    exec_sql(path, "CREATE TABLE x(a); PRAGMA user_version = 7;");
    assert_null(realm_store_open(REALM_STORE_REGISTRY, path, err, sizeof(err)));
    assert_contains(err, "schema version 7 is newer than this realm (knows up to 1)");
    assert_int_equal(
        query_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'realm_schema'"), 0);
    exec_sql(path, "PRAGMA user_version = -3");
    assert_null(realm_store_open(REALM_STORE_REGISTRY, path, err, sizeof(err)));
    assert_contains(err, "schema version -3 is not a version realm writes");
}

/* ---- a failed migration ---- */

static int64_t t1_sum(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT total(a) FROM t1", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int has_table(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE name = ?1", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int has = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return has;
}

static void failed_step_leaves_the_old_version(void **state)
{
    fx_t *f = *state;
    char path[128], err[512] = "";
    snprintf(path, sizeof(path), "%s/steps.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    static const realm_store_migration_t good[] = {
        {"t1", "CREATE TABLE t1(a INTEGER); INSERT INTO t1 VALUES(1);"},
        {"t2", "CREATE TABLE t2(b); INSERT INTO t1 VALUES(2);"},
        {"t3", "UPDATE t1 SET a = a * 10; CREATE TABLE t3(c);"},
    };
    static const realm_store_migration_t bad[] = {
        good[0],
        good[1],
        /* fails at its third statement, after two that did work */
        {"t3", "UPDATE t1 SET a = a * 10; CREATE TABLE t3(c); INSERT INTO nowhere VALUES(1);"},
    };
    int64_t v = -1;
    const realm_store_schema_t one = {good, 1}, bad3 = {bad, 3}, good3 = {good, 3};
    assert_int_equal(
        realm_sqlite_migrate(db, path, REALM_STORE_REGISTRY, &one, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 1);

    v = -1;
    assert_int_equal(
        realm_sqlite_migrate(db, path, REALM_STORE_REGISTRY, &bad3, &v, err, sizeof(err)), -1);
    assert_int_equal(v, -1);
    assert_contains(err, "moving the registry schema to version 3 (t3): no such table: nowhere");
    assert_contains(err, "it stays at version 1");
    /* Steps 2 and 3 both undone: no t2, t3, nor their rows. */
    assert_int_equal(sqlite3_get_autocommit(db), 1);
    assert_int_equal(has_table(db, "t2"), 0);
    assert_int_equal(has_table(db, "t3"), 0);
    assert_int_equal(t1_sum(db), 1);
    assert_int_equal(recorded(path, REALM_STORE_REGISTRY), 1);

    /* The fixed list then runs from version 1, once. */
    assert_int_equal(
        realm_sqlite_migrate(db, path, REALM_STORE_REGISTRY, &good3, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 3);
    assert_int_equal(t1_sum(db), 30);
    assert_int_equal(
        realm_sqlite_migrate(db, path, REALM_STORE_REGISTRY, &good3, &v, err, sizeof(err)), 0);
    assert_int_equal(t1_sum(db), 30);
    assert_int_equal(recorded(path, REALM_STORE_REGISTRY), 3);
    sqlite3_close(db);

    /* A step that leaves a row without its parent fails the foreign key
     * check: nothing is kept, not even realm_schema. */
    snprintf(path, sizeof(path), "%s/fk.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    static const realm_store_migration_t orphan[] = {
        {"orphan", "CREATE TABLE p(id INTEGER PRIMARY KEY);"
                   "CREATE TABLE c(pid INTEGER REFERENCES p(id));"
                   "INSERT INTO c VALUES(5);"},
    };
    const realm_store_schema_t fk = {orphan, 1};
    assert_int_equal(realm_sqlite_migrate(db, path, REALM_STORE_QUEUE, &fk, &v, err, sizeof(err)),
                     -1);
    assert_contains(err, "recording queue schema version 1: a row refers to a missing row");
    assert_int_equal(has_table(db, "c"), 0);
    assert_int_equal(has_table(db, "realm_schema"), 0);
    sqlite3_close(db);
}

/* ---- two processes at once ---- */

#define BACKLOG "20000"

static void concurrent_opens_migrate_once(void **state)
{
    fx_t *f = *state;
    enum { N = 4 };
    char path[128];
    path_of(f, REALM_STORE_QUEUE, path, sizeof(path));
    /* A version 1 file: step 2 moves rows and drops `pending`, so running
     * it twice would fail (and double the events). */
    exec_sql(path, "PRAGMA journal_mode=WAL"); /* as every release left its files */
    exec_sql(path, old_queue_v1);
    /* Enough events that moving them takes a while (tens of milliseconds):
     * the other processes read the old version meanwhile. */
    exec_sql(path, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
                   " WHERE x < " BACKLOG ") INSERT INTO pending(tenant, function, qualifier,"
                   " payload, enqueued_ms, due_ms) SELECT 't', 'f' || (x % 7), '',"
                   " zeroblob(100), x, x FROM c;");
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    pid_t kids[N];
    for (int i = 0; i < N; i++) {
        kids[i] = fork();
        assert_cmp_int(kids[i], >=, 0);
        if (kids[i] == 0) {
            close(gate[1]);
            char c;
            if (read(gate[0], &c, 1) != 0) _exit(3); /* EOF: everyone starts */
            char err[512] = "";
            realm_store_t *s = realm_store_open(REALM_STORE_QUEUE, path, err, sizeof(err));
            if (!s) {
                fprintf(stderr, "child %d: %s\n", i, err);
                _exit(1);
            }
            int ok = realm_store_schema_version(s) == 2 &&
                     realm_store_q_pending(s, NULL, NULL) == (size_t)atoi(BACKLOG);
            if (!ok)
                fprintf(stderr, "child %d: version %lld, %zu pending\n", i,
                        (long long)realm_store_schema_version(s),
                        realm_store_q_pending(s, NULL, NULL));
            realm_store_close(s);
            _exit(ok ? 0 : 2);
        }
    }
    close(gate[0]);
    close(gate[1]); /* releases the children at once */
    for (int i = 0; i < N; i++) {
        int st = 0;
        assert_int_equal(waitpid(kids[i], &st, 0), kids[i]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    assert_int_equal(recorded(path, REALM_STORE_QUEUE), 2);
    assert_int_equal(query_int(path, "SELECT count(*) FROM events"), atoi(BACKLOG));
    assert_int_equal(query_int(path, "SELECT count(*) FROM payloads"), atoi(BACKLOG));
    assert_int_equal(query_int(path, "SELECT sum(n) FROM tenant_counts"), atoi(BACKLOG));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(new_files_get_the_latest_version),  T(memory_has_a_constant_version),
        T(old_files_end_with_the_new_schema), T(old_registry_keeps_its_rows),
        T(old_queue_keeps_its_rows),          T(old_auth_keeps_its_rows),
        T(newer_files_are_refused_untouched), T(failed_step_leaves_the_old_version),
        T(concurrent_opens_migrate_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
