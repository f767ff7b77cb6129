/*
 * pg_registry.c - the PostgreSQL backend's registry (docs/storage.md,
 * "PostgreSQL backend (registry)").
 *
 * SCHEMA (version 2, recorded in realm_schema under 'registry'; the steps below):
 *   functions(tenant, name, next_version, reserved, tags)    one per function
 *   versions(tenant, name, num, code, config)                num 0 is $LATEST
 *   aliases(tenant, name, alias, config)
 *   realm_pending(tenant, name, is_create, owner, expires)   creates/updates in flight
 *   realm_generation(kind, value)                            the shared write generation
 *   realm_packages(hex, size, created, touched)              code packages kept (step 2)
 *   realm_package_chunks(hex, n, bytes)                      their bytes, 1 MiB a row
 * As on SQLite: `config` and `tags` hold JSON text (read back as written;
 * the queries cast to jsonb where they look inside), `code` the package's
 * hash (its bytes in realm_packages once the caller keeps them there:
 * realm_store_pkg_put; the trigger of step 2 touches a package whenever a
 * version row names it or stops naming it), and
 * deleting a function cascades to its versions and aliases. Names compare
 * and sort bytewise (COLLATE "C"), as SQLite's BINARY does, whatever the
 * database's locale.
 *
 * A create or update in flight is a realm_pending row named by its store's
 * owner, "SPACE:PID:SALT", SPACE being the host, its boot and its pid
 * namespace. It expires after PG_PENDING_TTL; and a store that opens drops
 * at once the rows of its own SPACE whose PID is no longer alive (a server
 * killed mid-create and started again: on SQLite the entry died with the
 * process, and the name is free again at once here too).
 *
 * The write generation is one row bumped by a statement-level trigger on
 * functions, versions and aliases, in the writing transaction: every
 * process on the database sees it move when the write commits (and never
 * before), and a rollback takes the bump back with the write.
 */
#include "store/pg.h"

