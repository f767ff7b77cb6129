/*
 * test_storeq.c - the store queue (storeq/storeq.h): work runs on one other
 * thread in submission order, done runs on the loop thread in the same
 * order and never inside submit, a full queue refuses at once, close
 * cancels what has not started and finishes what runs (also from a done_fn,
 * after which submit is refused), 100,000 jobs leave
 * nothing behind (ASan), a job that blocks does not block the loop, and the
 * round trip submit -> work -> done measured (p50/p99 printed), and the
 * periodic job of realm_storeq_every (never two at once; stopped by close).
 * Synchronisation with the worker is by a gate (mutex + condition) the test
 * opens, never by sleeping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fixture.h"

#include "base/err.h"
#include "storeq/storeq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

/* CPU time of the calling thread, in nanoseconds. */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- a gate a job waits on until the test opens it ---- */

typedef struct {
    uv_mutex_t mu;
    uv_cond_t cond;
    int is_open;    /* the test let the job go */
    int is_entered; /* the job is waiting at the gate */
} gate_t;

static void gate_init(gate_t *g)
{
    memset(g, 0, sizeof(*g));
    assert_int_equal(uv_mutex_init(&g->mu), 0);
    assert_int_equal(uv_cond_init(&g->cond), 0);
}

static void gate_dispose(gate_t *g)
{
    uv_cond_destroy(&g->cond);
    uv_mutex_destroy(&g->mu);
}

/* Worker side: say we are here, wait until opened. */
static void gate_pass(gate_t *g)
{
    uv_mutex_lock(&g->mu);
    g->is_entered = 1;
    uv_cond_broadcast(&g->cond);
    while (!g->is_open)
        uv_cond_wait(&g->cond, &g->mu);
    uv_mutex_unlock(&g->mu);
}

/* Test side: wait until the job is at the gate. */
static void gate_wait_entered(gate_t *g)
{
    uv_mutex_lock(&g->mu);
    while (!g->is_entered)
        uv_cond_wait(&g->cond, &g->mu);
    uv_mutex_unlock(&g->mu);
}

static int gate_is_entered(gate_t *g)
{
    uv_mutex_lock(&g->mu);
    int v = g->is_entered;
    uv_mutex_unlock(&g->mu);
    return v;
}

static void gate_open(gate_t *g)
{
    uv_mutex_lock(&g->mu);
    g->is_open = 1;
    uv_cond_broadcast(&g->cond);
    uv_mutex_unlock(&g->mu);
}

/* ---- a job that records where and in what order it ran ---- */

typedef struct ctx_s ctx_t;

typedef struct {
    ctx_t *ctx;
    int n;          /* submission number */
    gate_t *gate;   /* wait here in work, or NULL */
    int has_worked; /* work_fn ran */
    int status;     /* done_fn's status */
    int has_done;   /* done_fn ran */
    uv_thread_t work_thread;
} job_t;

struct ctx_s {
    uv_loop_t loop;
    realm_storeq_t *q;
    uv_thread_t loop_thread;
    int next_work; /* the n work_fn expects next (worker thread only) */
    int next_done; /* the n done_fn expects next */
    int work_out_of_order;
    int done_out_of_order;
    int done_cnt;
    int done_wrong_thread;
    int is_in_submit; /* set around submit: done must not run inside it */
    int done_in_submit;
    int closed_cnt;
    int done_after_close_cb;
};

static void work_fn(void *data)
{
    job_t *j = data;
    j->work_thread = uv_thread_self();
    if (j->n != j->ctx->next_work) j->ctx->work_out_of_order = 1;
    j->ctx->next_work = j->n + 1;
    if (j->gate) gate_pass(j->gate);
    j->has_worked = 1;
}

static void done_fn(void *data, int status)
{
    job_t *j = data;
    ctx_t *c = j->ctx;
    uv_thread_t self = uv_thread_self();
    if (!uv_thread_equal(&self, &c->loop_thread)) c->done_wrong_thread = 1;
    if (c->is_in_submit) c->done_in_submit = 1;
    if (c->closed_cnt) c->done_after_close_cb = 1;
    if (j->n != c->next_done) c->done_out_of_order = 1;
    c->next_done = j->n + 1;
    j->status = status;
    j->has_done = 1;
    c->done_cnt++;
}

static void on_q_closed(void *data)
{
    ctx_t *c = data;
    c->closed_cnt++;
}

