/*
 * memory.c - the in-memory backend: every kind of store kept in this
 * process's memory, for tests and as the proof that store.h is complete
 * (the storage unit tests run against it and against SQLite). This file
 * holds transactions, the registry, the auth tables and open/close; the
 * Event queue is in memory_queue.c, the shared struct in memory.h.
 *
 * DESIGN: simple, not fast. The registry's rows are one JSON tree
 *   {tenant: {name: {"next": n, "reserved": n (-1 none), "tags": {..},
 *                    "versions": {"num": {"code", "config"}},
 *                    "aliases": {alias: config}}}}
 * and lists sort keys on each call. The queue's events and failures are
 * arrays scanned per call; leases are fields of the events. Tenants and
 * keys are arrays. A transaction snapshots the registry tree or the auth
 * arrays at begin and restores them on rollback; queue calls are atomic
 * on their own. Nothing survives close; two stores never share state (the
 * NAME of "memory:NAME" only labels log lines).
 *
 * LIFETIME: a store owns all its rows. THREADS: one thread per store.
 */
#include "store/memory.h"

#include "base/alloc.h"
#include "base/log.h"
#include "base/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *realm_memory_dup(const void *p, size_t n)
{
    void *d = realm_malloc(n ? n : 1);
    if (n) memcpy(d, p, n);
    return d;
}

char *realm_memory_dup_or_null(const char *s)
{
    return s ? realm_strdup(s) : NULL;
}

/* ---- transactions ---- */

static int m_begin(realm_store_t *s)
{
    mem_t *m = M(s);
    if (m->in_tx) return -1;
    m->in_tx = 1;
    m->fns_snapshot = json_deep_copy(m->fns);
    m->pkgs_snapshot = json_copy(m->pkgs); /* the bytes are never changed: shared */
    m->tenants_snap = realm_memory_dup(m->tenants, m->tenant_cnt * sizeof(*m->tenants));
    m->tenant_snap_cnt = m->tenant_cnt;
    m->keys_snap = realm_memory_dup(m->keys, m->key_cnt * sizeof(*m->keys));
    m->key_snap_cnt = m->key_cnt;
    return 0;
}

static void drop_snapshot(mem_t *m)
{
    json_decref(m->fns_snapshot);
    m->fns_snapshot = NULL;
    json_decref(m->pkgs_snapshot);
    m->pkgs_snapshot = NULL;
    free(m->tenants_snap);
    m->tenants_snap = NULL;
    free(m->keys_snap);
    m->keys_snap = NULL;
    m->in_tx = 0;
}

static int m_commit(realm_store_t *s)
{
    mem_t *m = M(s);
    if (!m->in_tx) return -1;
    drop_snapshot(m);
    return 0;
}

static void m_rollback(realm_store_t *s)
{
    mem_t *m = M(s);
    if (!m->in_tx) return;
    json_decref(m->fns);
    m->fns = m->fns_snapshot;
    m->fns_snapshot = NULL;
    json_decref(m->pkgs);
    m->pkgs = m->pkgs_snapshot;
    m->pkgs_snapshot = NULL;
    free(m->tenants);
    m->tenants = m->tenants_snap;
    m->tenant_cnt = m->tenant_snap_cnt;
    m->tenants_snap = NULL;
    free(m->keys);
    m->keys = m->keys_snap;
    m->key_cnt = m->key_snap_cnt;
    m->keys_snap = NULL;
    m->in_tx = 0;
}

/* ---- registry ---- */

static json_t *fn_obj(mem_t *m, const char *t, const char *n)
{
    return json_object_get(json_object_get(m->fns, t), n);
}

static int m_fn_get(realm_store_t *s, const char *t, const char *n, realm_store_fn_t *out)
{
    json_t *f = fn_obj(M(s), t, n);
    if (!f) return 1;
    if (out) {
        out->next_version = json_integer_value(json_object_get(f, "next"));
        out->reserved = json_integer_value(json_object_get(f, "reserved"));
        out->tags = json_deep_copy(json_object_get(f, "tags"));
    }
    return 0;
}

static int m_fn_insert(realm_store_t *s, const char *t, const char *n, json_t *tags)
{
    mem_t *m = M(s);
    s->generation++;
    if (fn_obj(m, t, n)) return 1;
    json_t *tenant = json_object_get(m->fns, t);
    if (!tenant) {
        tenant = json_object();
        json_object_set_new(m->fns, t, tenant);
    }
    json_object_set_new(tenant, n,
                        json_pack("{s:i, s:i, s:o, s:{}, s:{}}", "next", 1, "reserved", -1, "tags",
                                  tags ? json_deep_copy(tags) : json_object(), "versions",
                                  "aliases"));
    return 0;
}