#include "base/alloc.h"
#include "base/log.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The migrations (append-only: store/internal.h). */
static const realm_store_migration_t steps[] = {
    {"functions, versions, aliases, pending, generation",
     "CREATE TABLE functions("
     " tenant TEXT COLLATE \"C\" NOT NULL, name TEXT COLLATE \"C\" NOT NULL,"
     " next_version BIGINT NOT NULL DEFAULT 1,"
     " reserved BIGINT,"
     " tags TEXT NOT NULL DEFAULT '{}',"
     " PRIMARY KEY(tenant, name));"
     "CREATE TABLE versions("
     " tenant TEXT COLLATE \"C\" NOT NULL, name TEXT COLLATE \"C\" NOT NULL,"
     " num BIGINT NOT NULL, code TEXT NOT NULL, config TEXT NOT NULL,"
     " PRIMARY KEY(tenant, name, num),"
     " FOREIGN KEY(tenant, name) REFERENCES functions(tenant, name) ON DELETE CASCADE);"
     "CREATE INDEX versions_code ON versions(code);"
     "CREATE TABLE aliases("
     " tenant TEXT COLLATE \"C\" NOT NULL, name TEXT COLLATE \"C\" NOT NULL,"
     " alias TEXT COLLATE \"C\" NOT NULL, config TEXT NOT NULL,"
     " PRIMARY KEY(tenant, name, alias),"
     " FOREIGN KEY(tenant, name) REFERENCES functions(tenant, name) ON DELETE CASCADE);"
     "CREATE TABLE realm_pending("
     " tenant TEXT COLLATE \"C\" NOT NULL, name TEXT COLLATE \"C\" NOT NULL,"
     " is_create BOOLEAN NOT NULL, owner TEXT NOT NULL, expires TIMESTAMPTZ NOT NULL,"
     " PRIMARY KEY(tenant, name));"
     "CREATE TABLE realm_generation(kind TEXT PRIMARY KEY, value BIGINT NOT NULL);"
     "INSERT INTO realm_generation(kind, value) VALUES('registry', 1);"
     "CREATE FUNCTION realm_registry_bump() RETURNS trigger LANGUAGE plpgsql AS $$"
     " BEGIN UPDATE realm_generation SET value = value + 1 WHERE kind = 'registry';"
     " RETURN NULL; END $$;"
     "CREATE TRIGGER functions_generation AFTER INSERT OR UPDATE OR DELETE ON functions"
     " FOR EACH STATEMENT EXECUTE FUNCTION realm_registry_bump();"
     "CREATE TRIGGER versions_generation AFTER INSERT OR UPDATE OR DELETE ON versions"
     " FOR EACH STATEMENT EXECUTE FUNCTION realm_registry_bump();"
     "CREATE TRIGGER aliases_generation AFTER INSERT OR UPDATE OR DELETE ON aliases"
     " FOR EACH STATEMENT EXECUTE FUNCTION realm_registry_bump();"},
    {"code packages (realm_packages, realm_package_chunks)",
     "CREATE TABLE realm_packages("
     " hex TEXT COLLATE \"C\" NOT NULL PRIMARY KEY, size BIGINT NOT NULL,"
     " created TIMESTAMPTZ NOT NULL DEFAULT now(),"
     " touched TIMESTAMPTZ NOT NULL DEFAULT now());"
     "CREATE TABLE realm_package_chunks("
     " hex TEXT COLLATE \"C\" NOT NULL REFERENCES realm_packages(hex) ON DELETE CASCADE,"
     " n INTEGER NOT NULL, bytes BYTEA NOT NULL, PRIMARY KEY(hex, n));"
     /* zips are compressed already: out of line, without TOAST's compression */
     "ALTER TABLE realm_package_chunks ALTER COLUMN bytes SET STORAGE EXTERNAL;"
     /* A version row naming a package (inserted, its code changed, deleted)
      * touches it, in the writing transaction (the row lock is what
      * realm_store_pkg_delete_unused waits for: docs/storage.md). */
     "CREATE FUNCTION realm_packages_touch() RETURNS trigger LANGUAGE plpgsql AS $$"
     " BEGIN"
     " IF TG_OP = 'INSERT' THEN"
     "  UPDATE realm_packages SET touched = now() WHERE hex = NEW.code;"
     " ELSIF TG_OP = 'DELETE' THEN"
     "  UPDATE realm_packages SET touched = now() WHERE hex = OLD.code;"
     " ELSIF OLD.code IS DISTINCT FROM NEW.code THEN"
     "  UPDATE realm_packages SET touched = now() WHERE hex IN (OLD.code, NEW.code);"
     " END IF;"
     " RETURN NULL; END $$;"
     "CREATE TRIGGER versions_touch_packages AFTER INSERT OR UPDATE OF code OR DELETE"
     " ON versions FOR EACH ROW EXECUTE FUNCTION realm_packages_touch();"},
};
const realm_store_schema_t realm_pg_registry_schema = {steps, sizeof(steps) / sizeof(steps[0])};

/* How long a create or code update in flight holds its function when its
 * server stops without removing it (a killed process): long enough for
 * the largest package to be unpacked, short enough to free the name. */
#define PG_PENDING_TTL "interval '15 minutes'"

enum {
    S_FN_GET,
    S_FN_INSERT,
    S_FN_DELETE,
    S_FN_RESERVED,
    S_FN_TAGS,
    S_FN_TAKE,
    S_FN_SUM,
    S_FN_USAGE,
    S_VER_GET,
    S_VER_LAST,
    S_VER_INSERT,
    S_VER_UPDATE,
    S_VER_UPDATE_CFG,
    S_VER_DELETE,
    S_VER_LIST_FN,
    S_VER_LIST_ALL,
    S_VER_LIST_LATEST,
    S_CODE_USED,
    S_CODE_OWNED,
    S_ALIAS_GET,
    S_ALIAS_INSERT,
    S_ALIAS_UPDATE,
    S_ALIAS_DELETE,
    S_ALIAS_LIST,
    S_ALIAS_USING,
    S_GENERATION,
    S_PEND_ADD,
    S_PEND_GET,
    S_PEND_DEL,
    S_PEND_COUNT,
    S_PKG_UPSERT,
    S_PKG_CHUNK_PUT,
    S_PKG_SIZE,
    S_PKG_CHUNK_GET,
    S_PKG_DELETE_UNUSED,
    S_PEND_OWNERS,
    S_PEND_DROP,
    S_COUNT
};

