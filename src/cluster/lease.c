/*
 * lease.c - a node's concurrency leases (see lease.h).
 */
#include "cluster/lease.h"

#include "base/alloc.h"
#include "base/log.h"
#include "store/store.h"
#include "storeq/storeq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEASE_MAX_JOBS 4096

typedef struct {
    int64_t id;
    uint64_t live_until_ms; /* monotonic */
} held_t;

struct realm_leases_s {
    uv_loop_t *loop;
    realm_store_t *store;
    realm_storeq_t *q;
    char *node;
    uint64_t ttl_ms;
    realm_leases_lost_cb lost;
    void *lost_data;
    held_t *held;
    size_t n_held, cap_held;
    uv_timer_t renew_timer;
    int is_renewing;
    int is_closing;
};

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static held_t *find(const realm_leases_t *l, int64_t id)
{
    for (size_t i = 0; i < l->n_held; i++)
        if (l->held[i].id == id) return &l->held[i];
    return NULL;
}

static void forget(realm_leases_t *l, int64_t id)
{
    held_t *h = find(l, id);
    if (h) *h = l->held[--l->n_held];
}

/* ---- take ---- */

typedef struct {
    realm_leases_t *l;
    char *tenant, *function;
    int64_t fn_cap, t_cap, result;
    uint64_t sent_ms;
    realm_leases_take_cb cb;
    void *data;
} take_job_t;

static void take_work(void *data)
{
    take_job_t *j = data;
    j->result = realm_store_lease_take(j->l->store, j->l->node, j->tenant, j->function, j->fn_cap,
                                       j->t_cap, (int64_t)j->l->ttl_ms);
}

static void take_done(void *data, int status)
{
    take_job_t *j = data;
    realm_leases_t *l = j->l;
    /* Closing: every answer is "unavailable" (the final drop takes a lease back). */
    int64_t r = status == 0 && !l->is_closing ? j->result : -1;
    if (r > 0) {
        if (l->n_held == l->cap_held) {
            l->cap_held = l->cap_held ? 2 * l->cap_held : 16;
            l->held = realm_realloc(l->held, l->cap_held * sizeof(*l->held));
        }
        l->held[l->n_held++] = (held_t){r, j->sent_ms + l->ttl_ms};
    }
    j->cb(r, j->data);
    free(j->tenant);
    free(j->function);
    free(j);
}

/* A take answered on a later turn without the store (closing, queue full). */
typedef struct {
    uv_idle_t idle;
    realm_leases_take_cb cb;
    void *data;
} refusal_t;

static void on_refusal_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_refusal(uv_idle_t *h)
{
    refusal_t *r = h->data;
    uv_idle_stop(h);
    r->cb(-1, r->data);
    uv_close((uv_handle_t *)h, on_refusal_closed);
}

void realm_leases_take(realm_leases_t *l, const char *tenant, const char *function, int64_t fn_cap,
                       int64_t t_cap, realm_leases_take_cb cb, void *data)
{
    take_job_t *j = realm_calloc(1, sizeof(*j));
    j->l = l;
    j->tenant = realm_strdup(tenant);
    j->function = realm_strdup(function);
    j->fn_cap = fn_cap;
    j->t_cap = t_cap;
    j->sent_ms = mono_ms();
    j->cb = cb;
    j->data = data;
    if (!l->is_closing && realm_storeq_submit(l->q, take_work, take_done, j) == 0) return;
    free(j->tenant);
    free(j->function);
    free(j);
    refusal_t *r = realm_calloc(1, sizeof(*r));
    r->cb = cb;
    r->data = data;
    uv_idle_init(l->loop, &r->idle);
    r->idle.data = r;
    uv_idle_start(&r->idle, on_refusal);
}

/* ---- drop ---- */

typedef struct {
    realm_leases_t *l;
    int64_t id; /* 0: all of the node's */
} drop_job_t;

static void drop_work(void *data)
{
    drop_job_t *j = data;
    realm_store_lease_drop(j->l->store, j->l->node, j->id ? &j->id : NULL, j->id ? 1 : 0);
}

static void drop_done(void *data, int status)
{
    (void)status;
    free(data);
}

void realm_leases_drop(realm_leases_t *l, int64_t lease)
{
    if (!find(l, lease)) return;
    forget(l, lease);
    drop_job_t *j = realm_calloc(1, sizeof(*j));
    j->l = l;
    j->id = lease;
    if (l->is_closing || realm_storeq_submit(l->q, drop_work, drop_done, j) != 0) free(j);
}

int realm_leases_is_live(const realm_leases_t *l, int64_t lease)
{
    const held_t *h = find(l, lease);
    return h && mono_ms() < h->live_until_ms;
}

size_t realm_leases_held(const realm_leases_t *l)
{
    return l->n_held;
}

