/*
 * async.c - the registry on its store worker (see async.h).
 */
#include "registry/async.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "storeq/storeq.h"

#include <stdatomic.h>
#include <stdlib.h>

struct realm_registry_async_s {
    uv_loop_t *loop;
    realm_registry_t *reg;
    realm_storeq_t *q;
    uv_timer_t poll;
    _Atomic uint64_t generation;
    int is_polling; /* a poll job is queued */
    int pending_closes;
    int is_closing;
    void (*close_cb)(void *data);
    void *close_data;
};

typedef struct {
    realm_registry_async_t *ra;
    realm_registry_work_cb work;
    realm_registry_done_cb done;
    void *data;
} job_t;

static void publish(realm_registry_async_t *ra)
{
    atomic_store_explicit(&ra->generation, realm_registry_generation(ra->reg),
                          memory_order_release);
}

static void job_work(void *data)
{
    job_t *j = data;
    if (j->work) j->work(j->ra->reg, j->data);
    publish(j->ra);
}

static void job_done(void *data, int status)
{
    job_t *j = data;
    if (j->done) j->done(j->data, status);
    free(j);
}

int realm_registry_async_submit(realm_registry_async_t *ra, realm_registry_work_cb work,
                                realm_registry_done_cb done, void *data)
{
    if (ra->is_closing) return REALM_ERR_SHUTTING_DOWN;
    job_t *j = realm_malloc(sizeof(*j));
    *j = (job_t){.ra = ra, .work = work, .done = done, .data = data};
    int rc = realm_storeq_submit(ra->q, job_work, job_done, j);
    if (rc != 0) free(j);
    return rc;
}

static void poll_done(void *data, int status)
{
    (void)status;
    realm_registry_async_t *ra = data;
    ra->is_polling = 0;
}

static void on_poll(uv_timer_t *t)
{
    realm_registry_async_t *ra = t->data;
    if (ra->is_polling) return;
    if (realm_registry_async_submit(ra, NULL, poll_done, ra) == 0) ra->is_polling = 1;
}

realm_registry_async_t *realm_registry_async_new(uv_loop_t *loop, realm_registry_t *reg,
                                                 size_t max_jobs, uint64_t poll_ms)
{
    realm_registry_async_t *ra = realm_calloc(1, sizeof(*ra));
    ra->loop = loop;
    ra->reg = reg;
    publish(ra); /* before the worker exists: the loop thread still owns reg */
    ra->q = realm_storeq_new(loop, "registry", max_jobs);
    if (!ra->q) {
        free(ra);
        return NULL;
    }
    uv_timer_init(loop, &ra->poll);
    ra->poll.data = ra;
    if (poll_ms) uv_timer_start(&ra->poll, on_poll, poll_ms, poll_ms);
    uv_unref((uv_handle_t *)&ra->poll);
    return ra;
}

uint64_t realm_registry_async_generation(const realm_registry_async_t *ra)
{
    return atomic_load_explicit(&((realm_registry_async_t *)ra)->generation, memory_order_acquire);
}

realm_registry_t *realm_registry_async_registry(realm_registry_async_t *ra)
{
    return ra->reg;
}

uint64_t realm_registry_async_in_flight(realm_registry_async_t *ra)
{
    if (!ra->q) return 0;
    realm_storeq_stats_t st;
    realm_storeq_stats(ra->q, &st);
    return st.in_flight;
}

static void one_closed(realm_registry_async_t *ra)
{
    if (--ra->pending_closes > 0) return;
    ra->q = NULL;
    if (ra->close_cb) ra->close_cb(ra->close_data);
}

static void on_queue_closed(void *data)
{
    one_closed(data);
}

static void on_timer_closed(uv_handle_t *h)
{
    one_closed(h->data);
}

void realm_registry_async_free(realm_registry_async_t *ra)
{
    free(ra);
}

void realm_registry_async_close(realm_registry_async_t *ra, void (*cb)(void *data), void *data)
{
    if (!ra || ra->is_closing) return;
    ra->is_closing = 1;
    ra->close_cb = cb;
    ra->close_data = data;
    ra->pending_closes = 2;
    uv_close((uv_handle_t *)&ra->poll, on_timer_closed);
    realm_storeq_close(ra->q, on_queue_closed, ra);
}
