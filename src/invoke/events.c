/*
 * events.c - Event invocations: the durable queue's submission and its
 * dispatcher (see invoker.h), with the queue on a worker of its own.
 *
 * THE EVENTS WORKER: the queue (queue/queue.h: SQLite's events.db, or the
 * shared PostgreSQL database) is used only by jobs on iv->eq, a store queue
 * (storeq/) whose thread runs them one at a time in order; the loop submits
 * a job and goes on, and acts in the job's done callback. So the loop never
 * waits for the queue's database. Outcomes (done, retry, fail, defer,
 * release, park) are jobs that nobody waits for; their order is kept (one
 * worker, FIFO), so an outcome always lands after the take that leased its
 * event.
 *
 * THE DISPATCHER (events_kick) takes due events in one job, at most
 * EVENT_KICK_BUDGET and never more than the free slots (--concurrency less
 * the events running or being prepared), then prepares each: an event past
 * Lambda's maximum age (6 hours) goes to the failed list (EventAgeExceeded);
 * else its function is resolved (from the invoker's cache, or on the
 * registry's worker); reserved concurrency 0 parks it (queue/queue.h)
 * without reading its payload; else the payload is read (a job) and the
 * event starts. Its end is an outcome job: removed, retried (doubling
 * delays, --event-retries times), deferred (throttled), released (shutting
 * down) or failed. A take that filled its budget asks for another kick on
 * the next loop turn; else the timer is set for the next due event (or the
 * next look at parked functions, parked_check: at most once a second and
 * only when the registry's generation moved).
 *
 * SUBMISSION resolves the function on the registry's worker, then pushes
 * the event (a job), and only then answers: a 202 is never sent for an
 * event the queue did not take.
 *
 * CLOSE: the worker finishes every job it was given (so the outcomes of
 * events that ended are written), then the queue closes on it.
 */
#include "invoke/internal.h"

#include "base/alloc.h"
#include "base/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- jobs on the events worker ---- */

typedef enum {
    Q_PUSH,
    Q_TAKE,
    Q_LOAD,
    Q_DONE,
    Q_RETRY,
    Q_FAIL,
    Q_DEFER,
    Q_RELEASE,
    Q_PARK,
    Q_PARKED,
    Q_UNPARK,
    Q_FAILED,
    Q_FORGET,
    Q_COUNT,
    Q_NOOP, /* only to answer on a later turn */
} qop_t;

typedef struct qjob_s qjob_t;
typedef void (*qjob_then_cb)(qjob_t *j, int status);

struct qjob_s {
    realm_invoker_t *iv;
    qop_t op;
    int64_t id, due_ms, now_ms;
    char *tenant, *function, *qualifier, *type, *message;
    const char *payload; /* Q_PUSH: borrowed from the submission */
    size_t len, want;
    json_t *list; /* Q_UNPARK in; Q_PARKED, Q_FAILED out */
    /* out */
    int64_t rc;
    size_t n, pending;
    int64_t next_due;
    int is_unreachable;
    realm_queue_item_t *items; /* Q_TAKE */
    realm_queue_item_t item;   /* Q_LOAD: the event, its payload read */
    char err[256];
    qjob_then_cb then; /* on the loop, or NULL */
    void *data;
};

static void events_kick(realm_invoker_t *iv);
static void events_kick_soon(realm_invoker_t *iv);

