/*
 * queue.c - the durable queue of asynchronous invocations (see queue.h):
 * its rules over the store's Event queue (store/store.h), which keeps the
 * events, their payloads, the counts, the parked functions, the failed list
 * and the leases (the SQLite backend's schema and costs: store/sqlite_queue.c).
 *
 * Leases: take_due claims events from the store, which hands out a lease
 * token per event; the queue remembers each taken id's token (a sorted
 * array, at most the events in flight) and names it in the outcome, so an
 * outcome for an event whose lease was lost (claimed again elsewhere) does
 * nothing. On SQLite, leases held by this process never expire (a crash
 * forgets them: every pending event is due again at its stored due time);
 * on PostgreSQL they last REALM_QUEUE_LEASE_MS (a dead server's come back).
 *
 * LIFETIME: the queue owns its store and token array until
 * realm_queue_close. THREADS: loop thread only.
 */
#include "queue/queue.h"

#include "store/store.h"
#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    int64_t id;
    uint64_t token;
} queue_lease_t;

struct realm_queue_s {
    realm_store_t *store;
    queue_lease_t *leases; /* sorted by id */
    size_t lease_cnt, lease_cap;
    uint64_t max_per_function; /* pending events of one function; 0: no cap */
    uint64_t max_per_tenant;   /* pending events of one tenant; 0: no cap */
    int is_shared;             /* PostgreSQL: leases expire (lease_ms) */
    int64_t lease_ms;          /* REALM_QUEUE_LEASE_MS unless set */
    int64_t renewed_ms;        /* when the leases were last renewed (PostgreSQL) */
};

/* ---- lease tokens ---- */

