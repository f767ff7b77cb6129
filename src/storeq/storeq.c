/*
 * storeq.c - the store queue (storeq.h): one worker thread, a FIFO of jobs
 * under a mutex and condition, completions back through a list and one
 * uv_async_t.
 *
 * DESIGN: a job is one allocation (realm_malloc) that travels from the
 * pending list (worker's input) to the completed list (the loop's input);
 * both lists are intrusive, singly linked, with a tail pointer, and both are
 * guarded by one mutex (a job is touched by one thread at a time: the loop
 * before submit links it, the worker between taking it and linking it into
 * completed, the loop again after taking the completed list). The worker
 * sends the async after each job; libuv coalesces sends, and on_async takes
 * the whole list at once, so a burst costs the loop one wake-up.
 *
 * Close: the worker finishes the job it runs, then takes the pending ones
 * and moves each to the completed list marked cancelled without running it
 * (so done_fns keep submission order), sees closing with nothing pending,
 * marks itself exited (under the mutex, after linking its last job) and sends the
 * async a last time. on_async, seeing exited, delivers everything, joins
 * the thread (which has nothing left to do but return), and closes the
 * handle; on_closed calls the close callback and frees the queue. The loop
 * never waits for a job: the join happens only after the thread said it
 * was leaving.
 *
 * LIFETIME: the queue is freed only in the uv_close callback of its async
 * handle, never inside on_async, so a done_fn may call close.
 * THREADS: see storeq.h; fields under `mu` are marked.
 */
#include "storeq/storeq.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>

typedef struct job_s job_t;
struct job_s {
    job_t *next;
    realm_storeq_work_cb work_fn;
    realm_storeq_done_cb done_fn;
    void *data;
    uint64_t submitted_ns; /* uv_hrtime() at submit */
    int status;            /* 0, or REALM_ERR_SHUTTING_DOWN when cancelled */
};

typedef struct {
    job_t *head;
    job_t *tail;
} list_t;

struct realm_storeq_s {
    uv_loop_t *loop;
    uv_async_t async;   /* worker -> loop: completed jobs or exited */
    uv_thread_t thread; /* the worker */
    uv_mutex_t mu;
    uv_cond_t cond; /* signalled when pending grows or closing is set */
    char *name;     /* owned */
    size_t max_jobs;
    /* under mu */
    list_t pending;     /* submitted, not started */
    list_t completed;   /* ran or cancelled, done_fn not called */
    int is_closing;     /* close was called: submit refuses, worker leaves */
    int has_exited;     /* the worker will touch nothing more */
    int is_async_ready; /* async initialised: the worker may send it */
    realm_storeq_stats_t st;
    /* loop thread only */
    int is_handle_closing; /* uv_close called on async */
    int handles_open;      /* the async, and the timer of realm_storeq_every */
    uv_timer_t every;      /* realm_storeq_every's */
    realm_storeq_work_cb every_fn;
    void *every_data;
    int has_every, is_every_out;
    realm_storeq_close_cb close_cb;
    void *close_data;
};