static const pg_stmt_t stmts[S_COUNT] = {
    [S_FN_GET] = {"SELECT next_version, reserved, tags FROM functions WHERE tenant=$1 AND name=$2",
                  2},
    /* DO NOTHING rather than a unique violation, which would abort the
     * caller's transaction (SQLite's does not). */
    [S_FN_INSERT] = {"INSERT INTO functions(tenant, name, tags) VALUES($1, $2, $3)"
                     " ON CONFLICT DO NOTHING",
                     3},
    [S_FN_DELETE] = {"DELETE FROM functions WHERE tenant=$1 AND name=$2", 2},
    [S_FN_RESERVED] = {"UPDATE functions SET reserved=$3 WHERE tenant=$1 AND name=$2", 3},
    [S_FN_TAGS] = {"UPDATE functions SET tags=$3 WHERE tenant=$1 AND name=$2", 3},
    [S_FN_TAKE] = {"UPDATE functions SET next_version = next_version + 1"
                   " WHERE tenant=$1 AND name=$2 RETURNING next_version - 1",
                   2},
    [S_FN_SUM] = {"SELECT COALESCE(SUM(reserved), 0)::bigint FROM functions"
                  " WHERE tenant=$1 AND name != $2",
                  2},
    [S_FN_USAGE] = {"SELECT (SELECT COUNT(*) FROM functions WHERE tenant=$1),"
                    " (SELECT COALESCE(SUM((config::jsonb->>'CodeSize')::bigint), 0)::bigint"
                    " FROM versions WHERE tenant=$1)",
                    1},
    [S_VER_GET] = {"SELECT config, code FROM versions WHERE tenant=$1 AND name=$2 AND num=$3", 3},
    [S_VER_LAST] = {"SELECT num, config, code FROM versions WHERE tenant=$1 AND name=$2 AND num>0"
                    " ORDER BY num DESC LIMIT 1",
                    2},
    [S_VER_INSERT] = {"INSERT INTO versions(tenant, name, num, code, config)"
                      " VALUES($1, $2, $3, $4, $5)",
                      5},
    [S_VER_UPDATE] =
        {"UPDATE versions SET code=$4, config=$5 WHERE tenant=$1 AND name=$2 AND num=$3", 5},
    [S_VER_UPDATE_CFG] = {"UPDATE versions SET config=$4 WHERE tenant=$1 AND name=$2 AND num=$3",
                          4},
    [S_VER_DELETE] = {"DELETE FROM versions WHERE tenant=$1 AND name=$2 AND num=$3", 3},
    [S_VER_LIST_FN] = {"SELECT name, num, config FROM versions WHERE tenant=$1 AND name=$2"
                       " AND num > $3 ORDER BY num LIMIT $4",
                       4},
    [S_VER_LIST_ALL] = {"SELECT name, num, config FROM versions WHERE tenant=$1 AND"
                        " (name > $2 OR (name = $2 AND num > $3)) ORDER BY name, num LIMIT $4",
                        4},
    [S_VER_LIST_LATEST] = {"SELECT name, num, config FROM versions WHERE tenant=$1 AND num=0"
                           " AND name > $2 ORDER BY name LIMIT $3",
                           3},
    [S_CODE_USED] = {"SELECT 1 FROM versions WHERE code=$1 LIMIT 1", 1},
    [S_CODE_OWNED] = {"SELECT 1 FROM versions WHERE code=$1 AND tenant=$2 LIMIT 1", 2},
    [S_ALIAS_GET] = {"SELECT config FROM aliases WHERE tenant=$1 AND name=$2 AND alias=$3", 3},
    [S_ALIAS_INSERT] = {"INSERT INTO aliases(tenant, name, alias, config) VALUES($1, $2, $3, $4)",
                        4},
    [S_ALIAS_UPDATE] = {"UPDATE aliases SET config=$4 WHERE tenant=$1 AND name=$2 AND alias=$3", 4},
    [S_ALIAS_DELETE] = {"DELETE FROM aliases WHERE tenant=$1 AND name=$2 AND alias=$3", 3},
    [S_ALIAS_LIST] = {"SELECT alias, config FROM aliases WHERE tenant=$1 AND name=$2"
                      " AND alias > $3 AND (COALESCE($4, '') = ''"
                      " OR config::jsonb->>'FunctionVersion' = $4) ORDER BY alias LIMIT $5",
                      5},
    [S_ALIAS_USING] = {"SELECT alias FROM aliases WHERE tenant=$1 AND name=$2 AND"
                       " (config::jsonb->>'FunctionVersion' = $3 OR jsonb_exists("
                       "config::jsonb->'RoutingConfig'->'AdditionalVersionWeights', $3))"
                       " ORDER BY alias LIMIT 1",
                       3},
    [S_GENERATION] = {"SELECT value FROM realm_generation WHERE kind = 'registry'", 0},
    /* A row of a dead server (expired) is taken over; a live one answers no row. */
    [S_PEND_ADD] = {"INSERT INTO realm_pending(tenant, name, is_create, owner, expires)"
                    " VALUES($1, $2, $3, $4, now() + " PG_PENDING_TTL ")"
                    " ON CONFLICT (tenant, name) DO UPDATE SET is_create = excluded.is_create,"
                    " owner = excluded.owner, expires = excluded.expires"
                    " WHERE realm_pending.expires < now()",
                    4},
    [S_PEND_GET] = {"SELECT is_create FROM realm_pending WHERE tenant=$1 AND name=$2"
                    " AND expires >= now()",
                    2},
    [S_PEND_DEL] = {"DELETE FROM realm_pending WHERE tenant=$1 AND name=$2 AND owner=$3", 3},
    [S_PEND_COUNT] = {"SELECT COUNT(*) FROM realm_pending WHERE expires >= now()", 0},
    /* inserted: 't' for a new row (xmax 0), 'f' when it was there (touched, locked) */
    [S_PKG_UPSERT] = {"INSERT INTO realm_packages(hex, size) VALUES($1, $2)"
                      " ON CONFLICT (hex) DO UPDATE SET touched = now()"
                      " RETURNING (xmax = 0) AS inserted",
                      2},
    [S_PKG_CHUNK_PUT] = {"INSERT INTO realm_package_chunks(hex, n, bytes) VALUES($1, $2, $3)"
                         " ON CONFLICT DO NOTHING",
                         3},
    [S_PKG_SIZE] = {"SELECT size FROM realm_packages WHERE hex = $1", 1},
    [S_PKG_CHUNK_GET] = {"SELECT bytes FROM realm_package_chunks WHERE hex = $1 AND n = $2", 2},
    [S_PKG_DELETE_UNUSED] = {"DELETE FROM realm_packages p"
                             " WHERE p.touched < now() - make_interval(secs => $1)"
                             " AND NOT EXISTS (SELECT 1 FROM versions v WHERE v.code = p.hex)",
                             1},
    /* The owners of this store's space ($1: "SPACE:"), and one owner's rows. */
    [S_PEND_OWNERS] = {"SELECT DISTINCT owner FROM realm_pending"
                       " WHERE left(owner, length($1)) = $1",
                       1},
    [S_PEND_DROP] = {"DELETE FROM realm_pending WHERE owner=$1", 1},
};

