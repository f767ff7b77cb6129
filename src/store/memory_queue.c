/*
 * memory_queue.c - the in-memory backend's Event queue (see memory.c for
 * the backend's design): events and failures are arrays scanned per call;
 * leases are fields of the events; parked functions are a JSON object.
 * Each call is atomic on its own (no transaction snapshots the queue).
 *
 * LIFETIME: the rows belong to the store (realm_memory_queue_dispose).
 * THREADS: one thread per store.
 */
#include "store/memory.h"

#include "base/alloc.h"
#include "base/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    e->payload = realm_memory_dup(payload, len);
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
    e->last_error = realm_memory_dup_or_null(error);
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
                        .etype = realm_memory_dup_or_null(etype),
                        .emsg = realm_memory_dup_or_null(emsg),
                        .payload = realm_memory_dup(e->payload, e->len),
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

void realm_memory_queue_ops(realm_store_ops_t *ops)
{
    ops->q_push = m_q_push;
    ops->q_claim = m_q_claim;
    ops->q_payload = m_q_payload;
    ops->q_complete = m_q_complete;
    ops->q_retry = m_q_retry;
    ops->q_defer = m_q_defer;
    ops->q_release = m_q_release;
    ops->q_fail = m_q_fail;
    ops->q_park = m_q_park;
    ops->q_unpark = m_q_unpark;
    ops->q_parked = m_q_parked;
    ops->q_next_due = m_q_next_due;
    ops->q_pending = m_q_pending;
    ops->q_stats = m_q_stats;
    ops->q_failed = m_q_failed;
    ops->q_forget = m_q_forget;
}

void realm_memory_queue_dispose(mem_t *m)
{
    for (size_t i = 0; i < m->ev_cnt; i++)
        ev_free(&m->ev[i]);
    free(m->ev);
    for (size_t i = 0; i < m->failed_cnt; i++)
        failed_free(&m->failed[i]);
    free(m->failed);
    json_decref(m->parked);
}