static void qjob_work(void *data)
{
    qjob_t *j = data;
    realm_queue_t *q = j->iv->queue;
    switch (j->op) {
    case Q_PUSH:
        j->rc = realm_queue_push(q, j->tenant, j->function, j->qualifier, j->payload, j->len,
                                 j->now_ms, j->err, sizeof(j->err));
        break;
    case Q_TAKE:
        j->items = realm_calloc(j->want ? j->want : 1, sizeof(*j->items));
        j->n = realm_queue_take_due(q, j->now_ms, j->items, j->want);
        j->next_due = realm_queue_next_due(q);
        j->pending = realm_queue_pending(q);
        break;
    case Q_LOAD:
        j->rc = realm_queue_load_payload(q, &j->item);
        break;
    case Q_DONE:
        realm_queue_done(q, j->id);
        break;
    case Q_RETRY:
        realm_queue_retry(q, j->id, j->due_ms, j->message);
        break;
    case Q_FAIL:
        realm_queue_fail(q, j->id, j->type, j->message, j->now_ms);
        break;
    case Q_DEFER:
        realm_queue_defer(q, j->id, j->due_ms);
        break;
    case Q_RELEASE:
        realm_queue_release(q, j->id);
        break;
    case Q_PARK:
        realm_queue_park(q, j->id, j->due_ms);
        break;
    case Q_PARKED:
        j->list = realm_queue_parked(q);
        break;
    case Q_UNPARK: {
        size_t i;
        json_t *pair;
        json_array_foreach(j->list, i, pair)
        {
            const char *t = json_string_value(json_array_get(pair, 0));
            const char *f = json_string_value(json_array_get(pair, 1));
            int64_t n = realm_queue_unpark(q, t, f, j->now_ms);
            if (n > 0)
                realm_info("%" PRId64 " parked event%s of %s may run again", n, n == 1 ? "" : "s",
                           f);
        }
        break;
    }
    case Q_FAILED:
        j->list = realm_queue_list_failed(q, j->tenant, j->function, 100);
        j->pending = realm_queue_pending_of(q, j->tenant, j->function);
        break;
    case Q_FORGET:
        realm_queue_forget(q, j->tenant, j->function);
        break;
    case Q_COUNT:
        j->pending = realm_queue_pending(q);
        break;
    case Q_NOOP:
        break;
    }
    j->is_unreachable = realm_queue_unreachable(q);
}

static void qjob_free(qjob_t *j)
{
    free(j->tenant);
    free(j->function);
    free(j->qualifier);
    free(j->type);
    free(j->message);
    json_decref(j->list);
    realm_queue_item_dispose(&j->item);
    if (j->items) {
        for (size_t i = 0; i < j->n; i++)
            realm_queue_item_dispose(&j->items[i]);
        free(j->items);
    }
    free(j);
}

static void maybe_close_eq(realm_invoker_t *iv);

static void qjob_done(void *data, int status)
{
    qjob_t *j = data;
    realm_invoker_t *iv = j->iv;
    iv->eq_jobs--;
    if (j->then) j->then(j, status);
    qjob_free(j);
    maybe_close_eq(iv);
}

static qjob_t *qjob_new(realm_invoker_t *iv, qop_t op)
{
    qjob_t *j = realm_calloc(1, sizeof(*j));
    j->iv = iv;
    j->op = op;
    return j;
}

/*
 * Submits j; then(j, status) comes on the loop (status 0, or the reason the
 * work did not run). On a refused submit (the worker full or gone) then is
 * called at once with the reason, and j freed: callers that must not be
 * called back inside their own call submit only from callbacks.
 */
static void qjob_submit(qjob_t *j, qjob_then_cb then, void *data)
{
    realm_invoker_t *iv = j->iv;
    j->then = then;
    j->data = data;
    int rc = iv->eq && !iv->is_eq_closed ? realm_storeq_submit(iv->eq, qjob_work, qjob_done, j)
                                         : REALM_ERR_SHUTTING_DOWN;
    if (rc == 0) {
        iv->eq_jobs++;
        return;
    }
    if (then) then(j, rc);
    qjob_free(j);
}

/* An outcome of a taken event (nobody waits for it). */
static void outcome(realm_invoker_t *iv, qop_t op, int64_t id, int64_t due_ms, const char *type,
                    const char *message)
{
    qjob_t *j = qjob_new(iv, op);
    j->id = id;
    j->due_ms = due_ms;
    j->now_ms = realm_invoker_wall_ms();
    j->type = realm_strdup_opt(type);
    j->message = realm_strdup_opt(message);
    qjob_submit(j, NULL, NULL);
}

/* ---- running events ---- */

typedef struct {
    realm_invoker_t *iv;
    realm_queue_item_t item;
    resolved_t r; /* from preparation until the start */
    int has_r;
    char tenant[80];
} event_t;

static void event_free(event_t *ev)
{
    if (ev->has_r) realm_invoker_resolved_dispose(&ev->r);
    realm_queue_item_dispose(&ev->item);
    free(ev);
}

static void event_retry_or_fail(realm_invoker_t *iv, const realm_queue_item_t *it, const char *type,
                                const char *msg)
{
    int64_t delay;
    if (realm_invoker_event_verdict(iv->o.cfg, it->attempts, &delay) == REALM_EVENT_RETRY) {
        outcome(iv, Q_RETRY, it->id, realm_invoker_wall_ms() + delay, NULL, msg);
        realm_info("event %" PRId64 " of %s failed (%s); retry %d of %" PRIu64 " in %" PRId64 " ms",
                   it->id, it->function, type, it->attempts + 1, iv->o.cfg->event_retries, delay);
    } else {
        outcome(iv, Q_FAIL, it->id, 0, type, msg);
        realm_warn("event %" PRId64 " of %s failed for good after %d attempts: %s", it->id,
                   it->function, it->attempts + 1, type);
    }
}