#define P(s) ((pg_t *)(s))

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

/* Runs a write: 0 when it changed a row, 1 when none (missing), -1. */
static int write_rc(pg_t *p, int idx, const char *const *params)
{
    PGresult *r = realm_pg_exec(p, (size_t)idx, params, NULL);
    if (!r) return -1;
    int64_t n = realm_pg_changes(r);
    PQclear(r);
    return n > 0 ? 0 : 1;
}

static char *dump(json_t *j)
{
    return json_dumps(j, JSON_COMPACT);
}

static void copy_col(char *out, size_t len, const PGresult *r, int col)
{
    snprintf(out, len, "%s", PQgetisnull(r, 0, col) ? "" : PQgetvalue(r, 0, col));
}

/* ---- functions ---- */

static int fn_get(realm_store_t *s, const char *t, const char *n, realm_store_fn_t *out)
{
    PGresult *r = NULL;
    int rc = query_row(P(s), S_FN_GET, (const char *[]){t, n}, &r);
    if (rc != 0) return rc;
    if (out) {
        out->next_version = realm_pg_int(r, 0, 0);
        out->reserved = PQgetisnull(r, 0, 1) ? -1 : realm_pg_int(r, 0, 1);
        out->tags = realm_pg_json(r, 0, 2);
    }
    PQclear(r);
    return 0;
}

static int fn_insert(realm_store_t *s, const char *t, const char *n, json_t *tags)
{
    char *ts = tags ? dump(tags) : NULL;
    int rc = write_rc(P(s), S_FN_INSERT, (const char *[]){t, n, ts ? ts : "{}"});
    free(ts);
    return rc;
}

static int fn_delete(realm_store_t *s, const char *t, const char *n)
{
    return write_rc(P(s), S_FN_DELETE, (const char *[]){t, n});
}

