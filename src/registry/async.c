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
    _Atomic uint64_t generation;
    int is_closing;
    void (*on_write)(void *data); /* realm_registry_async_on_write's */
    void *on_write_data;
    void (*close_cb)(void *data);
    void *close_data;
};

typedef struct {
    realm_registry_async_t *ra;
    realm_registry_work_cb work;
    realm_registry_done_cb done;
    void *data;
    int wrote; /* the work moved the generation (worker; read in done) */
} job_t;

static void publish(realm_registry_async_t *ra)
{
    atomic_store_explicit(&ra->generation, realm_registry_generation(ra->reg),
                          memory_order_release);
}

static void job_work(void *data)
{
    job_t *j = data;
    uint64_t before = realm_registry_local_writes(j->ra->reg);
    if (j->work) j->work(j->ra->reg, j->data);
    j->wrote = realm_registry_local_writes(j->ra->reg) != before;
    publish(j->ra);
}

static void job_done(void *data, int status)
{
    job_t *j = data;
    /* Others hear of a write before its caller's answer goes out. */
    if (j->wrote && j->ra->on_write) j->ra->on_write(j->ra->on_write_data);
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

static void poll_work(void *data)
{
    publish(data);
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
    if (poll_ms) realm_storeq_every(ra->q, poll_ms, poll_work, ra);
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

static void on_queue_closed(void *data)
{
    realm_registry_async_t *ra = data;
    ra->q = NULL;
    if (ra->close_cb) ra->close_cb(ra->close_data);
}

void realm_registry_async_on_write(realm_registry_async_t *ra, void (*cb)(void *data),
                                   void *data)
{
    ra->on_write = cb;
    ra->on_write_data = data;
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
    realm_storeq_close(ra->q, on_queue_closed, ra);
}