/* An event past Lambda's maximum age is dropped to the failed list. 1 if it was. */
static int event_expired(realm_invoker_t *iv, const realm_queue_item_t *it, int64_t now)
{
    if (!realm_invoker_event_is_expired(it->enqueued_ms, now)) return 0;
    outcome(iv, Q_FAIL, it->id, 0, "EventAgeExceeded",
            "The event was not run within 6 hours (throttled or reserved concurrency 0).");
    realm_warn("event %" PRId64 " of %s dropped: older than 6 hours", it->id, it->function);
    return 1;
}

static void on_event_chunk(realm_inv_t *inv, const void *bytes, size_t len, void *data)
{
    (void)inv;
    (void)bytes;
    (void)len;
    (void)data;
}

static void on_event_done(realm_inv_t *inv, const realm_inv_result_t *r, void *data)
{
    (void)inv;
    event_t *ev = data;
    realm_invoker_t *iv = ev->iv;
    iv->events_running--;
    switch (r->status) {
    case REALM_INV_OK:
        outcome(iv, Q_DONE, ev->item.id, 0, NULL, NULL);
        break;
    case REALM_INV_THROTTLED:
        /* Not the function's fault: try again later without counting it, for
         * as long as Lambda keeps an event (6 hours). */
        if (!event_expired(iv, &ev->item, realm_invoker_wall_ms()))
            outcome(iv, Q_DEFER, ev->item.id, realm_invoker_wall_ms() + THROTTLED_RETRY_MS, NULL,
                    NULL);
        break;
    case REALM_INV_FN_ERROR: {
        realm_buf_t msg;
        realm_buf_init(&msg);
        realm_buf_append(&msg, r->payload, r->payload_len > 1024 ? 1024 : r->payload_len);
        event_retry_or_fail(iv, &ev->item, r->error_type ? r->error_type : "Unhandled",
                            msg.data ? msg.data : "");
        realm_buf_dispose(&msg);
        break;
    }
    default:
        if (iv->is_draining)
            outcome(iv, Q_RELEASE, ev->item.id, 0, NULL, NULL);
        else
            event_retry_or_fail(iv, &ev->item, "ServiceException",
                                r->error_message ? r->error_message : "");
    }
    event_free(ev);
    if (!iv->is_draining) events_kick_soon(iv);
}

/* An event that will not start now: its slot is free again. */
static void prepared_not_started(realm_invoker_t *iv, event_t *ev)
{
    iv->events_preparing--;
    event_free(ev);
    if (!iv->is_draining) events_kick_soon(iv);
}

/* The payload was read: the event runs (unless the server is stopping). */
static void loaded(qjob_t *j, int status)
{
    event_t *ev = j->data;
    realm_invoker_t *iv = ev->iv;
    if (status != 0 || j->rc != 0 || iv->is_draining) {
        /* Gone meanwhile (forgotten), a storage error, or stopping: later. */
        if (iv->is_draining)
            outcome(iv, Q_RELEASE, ev->item.id, 0, NULL, NULL);
        else if (status == 0)
            outcome(iv, Q_DEFER, ev->item.id, realm_invoker_wall_ms() + THROTTLED_RETRY_MS, NULL,
                    NULL);
        prepared_not_started(iv, ev);
        return;
    }
    /* The job's item holds the payload now. */
    realm_queue_item_dispose(&ev->item);
    ev->item = j->item;
    memset(&j->item, 0, sizeof(j->item));
    iv->events_preparing--;
    iv->events_running++;
    const char *qualifier = ev->item.qualifier && ev->item.qualifier[0] ? ev->item.qualifier : NULL;
    /* Lambda queues an Event past reserved concurrency: it waits its turn. */
    /* The node whose dispatcher claimed it runs it (every node claims what it has room for). */
    realm_inv_req_t req = {.payload = ev->item.payload,
                           .payload_len = ev->item.payload_len,
                           .waits_past_reserved = 1,
                           .no_placement = 1};
    /* A streamed answer is read to its end and dropped, as a whole one is. */
    static const realm_inv_sink_t sink = {.on_chunk = on_event_chunk, .on_done = on_event_done};
    realm_invoker_start_resolved(iv, &ev->r, qualifier, &req, &sink, ev);
    realm_invoker_resolved_dispose(&ev->r);
    ev->has_r = 0;
}

