/*
 * memory.c - the in-memory backend: every kind of store kept in this
 * process's memory, for tests and as the proof that store.h is complete
 * (the storage unit tests run against it and against SQLite).
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
#include "store/internal.h"

#include "base/alloc.h"
#include "base/log.h"
#include "base/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t id;
    char *tenant, *function, *qualifier, *last_error;
    int attempts;
    int64_t enqueued_ms, due_ms;
    int is_parked;
    char *payload;
    size_t len;
    uint64_t lease; /* 0: not leased */
    int64_t lease_until;
} mem_event_t;

typedef struct {
    int64_t seq, id;
    char *tenant, *function, *qualifier, *etype, *emsg;
    char *payload;
    size_t len;
    int attempts;
    int64_t enqueued_ms, failed_ms;
} mem_failed_t;

typedef struct {
    char name[65];
    char account[13];
    int64_t created;
} mem_tenant_t;

typedef struct {
    realm_store_t base;
    char *name;
    int in_tx;
    /* registry */
    json_t *fns, *fns_snapshot;
    /* queue */
    mem_event_t *ev;
    size_t ev_cnt, ev_cap;
    mem_failed_t *failed;
    size_t failed_cnt, failed_cap;
    json_t *parked; /* {"tenant\nfunction": ["tenant", "function"]} */
    int64_t next_id, next_seq;
    uint64_t next_token;
    realm_store_q_stats_t stats;
    /* auth */
    mem_tenant_t *tenants, *tenants_snap;
    size_t tenant_cnt, tenant_snap_cnt;
    realm_store_key_t *keys, *keys_snap;
    size_t key_cnt, key_snap_cnt;
} mem_t;

#define M(s) ((mem_t *)(s))

static void *dup_mem(const void *p, size_t n)
{
    void *d = realm_malloc(n ? n : 1);
    if (n) memcpy(d, p, n);
    return d;
}

static char *dup_or_null(const char *s)
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
    m->tenants_snap = dup_mem(m->tenants, m->tenant_cnt * sizeof(*m->tenants));
    m->tenant_snap_cnt = m->tenant_cnt;
    m->keys_snap = dup_mem(m->keys, m->key_cnt * sizeof(*m->keys));
    m->key_snap_cnt = m->key_cnt;
    return 0;
}

