/*
 * pgloop.c - how should a libuv loop talk to PostgreSQL? (issue 16; the
 * answer is in docs/storage.md, "PostgreSQL: how the loop talks to it").
 *
 * One program, four ways of running the same prepared statements from a
 * libuv loop, closed loop with a fixed number of logical requests in flight
 * (each completion on the loop thread submits the next):
 *
 *   sync      PQexecPrepared on the loop thread: what the SQLite backend
 *             does today (the loop is blocked for every round trip);
 *             in flight is 1 by construction.
 *   async     PQsendQueryPrepared + uv_poll on the loop, one query at a time
 *             per connection, --conns connections (requests wait in a queue
 *             on the loop when every connection is busy).
 *   pipeline  the same in libpq's pipeline mode: every connection carries up
 *             to --inflight queries at once, each followed by its own Sync
 *             (so an INSERT is still its own transaction and commit).
 *   worker    --workers threads, each owning one connection and running the
 *             blocking PQexecPrepared; requests go through a mutex + condition
 *             queue, completions come back through a list + uv_async_send
 *             (the shape of "the existing synchronous store calls behind an
 *             asynchronous facade").
 *
 * Operations: select (SELECT v FROM kv WHERE k = $1, a random key among
 * --rows), insert (INSERT INTO ev (payload) VALUES ($1), autocommit: one
 * commit each) and txn, the shape of a registry operation: BEGIN, that
 * SELECT, that INSERT, an UPDATE of the row read, COMMIT (async: each
 * statement sent when the previous one answered, as code that looks at a
 * result before the next statement must; pipeline: all five at once with
 * one Sync, which only code whose statements do not depend on each other's
 * results could do). `--setup` creates and fills the tables.
 *
 * Measured (after --warmup seconds, for --seconds): the latency of each
 * request from its submission to its completion callback on the loop (p50,
 * p99), the throughput, and the CPU time per operation of the loop thread
 * (CLOCK_THREAD_CPUTIME_ID: what the server's one loop would pay) and of the
 * whole process (worker threads included). One JSON object on stdout.
 *
 * LIFETIME: a request is malloc'd when submitted and freed by complete()
 * on the loop; connections and handles live in static storage for the whole
 * run. When the time is up, no request is submitted any more; once the last
 * one is back, a check handle stops the workers and closes every handle, and
 * the loop must then close cleanly (uv_loop_close() == 0, else exit 1).
 *
 * THREADS: the loop thread, plus --workers threads in worker mode; a
 * worker touches only its connection, the request it took (the queue's
 * mutex hands it over and back) and uv_async_send.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* ---- options and results --------------------------------------------------------- */

enum { M_SYNC, M_ASYNC, M_PIPELINE, M_WORKER };
enum { OP_SELECT, OP_INSERT, OP_TXN };
static const char *op_names[] = {"select", "insert", "txn"};

/* The statements of each operation, all prepared on every connection. */
typedef struct {
    const char *name, *sql;
    int param; /* 0 none, 1 the key, 2 the payload */
} step_t;
static const step_t st_beg = {"beg", "BEGIN", 0}, st_com = {"com", "COMMIT", 0},
                    st_sel = {"sel", "SELECT v FROM kv WHERE k = $1", 1},
                    st_ins = {"ins", "INSERT INTO ev (payload) VALUES ($1)", 2},
                    st_upd = {"upd", "UPDATE kv SET v = md5(v) WHERE k = $1", 1};
/* txn: a registry operation's shape (read, write, write in one transaction). */
static const step_t *const op_steps[3][5] = {
    {&st_sel}, {&st_ins}, {&st_beg, &st_sel, &st_ins, &st_upd, &st_com}};
static const int op_nsteps[3] = {1, 1, 5};
static const char *mode_names[] = {"sync", "async", "pipeline", "worker"};

typedef struct req_s {
    struct req_s *next;
    uint64_t t0; /* submission, ns */
    int64_t key;
    int failed;
    int step; /* txn: the statement being run (async) */
    char keybuf[24];
} req_t;

static struct {
    const char *url;
    int mode, op, inflight, conns, workers, rows, setup;
    double seconds, warmup;
} opt = {NULL, M_ASYNC, OP_SELECT, 1, 1, 1, 10000, 0, 2.0, 0.5};