static void list_push(list_t *l, job_t *j)
{
    j->next = NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

static job_t *list_pop(list_t *l)
{
    job_t *j = l->head;
    if (j) {
        l->head = j->next;
        if (!l->head) l->tail = NULL;
        j->next = NULL;
    }
    return j;
}

/* ---- worker thread ---- */

static void worker_main(void *arg)
{
    realm_storeq_t *q = arg;
    uv_mutex_lock(&q->mu);
    for (;;) {
        while (!q->pending.head && !q->is_closing)
            uv_cond_wait(&q->cond, &q->mu);
        job_t *j = list_pop(&q->pending);
        if (!j) break; /* closing and nothing pending */
        q->st.queued--;
        if (q->is_closing) {
            /* Cancelled: through the completed list all the same, so that
             * done_fns keep submission order. */
            j->status = REALM_ERR_SHUTTING_DOWN;
            q->st.cancelled_cnt++;
            list_push(&q->completed, j);
            continue;
        }
        uint64_t start = uv_hrtime();
        uint64_t wait = start - j->submitted_ns;
        if (wait > q->st.max_wait_ns) q->st.max_wait_ns = wait;
        q->st.running = 1;
        uv_mutex_unlock(&q->mu);

        j->work_fn(j->data);

        uint64_t work = uv_hrtime() - start;
        uv_mutex_lock(&q->mu);
        if (work > q->st.max_work_ns) q->st.max_work_ns = work;
        q->st.running = 0;
        q->st.done_cnt++;
        j->status = 0;
        list_push(&q->completed, j);
        uv_mutex_unlock(&q->mu);
        uv_async_send(&q->async);
        uv_mutex_lock(&q->mu);
    }
    q->has_exited = 1;
    int send = q->is_async_ready;
    uv_mutex_unlock(&q->mu);
    /* q stays alive: the loop frees it only after joining this thread. */
    if (send) uv_async_send(&q->async);
}

/* ---- loop thread ---- */

static void on_closed(uv_handle_t *h)
{
    realm_storeq_t *q = h->data;
    if (--q->handles_open > 0) return;
    realm_storeq_close_cb cb = q->close_cb;
    void *data = q->close_data;
    uv_cond_destroy(&q->cond);
    uv_mutex_destroy(&q->mu);
    free(q->name);
    free(q);
    if (cb) cb(data);
}

static void on_async(uv_async_t *a)
{
    realm_storeq_t *q = a->data;
    uv_mutex_lock(&q->mu);
    list_t done = q->completed;
    q->completed.head = q->completed.tail = NULL;
    int exited = q->has_exited;
    uv_mutex_unlock(&q->mu);

    job_t *j;
    while ((j = list_pop(&done)) != NULL) {
        realm_storeq_done_cb fn = j->done_fn;
        void *data = j->data;
        int status = j->status;
        free(j);
        uv_mutex_lock(&q->mu);
        int is_idle = --q->st.in_flight == 0;
        uv_mutex_unlock(&q->mu);
        if (is_idle && !q->is_closing) uv_unref((uv_handle_t *)&q->async);
        if (fn) fn(data, status);
    }
    /* exited implies closing, and nothing more can complete: the worker
     * linked every job, run or cancelled, before it set has_exited. */
    if (exited && !q->is_handle_closing) {
        q->is_handle_closing = 1;
        uv_thread_join(&q->thread);
        uv_close((uv_handle_t *)&q->async, on_closed);
    }
}

realm_storeq_t *realm_storeq_new(uv_loop_t *loop, const char *name, size_t max_jobs)
{
    realm_storeq_t *q = realm_calloc(1, sizeof(*q));
    q->loop = loop;
    q->name = realm_strdup(name ? name : "store");
    q->max_jobs = max_jobs ? max_jobs : 1;
    if (uv_mutex_init(&q->mu) != 0) {
        realm_log(REALM_LOG_ERROR, "storeq %s: mutex init failed", q->name);
        free(q->name);
        free(q);
        return NULL;
    }
    if (uv_cond_init(&q->cond) != 0) {
        realm_log(REALM_LOG_ERROR, "storeq %s: condition init failed", q->name);
        uv_mutex_destroy(&q->mu);
        free(q->name);
        free(q);
        return NULL;
    }
    /* The thread first: it touches the async only after running a job, and
     * there is none yet, so on a failed async init it can be stopped and
     * joined here. */
    int rc = uv_thread_create(&q->thread, worker_main, q);
    if (rc != 0) {
        realm_log(REALM_LOG_ERROR, "storeq %s: thread: %s", q->name, uv_strerror(rc));
        goto fail_thread;
    }
    rc = uv_async_init(loop, &q->async, on_async);
    if (rc != 0) {
        realm_log(REALM_LOG_ERROR, "storeq %s: async: %s", q->name, uv_strerror(rc));
        uv_mutex_lock(&q->mu);
        q->is_closing = 1; /* is_async_ready stays 0: the worker leaves quietly */
        uv_cond_signal(&q->cond);
        uv_mutex_unlock(&q->mu);
        uv_thread_join(&q->thread);
        goto fail_thread;
    }
    q->async.data = q;
    q->handles_open = 1;
    uv_unref((uv_handle_t *)&q->async); /* an idle queue does not keep the loop alive */
    uv_mutex_lock(&q->mu);
    q->is_async_ready = 1;
    uv_mutex_unlock(&q->mu);
    return q;

fail_thread:
    uv_cond_destroy(&q->cond);
    uv_mutex_destroy(&q->mu);
    free(q->name);
    free(q);
    return NULL;
}

int realm_storeq_submit(realm_storeq_t *q, realm_storeq_work_cb work_fn,
                        realm_storeq_done_cb done_fn, void *data)
{
    uv_mutex_lock(&q->mu);
    if (q->is_closing || q->st.in_flight >= q->max_jobs) {
        int rc = q->is_closing ? REALM_ERR_SHUTTING_DOWN : REALM_ERR_BACKPRESSURE;
        q->st.rejected_cnt++;
        uv_mutex_unlock(&q->mu);
        return rc;
    }
    job_t *j = realm_malloc(sizeof(*j));
    j->work_fn = work_fn;
    j->done_fn = done_fn;
    j->data = data;
    j->status = 0;
    j->submitted_ns = uv_hrtime();
    list_push(&q->pending, j);
    q->st.queued++;
    if (q->st.in_flight++ == 0) uv_ref((uv_handle_t *)&q->async); /* jobs keep the loop alive */
    q->st.submitted_cnt++;
    uv_cond_signal(&q->cond);
    uv_mutex_unlock(&q->mu);
    return 0;
}

void realm_storeq_close(realm_storeq_t *q, realm_storeq_close_cb cb, void *data)
{
    uv_mutex_lock(&q->mu);
    if (q->is_closing) {
        uv_mutex_unlock(&q->mu);
        return;
    }
    q->is_closing = 1;
    q->close_cb = cb;
    q->close_data = data;
    uv_ref((uv_handle_t *)&q->async); /* the loop runs until the queue is gone */
    if (q->has_every) uv_close((uv_handle_t *)&q->every, on_closed);
    /* The worker finishes the job it runs, cancels the pending ones in
     * order, and sends the async when it leaves. */
    uv_cond_signal(&q->cond);
    uv_mutex_unlock(&q->mu);
}

static void every_done(void *data, int status)
{
    (void)status;
    realm_storeq_t *q = data;
    q->is_every_out = 0;
}

static void every_work(void *data)
{
    realm_storeq_t *q = data;
    q->every_fn(q->every_data); /* every_fn and every_data are set before the first tick */
}

static void on_every(uv_timer_t *t)
{
    realm_storeq_t *q = t->data;
    if (q->is_every_out) return;
    if (realm_storeq_submit(q, every_work, every_done, q) == 0) q->is_every_out = 1;
}

void realm_storeq_every(realm_storeq_t *q, uint64_t period_ms, realm_storeq_work_cb work_fn,
                        void *data)
{
    uv_mutex_lock(&q->mu);
    int is_closing = q->is_closing;
    uv_mutex_unlock(&q->mu);
    if (q->has_every || is_closing || period_ms == 0) return;
    q->has_every = 1;
    q->every_fn = work_fn;
    q->every_data = data;
    uv_timer_init(q->loop, &q->every);
    q->every.data = q;
    q->handles_open++;
    uv_timer_start(&q->every, on_every, period_ms, period_ms);
    uv_unref((uv_handle_t *)&q->every);
}

void realm_storeq_stats(realm_storeq_t *q, realm_storeq_stats_t *out)
{
    uv_mutex_lock(&q->mu);
    *out = q->st;
    uv_mutex_unlock(&q->mu);
}

const char *realm_storeq_name(const realm_storeq_t *q)
{
    return q->name;
}