static int submit(ctx_t *c, job_t *j)
{
    c->is_in_submit = 1;
    int rc = realm_storeq_submit(c->q, work_fn, done_fn, j);
    c->is_in_submit = 0;
    return rc;
}

static void ctx_init(ctx_t *c, size_t max_jobs)
{
    memset(c, 0, sizeof(*c));
    assert_int_equal(uv_loop_init(&c->loop), 0);
    c->loop_thread = uv_thread_self();
    c->q = realm_storeq_new(&c->loop, "test", max_jobs);
    assert_non_null(c->q);
    assert_string_equal(realm_storeq_name(c->q), "test");
}

/* Closes the queue, runs the loop until it is gone, closes the loop. */
static void ctx_finish(ctx_t *c)
{
    realm_storeq_close(c->q, on_q_closed, c);
    realm_storeq_close(c->q, on_q_closed, c); /* ignored */
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(c->closed_cnt, 1);
    assert_int_equal(uv_loop_close(&c->loop), 0);
}

/* ---- tests ---- */

static void test_order_and_threads(void **state)
{
    (void)state;
    ctx_t c;
    ctx_init(&c, 64);
    job_t jobs[50];
    for (int i = 0; i < 50; i++) {
        jobs[i] = (job_t){.ctx = &c, .n = i};
        assert_int_equal(submit(&c, &jobs[i]), 0);
    }
    /* Nothing is delivered before the loop runs, whatever the worker did. */
    assert_int_equal(c.done_cnt, 0);
    while (c.done_cnt < 50)
        uv_run(&c.loop, UV_RUN_ONCE);
    assert_int_equal(c.work_out_of_order, 0);
    assert_int_equal(c.done_out_of_order, 0);
    assert_int_equal(c.done_wrong_thread, 0);
    assert_int_equal(c.done_in_submit, 0);
    for (int i = 0; i < 50; i++) {
        assert_true(jobs[i].has_worked);
        assert_int_equal(jobs[i].status, 0);
        assert_false(uv_thread_equal(&jobs[i].work_thread, &c.loop_thread));
        /* One worker thread for all. */
        assert_true(uv_thread_equal(&jobs[i].work_thread, &jobs[0].work_thread));
    }
    realm_storeq_stats_t st;
    realm_storeq_stats(c.q, &st);
    assert_int_equal(st.submitted_cnt, 50);
    assert_int_equal(st.done_cnt, 50);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.rejected_cnt, 0);
    ctx_finish(&c);
}

/* A done_fn that submits the next job: done never runs inside that submit. */
typedef struct {
    ctx_t c;
    job_t jobs[100];
    int next;
} chain_t;

static void chain_done(void *data, int status);

static void chain_submit(chain_t *ch)
{
    job_t *j = &ch->jobs[ch->next++];
    *j = (job_t){.ctx = &ch->c, .n = ch->next - 1};
    ch->c.is_in_submit = 1;
    assert_int_equal(realm_storeq_submit(ch->c.q, work_fn, chain_done, j), 0);
    ch->c.is_in_submit = 0;
}

static void chain_done(void *data, int status)
{
    done_fn(data, status);
    chain_t *ch = (chain_t *)((job_t *)data)->ctx; /* ctx is the first member */
    if (ch->next < 100) chain_submit(ch);
}

static void test_done_never_inside_submit(void **state)
{
    (void)state;
    chain_t *ch = calloc(1, sizeof(*ch));
    ctx_init(&ch->c, 1); /* one at a time: each submit from a done_fn */
    chain_submit(ch);
    while (ch->c.done_cnt < 100)
        uv_run(&ch->c.loop, UV_RUN_ONCE);
    assert_int_equal(ch->c.done_in_submit, 0);
    assert_int_equal(ch->c.done_out_of_order, 0);
    assert_int_equal(ch->c.work_out_of_order, 0);
    ctx_finish(&ch->c);
    free(ch);
}