static struct {
    uint64_t t_start, t_measure, t_end; /* ns */
    int stopping;
    size_t outstanding; /* submitted, not completed */
    double *lat;        /* µs of the measured requests */
    size_t lat_n, lat_cap;
    uint64_t errors;
    uint64_t rng;
    req_t *waiting, *waiting_tail; /* async/pipeline: no connection free */
    double loop_cpu0, proc_cpu0, loop_cpu1, proc_cpu1;
} B;

static const char payload[] =
    "{\"event\":\"bench\",\"pad\":\"0123456789abcdef0123456789abcdef0123456789"
    "abcdef0123456789\"}";

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_s(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, PGconn *pg)
{
    fprintf(stderr, "pgloop: %s: %s\n", what, pg ? PQerrorMessage(pg) : strerror(errno));
    exit(1);
}

static uint64_t rnd(void)
{ /* xorshift64 */
    B.rng ^= B.rng << 13;
    B.rng ^= B.rng >> 7;
    B.rng ^= B.rng << 17;
    return B.rng;
}

static PGconn *connect_prepared(void)
{
    PGconn *pg = PQconnectdb(opt.url);
    if (PQstatus(pg) != CONNECTION_OK) die("connect", pg);
    const step_t *all[] = {&st_beg, &st_com, &st_sel, &st_ins, &st_upd};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        PGresult *r = PQprepare(pg, all[i]->name, all[i]->sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) die(all[i]->sql, pg);
        PQclear(r);
    }
    return pg;
}

/* Statement i of q's operation: its name, and its parameter (n is 0 or 1). */
static const char *step_args(req_t *q, int i, const char **param, int *n)
{
    const step_t *st = op_steps[opt.op][i];
    *n = st->param ? 1 : 0;
    if (st->param == 2) {
        *param = payload;
    } else if (st->param == 1) {
        snprintf(q->keybuf, sizeof q->keybuf, "%lld", (long long)q->key);
        *param = q->keybuf;
    }
    return st->name;
}

/* Every statement answers one row (SELECT by key) or none. */
static int result_ok(PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    return st == PGRES_COMMAND_OK || (st == PGRES_TUPLES_OK && PQntuples(r) == 1);
}

/* Runs q's whole operation with blocking calls (sync and worker modes). */
static void run_blocking(PGconn *pg, req_t *q)
{
    for (int i = 0; i < op_nsteps[opt.op]; i++) {
        const char *param = NULL;
        int n;
        const char *name = step_args(q, i, &param, &n);
        PGresult *r = PQexecPrepared(pg, name, n, &param, NULL, NULL, 0);
        if (!result_ok(r)) q->failed = 1;
        PQclear(r);
    }
}

/* Sends statement i of q (async and pipeline modes). */
static void send_step(PGconn *pg, req_t *q, int i)
{
    const char *param = NULL;
    int n;
    const char *name = step_args(q, i, &param, &n);
    if (!PQsendQueryPrepared(pg, name, n, &param, NULL, NULL, 0)) die("send", pg);
}

/* ---- the closed loop: every completion submits the next request --------------------- */

static void submit(req_t *q);

static req_t *req_new(void)
{
    req_t *q = calloc(1, sizeof *q);
    if (!q) die("calloc", NULL);
    q->key = (int64_t)(rnd() % (uint64_t)opt.rows) + 1;
    q->t0 = now_ns();
    return q;
}

static void complete(req_t *q)
{ /* on the loop thread */
    uint64_t t = now_ns();
    B.outstanding--;
    if (q->failed) B.errors++;
    if (q->t0 >= B.t_measure && t <= B.t_end && !q->failed) {
        if (B.lat_n == B.lat_cap) {
            B.lat_cap = B.lat_cap ? B.lat_cap * 2 : 65536;
            B.lat = realloc(B.lat, B.lat_cap * sizeof *B.lat);
            if (!B.lat) die("realloc", NULL);
        }
        B.lat[B.lat_n++] = (double)(t - q->t0) / 1e3;
    }
    free(q);
    if (t < B.t_end && opt.mode != M_SYNC) {
        submit(req_new());
    } else if (t >= B.t_end && !B.stopping) {
        B.stopping = 1;
        B.loop_cpu1 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
        B.proc_cpu1 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
    }
}

/* ---- async and pipeline: libpq's non-blocking API on uv_poll ------------------------- */

typedef struct {
    PGconn *pg;
    uv_poll_t poll;
    int events;         /* what poll watches now */
    req_t *head, *tail; /* sent, results not yet read (oldest first) */
    int depth;          /* how many are sent */
    int closing;
} conn_t;

static conn_t *conns;

