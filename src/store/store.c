/*
 * store.c - the storage interface's dispatch to a backend (see store.h),
 * and the creates/updates in flight, which the SQLite and memory backends
 * keep the same way, in the process (PostgreSQL keeps them in its database:
 * the optional ops of internal.h).
 */
#include "store/internal.h"

#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int realm_store_is_memory(const char *location)
{
    return location && strncmp(location, "memory:", 7) == 0;
}

int realm_store_is_pg(const char *location)
{
    return location && (strncmp(location, "postgresql://", 13) == 0 ||
                        strncmp(location, "postgres://", 11) == 0);
}

realm_store_t *realm_store_open(realm_store_kind_t kind, const char *location, char *err,
                                size_t err_len)
{
    if (kind == REALM_STORE_LEASES && !realm_store_is_pg(location)) {
        snprintf(err, err_len, "%s: concurrency leases are kept in PostgreSQL only", location);
        return NULL;
    }
    realm_store_t *s =
        realm_store_is_memory(location) ? realm_store_memory_open(kind, location + 7, err, err_len)
        : realm_store_is_pg(location)   ? realm_store_pg_open(kind, location, err, err_len)
                                        : realm_store_sqlite_open(kind, location, err, err_len);
    if (s) s->kind = kind;
    return s;
}

void realm_store_close(realm_store_t *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->pending_cnt; i++) {
        free(s->pending[i].tenant);
        free(s->pending[i].name);
    }
    free(s->pending);
    s->ops->close(s);
}

const char *realm_store_backend(const realm_store_t *s)
{
    return s->ops->name;
}

int64_t realm_store_schema_version(const realm_store_t *s)
{
    return s->schema_version;
}

uint64_t realm_store_local_writes(const realm_store_t *s)
{
    return s->generation;
}

uint64_t realm_store_generation(const realm_store_t *s)
{
    /* A shared backend reads it from its database (a round trip): the
     * store is the caller's, so dropping const is only about the signature. */
    if (s->ops->generation) return s->ops->generation((realm_store_t *)s);
    return s->generation;
}

/* ---- pending ---- */

static store_pending_t *pending_find(realm_store_t *s, const char *tenant, const char *name)
{
    for (size_t i = 0; i < s->pending_cnt; i++)
        if (strcmp(s->pending[i].tenant, tenant) == 0 && strcmp(s->pending[i].name, name) == 0)
            return &s->pending[i];
    return NULL;
}

int realm_store_pending_add(realm_store_t *s, const char *tenant, const char *name, int is_create)
{
    if (s->ops->pending_add) return s->ops->pending_add(s, tenant, name, is_create);
    if (pending_find(s, tenant, name)) return 1;
    if (s->pending_cnt == s->pending_cap) {
        s->pending_cap = s->pending_cap ? s->pending_cap * 2 : 8;
        s->pending = realm_realloc(s->pending, s->pending_cap * sizeof(*s->pending));
    }
    s->pending[s->pending_cnt++] =
        (store_pending_t){realm_strdup(tenant), realm_strdup(name), is_create};
    return 0;
}

int realm_store_pending_get(realm_store_t *s, const char *tenant, const char *name)
{
    if (s->ops->pending_get) return s->ops->pending_get(s, tenant, name);
    store_pending_t *p = pending_find(s, tenant, name);
    return !p ? 0 : p->is_create ? 2 : 1;
}

void realm_store_pending_remove(realm_store_t *s, const char *tenant, const char *name)
{
    if (s->ops->pending_remove) {
        s->ops->pending_remove(s, tenant, name);
        return;
    }
    store_pending_t *p = pending_find(s, tenant, name);
    if (!p) return;
    free(p->tenant);
    free(p->name);
    *p = s->pending[--s->pending_cnt];
}

size_t realm_store_pending_count(realm_store_t *s)
{
    if (s->ops->pending_count) return s->ops->pending_count(s);
    return s->pending_cnt;
}

/* ---- dispatch ---- */

void realm_store_fn_dispose(realm_store_fn_t *f)
{
    json_decref(f->tags);
    f->tags = NULL;
}

void realm_store_event_dispose(realm_store_event_t *ev)
{
    free(ev->tenant);
    free(ev->function);
    free(ev->qualifier);
    memset(ev, 0, sizeof(*ev));
}