/* The function was resolved: park, or read the payload and run. */
static void resolved_event(realm_invoker_t *iv, event_t *ev)
{
    if (ev->r.v.reserved == 0) {
        /* It may not run at all: asleep until its function changes or it expires. */
        outcome(iv, Q_PARK, ev->item.id, ev->item.enqueued_ms + EVENT_MAX_AGE_MS, NULL, NULL);
        iv->has_parked = 1;
        prepared_not_started(iv, ev);
        return;
    }
    qjob_t *j = qjob_new(iv, Q_LOAD);
    j->item = ev->item; /* the job reads the payload into its copy */
    j->item.tenant = realm_strdup(ev->item.tenant);
    j->item.function = realm_strdup(ev->item.function);
    j->item.qualifier = realm_strdup_opt(ev->item.qualifier);
    j->item.payload = NULL;
    qjob_submit(j, loaded, ev);
}

static void on_event_resolved(realm_invoker_t *iv, resolved_t *r, const realm_error_t *e,
                              void *data)
{
    event_t *ev = data;
    if (iv->is_draining) {
        outcome(iv, Q_RELEASE, ev->item.id, 0, NULL, NULL);
        prepared_not_started(iv, ev);
        return;
    }
    if (!r) {
        if (realm_err_http_status(e->code) == 503) /* the registry is out of reach: later */
            outcome(iv, Q_DEFER, ev->item.id, realm_invoker_wall_ms() + THROTTLED_RETRY_MS, NULL,
                    NULL);
        else
            outcome(iv, Q_FAIL, ev->item.id, 0, realm_err_aws_type(e->code), e->message);
        prepared_not_started(iv, ev);
        return;
    }
    /* Keep it (fn.tenant must point into the event, which lives on). */
    ev->r = *r;
    ev->r.fn.tenant = ev->tenant;
    ev->r.fn.name = ev->r.v.name;
    ev->r.fn.version = ev->r.v.version;
    ev->r.fn.arn = ev->r.arn;
    ev->r.fn.code_dir = ev->r.code_dir;
    ev->r.fn.env = (const char *const *)ev->r.env;
    memset(r, 0, sizeof(*r)); /* moved */
    ev->has_r = 1;
    resolved_event(iv, ev);
}

/* A taken event: prepared (see DESIGN), then run. */
static void prepare_event(realm_invoker_t *iv, realm_queue_item_t *it, int64_t now)
{
    if (event_expired(iv, it, now)) {
        realm_queue_item_dispose(it);
        return;
    }
    event_t *ev = realm_calloc(1, sizeof(*ev));
    ev->iv = iv;
    ev->item = *it;
    memset(it, 0, sizeof(*it));
    snprintf(ev->tenant, sizeof(ev->tenant), "%s", ev->item.tenant);
    iv->events_preparing++;
    const char *qualifier = ev->item.qualifier && ev->item.qualifier[0] ? ev->item.qualifier : NULL;
    if (realm_invoker_cached(iv, ev->tenant, ev->item.function, qualifier, &ev->r)) {
        ev->has_r = 1;
        resolved_event(iv, ev);
        return;
    }
    if (realm_invoker_resolve_async(iv, ev->tenant, ev->item.function, qualifier, on_event_resolved,
                                    ev) != 0) {
        outcome(iv, Q_DEFER, ev->item.id, now + THROTTLED_RETRY_MS, NULL, NULL);
        prepared_not_started(iv, ev);
    }
}

/* ---- parked functions ---- */

/* On the registry's worker: which parked functions may run again. */
static void parked_resolve_work(realm_registry_t *reg, void *data)
{
    qjob_t *j = data; /* j->list in: the parked pairs; out: those to wake */
    json_t *wake = json_array();
    size_t i;
    json_t *pair;
    json_array_foreach(j->list, i, pair)
    {
        realm_fn_version_t v;
        realm_error_t e;
        const char *t = json_string_value(json_array_get(pair, 0));
        const char *f = json_string_value(json_array_get(pair, 1));
        int is_still = 0;
        if (realm_registry_resolve(reg, t, f, NULL, 0.5, &v, &e) == 0) {
            is_still = v.reserved == 0;
            realm_fn_version_dispose(&v);
        } else if (realm_err_http_status(e.code) == 503) {
            is_still = 1; /* unknown now: look again later */
        }
        if (is_still)
            j->n++;
        else
            json_array_append(wake, pair);
    }
    json_decref(j->list);
    j->list = wake;
}