static void conn_watch(conn_t *c);
static void conn_send(conn_t *c, req_t *q);

static void on_poll(uv_poll_t *h, int status, int events)
{
    conn_t *c = h->data;
    if (status < 0) {
        fprintf(stderr, "pgloop: poll: %s\n", uv_strerror(status));
        exit(1);
    }
    if (events & UV_WRITABLE) {
        if (PQflush(c->pg) < 0) die("flush", c->pg);
    }
    if (events & UV_READABLE) {
        if (!PQconsumeInput(c->pg)) die("consume", c->pg);
        while (c->head && !PQisBusy(c->pg)) {
            PGresult *r = PQgetResult(c->pg);
            req_t *q = c->head;
            if (opt.mode == M_PIPELINE) {
                if (!r) continue; /* the end of one query's results; its Sync follows */
                ExecStatusType st = PQresultStatus(r);
                if (st == PGRES_PIPELINE_SYNC) {
                    c->head = q->next;
                    if (!c->head) c->tail = NULL;
                    c->depth--;
                    PQclear(r);
                    complete(q);
                    continue;
                }
                if (!result_ok(r)) q->failed = 1;
                PQclear(r);
            } else {
                if (r) { /* a result; NULL follows when the query is done */
                    if (!result_ok(r)) q->failed = 1;
                    PQclear(r);
                    continue;
                }
                if (++q->step < op_nsteps[opt.op]) { /* txn: its next statement */
                    send_step(c->pg, q, q->step);
                    continue;
                }
                c->head = q->next;
                if (!c->head) c->tail = NULL;
                c->depth--;
                complete(q);
            }
        }
    }
    /* A connection with room takes requests that waited for one. */
    int room = opt.mode == M_PIPELINE ? opt.inflight : 1;
    while (B.waiting && c->depth < room) {
        req_t *q = B.waiting;
        B.waiting = q->next;
        if (!B.waiting) B.waiting_tail = NULL;
        q->next = NULL;
        conn_send(c, q); /* still counted in B.outstanding */
    }
    conn_watch(c);
}

static void conn_watch(conn_t *c)
{
    int want = 0;
    if (c->depth > 0) want |= UV_READABLE;
    if (PQisBusy(c->pg) || c->depth > 0) {
        int f = PQflush(c->pg);
        if (f < 0) die("flush", c->pg);
        if (f == 1) want |= UV_WRITABLE;
    }
    if (want == c->events) return;
    c->events = want;
    if (want)
        uv_poll_start(&c->poll, want, on_poll);
    else
        uv_poll_stop(&c->poll);
}

static void conn_send(conn_t *c, req_t *q)
{
    if (opt.mode == M_PIPELINE) {
        /* Every statement at once, one Sync: the transaction's statements
         * cannot depend on each other's results (optimistic for txn). */
        for (int i = 0; i < op_nsteps[opt.op]; i++)
            send_step(c->pg, q, i);
        if (!PQpipelineSync(c->pg)) die("sync", c->pg);
    } else {
        send_step(c->pg, q, 0);
    }
    q->next = NULL;
    if (c->tail)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
    c->depth++;
    conn_watch(c);
}

static int rr; /* round robin over connections */

static void submit_async(req_t *q)
{
    int room = opt.mode == M_PIPELINE ? opt.inflight : 1;
    for (int i = 0; i < opt.conns && !B.waiting; i++) { /* FIFO behind waiting ones */
        conn_t *c = &conns[(rr + i) % opt.conns];
        if (c->depth < room) {
            rr = (rr + i + 1) % opt.conns;
            conn_send(c, q);
            return;
        }
    }
    q->next = NULL; /* every connection is full: wait on the loop */
    if (B.waiting_tail)
        B.waiting_tail->next = q;
    else
        B.waiting = q;
    B.waiting_tail = q;
}

/* ---- worker: blocking calls on threads, a queue each way ----------------------------- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    req_t *head, *tail; /* to the workers */
    req_t *done;        /* back to the loop (any order) */
    int stop;
    uv_async_t wake;
    pthread_t *threads;
} W = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, NULL, 0, {0}, NULL};

static void *worker_main(void *arg)
{
    PGconn *pg = arg;
    for (;;) {
        pthread_mutex_lock(&W.mu);
        while (!W.head && !W.stop)
            pthread_cond_wait(&W.cv, &W.mu);
        if (W.stop) {
            pthread_mutex_unlock(&W.mu);
            break;
        }
        req_t *q = W.head;
        W.head = q->next;
        if (!W.head) W.tail = NULL;
        pthread_mutex_unlock(&W.mu);

        run_blocking(pg, q);

        pthread_mutex_lock(&W.mu);
        q->next = W.done;
        W.done = q;
        pthread_mutex_unlock(&W.mu);
        uv_async_send(&W.wake);
    }
    PQfinish(pg);
    return NULL;
}