/* ---- renew ---- */

typedef struct {
    realm_leases_t *l;
    int64_t *ids;
    unsigned char *kept;
    size_t n;
    uint64_t sent_ms;
    int rc;
} renew_job_t;

static void renew_work(void *data)
{
    renew_job_t *j = data;
    j->rc = realm_store_lease_renew(j->l->store, j->l->node, j->ids, j->n, (int64_t)j->l->ttl_ms,
                                    j->kept);
}

static void renew_done(void *data, int status)
{
    renew_job_t *j = data;
    realm_leases_t *l = j->l;
    l->is_renewing = 0;
    if (status == 0 && j->rc == 0 && !l->is_closing) {
        for (size_t i = 0; i < j->n; i++) {
            held_t *h = find(l, j->ids[i]);
            if (!h) continue; /* dropped meanwhile */
            if (j->kept[i]) {
                h->live_until_ms = j->sent_ms + l->ttl_ms;
            } else {
                forget(l, j->ids[i]);
                l->lost(j->ids[i], l->lost_data);
            }
        }
    } else if (status == 0 && j->rc != 0) {
        realm_warn("cluster: renewing %zu concurrency leases failed (they end in %llu ms unless "
                   "a later renewal gets through)",
                   j->n, (unsigned long long)l->ttl_ms);
    }
    free(j->ids);
    free(j->kept);
    free(j);
}

static void on_renew_tick(uv_timer_t *t)
{
    realm_leases_t *l = t->data;
    if (l->is_renewing || l->is_closing || !l->n_held) return;
    renew_job_t *j = realm_calloc(1, sizeof(*j));
    j->l = l;
    j->n = l->n_held;
    j->ids = realm_malloc(j->n * sizeof(*j->ids));
    j->kept = realm_calloc(j->n, 1);
    for (size_t i = 0; i < j->n; i++)
        j->ids[i] = l->held[i].id;
    j->sent_ms = mono_ms();
    if (realm_storeq_submit(l->q, renew_work, renew_done, j) == 0) {
        l->is_renewing = 1;
        return;
    }
    free(j->ids);
    free(j->kept);
    free(j);
}

/* ---- open / close ---- */

realm_leases_t *realm_leases_open(uv_loop_t *loop, const char *db, const char *node,
                                  uint64_t ttl_ms, realm_leases_lost_cb lost, void *lost_data,
                                  char *err, size_t err_len)
{
    realm_store_t *s = realm_store_open(REALM_STORE_LEASES, db, err, err_len);
    if (!s) return NULL;
    /* What an earlier process of this node left (killed, restarted). */
    if (realm_store_lease_drop(s, node, NULL, 0) != 0) {
        snprintf(err, err_len, "cluster: could not drop node %s's old concurrency leases", node);
        realm_store_close(s);
        return NULL;
    }
    realm_storeq_t *q = realm_storeq_new(loop, "leases", LEASE_MAX_JOBS);
    if (!q) {
        snprintf(err, err_len, "cluster: could not start the leases' worker");
        realm_store_close(s);
        return NULL;
    }
    realm_leases_t *l = realm_calloc(1, sizeof(*l));
    l->loop = loop;
    l->store = s;
    l->q = q;
    l->node = realm_strdup(node);
    l->ttl_ms = ttl_ms;
    l->lost = lost;
    l->lost_data = lost_data;
    uv_timer_init(loop, &l->renew_timer);
    l->renew_timer.data = l;
    uint64_t every = ttl_ms / 3 ? ttl_ms / 3 : 1;
    uv_timer_start(&l->renew_timer, on_renew_tick, every, every);
    uv_unref((uv_handle_t *)&l->renew_timer);
    return l;
}

static void on_queue_closed(void *data)
{
    realm_leases_t *l = data;
    realm_store_close(l->store);
    free(l->held);
    free(l->node);
    free(l);
}

static void on_timer_closed(uv_handle_t *h)
{
    realm_leases_t *l = h->data;
    realm_storeq_close(l->q, on_queue_closed, l);
}

/* The final drop ran (or was refused): the queue goes, then the rest. */
static void final_drop_done(void *data, int status)
{
    (void)status;
    drop_job_t *j = data;
    realm_leases_t *l = j->l;
    free(j);
    uv_close((uv_handle_t *)&l->renew_timer, on_timer_closed);
}

void realm_leases_close(realm_leases_t *l)
{
    if (!l || l->is_closing) return;
    l->is_closing = 1;
    uv_timer_stop(&l->renew_timer);
    l->n_held = 0;
    /* After every take already queued (their rows go too). */
    drop_job_t *j = realm_calloc(1, sizeof(*j));
    j->l = l;
    if (realm_storeq_submit(l->q, drop_work, final_drop_done, j) != 0) final_drop_done(j, -1);
}