static int m_fn_delete(realm_store_t *s, const char *t, const char *n)
{
    s->generation++;
    json_t *tenant = json_object_get(M(s)->fns, t);
    if (!tenant || !json_object_get(tenant, n)) return 1;
    json_object_del(tenant, n);
    return 0;
}

static int m_fn_set(realm_store_t *s, const char *t, const char *n, const char *key, json_t *v)
{
    s->generation++;
    json_t *f = fn_obj(M(s), t, n);
    if (f) json_object_set(f, key, v);
    json_decref(v);
    return 0;
}

static int m_fn_set_reserved(realm_store_t *s, const char *t, const char *n, int64_t reserved)
{
    return m_fn_set(s, t, n, "reserved", json_integer(reserved < 0 ? -1 : reserved));
}

static int m_fn_set_tags(realm_store_t *s, const char *t, const char *n, json_t *tags)
{
    return m_fn_set(s, t, n, "tags", json_deep_copy(tags));
}

static int64_t m_fn_take_version(realm_store_t *s, const char *t, const char *n)
{
    s->generation++;
    json_t *f = fn_obj(M(s), t, n);
    if (!f) return -1;
    int64_t v = json_integer_value(json_object_get(f, "next"));
    json_object_set_new(f, "next", json_integer(v + 1));
    return v;
}

static int64_t m_fn_sum_reserved(realm_store_t *s, const char *t, const char *except)
{
    json_t *tenant = json_object_get(M(s)->fns, t);
    const char *k;
    json_t *f;
    int64_t sum = 0;
    json_object_foreach(tenant, k, f)
    {
        int64_t r = json_integer_value(json_object_get(f, "reserved"));
        if (r > 0 && !(except && strcmp(k, except) == 0)) sum += r;
    }
    return sum;
}

static int m_fn_usage(realm_store_t *s, const char *t, int64_t *count, int64_t *code_size)
{
    json_t *tenant = json_object_get(M(s)->fns, t);
    *count = (int64_t)json_object_size(tenant);
    *code_size = 0;
    const char *k, *vk;
    json_t *f, *v;
    json_object_foreach(tenant, k, f)
    {
        json_object_foreach(json_object_get(f, "versions"), vk, v)
        {
            *code_size +=
                json_integer_value(json_object_get(json_object_get(v, "config"), "CodeSize"));
        }
    }
    return 0;
}

static json_t *ver_obj(mem_t *m, const char *t, const char *n, int64_t num)
{
    char k[24];
    snprintf(k, sizeof(k), "%lld", (long long)num);
    return json_object_get(json_object_get(fn_obj(m, t, n), "versions"), k);
}

static void ver_out(json_t *v, json_t **config, char *code)
{
    if (config) *config = json_deep_copy(json_object_get(v, "config"));
    if (code)
        snprintf(code, REALM_STORE_HEX_LEN + 1, "%s",
                 json_string_value(json_object_get(v, "code")));
}

static int m_ver_get(realm_store_t *s, const char *t, const char *n, int64_t num, json_t **config,
                     char *code)
{
    json_t *v = ver_obj(M(s), t, n, num);
    if (!v) return 1;
    ver_out(v, config, code);
    return 0;
}

static int m_ver_last(realm_store_t *s, const char *t, const char *n, int64_t *num, json_t **config,
                      char *code)
{
    const char *k;
    json_t *v, *best = NULL;
    int64_t bnum = 0;
    json_object_foreach(json_object_get(fn_obj(M(s), t, n), "versions"), k, v)
    {
        int64_t x = strtoll(k, NULL, 10);
        if (x > bnum) {
            bnum = x;
            best = v;
        }
    }
    if (!best) return 1;
    *num = bnum;
    ver_out(best, config, code);
    return 0;
}

static int m_ver_insert(realm_store_t *s, const char *t, const char *n, int64_t num,
                        const char *code, json_t *config)
{
    s->generation++;
    json_t *f = fn_obj(M(s), t, n);
    char k[24];
    snprintf(k, sizeof(k), "%lld", (long long)num);
    if (!f || json_object_get(json_object_get(f, "versions"), k)) return -1;
    json_object_set_new(json_object_get(f, "versions"), k,
                        json_pack("{s:s, s:o}", "code", code, "config", json_deep_copy(config)));
    return 0;
}