static void on_done(uv_async_t *h)
{
    pthread_mutex_lock(&W.mu);
    req_t *q = W.done;
    W.done = NULL;
    pthread_mutex_unlock(&W.mu);
    while (q) {
        req_t *next = q->next;
        complete(q);
        q = next;
    }
}

static void submit_worker(req_t *q)
{
    q->next = NULL;
    pthread_mutex_lock(&W.mu);
    if (W.tail)
        W.tail->next = q;
    else
        W.head = q;
    W.tail = q;
    pthread_cond_signal(&W.cv);
    pthread_mutex_unlock(&W.mu);
}

static void submit(req_t *q)
{
    B.outstanding++;
    if (opt.mode == M_WORKER)
        submit_worker(q);
    else
        submit_async(q);
}

/* ---- the end of a run ------------------------------------------------------------- */

static uv_check_t finisher;
static uv_timer_t measure_timer;

static void on_measure(uv_timer_t *h)
{
    B.loop_cpu0 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
    B.proc_cpu0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void on_check(uv_check_t *h)
{
    if (!B.stopping || B.outstanding > 0) return;
    if (opt.mode == M_WORKER) {
        pthread_mutex_lock(&W.mu);
        W.stop = 1;
        pthread_cond_broadcast(&W.cv);
        pthread_mutex_unlock(&W.mu);
        for (int i = 0; i < opt.workers; i++)
            pthread_join(W.threads[i], NULL);
    }
    uv_walk(h->loop, close_walk, NULL);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (!B.lat_n) return 0;
    size_t i = (size_t)(p * (double)(B.lat_n - 1) + 0.5);
    return B.lat[i];
}

static void report(void)
{
    qsort(B.lat, B.lat_n, sizeof *B.lat, cmp_double);
    double secs = (double)(B.t_end - B.t_measure) / 1e9;
    double n = B.lat_n ? (double)B.lat_n : 1;
    printf("{\"mode\": \"%s\", \"op\": \"%s\", \"inflight\": %d, \"conns\": %d, \"workers\": %d, "
           "\"ops\": %zu, \"seconds\": %.3f, \"ops_per_s\": %.0f, \"p50_us\": %.1f, "
           "\"p99_us\": %.1f, \"max_us\": %.1f, \"loop_cpu_us_per_op\": %.2f, "
           "\"proc_cpu_us_per_op\": %.2f, \"errors\": %llu}\n",
           mode_names[opt.mode], op_names[opt.op], opt.inflight,
           opt.mode == M_WORKER ? opt.workers : opt.conns, opt.mode == M_WORKER ? opt.workers : 0,
           B.lat_n, secs, (double)B.lat_n / secs, pct(0.50), pct(0.99),
           B.lat_n ? B.lat[B.lat_n - 1] : 0.0, (B.loop_cpu1 - B.loop_cpu0) * 1e6 / n,
           (B.proc_cpu1 - B.proc_cpu0) * 1e6 / n, (unsigned long long)B.errors);
}

/* ---- sync: the loop thread blocks on each round trip ------------------------------- */

static void start_clock(void) /* once every connection is made */
{
    B.t_start = now_ns();
    B.t_measure = B.t_start + (uint64_t)(opt.warmup * 1e9);
    B.t_end = B.t_measure + (uint64_t)(opt.seconds * 1e9);
}

static void run_sync(void)
{
    PGconn *pg = connect_prepared();
    start_clock();
    B.loop_cpu0 = -1;
    for (;;) {
        uint64_t t = now_ns();
        if (t >= B.t_measure && B.loop_cpu0 < 0) {
            B.loop_cpu0 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
            B.proc_cpu0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
        }
        if (t >= B.t_end) break;
        req_t *q = req_new();
        run_blocking(pg, q);
        B.outstanding++;
        complete(q);
    }
    PQfinish(pg);
}

/* ---- setup -------------------------------------------------------------------------- */

static void exec_or_die(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) die(sql, pg);
    PQclear(r);
}