static void on_event_timer(uv_timer_t *t);

/* Some function has parked events: the dispatcher looks again within PARK_CHECK_MS. */
static void look_again_soon(realm_invoker_t *iv)
{
    if (iv->is_draining) return;
    if (!uv_is_active((uv_handle_t *)&iv->timer) || uv_timer_get_due_in(&iv->timer) > PARK_CHECK_MS)
        uv_timer_start(&iv->timer, on_event_timer, PARK_CHECK_MS, 0);
}

static void parked_resolved(void *data, int status)
{
    qjob_t *j = data;
    realm_invoker_t *iv = j->iv;
    /* The timer may have been set before this answer (the take runs beside
     * it): with parked events left, it must come back within a second. */
    if (status == 0 && j->n) {
        iv->has_parked = 1;
        look_again_soon(iv);
    }
    if (status == 0 && json_array_size(j->list) && !iv->is_draining) {
        qjob_t *u = qjob_new(iv, Q_UNPARK);
        u->list = json_incref(j->list);
        u->now_ms = realm_invoker_wall_ms();
        qjob_submit(u, NULL, NULL);
        events_kick_soon(iv);
    }
    iv->is_parked_checking = 0;
    json_decref(j->list);
    free(j);
}

static void parked_listed(qjob_t *j, int status)
{
    realm_invoker_t *iv = j->iv;
    if (status != 0 || !j->list || iv->is_draining) { /* a storage error (logged): next time */
        iv->is_parked_checking = 0;
        if (status == 0 && !j->list) look_again_soon(iv);
        return;
    }
    iv->is_parked_checked = 1;
    iv->parked_gen = (uint64_t)j->due_ms;
    iv->has_parked = 0;
    if (json_array_size(j->list) == 0) {
        iv->is_parked_checking = 0;
        return;
    }
    qjob_t *r = qjob_new(iv, Q_PARKED); /* a carrier for the registry job */
    r->list = j->list;
    j->list = NULL;
    if (realm_registry_async_submit(iv->o.ra, parked_resolve_work, parked_resolved, r) != 0) {
        json_decref(r->list);
        free(r);
        iv->has_parked = 1;
        iv->is_parked_checking = 0;
        look_again_soon(iv);
    }
}

/*
 * Wakes the parked events of functions that may run again (their reserved
 * concurrency changed, or they are gone). Reads the short list of parked
 * functions only when the registry changed since the last look.
 */
static void parked_check(realm_invoker_t *iv)
{
    uint64_t gen = realm_registry_async_generation(iv->o.ra);
    if (iv->is_parked_checking || (iv->is_parked_checked && gen == iv->parked_gen)) return;
    iv->is_parked_checking = 1;
    qjob_t *j = qjob_new(iv, Q_PARKED);
    j->due_ms = (int64_t)gen; /* the generation this look answers for */
    qjob_submit(j, parked_listed, NULL);
}

/* ---- the dispatcher ---- */

static void on_event_timer(uv_timer_t *t)
{
    events_kick(t->data);
}

static void on_kick_idle(uv_idle_t *h)
{
    realm_invoker_t *iv = h->data;
    uv_idle_stop(&iv->kick_idle);
    events_kick(iv);
}

/* A kick on the next loop turn (many requests in one turn share it). */
static void events_kick_soon(realm_invoker_t *iv)
{
    if (!iv->is_draining) uv_idle_start(&iv->kick_idle, on_kick_idle);
}

static size_t free_slots(const realm_invoker_t *iv)
{
    size_t cap = (size_t)iv->o.cfg->concurrency_limit;
    size_t used = iv->events_running + iv->events_preparing;
    return used >= cap ? 0 : cap - used;
}