static void drop_snapshot(mem_t *m)
{
    json_decref(m->fns_snapshot);
    m->fns_snapshot = NULL;
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

/* ---- queue ---- */

static mem_event_t *ev_find(mem_t *m, int64_t id)
{
    for (size_t i = 0; i < m->ev_cnt; i++) {
        m->stats.rows++;
        if (m->ev[i].id == id) return &m->ev[i];
    }
    return NULL;
}

static void ev_free(mem_event_t *e)
{
    free(e->tenant);
    free(e->function);
    free(e->qualifier);
    free(e->last_error);
    free(e->payload);
}

static void ev_remove(mem_t *m, mem_event_t *e)
{
    ev_free(e);
    *e = m->ev[--m->ev_cnt];
}

static size_t count_of(mem_t *m, const char *t, const char *f)
{
    size_t n = 0;
    for (size_t i = 0; i < m->ev_cnt; i++) {
        m->stats.rows++;
        if ((!t || strcmp(m->ev[i].tenant, t) == 0) && (!f || strcmp(m->ev[i].function, f) == 0))
            n++;
    }
    return n;
}

static int64_t m_q_push(realm_store_t *s, const char *t, const char *f, const char *q,
                        const void *payload, size_t len, int64_t now_ms, uint64_t max_fn,
                        uint64_t max_tenant, char *which)
{
    mem_t *m = M(s);
    if (max_fn && count_of(m, t, f) >= max_fn) {
        *which = 'f';
        return -2;
    }
    if (max_tenant && count_of(m, t, NULL) >= max_tenant) {
        *which = 't';
        return -2;
    }
    if (m->ev_cnt == m->ev_cap) {
        m->ev_cap = m->ev_cap ? m->ev_cap * 2 : 16;
        m->ev = realm_realloc(m->ev, m->ev_cap * sizeof(*m->ev));
    }
    mem_event_t *e = &m->ev[m->ev_cnt++];
    memset(e, 0, sizeof(*e));
    e->id = ++m->next_id;
    e->tenant = realm_strdup(t);
    e->function = realm_strdup(f);
    e->qualifier = realm_strdup(q);
    e->enqueued_ms = e->due_ms = now_ms;
    e->payload = dup_mem(payload, len);
    e->len = len;
    return e->id;
}

static int cmp_due(const void *a, const void *b)
{
    const mem_event_t *x = *(const mem_event_t *const *)a, *y = *(const mem_event_t *const *)b;
    if (x->due_ms != y->due_ms) return x->due_ms < y->due_ms ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Pending events sorted by (due, id) (free the array). */
static mem_event_t **by_due(mem_t *m)
{
    mem_event_t **v = realm_calloc(m->ev_cnt + 1, sizeof(*v));
    for (size_t i = 0; i < m->ev_cnt; i++)
        v[i] = &m->ev[i];
    m->stats.rows += m->ev_cnt;
    qsort(v, m->ev_cnt, sizeof(*v), cmp_due);
    return v;
}

static size_t m_q_claim(realm_store_t *s, int64_t now_ms, int64_t lease_until_ms,
                        realm_store_event_t *out, size_t max)
{
    mem_t *m = M(s);
    mem_event_t **v = by_due(m);
    size_t n = 0;
    for (size_t i = 0; i < m->ev_cnt && n < max; i++) {
        mem_event_t *e = v[i];
        if (e->due_ms > now_ms) break;
        if (e->lease && e->lease_until > now_ms) continue;
        e->lease = ++m->next_token;
        e->lease_until = lease_until_ms;
        out[n++] = (realm_store_event_t){e->id,
                                         realm_strdup(e->tenant),
                                         realm_strdup(e->function),
                                         realm_strdup(e->qualifier),
                                         e->attempts,
                                         e->enqueued_ms,
                                         e->lease};
    }
    free(v);
    return n;
}

static int m_q_payload(realm_store_t *s, int64_t id, char **data, size_t *len)
{
    mem_t *m = M(s);
    mem_event_t *e = ev_find(m, id);
    if (!e) return 1;
    *data = realm_malloc(e->len + 1);
    if (e->len) memcpy(*data, e->payload, e->len);
    (*data)[e->len] = '\0';
    *len = e->len;
    m->stats.payload_reads++;
    m->stats.payload_bytes += e->len;
    return 0;
}

/* The event an outcome may act on (and its lease ended), or NULL: gone or a
 * stale token (lease 0: unfenced). */
static mem_event_t *fenced(mem_t *m, int64_t id, uint64_t lease)
{
    mem_event_t *e = ev_find(m, id);
    if (!e || (lease && e->lease != lease)) return NULL;
    e->lease = 0;
    return e;
}

static int m_q_complete(realm_store_t *s, int64_t id, uint64_t lease)
{
    mem_event_t *e = fenced(M(s), id, lease);
    if (e) ev_remove(M(s), e);
    return 0;
}

static int m_q_retry(realm_store_t *s, int64_t id, uint64_t lease, int64_t due_ms,
                     const char *error)
{
    mem_event_t *e = fenced(M(s), id, lease);
    if (!e) return 0;
    e->attempts++;
    e->due_ms = due_ms;
    free(e->last_error);
    e->last_error = dup_or_null(error);
    return 0;
}

static int m_q_defer(realm_store_t *s, int64_t id, uint64_t lease, int64_t due_ms)
{
    mem_event_t *e = fenced(M(s), id, lease);
    if (e) e->due_ms = due_ms;
    return 0;
}

static int m_q_release(realm_store_t *s, int64_t id, uint64_t lease)
{
    fenced(M(s), id, lease);
    return 0;
}

static int cmp_seq_desc(const void *a, const void *b)
{
    const mem_failed_t *x = *(const mem_failed_t *const *)a, *y = *(const mem_failed_t *const *)b;
    return (x->seq < y->seq) - (x->seq > y->seq);
}

static void failed_free(mem_failed_t *f)
{
    free(f->tenant);
    free(f->function);
    free(f->qualifier);
    free(f->etype);
    free(f->emsg);
    free(f->payload);
}

/* Drops all failures of tenant's function but the newest keep (keep < 0: all). */
static void failed_trim(mem_t *m, const char *t, const char *fn, int64_t keep)
{
    int64_t newer = 0;
    for (size_t i = m->failed_cnt; i-- > 0;) { /* newest last: walk back */
        mem_failed_t *f = &m->failed[i];
        if (strcmp(f->tenant, t) != 0 || strcmp(f->function, fn) != 0) continue;
        if (keep >= 0 && newer++ < keep) continue;
        failed_free(f);
        memmove(f, f + 1, (m->failed_cnt - i - 1) * sizeof(*f));
        m->failed_cnt--;
    }
}

static int m_q_fail(realm_store_t *s, int64_t id, uint64_t lease, const char *etype,
                    const char *emsg, int64_t now_ms, int64_t keep)
{
    mem_t *m = M(s);
    mem_event_t *e = fenced(m, id, lease);
    if (!e) return 0;
    if (m->failed_cnt == m->failed_cap) {
        m->failed_cap = m->failed_cap ? m->failed_cap * 2 : 16;
        m->failed = realm_realloc(m->failed, m->failed_cap * sizeof(*m->failed));
    }
    mem_failed_t *f = &m->failed[m->failed_cnt++];
    *f = (mem_failed_t){.seq = ++m->next_seq,
                        .id = e->id,
                        .tenant = realm_strdup(e->tenant),
                        .function = realm_strdup(e->function),
                        .qualifier = realm_strdup(e->qualifier),
                        .etype = dup_or_null(etype),
                        .emsg = dup_or_null(emsg),
                        .payload = dup_mem(e->payload, e->len),
                        .len = e->len,
                        .attempts = e->attempts + 1,
                        .enqueued_ms = e->enqueued_ms,
                        .failed_ms = now_ms};
    char *t = realm_strdup(e->tenant), *fn = realm_strdup(e->function);
    ev_remove(m, e);
    failed_trim(m, t, fn, keep);
    free(t);
    free(fn);
    return 0;
}

static void parked_key(char *out, size_t len, const char *t, const char *f)
{
    snprintf(out, len, "%s\n%s", t, f);
}

static int m_q_park(realm_store_t *s, int64_t id, uint64_t lease, int64_t until_ms)
{
    mem_t *m = M(s);
    mem_event_t *e = fenced(m, id, lease);
    if (!e) return 0;
    char k[512];
    parked_key(k, sizeof(k), e->tenant, e->function);
    if (!json_object_get(m->parked, k))
        json_object_set_new(m->parked, k, json_pack("[s, s]", e->tenant, e->function));
    e->is_parked = 1;
    e->due_ms = until_ms;
    return 0;
}

static int64_t m_q_unpark(realm_store_t *s, const char *t, const char *f, int64_t now_ms)
{
    mem_t *m = M(s);
    int64_t n = 0;
    for (size_t i = 0; i < m->ev_cnt; i++) {
        mem_event_t *e = &m->ev[i];
        if (e->is_parked && strcmp(e->tenant, t) == 0 && strcmp(e->function, f) == 0) {
            e->is_parked = 0;
            e->due_ms = now_ms;
            n++;
        }
    }
    char k[512];
    parked_key(k, sizeof(k), t, f);
    json_object_del(m->parked, k);
    return n;
}

static json_t *m_q_parked(realm_store_t *s)
{
    json_t *arr = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(M(s)->parked, k, v)
    {
        json_array_append(arr, v);
    }
    return arr;
}

static int64_t m_q_next_due(realm_store_t *s)
{
    mem_t *m = M(s);
    int64_t due = -1;
    for (size_t i = 0; i < m->ev_cnt; i++) {
        if (m->ev[i].lease) continue;
        if (due < 0 || m->ev[i].due_ms < due) due = m->ev[i].due_ms;
    }
    return due;
}

static size_t m_q_pending(realm_store_t *s, const char *t, const char *f)
{
    return count_of(M(s), f ? t : NULL, f);
}

static void m_q_stats(realm_store_t *s, realm_store_q_stats_t *out)
{
    *out = M(s)->stats;
}

static json_t *text_or_null(const char *s)
{
    return s ? realm_str_json(s, strlen(s)) : json_null();
}

static json_t *m_q_failed(realm_store_t *s, const char *t, const char *f, size_t limit)
{
    mem_t *m = M(s);
    mem_failed_t **v = realm_calloc(m->failed_cnt + 1, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < m->failed_cnt; i++)
        if (strcmp(m->failed[i].tenant, t) == 0 && (!f || strcmp(m->failed[i].function, f) == 0))
            v[n++] = &m->failed[i];
    qsort(v, n, sizeof(*v), cmp_seq_desc);
    json_t *arr = json_array();
    for (size_t i = 0; i < n && i < limit; i++) {
        mem_failed_t *x = v[i];
        json_t *o = json_object();
        json_object_set_new(o, "Id", json_integer(x->id));
        json_object_set_new(o, "FunctionName", text_or_null(x->function));
        json_object_set_new(o, "Qualifier", text_or_null(x->qualifier));
        json_object_set_new(o, "Payload", realm_str_json(x->payload, x->len));
        json_object_set_new(o, "Attempts", json_integer(x->attempts));
        json_object_set_new(o, "ErrorType", text_or_null(x->etype));
        json_object_set_new(o, "ErrorMessage", text_or_null(x->emsg));
        json_object_set_new(o, "EnqueuedMs", json_integer(x->enqueued_ms));
        json_object_set_new(o, "FailedMs", json_integer(x->failed_ms));
        json_array_append_new(arr, o);
    }
    free(v);
    return arr;
}

static int m_q_forget(realm_store_t *s, const char *t, const char *f)
{
    mem_t *m = M(s);
    for (size_t i = m->ev_cnt; i-- > 0;)
        if (strcmp(m->ev[i].tenant, t) == 0 && strcmp(m->ev[i].function, f) == 0)
            ev_remove(m, &m->ev[i]);
    failed_trim(m, t, f, -1);
    char k[512];
    parked_key(k, sizeof(k), t, f);
    json_object_del(m->parked, k);
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
    *out = dup_mem(m->keys, m->key_cnt * sizeof(*m->keys));
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

/* ---- open / close ---- */

static void m_close(realm_store_t *s)
{
    mem_t *m = M(s);
    drop_snapshot(m);
    json_decref(m->fns);
    for (size_t i = 0; i < m->ev_cnt; i++)
        ev_free(&m->ev[i]);
    free(m->ev);
    for (size_t i = 0; i < m->failed_cnt; i++)
        failed_free(&m->failed[i]);
    free(m->failed);
    json_decref(m->parked);
    free(m->tenants);
    free(m->keys);
    free(m->name);
    free(m);
}

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
    .q_push = m_q_push,
    .q_claim = m_q_claim,
    .q_payload = m_q_payload,
    .q_complete = m_q_complete,
    .q_retry = m_q_retry,
    .q_defer = m_q_defer,
    .q_release = m_q_release,
    .q_fail = m_q_fail,
    .q_park = m_q_park,
    .q_unpark = m_q_unpark,
    .q_parked = m_q_parked,
    .q_next_due = m_q_next_due,
    .q_pending = m_q_pending,
    .q_stats = m_q_stats,
    .q_failed = m_q_failed,
    .q_forget = m_q_forget,
    .tenant_get = m_tenant_get,
    .tenant_add = m_tenant_add,
    .key_add = m_key_add,
    .key_get = m_key_get,
    .key_list = m_key_list,
    .key_revoke = m_key_revoke,
    .key_any = m_key_any,
    .auth_version = m_auth_version,
};

realm_store_t *realm_store_memory_open(realm_store_kind_t kind, const char *name, char *err,
                                       size_t err_len)
{
    (void)kind;
    (void)err;
    (void)err_len;
    mem_t *m = realm_calloc(1, sizeof(*m));
    m->base.ops = &memory_ops;
    m->name = realm_strdup(name);
    m->fns = json_object();
    m->parked = json_object();
    return &m->base;
}