static void run_setup(void)
{
    PGconn *pg = PQconnectdb(opt.url);
    if (PQstatus(pg) != CONNECTION_OK) die("connect", pg);
    char sql[256];
    exec_or_die(pg, "DROP TABLE IF EXISTS kv, ev");
    exec_or_die(pg, "CREATE TABLE kv (k bigint PRIMARY KEY, v text NOT NULL)");
    exec_or_die(pg, "CREATE TABLE ev (id bigserial PRIMARY KEY, payload text NOT NULL)");
    snprintf(sql, sizeof sql,
             "INSERT INTO kv SELECT g, md5(g::text) || md5((g + 1)::text) "
             "FROM generate_series(1, %d) g",
             opt.rows);
    exec_or_die(pg, sql);
    exec_or_die(pg, "VACUUM ANALYZE kv");
    PQfinish(pg);
}

/* ---- main ---------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: realm-pgloop --url URL [--setup] [--mode sync|async|pipeline|worker]\n"
                    "         [--op select|insert|txn] [--inflight N] [--conns C] [--workers W]\n"
                    "         [--seconds S] [--warmup S] [--rows R]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--setup")) {
            opt.setup = 1;
            continue;
        }
        if (!v) usage();
        i++;
        if (!strcmp(a, "--url"))
            opt.url = v;
        else if (!strcmp(a, "--mode")) {
            opt.mode = -1;
            for (int m = 0; m < 4; m++)
                if (!strcmp(v, mode_names[m])) opt.mode = m;
            if (opt.mode < 0) usage();
        } else if (!strcmp(a, "--op")) {
            opt.op = -1;
            for (int o = 0; o < 3; o++)
                if (!strcmp(v, op_names[o])) opt.op = o;
            if (opt.op < 0) usage();
        } else if (!strcmp(a, "--inflight"))
            opt.inflight = atoi(v);
        else if (!strcmp(a, "--conns"))
            opt.conns = atoi(v);
        else if (!strcmp(a, "--workers"))
            opt.workers = atoi(v);
        else if (!strcmp(a, "--seconds"))
            opt.seconds = atof(v);
        else if (!strcmp(a, "--warmup"))
            opt.warmup = atof(v);
        else if (!strcmp(a, "--rows"))
            opt.rows = atoi(v);
        else
            usage();
    }
    if (!opt.url || opt.inflight < 1 || opt.conns < 1 || opt.workers < 1 || opt.rows < 1) usage();
    if (opt.setup) {
        run_setup();
        return 0;
    }
    if (opt.mode == M_SYNC) opt.inflight = opt.conns = 1;
    B.rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();

    if (opt.mode == M_SYNC) {
        run_sync();
        B.loop_cpu1 = B.loop_cpu1 ? B.loop_cpu1 : cpu_s(CLOCK_THREAD_CPUTIME_ID);
        B.proc_cpu1 = B.proc_cpu1 ? B.proc_cpu1 : cpu_s(CLOCK_PROCESS_CPUTIME_ID);
        report();
        return 0;
    }

    uv_loop_t *loop = uv_default_loop();
    uv_check_init(loop, &finisher);
    uv_check_start(&finisher, on_check);
    if (opt.mode == M_WORKER) {
        uv_async_init(loop, &W.wake, on_done);
        W.threads = calloc((size_t)opt.workers, sizeof *W.threads);
        for (int i = 0; i < opt.workers; i++)
            if (pthread_create(&W.threads[i], NULL, worker_main, connect_prepared()))
                die("pthread_create", NULL);
    } else {
        conns = calloc((size_t)opt.conns, sizeof *conns);
        for (int i = 0; i < opt.conns; i++) {
            conn_t *c = &conns[i];
            c->pg = connect_prepared();
            if (PQsetnonblocking(c->pg, 1)) die("nonblocking", c->pg);
            if (opt.mode == M_PIPELINE && !PQenterPipelineMode(c->pg)) die("pipeline", c->pg);
            uv_poll_init(loop, &c->poll, PQsocket(c->pg));
            c->poll.data = c;
        }
    }
    /* CPU is counted from the start of measurement: a timer fires then. */
    start_clock();
    uv_update_time(loop);
    uv_timer_init(loop, &measure_timer);
    uv_timer_start(&measure_timer, on_measure, (uint64_t)(opt.warmup * 1e3), 0);
    for (int i = 0; i < opt.inflight; i++)
        submit(req_new());
    uv_run(loop, UV_RUN_DEFAULT);
    if (conns)
        for (int i = 0; i < opt.conns; i++)
            PQfinish(conns[i].pg);
    report();
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