static int m_ver_update(realm_store_t *s, const char *t, const char *n, int64_t num,
                        const char *code, json_t *config)
{
    s->generation++;
    json_t *v = ver_obj(M(s), t, n, num);
    if (!v) return 0; /* like an UPDATE that matched no row */
    if (code) json_object_set_new(v, "code", json_string(code));
    json_object_set_new(v, "config", json_deep_copy(config));
    return 0;
}

static int m_ver_delete(realm_store_t *s, const char *t, const char *n, int64_t num)
{
    s->generation++;
    char k[24];
    snprintf(k, sizeof(k), "%lld", (long long)num);
    json_t *vs = json_object_get(fn_obj(M(s), t, n), "versions");
    if (!json_object_get(vs, k)) return 1;
    json_object_del(vs, k);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_num(const void *a, const void *b)
{
    long long x = strtoll(*(const char *const *)a, NULL, 10);
    long long y = strtoll(*(const char *const *)b, NULL, 10);
    return (x > y) - (x < y);
}

/* obj's keys, sorted by cmp (free the array, not the keys). */
static const char **sorted_keys(json_t *obj, int (*cmp)(const void *, const void *), size_t *n)
{
    *n = json_object_size(obj);
    const char **keys = realm_calloc(*n + 1, sizeof(*keys));
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        keys[i++] = k;
    }
    qsort(keys, *n, sizeof(*keys), cmp);
    return keys;
}

static json_t *m_ver_list(realm_store_t *s, const char *t, const char *n, const char *after_name,
                          int64_t after_num, int latest_only, size_t limit)
{
    mem_t *m = M(s);
    json_t *list = json_array();
    json_t *tenant = json_object_get(m->fns, t);
    size_t nn = 0;
    const char **names = NULL;
    if (n) {
        names = realm_calloc(2, sizeof(*names));
        if (json_object_get(tenant, n)) names[nn++] = n;
    } else {
        names = sorted_keys(tenant, cmp_str, &nn);
    }
    for (size_t i = 0; i < nn && json_array_size(list) < limit; i++) {
        int c = n ? 0 : strcmp(names[i], after_name);
        if (c < 0 || (c == 0 && latest_only)) continue;
        json_t *vs = json_object_get(json_object_get(tenant, names[i]), "versions");
        size_t vn;
        const char **nums = sorted_keys(vs, cmp_num, &vn);
        for (size_t j = 0; j < vn && json_array_size(list) < limit; j++) {
            int64_t num = strtoll(nums[j], NULL, 10);
            if (latest_only && num != 0) continue;
            if ((n || c == 0) && num <= after_num) continue;
            json_array_append_new(
                list, json_pack("{s:s, s:I, s:O}", "name", names[i], "num", (json_int_t)num,
                                "config", json_object_get(json_object_get(vs, nums[j]), "config")));
        }
        free(nums);
    }
    free(names);
    /* The rows are copies: a caller may keep them across writes. */
    json_t *copy = json_deep_copy(list);
    json_decref(list);
    return copy;
}

static int m_code_used(realm_store_t *s, const char *t, const char *hex)
{
    const char *tk, *fk, *vk;
    json_t *tenant, *f, *v;
    json_object_foreach(M(s)->fns, tk, tenant)
    {
        if (t && strcmp(t, tk) != 0) continue;
        json_object_foreach(tenant, fk, f)
        {
            json_object_foreach(json_object_get(f, "versions"), vk, v)
            {
                if (strcmp(json_string_value(json_object_get(v, "code")), hex) == 0) return 1;
            }
        }
    }
    return 0;
}

static json_t *aliases_of(mem_t *m, const char *t, const char *n)
{
    return json_object_get(fn_obj(m, t, n), "aliases");
}

static int m_alias_get(realm_store_t *s, const char *t, const char *n, const char *a,
                       json_t **config)
{
    json_t *c = json_object_get(aliases_of(M(s), t, n), a);
    if (!c) return 1;
    if (config) *config = json_deep_copy(c);
    return 0;
}

static int m_alias_put(realm_store_t *s, const char *t, const char *n, const char *a,
                       json_t *config, int is_insert)
{
    s->generation++;
    json_t *as = aliases_of(M(s), t, n);
    if (!as || (is_insert && json_object_get(as, a))) return -1;
    if (!is_insert && !json_object_get(as, a)) return 0;
    json_object_set_new(as, a, json_deep_copy(config));
    return 0;
}

static int m_alias_delete(realm_store_t *s, const char *t, const char *n, const char *a)
{
    s->generation++;
    json_t *as = aliases_of(M(s), t, n);
    if (!json_object_get(as, a)) return 1;
    json_object_del(as, a);
    return 0;
}