static int fn_set_reserved(realm_store_t *s, const char *t, const char *n, int64_t reserved)
{
    char v[24];
    snprintf(v, sizeof(v), "%" PRId64, reserved);
    return write_rc(P(s), S_FN_RESERVED, (const char *[]){t, n, reserved >= 0 ? v : NULL}) < 0 ? -1
                                                                                               : 0;
}

static int fn_set_tags(realm_store_t *s, const char *t, const char *n, json_t *tags)
{
    char *ts = dump(tags);
    int rc = write_rc(P(s), S_FN_TAGS, (const char *[]){t, n, ts});
    free(ts);
    return rc < 0 ? -1 : 0;
}

static int64_t fn_take_version(realm_store_t *s, const char *t, const char *n)
{
    PGresult *r = NULL;
    if (query_row(P(s), S_FN_TAKE, (const char *[]){t, n}, &r) != 0) return -1;
    int64_t v = realm_pg_int(r, 0, 0);
    PQclear(r);
    return v;
}

static int64_t fn_sum_reserved(realm_store_t *s, const char *t, const char *except)
{
    PGresult *r = NULL;
    if (query_row(P(s), S_FN_SUM, (const char *[]){t, except ? except : ""}, &r) != 0) return -1;
    int64_t v = realm_pg_int(r, 0, 0);
    PQclear(r);
    return v;
}

static int fn_usage(realm_store_t *s, const char *t, int64_t *count, int64_t *code_size)
{
    PGresult *r = NULL;
    if (query_row(P(s), S_FN_USAGE, (const char *[]){t}, &r) != 0) return -1;
    *count = realm_pg_int(r, 0, 0);
    *code_size = realm_pg_int(r, 0, 1);
    PQclear(r);
    return 0;
}

/* ---- versions ---- */

static int ver_get(realm_store_t *s, const char *t, const char *n, int64_t num, json_t **config,
                   char *code)
{
    char v[24];
    snprintf(v, sizeof(v), "%" PRId64, num);
    PGresult *r = NULL;
    int rc = query_row(P(s), S_VER_GET, (const char *[]){t, n, v}, &r);
    if (rc != 0) return rc;
    if (config) *config = realm_pg_json(r, 0, 0);
    if (code) copy_col(code, REALM_STORE_HEX_LEN + 1, r, 1);
    PQclear(r);
    return 0;
}

static int ver_last(realm_store_t *s, const char *t, const char *n, int64_t *num, json_t **config,
                    char *code)
{
    PGresult *r = NULL;
    int rc = query_row(P(s), S_VER_LAST, (const char *[]){t, n}, &r);
    if (rc != 0) return rc;
    *num = realm_pg_int(r, 0, 0);
    if (config) *config = realm_pg_json(r, 0, 1);
    if (code) copy_col(code, REALM_STORE_HEX_LEN + 1, r, 2);
    PQclear(r);
    return 0;
}

static int ver_insert(realm_store_t *s, const char *t, const char *n, int64_t num, const char *code,
                      json_t *config)
{
    char v[24];
    snprintf(v, sizeof(v), "%" PRId64, num);
    char *cs = dump(config);
    int rc = write_rc(P(s), S_VER_INSERT, (const char *[]){t, n, v, code, cs});
    free(cs);
    return rc < 0 ? -1 : 0;
}

static int ver_update(realm_store_t *s, const char *t, const char *n, int64_t num, const char *code,
                      json_t *config)
{
    char v[24];
    snprintf(v, sizeof(v), "%" PRId64, num);
    char *cs = dump(config);
    int rc = code ? write_rc(P(s), S_VER_UPDATE, (const char *[]){t, n, v, code, cs})
                  : write_rc(P(s), S_VER_UPDATE_CFG, (const char *[]){t, n, v, cs});
    free(cs);
    return rc < 0 ? -1 : 0;
}

static int ver_delete(realm_store_t *s, const char *t, const char *n, int64_t num)
{
    char v[24];
    snprintf(v, sizeof(v), "%" PRId64, num);
    return write_rc(P(s), S_VER_DELETE, (const char *[]){t, n, v});
}