static void test_full_queue_rejects(void **state)
{
    (void)state;
    ctx_t c;
    ctx_init(&c, 2);
    gate_t g;
    gate_init(&g);
    job_t a = {.ctx = &c, .n = 0, .gate = &g}, b = {.ctx = &c, .n = 1}, x = {.ctx = &c, .n = 9};
    assert_int_equal(submit(&c, &a), 0);
    assert_int_equal(submit(&c, &b), 0);
    assert_int_equal(submit(&c, &x), REALM_ERR_BACKPRESSURE);
    gate_wait_entered(&g);
    realm_storeq_stats_t st;
    realm_storeq_stats(c.q, &st);
    assert_int_equal(st.running, 1);
    assert_int_equal(st.queued, 1);
    assert_int_equal(st.in_flight, 2);
    assert_int_equal(st.rejected_cnt, 1);
    gate_open(&g);
    while (c.done_cnt < 2)
        uv_run(&c.loop, UV_RUN_ONCE);
    assert_false(x.has_worked);
    assert_false(x.has_done);
    /* Room again once done ran. */
    job_t d = {.ctx = &c, .n = 2};
    assert_int_equal(submit(&c, &d), 0);
    while (c.done_cnt < 3)
        uv_run(&c.loop, UV_RUN_ONCE);
    assert_int_equal(c.work_out_of_order, 0);
    ctx_finish(&c);
    gate_dispose(&g);
}

static void test_close_with_work_queued(void **state)
{
    (void)state;
    ctx_t c;
    ctx_init(&c, 16);
    gate_t g;
    gate_init(&g);
    job_t jobs[5];
    for (int i = 0; i < 5; i++) {
        jobs[i] = (job_t){.ctx = &c, .n = i, .gate = i == 0 ? &g : NULL};
        assert_int_equal(submit(&c, &jobs[i]), 0);
    }
    gate_wait_entered(&g); /* job 0 runs; 1..4 wait */
    realm_storeq_close(c.q, on_q_closed, &c);
    job_t late = {.ctx = &c, .n = 99};
    assert_int_equal(submit(&c, &late), REALM_ERR_SHUTTING_DOWN);
    assert_int_equal(c.done_cnt, 0); /* close calls nothing itself */
    gate_open(&g);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    assert_int_equal(c.closed_cnt, 1);
    assert_int_equal(c.done_after_close_cb, 0);
    assert_int_equal(c.done_cnt, 5);
    assert_int_equal(c.done_out_of_order, 0); /* done order kept, cancelled included */
    assert_true(jobs[0].has_worked);
    assert_int_equal(jobs[0].status, 0);
    for (int i = 1; i < 5; i++) {
        assert_false(jobs[i].has_worked);
        assert_int_equal(jobs[i].status, REALM_ERR_SHUTTING_DOWN);
    }
    assert_false(late.has_done);
    assert_int_equal(uv_loop_close(&c.loop), 0);
    gate_dispose(&g);
}

static void test_close_idle(void **state)
{
    (void)state;
    ctx_t c;
    ctx_init(&c, 4);
    realm_storeq_close(c.q, on_q_closed, &c);
    assert_int_equal(c.closed_cnt, 0); /* never inside close */
    uv_run(&c.loop, UV_RUN_DEFAULT);
    assert_int_equal(c.closed_cnt, 1);
    assert_int_equal(uv_loop_close(&c.loop), 0);
}

/* A done_fn may close the queue; a submit after that is refused. */
typedef struct {
    ctx_t c;
    job_t a;
    job_t late;
    int late_rc;
} selfclose_t;

static void selfclose_done(void *data, int status)
{
    done_fn(data, status);
    selfclose_t *sc = (selfclose_t *)((job_t *)data)->ctx; /* c is the first member */
    realm_storeq_close(sc->c.q, on_q_closed, &sc->c);
    sc->late = (job_t){.ctx = &sc->c, .n = 1};
    sc->late_rc = realm_storeq_submit(sc->c.q, work_fn, done_fn, &sc->late);
}

static void test_close_from_done(void **state)
{
    (void)state;
    selfclose_t *sc = calloc(1, sizeof(*sc));
    ctx_init(&sc->c, 4);
    sc->a = (job_t){.ctx = &sc->c, .n = 0};
    assert_int_equal(realm_storeq_submit(sc->c.q, work_fn, selfclose_done, &sc->a), 0);
    uv_run(&sc->c.loop, UV_RUN_DEFAULT);
    assert_int_equal(sc->c.closed_cnt, 1);
    assert_int_equal(sc->a.status, 0);
    assert_int_equal(sc->late_rc, REALM_ERR_SHUTTING_DOWN);
    assert_false(sc->late.has_done);
    assert_int_equal(uv_loop_close(&sc->c.loop), 0);
    free(sc);
}

/* A blocked job does not block the loop: a timer fires while the job waits
 * at the gate, checks that it is still waiting, and opens it. */