/* Sets the timer for the next due event, or the next look at parked functions. */
static void arm_timer(realm_invoker_t *iv, int64_t next)
{
    int64_t wait = next < 0 ? -1 : next - realm_invoker_wall_ms(); /* -1: nothing pending */
    if (next >= 0 && wait < 0) wait = 0;
    /* In a cluster, events taken by a node that died come back when their
     * lease expires, and no local push says so: look now and then anyway. */
    if (iv->look_ms > 0 && (wait < 0 || wait > (int64_t)iv->look_ms)) wait = (int64_t)iv->look_ms;
    if (iv->has_parked && (wait < 0 || wait > PARK_CHECK_MS)) wait = PARK_CHECK_MS;
    if (wait < 0) {
        uv_timer_stop(&iv->timer);
    } else if (wait == 0) {
        /* Due already (time moved on): a turn later, not a 0 ms timer run in this pass. */
        uv_timer_stop(&iv->timer);
        events_kick_soon(iv);
    } else {
        uv_timer_start(&iv->timer, on_event_timer, (uint64_t)wait, 0);
    }
}

static void taken(qjob_t *j, int status)
{
    realm_invoker_t *iv = j->iv;
    iv->is_taking = 0;
    if (status != 0) return;
    iv->pending_known = j->pending;
    for (size_t i = 0; i < j->n; i++)
        prepare_event(iv, &j->items[i], j->now_ms);
    if (iv->is_draining) return;
    if (free_slots(iv) == 0) {
        if (iv->look_ms) /* full: the next look (renewals), or an ending event, kicks */
            uv_timer_start(&iv->timer, on_event_timer, iv->look_ms, 0);
        else
            uv_timer_stop(&iv->timer); /* an ending event kicks again */
    } else if (j->n == j->want) {
        uv_timer_stop(&iv->timer);
        events_kick_soon(iv); /* more may be due: the next turn */
    } else {
        arm_timer(iv, j->next_due);
    }
}

/* Takes what is due, as many as there are free slots (at most a budget). */
static void events_kick(realm_invoker_t *iv)
{
    if (iv->is_draining || iv->is_taking) return;
    parked_check(iv);
    size_t want = free_slots(iv);
    if (want == 0 && iv->look_ms == 0) {
        uv_timer_stop(&iv->timer); /* an ending event kicks again */
        return;
    }
    /* A node of a cluster looks even when full: the take renews the leases
     * of the events it runs (queue.h), which must not lapse while it lives. */
    if (want > EVENT_KICK_BUDGET) want = EVENT_KICK_BUDGET;
    qjob_t *j = qjob_new(iv, Q_TAKE);
    j->want = want;
    j->now_ms = realm_invoker_wall_ms();
    iv->is_taking = 1;
    qjob_submit(j, taken, NULL);
}

void realm_invoker_events_wake(realm_invoker_t *iv)
{
    if (free_slots(iv) > 0) events_kick_soon(iv);
}

void realm_invoker_events_cluster(realm_invoker_t *iv, uint64_t look_ms,
                                  void (*on_pushed)(void *data), void *data)
{
    iv->look_ms = look_ms;
    iv->on_event_pushed = on_pushed;
    iv->on_event_pushed_data = data; /* the next arm_timer looks within look_ms */
}

/* ---- submission ---- */

typedef struct {
    realm_invoker_t *iv;
    realm_invoker_mode_t mode;
    char *tenant, *function, *qualifier;
    char *payload;
    size_t len;
    char version[24];
    realm_invoker_submitted_cb cb;
    void *data;
} submit_t;

static void submit_free(submit_t *sb)
{
    free(sb->tenant);
    free(sb->function);
    free(sb->qualifier);
    free(sb->payload);
    free(sb);
}

static void pushed(qjob_t *j, int status)
{
    submit_t *sb = j->data;
    realm_invoker_t *iv = sb->iv;
    realm_error_t e = {0};
    if (status != 0) {
        realm_error_set(&e, status, "%s", realm_err_message(status));
    } else if (j->rc == REALM_QUEUE_FULL) {
        realm_error_set(&e, REALM_ERR_EVENT_QUEUE_FULL, "%s", j->err);
    } else if (j->rc < 0) {
        /* Not acknowledged: a 202 the database cannot back is never sent. */
        if (j->is_unreachable)
            realm_error_set(&e, REALM_ERR_STORE_UNAVAILABLE,
                            "The event queue's database is unavailable; retry shortly");
        else
            realm_error_set(&e, REALM_ERR_INTERNAL_ERROR, "%s", j->err);
    } else {
        iv->pending_known++;
        events_kick_soon(iv);
        /* The other nodes of a cluster may have room this one lacks. */
        if (iv->on_event_pushed) iv->on_event_pushed(iv->on_event_pushed_data);
    }
    sb->cb(e.code ? NULL : sb->version, e.code ? &e : NULL, sb->data);
    submit_free(sb);
}