static json_t *ver_list(realm_store_t *s, const char *t, const char *n, const char *after_name,
                        int64_t after_num, int latest_only, size_t limit)
{
    char an[24], lim[24];
    snprintf(an, sizeof(an), "%" PRId64, after_num);
    snprintf(lim, sizeof(lim), "%zu", limit);
    const char *after = after_name ? after_name : "";
    PGresult *r =
        n ? realm_pg_exec(P(s), S_VER_LIST_FN, (const char *[]){t, n, an, lim}, NULL)
        : latest_only
            ? realm_pg_exec(P(s), S_VER_LIST_LATEST, (const char *[]){t, after, lim}, NULL)
            : realm_pg_exec(P(s), S_VER_LIST_ALL, (const char *[]){t, after, an, lim}, NULL);
    if (!r) return NULL;
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(list, json_pack("{s:s, s:I, s:o}", "name", PQgetvalue(r, i, 0), "num",
                                              (json_int_t)realm_pg_int(r, i, 1), "config",
                                              realm_pg_json(r, i, 2)));
    PQclear(r);
    return list;
}

static int code_used(realm_store_t *s, const char *t, const char *hex)
{
    PGresult *r = t ? realm_pg_exec(P(s), S_CODE_OWNED, (const char *[]){hex, t}, NULL)
                    : realm_pg_exec(P(s), S_CODE_USED, (const char *[]){hex}, NULL);
    if (!r) return -1;
    int used = PQntuples(r) > 0;
    PQclear(r);
    return used;
}

/* ---- aliases ---- */

static int alias_get(realm_store_t *s, const char *t, const char *n, const char *a, json_t **config)
{
    PGresult *r = NULL;
    int rc = query_row(P(s), S_ALIAS_GET, (const char *[]){t, n, a}, &r);
    if (rc != 0) return rc;
    if (config) *config = realm_pg_json(r, 0, 0);
    PQclear(r);
    return 0;
}

static int alias_put(realm_store_t *s, const char *t, const char *n, const char *a, json_t *config,
                     int is_insert)
{
    char *cs = dump(config);
    int rc =
        write_rc(P(s), is_insert ? S_ALIAS_INSERT : S_ALIAS_UPDATE, (const char *[]){t, n, a, cs});
    free(cs);
    return rc < 0 ? -1 : 0;
}

static int alias_delete(realm_store_t *s, const char *t, const char *n, const char *a)
{
    return write_rc(P(s), S_ALIAS_DELETE, (const char *[]){t, n, a});
}

static json_t *alias_list(realm_store_t *s, const char *t, const char *n, const char *after,
                          const char *version, size_t limit)
{
    char lim[24];
    snprintf(lim, sizeof(lim), "%zu", limit);
    PGresult *r = realm_pg_exec(P(s), S_ALIAS_LIST,
                                (const char *[]){t, n, after ? after : "", version, lim}, NULL);
    if (!r) return NULL;
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(list, json_pack("{s:s, s:o}", "alias", PQgetvalue(r, i, 0), "config",
                                              realm_pg_json(r, i, 1)));
    PQclear(r);
    return list;
}

static int alias_using(realm_store_t *s, const char *t, const char *n, const char *version,
                       char *alias_out)
{
    PGresult *r = NULL;
    int rc = query_row(P(s), S_ALIAS_USING, (const char *[]){t, n, version}, &r);
    if (rc < 0) return -1;
    if (rc == 1) return 0;
    copy_col(alias_out, 129, r, 0);
    PQclear(r);
    return 1;
}

/* ---- shared state: the generation, the creates/updates in flight ---- */

static uint64_t generation(realm_store_t *s)
{
    pg_t *p = P(s);
    PGresult *r = NULL;
    /* The database's counter (every process's committed writes: one round
     * trip) plus this store's own write calls (base.generation), so that a
     * rolled-back write moves it too, as store.h promises; both only grow.
     * When the database cannot answer, the last value read stands (logged):
     * what was cached stays served, as the façade will do while it is down. */
    if (query_row(p, S_GENERATION, NULL, &r) == 0) {
        p->last_generation = (uint64_t)realm_pg_int(r, 0, 0);
        PQclear(r);
    }
    return p->last_generation + p->base.generation;
}

static int pending_add(realm_store_t *s, const char *t, const char *n, int is_create)
{
    pg_t *p = P(s);
    int rc = write_rc(p, S_PEND_ADD, (const char *[]){t, n, is_create ? "t" : "f", p->owner});
    return rc < 0 ? -1 : rc;
}

static int pending_get(realm_store_t *s, const char *t, const char *n)
{
    PGresult *r = NULL;
    int rc = query_row(P(s), S_PEND_GET, (const char *[]){t, n}, &r);
    if (rc < 0) return -1;
    if (rc == 1) return 0;
    int is_create = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return is_create ? 2 : 1;
}