static size_t lease_pos(const realm_queue_t *q, int64_t id)
{
    size_t lo = 0, hi = q->lease_cnt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (q->leases[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void remember(realm_queue_t *q, int64_t id, uint64_t token)
{
    size_t i = lease_pos(q, id);
    if (i == q->lease_cnt || q->leases[i].id != id) {
        if (q->lease_cnt == q->lease_cap) {
            q->lease_cap = q->lease_cap ? q->lease_cap * 2 : 16;
            q->leases = realm_realloc(q->leases, q->lease_cap * sizeof(*q->leases));
        }
        memmove(q->leases + i + 1, q->leases + i, (q->lease_cnt - i) * sizeof(*q->leases));
        q->lease_cnt++;
    }
    q->leases[i] = (queue_lease_t){id, token};
}

/* The token of id's lease, forgotten (0 when this queue holds none: unfenced). */
static uint64_t take_token(realm_queue_t *q, int64_t id)
{
    size_t i = lease_pos(q, id);
    if (i == q->lease_cnt || q->leases[i].id != id) return 0;
    uint64_t t = q->leases[i].token;
    memmove(q->leases + i, q->leases + i + 1, (q->lease_cnt - i - 1) * sizeof(*q->leases));
    q->lease_cnt--;
    return t;
}

/* ---- open / close ---- */

realm_queue_t *realm_queue_open(const char *path, char *err, size_t err_len)
{
    realm_store_t *s = realm_store_open(REALM_STORE_QUEUE, path, err, err_len);
    if (!s) return NULL;
    realm_queue_t *q = realm_calloc(1, sizeof(*q));
    q->store = s;
    q->is_shared = realm_store_is_pg(path);
    q->lease_ms = REALM_QUEUE_LEASE_MS;
    return q;
}

void realm_queue_close(realm_queue_t *q)
{
    if (!q) return;
    realm_store_close(q->store);
    free(q->leases);
    free(q);
}

void realm_queue_set_limits(realm_queue_t *q, uint64_t per_function, uint64_t per_tenant)
{
    q->max_per_function = per_function;
    q->max_per_tenant = per_tenant;
}

/* ---- push / take ---- */

int64_t realm_queue_push(realm_queue_t *q, const char *tenant, const char *function,
                         const char *qualifier, const void *payload, size_t len, int64_t now_ms,
                         char *err, size_t err_len)
{
    if (!tenant || !function || (!payload && len)) {
        snprintf(err, err_len, "queue: push needs a tenant, a function and a payload");
        return -1;
    }
    char which = 0;
    int64_t id = realm_store_q_push(q->store, tenant, function, qualifier, payload, len, now_ms,
                                    q->max_per_function, q->max_per_tenant, &which);
    if (id == -2) {
        if (which == 'f')
            snprintf(err, err_len, "The function's event queue is full (%llu events).",
                     (unsigned long long)q->max_per_function);
        else
            snprintf(err, err_len, "The account's event queue is full (%llu events).",
                     (unsigned long long)q->max_per_tenant);
        return REALM_QUEUE_FULL;
    }
    if (id < 0) {
        snprintf(err, err_len, "queue: push: storage error (see the log)");
        return -1;
    }
    return id;
}

size_t realm_queue_take_due(realm_queue_t *q, int64_t now_ms, realm_queue_item_t *items, size_t max)
{
    /* PostgreSQL: the leases of the events still running (or waiting for a
     * slot) are renewed every third of their length, before anything is
     * claimed, so this server never claims its own events again and other
     * servers take them only once it has stopped renewing (dead). */
    if (q->is_shared && q->lease_cnt && now_ms - q->renewed_ms >= q->lease_ms / 3) {
        int64_t *ids = realm_calloc(q->lease_cnt, sizeof(*ids));
        uint64_t *tokens = realm_calloc(q->lease_cnt, sizeof(*tokens));
        for (size_t i = 0; i < q->lease_cnt; i++) {
            ids[i] = q->leases[i].id;
            tokens[i] = q->leases[i].token;
        }
        if (realm_store_q_renew(q->store, ids, tokens, q->lease_cnt, now_ms + q->lease_ms) >= 0)
            q->renewed_ms = now_ms;
        free(ids);
        free(tokens);
    }
    if (max == 0) return 0; /* a look that only renews */
    realm_store_event_t *ev = realm_calloc(max, sizeof(*ev));
    int64_t until = q->is_shared ? now_ms + q->lease_ms : INT64_MAX;
    size_t n = realm_store_q_claim(q->store, now_ms, until, ev, max);
    for (size_t i = 0; i < n; i++) {
        realm_queue_item_t *it = &items[i];
        memset(it, 0, sizeof(*it));
        it->id = ev[i].id;
        it->tenant = ev[i].tenant;
        it->function = ev[i].function;
        it->qualifier = ev[i].qualifier;
        it->attempts = ev[i].attempts;
        it->enqueued_ms = ev[i].enqueued_ms;
        remember(q, ev[i].id, ev[i].lease);
    }
    free(ev);
    return n;
}

int realm_queue_load_payload(realm_queue_t *q, realm_queue_item_t *it)
{
    char *data = NULL;
    size_t len = 0;
    if (realm_store_q_payload(q->store, it->id, &data, &len) != 0) return -1;
    free(it->payload);
    it->payload = data;
    it->payload_len = len;
    return 0;
}

void realm_queue_item_dispose(realm_queue_item_t *it)
{
    free(it->tenant);
    free(it->function);
    free(it->qualifier);
    free(it->payload);
    memset(it, 0, sizeof(*it));
}

/* ---- outcomes ---- */

int realm_queue_done(realm_queue_t *q, int64_t id)
{
    return realm_store_q_complete(q->store, id, take_token(q, id));
}

int realm_queue_retry(realm_queue_t *q, int64_t id, int64_t due_ms, const char *error)
{
    return realm_store_q_retry(q->store, id, take_token(q, id), due_ms, error);
}

int realm_queue_fail(realm_queue_t *q, int64_t id, const char *error_type,
                     const char *error_message, int64_t now_ms)
{
    return realm_store_q_fail(q->store, id, take_token(q, id), error_type, error_message, now_ms,
                              REALM_QUEUE_FAILED_KEEP);
}

int realm_queue_release(realm_queue_t *q, int64_t id)
{
    return realm_store_q_release(q->store, id, take_token(q, id));
}

int realm_queue_defer(realm_queue_t *q, int64_t id, int64_t due_ms)
{
    return realm_store_q_defer(q->store, id, take_token(q, id), due_ms);
}

int realm_queue_park(realm_queue_t *q, int64_t id, int64_t until_ms)
{
    return realm_store_q_park(q->store, id, take_token(q, id), until_ms);
}

int64_t realm_queue_unpark(realm_queue_t *q, const char *tenant, const char *function,
                           int64_t now_ms)
{
    return realm_store_q_unpark(q->store, tenant, function, now_ms);
}

json_t *realm_queue_parked(realm_queue_t *q)
{
    return realm_store_q_parked(q->store);
}

/* ---- inspection ---- */

int64_t realm_queue_next_due(realm_queue_t *q)
{
    return realm_store_q_next_due(q->store);
}

size_t realm_queue_pending(realm_queue_t *q)
{
    return realm_store_q_pending(q->store, NULL, NULL);
}

size_t realm_queue_pending_of(realm_queue_t *q, const char *tenant, const char *function)
{
    return realm_store_q_pending(q->store, tenant, function);
}

void realm_queue_stats(realm_queue_t *q, realm_queue_stats_t *out)
{
    realm_store_q_stats_t st;
    realm_store_q_stats(q->store, &st);
    out->vm_steps = st.rows;
    out->payload_reads = st.payload_reads;
    out->payload_bytes = st.payload_bytes;
}

/* ISO-8601 UTC with milliseconds: "2024-05-01T12:00:00.000Z". */
static json_t *iso_time(int64_t ms)
{
    int64_t secs = ms / 1000, frac = ms % 1000;
    if (frac < 0) { /* floor for times before 1970 */
        frac += 1000;
        secs--;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    char out[48];
    if (!gmtime_r(&t, &tm)) return json_null();
    size_t n = strftime(out, sizeof(out), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, sizeof(out) - n, ".%03dZ", (int)frac);
    return json_string(out);
}

/* Replaces the store's key ms (integer) by key_at (ISO time). */
static void ms_to_iso(json_t *o, const char *ms_key, const char *iso_key)
{
    json_t *v = iso_time(json_integer_value(json_object_get(o, ms_key)));
    json_object_del(o, ms_key);
    json_object_set_new(o, iso_key, v);
}

json_t *realm_queue_list_failed(realm_queue_t *q, const char *tenant, const char *function,
                                size_t limit)
{
    json_t *arr = realm_store_q_failed(q->store, tenant, function, limit);
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        ms_to_iso(o, "EnqueuedMs", "EnqueuedAt");
        ms_to_iso(o, "FailedMs", "FailedAt");
    }
    return arr;
}

int realm_queue_forget(realm_queue_t *q, const char *tenant, const char *function)
{
    return realm_store_q_forget(q->store, tenant, function);
}

void realm_queue_set_lease(realm_queue_t *q, int64_t lease_ms)
{
    q->lease_ms = lease_ms > 0 ? lease_ms : REALM_QUEUE_LEASE_MS;
}

int realm_queue_unreachable(const realm_queue_t *q)
{
    return realm_store_is_unreachable(q->store);
}