static json_t *m_alias_list(realm_store_t *s, const char *t, const char *n, const char *after,
                            const char *version, size_t limit)
{
    json_t *as = aliases_of(M(s), t, n);
    size_t an;
    const char **keys = sorted_keys(as, cmp_str, &an);
    json_t *list = json_array();
    for (size_t i = 0; i < an && json_array_size(list) < limit; i++) {
        if (strcmp(keys[i], after) <= 0) continue;
        json_t *c = json_object_get(as, keys[i]);
        const char *fv = json_string_value(json_object_get(c, "FunctionVersion"));
        if (*version && (!fv || strcmp(fv, version) != 0)) continue;
        json_array_append_new(
            list, json_pack("{s:s, s:o}", "alias", keys[i], "config", json_deep_copy(c)));
    }
    free(keys);
    return list;
}

static int m_alias_using(realm_store_t *s, const char *t, const char *n, const char *version,
                         char *alias_out)
{
    const char *k;
    json_t *c;
    json_object_foreach(aliases_of(M(s), t, n), k, c)
    {
        const char *fv = json_string_value(json_object_get(c, "FunctionVersion"));
        json_t *w =
            json_object_get(json_object_get(c, "RoutingConfig"), "AdditionalVersionWeights");
        if ((fv && strcmp(fv, version) == 0) || json_object_get(w, version)) {
            snprintf(alias_out, 129, "%s", k);
            return 1;
        }
    }
    return 0;
}

/* ---- auth ---- */

static int m_tenant_get(realm_store_t *s, const char *t, char *account_id)
{
    mem_t *m = M(s);
    for (size_t i = 0; i < m->tenant_cnt; i++) {
        if (strcmp(m->tenants[i].name, t) == 0) {
            memcpy(account_id, m->tenants[i].account, 13);
            return 0;
        }
    }
    return 1;
}

static int m_tenant_add(realm_store_t *s, const char *t, const char *account_id, int64_t now_ms)
{
    mem_t *m = M(s);
    s->generation++;
    if (strlen(t) > 64 || strlen(account_id) != 12) return -1;
    for (size_t i = 0; i < m->tenant_cnt; i++)
        if (strcmp(m->tenants[i].name, t) == 0 || strcmp(m->tenants[i].account, account_id) == 0)
            return 1;
    m->tenants = realm_realloc(m->tenants, (m->tenant_cnt + 1) * sizeof(*m->tenants));
    mem_tenant_t *x = &m->tenants[m->tenant_cnt++];
    snprintf(x->name, sizeof(x->name), "%s", t);
    memcpy(x->account, account_id, 13);
    x->created = now_ms;
    return 0;
}

static int m_key_add(realm_store_t *s, const realm_store_key_t *key)
{
    mem_t *m = M(s);
    s->generation++;
    char acc[13];
    if (m_tenant_get(s, key->tenant, acc) != 0) return -1; /* the foreign key */
    for (size_t i = 0; i < m->key_cnt; i++)
        if (strcmp(m->keys[i].key_id, key->key_id) == 0 ||
            strcmp(m->keys[i].access_key_id, key->access_key_id) == 0)
            return 1;
    m->keys = realm_realloc(m->keys, (m->key_cnt + 1) * sizeof(*m->keys));
    realm_store_key_t *k = &m->keys[m->key_cnt++];
    *k = *key;
    k->revoked_ms = 0;
    memcpy(k->account_id, acc, sizeof(acc));
    return 0;
}

static realm_store_key_t *key_find(mem_t *m, const char *id, int by_access_key)
{
    for (size_t i = 0; i < m->key_cnt; i++)
        if (strcmp(by_access_key ? m->keys[i].access_key_id : m->keys[i].key_id, id) == 0)
            return &m->keys[i];
    return NULL;
}

static int m_key_get(realm_store_t *s, const char *id, int by_access_key, realm_store_key_t *out)
{
    realm_store_key_t *k = key_find(M(s), id, by_access_key);
    if (!k) return 1;
    *out = *k;
    return 0;
}

static int cmp_key(const void *a, const void *b)
{
    const realm_store_key_t *x = a, *y = b;
    int c = strcmp(x->tenant, y->tenant);
    if (c) return c;
    if (x->created_ms != y->created_ms) return x->created_ms < y->created_ms ? -1 : 1;
    return strcmp(x->key_id, y->key_id);
}

static int m_key_list(realm_store_t *s, realm_store_key_t **out, size_t *n)
{
    mem_t *m = M(s);
    *n = m->key_cnt;
    *out = realm_memory_dup(m->keys, m->key_cnt * sizeof(*m->keys));
    qsort(*out, *n, sizeof(**out), cmp_key);
    return 0;
}