static void pending_remove(realm_store_t *s, const char *t, const char *n)
{
    pg_t *p = P(s);
    write_rc(p, S_PEND_DEL, (const char *[]){t, n, p->owner});
}

static size_t pending_count(realm_store_t *s)
{
    PGresult *r = NULL;
    /* On an error, "one": nothing is garbage-collected on a guess. */
    if (query_row(P(s), S_PEND_COUNT, NULL, &r) != 0) return 1;
    int64_t n = realm_pg_int(r, 0, 0);
    PQclear(r);
    return n > 0 ? (size_t)n : 0;
}

/* ---- code packages (store.h; docs/storage.md, "Code packages on PostgreSQL") ---- */

/* Ends what pkg_put / pkg_get began when they opened a transaction of their own. */
static int own_end(pg_t *p, int own, int ok)
{
    if (!own) return ok ? 0 : -1;
    if (ok) return p->ops.commit(&p->base);
    p->ops.rollback(&p->base);
    return -1;
}

static int pkg_put(realm_store_t *s, const char *hex, const void *data, size_t len)
{
    pg_t *p = P(s);
    /* In the caller's transaction when one is open: the package commits
     * with the version row that names it. */
    int own = !p->in_txn;
    if (own && p->ops.begin(s) != 0) return -1;
    char size[24];
    snprintf(size, sizeof(size), "%zu", len);
    PGresult *r = NULL;
    int ok = query_row(p, S_PKG_UPSERT, (const char *[]){hex, size}, &r) == 0;
    /* The row first, then the chunks: a delete_unused that deleted the
     * package (and its chunks) while this waited on its row has committed
     * by now, so the chunks below are not lost to it. */
    int is_new = ok && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    for (size_t off = 0, n = 0; ok && is_new && off < len; off += REALM_STORE_PKG_CHUNK, n++) {
        size_t part = len - off < REALM_STORE_PKG_CHUNK ? len - off : REALM_STORE_PKG_CHUNK;
        char num[24];
        snprintf(num, sizeof(num), "%zu", n);
        const char *params[3] = {hex, num, (const char *)data + off};
        const int lengths[3] = {0, 0, (int)part}, formats[3] = {0, 0, 1};
        PGresult *c = realm_pg_exec_bin(p, S_PKG_CHUNK_PUT, params, lengths, formats, 0, NULL);
        ok = c != NULL;
        PQclear(c);
    }
    return own_end(p, own, ok);
}

static int pkg_get(realm_store_t *s, const char *hex, char **data, size_t *len)
{
    pg_t *p = P(s);
    *data = NULL;
    *len = 0;
    /* One snapshot for the size and every chunk. */
    int own = !p->in_txn;
    if (own) {
        if (realm_pg_simple(p, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") != 0) return -1;
        p->in_txn = 1;
    }
    PGresult *r = NULL;
    int rc = query_row(p, S_PKG_SIZE, (const char *[]){hex}, &r);
    if (rc != 0) {
        own_end(p, own, rc == 1);
        return rc;
    }
    int64_t size = realm_pg_int(r, 0, 0);
    PQclear(r);
    char *buf = realm_malloc((size_t)(size > 0 ? size : 0) + 1);
    size_t got = 0;
    int ok = size >= 0;
    for (int64_t n = 0; ok && (int64_t)got < size; n++) {
        char num[24];
        snprintf(num, sizeof(num), "%" PRId64, n);
        PGresult *c =
            realm_pg_exec_bin(p, S_PKG_CHUNK_GET, (const char *[]){hex, num}, NULL, NULL, 1, NULL);
        ok = c != NULL && PQntuples(c) == 1 && (size_t)PQgetlength(c, 0, 0) <= (size_t)size - got &&
             PQgetlength(c, 0, 0) > 0;
        if (ok) {
            memcpy(buf + got, PQgetvalue(c, 0, 0), (size_t)PQgetlength(c, 0, 0));
            got += (size_t)PQgetlength(c, 0, 0);
        } else if (c) {
            realm_warn("store: %s: package %s: chunk %" PRId64 " is missing or of the wrong size",
                       p->where, hex, n);
        }
        PQclear(c);
    }
    if (own_end(p, own, ok) != 0 || !ok) {
        free(buf);
        return -1;
    }
    buf[got] = 0;
    *data = buf;
    *len = got;
    return 0;
}

static int pkg_has(realm_store_t *s, const char *hex)
{
    PGresult *r = NULL;
    int rc = query_row(P(s), S_PKG_SIZE, (const char *[]){hex}, &r);
    if (rc == 0) PQclear(r);
    return rc == 0 ? 1 : rc == 1 ? 0 : -1;
}

static int64_t pkg_delete_unused(realm_store_t *s)
{
    char grace[24];
    snprintf(grace, sizeof(grace), "%d", REALM_STORE_PKG_GRACE_S);
    PGresult *r = realm_pg_exec(P(s), S_PKG_DELETE_UNUSED, (const char *[]){grace}, NULL);
    if (!r) return -1;
    int64_t n = realm_pg_changes(r);
    PQclear(r);
    return n;
}

/* Where a pid means one process: "HOST/BOOT/PIDNS" (this boot of this
 * machine, this pid namespace); without /proc, the host alone, and then
 * nobody's rows are judged by their pid (pid_space answers 0). */
int realm_pg_pid_space(char *out, size_t len)
{
    char host[64] = "", boot[40] = "";
    gethostname(host, sizeof(host) - 1);
    for (char *c = host; *c; c++)
        if (*c == ':' || *c == '/') *c = '_'; /* the owner's separators */
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(boot, sizeof(boot), f)) boot[0] = 0;
        fclose(f);
    }
    boot[strcspn(boot, "\n")] = 0;
    struct stat ns;
    if (!boot[0] || stat("/proc/self/ns/pid", &ns) != 0) {
        snprintf(out, len, "%s", host);
        return 0;
    }
    snprintf(out, len, "%s/%.8s/%lu", host, boot, (unsigned long)ns.st_ino);
    return 1;
}