typedef struct {
    ctx_t *c;
    gate_t *g;
    int fired;
    int job_was_waiting;
    uv_timer_t timer;
} blk_t;

static void on_blk_timer(uv_timer_t *t)
{
    blk_t *b = t->data;
    b->fired++;
    if (!gate_is_entered(b->g)) return; /* not yet: try again next tick */
    b->job_was_waiting = b->c->done_cnt == 0;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    gate_open(b->g);
}

static void test_blocked_job_does_not_block_loop(void **state)
{
    (void)state;
    ctx_t c;
    ctx_init(&c, 4);
    gate_t g;
    gate_init(&g);
    blk_t b = {.c = &c, .g = &g};
    job_t j = {.ctx = &c, .n = 0, .gate = &g};
    assert_int_equal(submit(&c, &j), 0);
    assert_int_equal(uv_timer_init(&c.loop, &b.timer), 0);
    b.timer.data = &b;
    assert_int_equal(uv_timer_start(&b.timer, on_blk_timer, 1, 1), 0);
    while (c.done_cnt < 1)
        uv_run(&c.loop, UV_RUN_ONCE);
    assert_cmp_int(b.fired, >=, 1);
    assert_true(b.job_was_waiting);
    assert_int_equal(j.status, 0);
    ctx_finish(&c);
    gate_dispose(&g);
}

/* 100,000 jobs through a queue of 1,024: nothing lost, order kept, no leak. */
typedef struct {
    ctx_t c;
    job_t *jobs;
    int total;
    int submitted;
    int rejected;
} many_t;

static void many_fill(many_t *m)
{
    while (m->submitted < m->total) {
        job_t *j = &m->jobs[m->submitted];
        *j = (job_t){.ctx = &m->c, .n = m->submitted};
        int rc = submit(&m->c, j);
        if (rc == REALM_ERR_BACKPRESSURE) {
            m->rejected++;
            return;
        }
        assert_int_equal(rc, 0);
        m->submitted++;
    }
}

static void on_many_idle(uv_idle_t *h)
{
    many_t *m = h->data;
    many_fill(m);
    if (m->submitted == m->total) uv_idle_stop(h);
}

static void test_many_jobs(void **state)
{
    (void)state;
    many_t *m = calloc(1, sizeof(*m));
    m->total = 100000;
    m->jobs = calloc((size_t)m->total, sizeof(job_t));
    ctx_init(&m->c, 1024);
    uv_idle_t idle;
    assert_int_equal(uv_idle_init(&m->c.loop, &idle), 0);
    idle.data = m;
    assert_int_equal(uv_idle_start(&idle, on_many_idle), 0);
    uint64_t t0 = uv_hrtime();
    while (m->c.done_cnt < m->total)
        uv_run(&m->c.loop, UV_RUN_ONCE);
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    uv_close((uv_handle_t *)&idle, NULL);
    assert_int_equal(m->c.work_out_of_order, 0);
    assert_int_equal(m->c.done_out_of_order, 0);
    assert_int_equal(m->c.done_wrong_thread, 0);
    assert_int_equal(m->c.done_in_submit, 0);
    realm_storeq_stats_t st;
    realm_storeq_stats(m->c.q, &st);
    assert_int_equal(st.done_cnt, 100000);
    assert_int_equal(st.rejected_cnt, (uint64_t)m->rejected);
    assert_int_equal(st.in_flight, 0);
    printf("storeq: 100000 jobs, queue of 1024: %.0f jobs/s, %d submits refused (full), "
           "max wait %.0f us\n",
           m->total / secs, m->rejected, (double)st.max_wait_ns / 1e3);
    ctx_finish(&m->c);
    free(m->jobs);
    free(m);
}

/* The hop: one job in flight, submit -> work -> done, 100,000 times. */
typedef struct {
    realm_storeq_t *q;
    uint64_t *lat;
    int n;
    int total;
    uint64_t t0;
} hop_t;

static void hop_work(void *data)
{
    (void)data;
}