static int m_key_revoke(realm_store_t *s, const char *key_id, int64_t now_ms)
{
    s->generation++;
    realm_store_key_t *k = key_find(M(s), key_id, 0);
    if (!k) return 2;
    if (k->revoked_ms) return 1;
    k->revoked_ms = now_ms ? now_ms : 1;
    return 0;
}

static int m_key_any(realm_store_t *s)
{
    return M(s)->key_cnt > 0;
}

static int64_t m_auth_version(realm_store_t *s)
{
    (void)s;
    return 0; /* no other connection can write this store */
}

/* ---- code packages (store.h): no grace period, one process ---- */

static int m_pkg_put(realm_store_t *s, const char *hex, const void *data, size_t len)
{
    mem_t *m = M(s);
    s->generation++;
    if (!json_object_get(m->pkgs, hex))
        json_object_set_new(m->pkgs, hex, json_stringn_nocheck(data, len));
    return 0;
}

static int m_pkg_get(realm_store_t *s, const char *hex, char **data, size_t *len)
{
    json_t *b = json_object_get(M(s)->pkgs, hex);
    if (!b) return 1;
    *len = json_string_length(b);
    *data = realm_malloc(*len + 1);
    memcpy(*data, json_string_value(b), *len);
    (*data)[*len] = 0;
    return 0;
}

static int m_pkg_has(realm_store_t *s, const char *hex)
{
    return json_object_get(M(s)->pkgs, hex) != NULL;
}

static int64_t m_pkg_delete_unused(realm_store_t *s)
{
    mem_t *m = M(s);
    s->generation++;
    int64_t n = 0;
    const char *hex;
    json_t *b, *tmp;
    json_object_foreach_safe(m->pkgs, tmp, hex, b)
    {
        if (m_code_used(s, NULL, hex)) continue;
        json_object_del(m->pkgs, hex);
        n++;
    }
    return n;
}

/* ---- open / close ---- */

static void m_close(realm_store_t *s)
{
    mem_t *m = M(s);
    drop_snapshot(m);
    json_decref(m->fns);
    json_decref(m->pkgs);
    realm_memory_queue_dispose(m);
    free(m->tenants);
    free(m->keys);
    free(m->name);
    free(m);
}

/* Everything but the queue (realm_memory_queue_ops). */
static const realm_store_ops_t memory_ops = {
    .name = "memory",
    .close = m_close,
    .begin = m_begin,
    .commit = m_commit,
    .rollback = m_rollback,
    .fn_get = m_fn_get,
    .fn_insert = m_fn_insert,
    .fn_delete = m_fn_delete,
    .fn_set_reserved = m_fn_set_reserved,
    .fn_set_tags = m_fn_set_tags,
    .fn_take_version = m_fn_take_version,
    .fn_sum_reserved = m_fn_sum_reserved,
    .fn_usage = m_fn_usage,
    .ver_get = m_ver_get,
    .ver_last = m_ver_last,
    .ver_insert = m_ver_insert,
    .ver_update = m_ver_update,
    .ver_delete = m_ver_delete,
    .ver_list = m_ver_list,
    .code_used = m_code_used,
    .alias_get = m_alias_get,
    .alias_put = m_alias_put,
    .alias_delete = m_alias_delete,
    .alias_list = m_alias_list,
    .alias_using = m_alias_using,
    .tenant_get = m_tenant_get,
    .tenant_add = m_tenant_add,
    .key_add = m_key_add,
    .key_get = m_key_get,
    .key_list = m_key_list,
    .key_revoke = m_key_revoke,
    .key_any = m_key_any,
    .auth_version = m_auth_version,
    .pkg_put = m_pkg_put,
    .pkg_get = m_pkg_get,
    .pkg_has = m_pkg_has,
    .pkg_delete_unused = m_pkg_delete_unused,
};

realm_store_t *realm_store_memory_open(realm_store_kind_t kind, const char *name, char *err,
                                       size_t err_len)
{
    (void)kind;
    (void)err;
    (void)err_len;
    mem_t *m = realm_calloc(1, sizeof(*m));
    m->ops = memory_ops;
    realm_memory_queue_ops(&m->ops);
    m->base.ops = &m->ops;
    m->base.schema_version = REALM_MEMORY_SCHEMA_VERSION;
    m->name = realm_strdup(name);
    m->fns = json_object();
    m->pkgs = json_object();
    m->parked = json_object(); /* the queue's */
    return &m->base;
}