long realm_pg_dead_owner(const char *owner, const char *prefix)
{
    size_t plen = strlen(prefix);
    if (strncmp(owner, prefix, plen) != 0) return 0;
    char *end = NULL;
    errno = 0;
    long pid = strtol(owner + plen, &end, 10);
    if (errno || end == owner + plen || *end != ':' || pid <= 0) return 0;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) return 0; /* alive (or not ours to see) */
    return pid;
}

void realm_pg_release_dead(pg_t *p, size_t owners_stmt, size_t drop_stmt, const char *what)
{
    char space[128], prefix[130];
    if (!realm_pg_pid_space(space, sizeof(space))) return;
    snprintf(prefix, sizeof(prefix), "%s:", space);
    PGresult *r = realm_pg_exec(p, owners_stmt, (const char *[]){prefix}, NULL);
    if (!r) return;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *owner = PQgetvalue(r, i, 0);
        long pid = realm_pg_dead_owner(owner, prefix);
        if (!pid) continue;
        PGresult *d = realm_pg_exec(p, drop_stmt, (const char *[]){owner}, NULL);
        if (d) {
            realm_info("store: %s: %" PRId64 " %s of process %ld (gone) released", p->where,
                       realm_pg_changes(d), what, pid);
            PQclear(d);
        }
    }
    PQclear(r);
}

void realm_pg_set_owner(pg_t *p)
{
    char space[128];
    realm_pg_pid_space(space, sizeof(space));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(p->owner, sizeof(p->owner), "%s:%ld:%lx.%lx", space, (long)getpid(),
             (unsigned long)ts.tv_sec, (unsigned long)ts.tv_nsec ^ (unsigned long)(uintptr_t)p);
}

void realm_pg_registry_opened(pg_t *p)
{
    realm_pg_release_dead(p, S_PEND_OWNERS, S_PEND_DROP, "create(s)/update(s) in flight");
}

void realm_pg_registry_init(pg_t *p)
{
    realm_store_ops_t *o = &p->ops;
    p->stmts = stmts;
    p->stmt_cnt = S_COUNT;
    _Static_assert(S_COUNT <= PG_STMT_MAX, "PG_STMT_MAX");
    realm_pg_set_owner(p); /* its name in realm_pending */
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
    o->generation = generation;
    o->pending_add = pending_add;
    o->pending_get = pending_get;
    o->pending_remove = pending_remove;
    o->pending_count = pending_count;
    o->pkg_put = pkg_put;
    o->pkg_get = pkg_get;
    o->pkg_has = pkg_has;
    o->pkg_delete_unused = pkg_delete_unused;
}