int realm_store_begin(realm_store_t *s)
{
    return s->ops->begin(s);
}
int realm_store_commit(realm_store_t *s)
{
    return s->ops->commit(s);
}
void realm_store_rollback(realm_store_t *s)
{
    s->ops->rollback(s);
}
int realm_store_fn_get(realm_store_t *s, const char *t, const char *n, realm_store_fn_t *out)
{
    return s->ops->fn_get(s, t, n, out);
}
int realm_store_fn_insert(realm_store_t *s, const char *t, const char *n, json_t *tags)
{
    return s->ops->fn_insert(s, t, n, tags);
}
int realm_store_fn_delete(realm_store_t *s, const char *t, const char *n)
{
    return s->ops->fn_delete(s, t, n);
}
int realm_store_fn_set_reserved(realm_store_t *s, const char *t, const char *n, int64_t reserved)
{
    return s->ops->fn_set_reserved(s, t, n, reserved);
}
int realm_store_fn_set_tags(realm_store_t *s, const char *t, const char *n, json_t *tags)
{
    return s->ops->fn_set_tags(s, t, n, tags);
}
int64_t realm_store_fn_take_version(realm_store_t *s, const char *t, const char *n)
{
    return s->ops->fn_take_version(s, t, n);
}
int64_t realm_store_fn_sum_reserved(realm_store_t *s, const char *t, const char *except)
{
    return s->ops->fn_sum_reserved(s, t, except);
}
int realm_store_fn_usage(realm_store_t *s, const char *t, int64_t *count, int64_t *code_size)
{
    return s->ops->fn_usage(s, t, count, code_size);
}
int realm_store_ver_get(realm_store_t *s, const char *t, const char *n, int64_t num,
                        json_t **config, char *code)
{
    return s->ops->ver_get(s, t, n, num, config, code);
}
int realm_store_ver_last(realm_store_t *s, const char *t, const char *n, int64_t *num,
                         json_t **config, char *code)
{
    return s->ops->ver_last(s, t, n, num, config, code);
}
int realm_store_ver_insert(realm_store_t *s, const char *t, const char *n, int64_t num,
                           const char *code, json_t *config)
{
    return s->ops->ver_insert(s, t, n, num, code, config);
}
int realm_store_ver_update(realm_store_t *s, const char *t, const char *n, int64_t num,
                           const char *code, json_t *config)
{
    return s->ops->ver_update(s, t, n, num, code, config);
}
int realm_store_ver_delete(realm_store_t *s, const char *t, const char *n, int64_t num)
{
    return s->ops->ver_delete(s, t, n, num);
}
json_t *realm_store_ver_list(realm_store_t *s, const char *t, const char *n, const char *after_name,
                             int64_t after_num, int latest_only, size_t limit)
{
    return s->ops->ver_list(s, t, n, after_name ? after_name : "", after_num, latest_only, limit);
}
int realm_store_code_used(realm_store_t *s, const char *t, const char *hex)
{
    return s->ops->code_used(s, t, hex);
}
int realm_store_alias_get(realm_store_t *s, const char *t, const char *n, const char *a,
                          json_t **config)
{
    return s->ops->alias_get(s, t, n, a, config);
}
int realm_store_alias_put(realm_store_t *s, const char *t, const char *n, const char *a,
                          json_t *config, int is_insert)
{
    return s->ops->alias_put(s, t, n, a, config, is_insert);
}
int realm_store_alias_delete(realm_store_t *s, const char *t, const char *n, const char *a)
{
    return s->ops->alias_delete(s, t, n, a);
}
json_t *realm_store_alias_list(realm_store_t *s, const char *t, const char *n, const char *after,
                               const char *version, size_t limit)
{
    return s->ops->alias_list(s, t, n, after ? after : "", version ? version : "", limit);
}
int realm_store_alias_using(realm_store_t *s, const char *t, const char *n, const char *version,
                            char *alias_out)
{
    return s->ops->alias_using(s, t, n, version, alias_out);
}

int64_t realm_store_q_push(realm_store_t *s, const char *t, const char *f, const char *q,
                           const void *payload, size_t len, int64_t now_ms, uint64_t max_fn,
                           uint64_t max_tenant, char *which)
{
    return s->ops->q_push(s, t, f, q ? q : "", payload, len, now_ms, max_fn, max_tenant, which);
}
size_t realm_store_q_claim(realm_store_t *s, int64_t now_ms, int64_t lease_until_ms,
                           realm_store_event_t *out, size_t max)
{
    return max ? s->ops->q_claim(s, now_ms, lease_until_ms, out, max) : 0;
}
int realm_store_q_payload(realm_store_t *s, int64_t id, char **data, size_t *len)
{
    return s->ops->q_payload(s, id, data, len);
}
int realm_store_q_complete(realm_store_t *s, int64_t id, uint64_t lease)
{
    return s->ops->q_complete(s, id, lease);
}
int realm_store_q_retry(realm_store_t *s, int64_t id, uint64_t lease, int64_t due_ms,
                        const char *error)
{
    return s->ops->q_retry(s, id, lease, due_ms, error);
}
int realm_store_q_defer(realm_store_t *s, int64_t id, uint64_t lease, int64_t due_ms)
{
    return s->ops->q_defer(s, id, lease, due_ms);
}
int realm_store_q_release(realm_store_t *s, int64_t id, uint64_t lease)
{
    return s->ops->q_release(s, id, lease);
}
int realm_store_q_fail(realm_store_t *s, int64_t id, uint64_t lease, const char *error_type,
                       const char *error_message, int64_t now_ms, int64_t keep)
{
    return s->ops->q_fail(s, id, lease, error_type, error_message, now_ms, keep);
}
int realm_store_q_park(realm_store_t *s, int64_t id, uint64_t lease, int64_t until_ms)
{
    return s->ops->q_park(s, id, lease, until_ms);
}
int64_t realm_store_q_renew(realm_store_t *s, const int64_t *ids, const uint64_t *leases, size_t n,
                            int64_t until_ms)
{
    if (!s->ops->q_renew || n == 0) return 0;
    return s->ops->q_renew(s, ids, leases, n, until_ms);
}
int64_t realm_store_q_unpark(realm_store_t *s, const char *t, const char *f, int64_t now_ms)
{
    return s->ops->q_unpark(s, t, f, now_ms);
}
json_t *realm_store_q_parked(realm_store_t *s)
{
    return s->ops->q_parked(s);
}
int64_t realm_store_q_next_due(realm_store_t *s)
{
    return s->ops->q_next_due(s);
}
size_t realm_store_q_pending(realm_store_t *s, const char *t, const char *f)
{
    return s->ops->q_pending(s, t, f);
}
void realm_store_q_stats(realm_store_t *s, realm_store_q_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    s->ops->q_stats(s, out);
}
json_t *realm_store_q_failed(realm_store_t *s, const char *t, const char *f, size_t limit)
{
    return s->ops->q_failed(s, t ? t : "", f, limit);
}
int realm_store_q_forget(realm_store_t *s, const char *t, const char *f)
{
    return s->ops->q_forget(s, t, f);
}