static void hop_done(void *data, int status)
{
    hop_t *h = data;
    assert_int_equal(status, 0);
    h->lat[h->n++] = uv_hrtime() - h->t0;
    if (h->n < h->total) {
        h->t0 = uv_hrtime();
        assert_int_equal(realm_storeq_submit(h->q, hop_work, hop_done, h), 0);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_hop_cost(void **state)
{
    (void)state;
    ctx_t c;
    ctx_init(&c, 1);
    hop_t h = {.q = c.q, .total = 100000};
    h.lat = calloc((size_t)h.total, sizeof(uint64_t));
    uint64_t cpu0 = thread_cpu_ns();
    h.t0 = uv_hrtime();
    assert_int_equal(realm_storeq_submit(c.q, hop_work, hop_done, &h), 0);
    while (h.n < h.total)
        uv_run(&c.loop, UV_RUN_ONCE);
    double loop_cpu_us = (double)(thread_cpu_ns() - cpu0) / 1e3 / h.total;
    qsort(h.lat, (size_t)h.total, sizeof(uint64_t), cmp_u64);
    printf("storeq: hop submit->work->done, 1 in flight, %d jobs: p50 %.1f us, p99 %.1f us, "
           "max %.1f us; loop CPU %.1f us per job\n",
           h.total, (double)h.lat[h.total / 2] / 1e3, (double)h.lat[h.total * 99 / 100] / 1e3,
           (double)h.lat[h.total - 1] / 1e3, loop_cpu_us);
    assert_cmp_size(h.lat[h.total / 2], >, 0);
    free(h.lat);
    ctx_finish(&c);
}

/* ---- every ---- */

typedef struct {
    gate_t gate;
    uv_mutex_t mu;
    int runs;      /* under mu */
    int held;      /* the first run waits at the gate */
    uv_thread_t thread;
} every_t;

static void every_work(void *data)
{
    every_t *e = data;
    uv_mutex_lock(&e->mu);
    int n = ++e->runs;
    e->thread = uv_thread_self();
    uv_mutex_unlock(&e->mu);
    if (n == 1) gate_pass(&e->gate);
}

static int every_runs(every_t *e)
{
    uv_mutex_lock(&e->mu);
    int n = e->runs;
    uv_mutex_unlock(&e->mu);
    return n;
}

static void on_tick(uv_timer_t *t)
{
    (*(int *)t->data)++;
}

static void test_every(void **state)
{
    (void)state;
    ctx_t c;
    ctx_init(&c, 4);
    every_t e;
    memset(&e, 0, sizeof(e));
    gate_init(&e.gate);
    assert_int_equal(uv_mutex_init(&e.mu), 0);
    realm_storeq_every(c.q, 2, every_work, &e);
    /* A timer of the test's own counts periods while the first run is held. */
    int ticks = 0;
    uv_timer_t tick;
    uv_timer_init(&c.loop, &tick);
    tick.data = &ticks;
    uv_timer_start(&tick, on_tick, 2, 2);
    while (!gate_is_entered(&e.gate))
        uv_run(&c.loop, UV_RUN_ONCE);
    ticks = 0;
    while (ticks < 10)
        uv_run(&c.loop, UV_RUN_ONCE);
    /* Ten periods later, still the one run: a tick while it is out is skipped. */
    assert_int_equal(every_runs(&e), 1);
    realm_storeq_stats_t st;
    realm_storeq_stats(c.q, &st);
    assert_int_equal(st.submitted_cnt, 1);
    gate_open(&e.gate);
    while (every_runs(&e) < 3)
        uv_run(&c.loop, UV_RUN_ONCE);
    assert_false(uv_thread_equal(&e.thread, &c.loop_thread)); /* on the worker */
    uv_timer_stop(&tick);
    uv_close((uv_handle_t *)&tick, NULL);
    /* Close stops it: the loop ends (the timer is gone too), no run after. */
    realm_storeq_close(c.q, on_q_closed, &c);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    assert_int_equal(c.closed_cnt, 1);
    int after = every_runs(&e);
    uv_run(&c.loop, UV_RUN_NOWAIT);
    assert_int_equal(every_runs(&e), after);
    assert_int_equal(uv_loop_close(&c.loop), 0);
    uv_mutex_destroy(&e.mu);
    gate_dispose(&e.gate);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_threads),
        cmocka_unit_test(test_done_never_inside_submit),
        cmocka_unit_test(test_full_queue_rejects),
        cmocka_unit_test(test_close_with_work_queued),
        cmocka_unit_test(test_close_idle),
        cmocka_unit_test(test_close_from_done),
        cmocka_unit_test(test_blocked_job_does_not_block_loop),
        cmocka_unit_test(test_many_jobs),
        cmocka_unit_test(test_hop_cost),
        cmocka_unit_test(test_every),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