static void dry_run_answer(qjob_t *j, int status)
{
    (void)status; /* resolved already: the answer stands */
    submit_t *sb = j->data;
    sb->cb(sb->version, NULL, sb->data);
    submit_free(sb);
}

/* The function resolved: a DryRun answers (on a later turn), an Event is pushed. */
static void submit_go(realm_invoker_t *iv, submit_t *sb, const resolved_t *r)
{
    snprintf(sb->version, sizeof(sb->version), "%s", r->v.version);
    if (sb->mode == REALM_INVOKER_DRY_RUN) {
        qjob_submit(qjob_new(iv, Q_NOOP), dry_run_answer, sb);
        return;
    }
    /* Queued under the function's own name, with the qualifier however it was
     * given (InvokeAsync: none, it runs $LATEST). */
    char name[65], q[129] = "";
    realm_error_t pe;
    snprintf(name, sizeof(name), "%s", r->v.name);
    if (sb->mode == REALM_INVOKER_EVENT &&
        realm_registry_parse_name(realm_registry_async_registry(iv->o.ra), sb->tenant, sb->function,
                                  1, name, q, &pe) != 0)
        q[0] = '\0';
    const char *queued_q = sb->mode == REALM_INVOKER_EVENT && sb->qualifier ? sb->qualifier : q;
    qjob_t *j = qjob_new(iv, Q_PUSH);
    j->tenant = realm_strdup(sb->tenant);
    j->function = realm_strdup(name);
    j->qualifier = realm_strdup(queued_q);
    j->payload = sb->payload;
    j->len = sb->len;
    j->now_ms = realm_invoker_wall_ms();
    qjob_submit(j, pushed, sb);
}

static void submit_resolved(realm_invoker_t *iv, resolved_t *r, const realm_error_t *e, void *data)
{
    submit_t *sb = data;
    if (!r) {
        sb->cb(NULL, e, sb->data);
        submit_free(sb);
        return;
    }
    submit_go(iv, sb, r);
}

int realm_invoker_submit(realm_invoker_t *iv, realm_invoker_mode_t mode, const char *tenant,
                         const char *function, const char *qualifier, const char *payload,
                         size_t len, realm_invoker_submitted_cb cb, void *data, realm_error_t *e)
{
    /* Refused now rather than called back inside this call (the jobs below
     * are then sure to be taken). */
    if (!iv->eq || iv->is_eq_closed || iv->eq_jobs >= EVENTS_MAX_JOBS / 2) {
        int code = !iv->eq || iv->is_eq_closed ? REALM_ERR_SHUTTING_DOWN : REALM_ERR_BACKPRESSURE;
        realm_error_set(e, code, "%s", realm_err_message(code));
        return -1;
    }
    submit_t *sb = realm_calloc(1, sizeof(*sb));
    sb->iv = iv;
    sb->mode = mode;
    sb->tenant = realm_strdup(tenant);
    sb->function = realm_strdup(function);
    sb->qualifier = realm_strdup_opt(qualifier);
    sb->payload = realm_malloc(len + 1);
    if (len) memcpy(sb->payload, payload, len);
    sb->payload[len] = '\0';
    sb->len = len;
    sb->cb = cb;
    sb->data = data;
    resolved_t r;
    if (realm_invoker_cached(iv, sb->tenant, function, qualifier, &r)) {
        submit_go(iv, sb, &r); /* answers on a later turn, in every case */
        realm_invoker_resolved_dispose(&r);
        return 0;
    }
    int rc = realm_invoker_resolve_async(iv, tenant, function, qualifier, submit_resolved, sb);
    if (rc != 0) {
        submit_free(sb);
        realm_error_set(e, rc, "%s", realm_err_message(rc));
        return -1;
    }
    return 0;
}

const char *realm_invoker_throttle_reason(int code)
{
    return code == REALM_ERR_EVENT_QUEUE_FULL ? "EventQueueFull" : "";
}

size_t realm_invoker_events_pending(realm_invoker_t *iv)
{
    return iv->pending_known;
}

/* ---- the failed list, forgetting ---- */

typedef struct {
    realm_invoker_failed_cb cb;
    void *data;
} failed_t;

static void failed_listed(qjob_t *j, int status)
{
    failed_t *f = j->data;
    json_t *list = status == 0 && j->list ? json_incref(j->list) : json_array();
    f->cb(list, (int64_t)j->pending, f->data);
    free(f);
}