int realm_store_tenant_get(realm_store_t *s, const char *t, char *account_id)
{
    return s->ops->tenant_get(s, t, account_id);
}
int realm_store_tenant_add(realm_store_t *s, const char *t, const char *account_id, int64_t now_ms)
{
    return s->ops->tenant_add(s, t, account_id, now_ms);
}
int realm_store_key_add(realm_store_t *s, const realm_store_key_t *key)
{
    return s->ops->key_add(s, key);
}
int realm_store_key_get(realm_store_t *s, const char *id, int by_access_key, realm_store_key_t *out)
{
    return s->ops->key_get(s, id, by_access_key, out);
}
int realm_store_key_list(realm_store_t *s, realm_store_key_t **out, size_t *n)
{
    return s->ops->key_list(s, out, n);
}
int realm_store_key_revoke(realm_store_t *s, const char *key_id, int64_t now_ms)
{
    return s->ops->key_revoke(s, key_id, now_ms);
}
int realm_store_key_any(realm_store_t *s)
{
    return s->ops->key_any(s);
}
int64_t realm_store_auth_version(realm_store_t *s)
{
    return s->ops->auth_version(s);
}

int realm_store_is_unreachable(const realm_store_t *s)
{
    return s->is_unreachable;
}

int realm_store_auth_key_check(realm_store_t *s, const char *check, char *stored)
{
    if (!s->ops->auth_key_check) return REALM_STORE_NOT_KEPT;
    return s->ops->auth_key_check(s, check, stored);
}

/* ---- code packages (optional: SQLite keeps none, the data dir is the truth) ---- */

int realm_store_pkg_put(realm_store_t *s, const char *hex, const void *data, size_t len)
{
    if (!s->ops->pkg_put) return REALM_STORE_NOT_KEPT;
    return s->ops->pkg_put(s, hex, data, len);
}

int realm_store_pkg_get(realm_store_t *s, const char *hex, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (!s->ops->pkg_get) return 1;
    return s->ops->pkg_get(s, hex, data, len);
}

int realm_store_pkg_has(realm_store_t *s, const char *hex)
{
    if (!s->ops->pkg_has) return 0;
    return s->ops->pkg_has(s, hex);
}

int64_t realm_store_pkg_delete_unused(realm_store_t *s)
{
    if (!s->ops->pkg_delete_unused) return 0;
    return s->ops->pkg_delete_unused(s);
}

int64_t realm_store_lease_take(realm_store_t *s, const char *node, const char *tenant,
                               const char *function, int64_t fn_cap, int64_t t_cap, int64_t ttl_ms)
{
    if (!s->ops->lease_take) return -1;
    return s->ops->lease_take(s, node, tenant, function, fn_cap, t_cap, ttl_ms);
}
int realm_store_lease_renew(realm_store_t *s, const char *node, const int64_t *ids, size_t n,
                            int64_t ttl_ms, unsigned char *kept)
{
    if (!s->ops->lease_renew) return -1;
    if (n == 0) return 0;
    return s->ops->lease_renew(s, node, ids, n, ttl_ms, kept);
}
int realm_store_lease_drop(realm_store_t *s, const char *node, const int64_t *ids, size_t n)
{
    if (!s->ops->lease_drop) return -1;
    if (ids && n == 0) return 0;
    return s->ops->lease_drop(s, node, ids, n);
}
