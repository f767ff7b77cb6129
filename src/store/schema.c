/*
 * schema.c - versioned schemas: the procedure every backend follows at open
 * to bring a database's schema of one kind to the latest version this binary
 * knows, or to refuse a database that is newer (internal.h, DESIGN).
 *
 * The backend supplies the steps (its SQL) and five small operations (read
 * the recorded version, lock, run a step, record, commit/rollback); the
 * order, the double check under the lock, the refusal and the messages are
 * here, once, so every backend behaves the same.
 *
 * THREADS: the caller's (a store is opened on the thread that will use it);
 * this runs before the store is handed out, so blocking here (waiting for
 * another process's migration) happens at start, never on a running loop.
 */
#include "store/internal.h"

#include "base/log.h"

#include <inttypes.h>
#include <stdio.h>

const char *realm_store_kind_name(realm_store_kind_t kind)
{
    switch (kind) {
    case REALM_STORE_REGISTRY:
        return "registry";
    case REALM_STORE_QUEUE:
        return "queue";
    case REALM_STORE_AUTH:
        return "auth";
    case REALM_STORE_LEASES:
        return "leases";
    }
    return "?";
}

/* A version the binary cannot start from: newer than its steps (the
 * refusal store.h promises), or negative (not one Realm wrote). */
static int refuse(const char *location, int64_t version, size_t latest, char *err, size_t err_len)
{
    if (version < 0) {
        snprintf(err, err_len, "%s: schema version %" PRId64 " is not a version realm writes",
                 location, version);
        return -1;
    }
    snprintf(err, err_len,
             "%s: schema version %" PRId64 " is newer than this realm (knows up to %zu); "
             "upgrade realm",
             location, version, latest);
    return -1;
}

int realm_store_migrate(const realm_store_migrate_ops_t *ops, void *conn, const char *location,
                        realm_store_kind_t kind, const realm_store_schema_t *schema,
                        int64_t *version, char *err, size_t err_len)
{
    const char *name = realm_store_kind_name(kind);
    const int64_t latest = (int64_t)schema->n;
    int64_t v = 0;
    int is_recorded = 0;
    /* Without the lock first: an up-to-date database (every open but the
     * first after an upgrade) takes no write lock. */
    if (ops->read(conn, name, &v, &is_recorded) != 0) {
        snprintf(err, err_len, "%s: reading the %s schema version: %s", location, name,
                 ops->errmsg(conn));
        return -1;
    }
    if (v > latest || v < 0) return refuse(location, v, schema->n, err, err_len);
    if (is_recorded && v == latest) {
        *version = v;
        return 0;
    }
    if (ops->lock(conn) != 0) {
        snprintf(err, err_len, "%s: locking the %s schema: %s", location, name, ops->errmsg(conn));
        ops->rollback(conn);
        return -1;
    }
    /* Again under the lock: another process may have migrated meanwhile. */
    if (ops->read(conn, name, &v, &is_recorded) != 0) {
        snprintf(err, err_len, "%s: reading the %s schema version: %s", location, name,
                 ops->errmsg(conn));
        goto fail;
    }
    if (v > latest || v < 0) {
        ops->rollback(conn);
        return refuse(location, v, schema->n, err, err_len);
    }
    if (is_recorded && v == latest) { /* it did */
        ops->rollback(conn);
        *version = v;
        return 0;
    }
    const int64_t from = v;
    for (; v < latest; v++) {
        const realm_store_migration_t *m = &schema->steps[v];
        if (ops->exec(conn, m->sql) != 0) {
            snprintf(err, err_len,
                     "%s: moving the %s schema to version %" PRId64 " (%s): %s; "
                     "it stays at version %" PRId64,
                     location, name, v + 1, m->what, ops->errmsg(conn), from);
            goto fail;
        }
    }
    if (ops->write(conn, name, latest) != 0) {
        snprintf(err, err_len, "%s: recording %s schema version %" PRId64 ": %s", location, name,
                 latest, ops->errmsg(conn));
        goto fail;
    }
    if (ops->commit(conn) != 0) {
        snprintf(err, err_len, "%s: committing %s schema version %" PRId64 ": %s", location, name,
                 latest, ops->errmsg(conn));
        goto fail;
    }
    /* A new database is routine (debug); existing data moved is worth a line. */
    if (from == 0)
        realm_debug("%s: %s schema created at version %" PRId64, location, name, latest);
    else if (from == latest)
        realm_info("%s: %s schema version %" PRId64 " recorded", location, name, latest);
    else
        realm_info("%s: %s schema moved from version %" PRId64 " to %" PRId64, location, name, from,
                   latest);
    *version = latest;
    return 0;
fail:
    ops->rollback(conn);
    return -1;
}