int realm_invoker_failed_events(realm_invoker_t *iv, const char *tenant, const char *name,
                                realm_invoker_failed_cb cb, void *data)
{
    if (!iv->eq || iv->is_eq_closed) return -1;
    failed_t *f = realm_malloc(sizeof(*f));
    *f = (failed_t){cb, data};
    qjob_t *j = qjob_new(iv, Q_FAILED);
    j->tenant = realm_strdup(tenant);
    j->function = realm_strdup(name);
    qjob_submit(j, failed_listed, f);
    return 0;
}

void realm_invoker_forget(realm_invoker_t *iv, const char *tenant, const char *name)
{
    qjob_t *j = qjob_new(iv, Q_FORGET);
    j->tenant = realm_strdup(tenant);
    j->function = realm_strdup(name);
    qjob_submit(j, NULL, NULL);
}

realm_event_verdict_t realm_invoker_event_verdict(const realm_config_t *cfg, int attempts,
                                                  int64_t *delay_ms)
{
    if ((uint64_t)attempts < cfg->event_retries) {
        *delay_ms = (int64_t)cfg->event_retry_base_ms << attempts;
        return REALM_EVENT_RETRY;
    }
    *delay_ms = 0;
    return REALM_EVENT_FAIL;
}

int realm_invoker_event_is_expired(int64_t enqueued_ms, int64_t now_ms)
{
    return now_ms - enqueued_ms >= EVENT_MAX_AGE_MS;
}

/* ---- life ---- */

int realm_invoker_events_open(realm_invoker_t *iv, char *err, size_t err_len)
{
    const realm_config_t *cfg = iv->o.cfg;
    char path[4096];
    /* The queue lives where the registry does (--db): the data dir's
     * events.db, or the shared PostgreSQL database. */
    if (cfg->db && strcmp(cfg->db, "sqlite") != 0)
        snprintf(path, sizeof(path), "%s", cfg->db);
    else
        snprintf(path, sizeof(path), "%s/events.db", cfg->data_dir);
    iv->queue = realm_queue_open(path, err, err_len);
    if (!iv->queue) return -1;
    realm_queue_set_lease(iv->queue, (int64_t)cfg->event_lease_ms);
    realm_queue_set_limits(iv->queue, cfg->event_queue_max_per_function,
                           cfg->event_queue_max_per_tenant);
    iv->eq = realm_storeq_new(iv->o.loop, "events", EVENTS_MAX_JOBS);
    if (!iv->eq) {
        realm_queue_close(iv->queue);
        iv->queue = NULL;
        snprintf(err, err_len, "cannot start the event queue's worker thread");
        return -1;
    }
    return 0;
}

static void counted(qjob_t *j, int status)
{
    if (status != 0) return;
    j->iv->pending_known = j->pending;
    if (j->pending)
        realm_info("%zu queued event invocation%s to run", j->pending, j->pending == 1 ? "" : "s");
}

void realm_invoker_events_begin(realm_invoker_t *iv)
{
    /* Reads the count, not the events; the first kick comes on a later turn. */
    qjob_submit(qjob_new(iv, Q_COUNT), counted, NULL);
    events_kick_soon(iv);
}

void realm_invoker_events_stop(realm_invoker_t *iv)
{
    iv->is_draining = 1;
    uv_timer_stop(&iv->timer);
    uv_idle_stop(&iv->kick_idle);
}

static void on_eq_closed(void *data)
{
    realm_invoker_t *iv = data;
    realm_queue_close(iv->queue); /* the worker is gone: the loop may */
    iv->queue = NULL;
    iv->eq = NULL;
    iv->eq_one_closed(iv);
}

static void maybe_close_eq(realm_invoker_t *iv)
{
    if (!iv->is_closing || iv->eq_jobs > 0 || iv->is_eq_closed || !iv->eq) return;
    iv->is_eq_closed = 1;
    realm_storeq_close(iv->eq, on_eq_closed, iv);
}

void realm_invoker_events_close(realm_invoker_t *iv, void (*one_closed)(realm_invoker_t *iv))
{
    iv->eq_one_closed = one_closed;
    maybe_close_eq(iv);
}

realm_queue_t *realm_invoker_queue(realm_invoker_t *iv)
{
    return iv->queue;
}

int realm_invoker_events_idle(realm_invoker_t *iv)
{
    return iv->eq_jobs == 0 && iv->events_preparing == 0 && !iv->is_taking &&
           !iv->is_parked_checking && !uv_is_active((uv_handle_t *)&iv->kick_idle);
}
