/*
 * pg_leases.c - the PostgreSQL backend's concurrency leases (docs/cluster.md,
 * "Concurrency across nodes"): one row per execution environment of a
 * cluster, so that a function's reserved concurrency and a tenant's
 * account limit hold across every node that shares the database.
 *
 * SCHEMA (version 1, recorded in realm_schema under 'leases'):
 *   env_leases(id, tenant, function, node, until_ms)
 * Times are the database's clock (milliseconds since the epoch), so the
 * nodes' clocks never have to agree. A lease is live while until_ms is in
 * the future; its node renews it (realm_store_lease_renew) and drops it
 * when the environment stops. A node that dies or is cut off stops
 * renewing: its leases end by themselves and count no more.
 *
 * Take: one statement, realm_lease_take(), which holds a transaction-scoped
 * advisory lock of the tenant, deletes the tenant's ended leases, counts
 * the live ones (the function's and the tenant's) and inserts a row only
 * below both caps. Each statement of a VOLATILE function reads a new
 * snapshot, so the counts read under the lock include every take that held
 * it before: the caps are exact across nodes.
 *
 * Renew: one UPDATE of the node's leases that are still live; a lease that
 * ended is never brought back (another node may count on its place), so
 * the node learns which it lost and stops those environments.
 */
#include "store/pg.h"

#include "base/alloc.h"
#include "base/buf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* The database's clock in milliseconds. */
#define DB_NOW_MS "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

static const realm_store_migration_t steps[] = {
    {"concurrency leases",
     "CREATE TABLE env_leases("
     " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     " tenant TEXT NOT NULL, function TEXT NOT NULL, node TEXT NOT NULL,"
     " until_ms BIGINT NOT NULL);"
     "CREATE INDEX env_leases_fn ON env_leases(tenant, function);"
     "CREATE INDEX env_leases_node ON env_leases(node);"
     /* Returns (id, '') when taken, (0, 'f') at the function's cap,
      * (0, 't') at the tenant's; a cap below 0 is no cap. */
     "CREATE FUNCTION realm_lease_take(p_node TEXT, p_t TEXT, p_f TEXT, p_fn_cap BIGINT,"
     " p_t_cap BIGINT, p_ttl BIGINT, OUT o_id BIGINT, OUT o_full TEXT)"
     " LANGUAGE plpgsql AS $$"
     " DECLARE v_now BIGINT; v_n BIGINT; BEGIN"
     " o_id := 0; o_full := '';"
     " PERFORM pg_advisory_xact_lock(hashtextextended('realm lease ' || p_t, 0));"
     " v_now := " DB_NOW_MS ";"
     " DELETE FROM env_leases WHERE tenant = p_t AND until_ms <= v_now;"
     " IF p_fn_cap >= 0 THEN SELECT count(*) INTO v_n FROM env_leases"
     "  WHERE tenant = p_t AND function = p_f;"
     "  IF v_n >= p_fn_cap THEN o_full := 'f'; RETURN; END IF; END IF;"
     " IF p_t_cap >= 0 THEN SELECT count(*) INTO v_n FROM env_leases WHERE tenant = p_t;"
     "  IF v_n >= p_t_cap THEN o_full := 't'; RETURN; END IF; END IF;"
     " INSERT INTO env_leases(tenant, function, node, until_ms)"
     "  VALUES(p_t, p_f, p_node, v_now + p_ttl) RETURNING id INTO o_id;"
     " END $$;"},
};
const realm_store_schema_t realm_pg_leases_schema = {steps, sizeof(steps) / sizeof(steps[0])};

enum { S_TAKE, S_RENEW, S_DROP, S_DROP_NODE, S_COUNT };

static const pg_stmt_t stmts[S_COUNT] = {
    [S_TAKE] = {"SELECT o_id, o_full FROM realm_lease_take($1, $2, $3, $4::bigint, $5::bigint,"
                " $6::bigint)",
                6},
    /* $1 node, $2 ids, $3 ttl: the ones still live, renewed. */
    [S_RENEW] = {"UPDATE env_leases SET until_ms = " DB_NOW_MS " + $3::bigint"
                 " WHERE node = $1 AND id = ANY($2::bigint[]) AND until_ms > " DB_NOW_MS
                 " RETURNING id",
                 3},
    [S_DROP] = {"DELETE FROM env_leases WHERE node = $1 AND id = ANY($2::bigint[])", 2},
    [S_DROP_NODE] = {"DELETE FROM env_leases WHERE node = $1", 1},
};

static char *id_array(const int64_t *ids, size_t n)
{
    realm_buf_t b;
    realm_buf_init(&b);
    realm_buf_appends(&b, "{");
    for (size_t i = 0; i < n; i++)
        realm_buf_appendf(&b, "%s%" PRId64, i ? "," : "", ids[i]);
    realm_buf_appends(&b, "}");
    return realm_buf_steal(&b, NULL);
}

static int64_t lease_take(realm_store_t *s, const char *node, const char *t, const char *f,
                          int64_t fn_cap, int64_t t_cap, int64_t ttl_ms)
{
    char fc[24], tc[24], ttl[24];
    snprintf(fc, sizeof(fc), "%" PRId64, fn_cap);
    snprintf(tc, sizeof(tc), "%" PRId64, t_cap);
    snprintf(ttl, sizeof(ttl), "%" PRId64, ttl_ms);
    PGresult *r = realm_pg_exec((pg_t *)s, S_TAKE, (const char *[]){node, t, f, fc, tc, ttl}, NULL);
    if (!r) return -1;
    int64_t id = realm_pg_int(r, 0, 0);
    const char *full = PQgetvalue(r, 0, 1);
    int64_t out = id > 0 ? id : full[0] == 't' ? REALM_STORE_LEASE_TENANT_FULL : 0;
    PQclear(r);
    return out;
}

static int lease_renew(realm_store_t *s, const char *node, const int64_t *ids, size_t n,
                       int64_t ttl_ms, unsigned char *kept)
{
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%" PRId64, ttl_ms);
    char *a = id_array(ids, n);
    PGresult *r = realm_pg_exec((pg_t *)s, S_RENEW, (const char *[]){node, a, ttl}, NULL);
    free(a);
    if (!r) return -1;
    for (size_t i = 0; i < n; i++)
        kept[i] = 0;
    for (int row = 0; row < PQntuples(r); row++) {
        int64_t id = realm_pg_int(r, row, 0);
        for (size_t i = 0; i < n; i++)
            if (ids[i] == id) kept[i] = 1;
    }
    PQclear(r);
    return 0;
}

static int lease_drop(realm_store_t *s, const char *node, const int64_t *ids, size_t n)
{
    PGresult *r;
    if (!ids) {
        r = realm_pg_exec((pg_t *)s, S_DROP_NODE, (const char *[]){node}, NULL);
    } else {
        char *a = id_array(ids, n);
        r = realm_pg_exec((pg_t *)s, S_DROP, (const char *[]){node, a}, NULL);
        free(a);
    }
    if (!r) return -1;
    PQclear(r);
    return 0;
}

void realm_pg_leases_init(pg_t *p)
{
    realm_store_ops_t *o = &p->ops;
    p->stmts = stmts;
    p->stmt_cnt = S_COUNT;
    o->lease_take = lease_take;
    o->lease_renew = lease_renew;
    o->lease_drop = lease_drop;
}
