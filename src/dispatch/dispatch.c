/*
 * dispatch.c - function registry, parameter validation and call lifecycle
 * (see dispatch.h).
 *
 * Metrics: realm_calls_total{function,outcome}, realm_call_duration_seconds
 * {function} and realm_calls_in_flight. Calls to names that are not
 * registered count under function="_unknown", or under the fallback's name
 * when one is set (deployed functions), so a client cannot grow the label
 * set without bound.
 *
 * DEFERRED EVENTS (libuv's callback rule): realm_dispatch_call never
 * reports anything before it returns. Sink events raised while the call is
 * starting (a refusal, or a handler that answers at once) are queued on
 * the call, and so is every later event until the queue is empty, so their
 * order holds; an idle handle delivers the calls that have queued events on
 * the next loop turn, unless the owner flushes one sooner (the client
 * WebSocket does, right after recording a call, so replies keep the order
 * of the messages and come before a close that follows them). A call
 * whose end is queued has ended: it is still in flight for the metrics and
 * for its owner (who may cancel it: silently, the queued events are
 * dropped; otherwise they are delivered then).
 */
#include "dispatch/dispatch.h"

#include "base/alloc.h"
#include "base/err.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
    const realm_fn_def_t *def;
    void *fn_data;
    realm_metric_t *m_complete, *m_error, *m_cancelled, *m_duration;
} entry_t;

typedef enum { EV_STREAM, EV_COMPLETE, EV_ERROR } ev_kind_t;

/* A sink event waiting for a later loop turn. */
typedef struct pending_s {
    struct pending_s *next;
    ev_kind_t kind;
    json_t *data; /* owned: the stream/complete data, or the error's details (may be NULL) */
    int err;
    char *message; /* owned (EV_ERROR) */
} pending_t;

struct realm_dispatch_s {
    uv_loop_t *loop;
    uv_idle_t flush_idle;              /* delivers deferred events on the next turn */
    realm_call_t *due_head, *due_tail; /* calls with deferred events, oldest first */
    entry_t *entries;
    size_t entries_cnt, entries_cap;
    size_t in_flight;
    realm_metrics_t *metrics;
    realm_metric_family_t *f_calls, *f_duration;
    realm_metric_t *m_in_flight;
    entry_t unknown;                /* metrics for calls to unregistered names */
    const realm_fn_def_t *fallback; /* runs names not in the table (deployed functions) */
    void *fallback_data;
    entry_t fallback_entry;
    realm_dispatch_describe_cb describe;
    void *describe_data;
    realm_dispatch_annotate_cb annotate;
    void *annotate_data;
    realm_dispatch_close_cb on_closed;
    void *closed_data;
};

struct realm_call_s {
    realm_dispatch_t *d;
    entry_t *entry;
    char *id;
    char *tenant_id;
    char *function;
    void *scope;
    const realm_call_sink_t *sink;
    void *sink_data;
    realm_call_cancel_cb cancel_cb;
    void *cancel_data;
    uint64_t start_ns;
    pending_t *pending_head, *pending_tail; /* deferred sink events, in order */
    realm_call_t *due_prev, *due_next;      /* in d's due list while is_due */
    int is_due;
    int is_starting; /* inside realm_dispatch_call: events are deferred */
    int is_ended;    /* its final event happened (delivered or deferred) */
};

static const double duration_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                          0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                          5,      10,      30,     60,    300,    900};

static void entry_metrics(realm_dispatch_t *d, entry_t *e, const char *name)
{
    const char *l_ok[] = {name, "complete"}, *l_err[] = {name, "error"},
               *l_can[] = {name, "cancelled"}, *l_fn[] = {name};
    e->m_complete = realm_metrics_child(d->f_calls, l_ok);
    e->m_error = realm_metrics_child(d->f_calls, l_err);
    e->m_cancelled = realm_metrics_child(d->f_calls, l_can);
    e->m_duration = realm_metrics_child(d->f_duration, l_fn);
}

static void on_flush(uv_idle_t *h);

realm_dispatch_t *realm_dispatch_new(uv_loop_t *loop, realm_metrics_t *metrics)
{
    realm_dispatch_t *d = realm_calloc(1, sizeof(*d));
    d->loop = loop;
    uv_idle_init(loop, &d->flush_idle);
    d->flush_idle.data = d;
    d->metrics = metrics;
    d->f_calls = realm_metrics_family(metrics, REALM_METRIC_COUNTER, "realm_calls_total",
                                      "Calls finished, by function and outcome", "function,outcome",
                                      NULL, 0);
    d->f_duration = realm_metrics_family(
        metrics, REALM_METRIC_HISTOGRAM, "realm_call_duration_seconds",
        "Time from a call's arrival to its final reply, by function", "function", duration_buckets,
        sizeof(duration_buckets) / sizeof(duration_buckets[0]));
    realm_metric_family_t *f =
        realm_metrics_family(metrics, REALM_METRIC_GAUGE, "realm_calls_in_flight",
                             "Calls started and not yet ended", NULL, NULL, 0);
    d->m_in_flight = realm_metrics_child(f, NULL);
    entry_metrics(d, &d->unknown, "_unknown");
    return d;
}

static void on_closed(uv_handle_t *h)
{
    realm_dispatch_t *d = h->data;
    realm_dispatch_close_cb cb = d->on_closed;
    void *data = d->closed_data;
    free(d->entries);
    free(d);
    if (cb) cb(data);
}

static void call_free(realm_call_t *call);

void realm_dispatch_close(realm_dispatch_t *d, realm_dispatch_close_cb cb, void *data)
{
    if (!d) return;
    d->on_closed = cb;
    d->closed_data = data;
    /* Owners cancel their calls before they go; anything left is dropped unreported. */
    while (d->due_head) {
        realm_call_t *call = d->due_head;
        d->due_head = call->due_next;
        call_free(call);
    }
    d->due_tail = NULL;
    uv_close((uv_handle_t *)&d->flush_idle, on_closed);
}

static entry_t *find(const realm_dispatch_t *d, const char *name)
{
    for (size_t i = 0; i < d->entries_cnt; i++)
        if (strcmp(d->entries[i].def->name, name) == 0) return &d->entries[i];
    return NULL;
}

int realm_dispatch_register(realm_dispatch_t *d, const realm_fn_def_t *def, void *fn_data)
{
    if (find(d, def->name)) return REALM_ERR_INVALID_REQUEST;
    if (d->entries_cnt == d->entries_cap) {
        d->entries_cap = d->entries_cap ? d->entries_cap * 2 : 16;
        d->entries = realm_realloc(d->entries, d->entries_cap * sizeof(entry_t));
    }
    entry_t *e = &d->entries[d->entries_cnt++];
    memset(e, 0, sizeof(*e));
    e->def = def;
    e->fn_data = fn_data;
    entry_metrics(d, e, def->name);
    return 0;
}

const realm_fn_def_t *realm_dispatch_lookup(const realm_dispatch_t *d, const char *name)
{
    entry_t *e = find(d, name);
    return e ? e->def : NULL;
}

size_t realm_dispatch_count(const realm_dispatch_t *d)
{
    return d->entries_cnt;
}

const realm_fn_def_t *realm_dispatch_at(const realm_dispatch_t *d, size_t i)
{
    return i < d->entries_cnt ? d->entries[i].def : NULL;
}

size_t realm_dispatch_in_flight(const realm_dispatch_t *d)
{
    return d->in_flight;
}

/* ---- params ---- */

static const char *type_name(realm_param_type_t t)
{
    switch (t) {
    case REALM_PARAM_STRING:
        return "a string";
    case REALM_PARAM_INTEGER:
        return "an integer";
    case REALM_PARAM_NUMBER:
        return "a number";
    case REALM_PARAM_BOOLEAN:
        return "a boolean";
    case REALM_PARAM_OBJECT:
        return "an object";
    case REALM_PARAM_ARRAY:
        return "an array";
    case REALM_PARAM_ANY:
        return "any JSON value";
    }
    return "?";
}

static int type_ok(realm_param_type_t t, const json_t *v)
{
    switch (t) {
    case REALM_PARAM_STRING:
        return json_is_string(v);
    case REALM_PARAM_INTEGER:
        /* 5.0 is accepted as 5: JSON has one number type. */
        return json_is_integer(v) ||
               (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
                fabs(json_real_value(v)) < 9007199254740992.0);
    case REALM_PARAM_NUMBER:
        return json_is_number(v);
    case REALM_PARAM_BOOLEAN:
        return json_is_boolean(v);
    case REALM_PARAM_OBJECT:
        return json_is_object(v);
    case REALM_PARAM_ARRAY:
        return json_is_array(v);
    case REALM_PARAM_ANY:
        return 1;
    }
    return 0;
}

static void fmt_num(char *buf, size_t len, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, len, "%.0f", v);
    else
        snprintf(buf, len, "%g", v);
}

/* Validates params in place (defaults added, 5.0 made 5). 0 or INVALID_PARAMS. */
static int check_params(const realm_fn_def_t *def, json_t *params, char *err, size_t err_len,
                        const char **bad)
{
    const char *key;
    json_t *v;
    json_object_foreach(params, key, v)
    {
        size_t i;
        for (i = 0; i < def->params_cnt; i++)
            if (strcmp(def->params[i].name, key) == 0) break;
        if (i == def->params_cnt) {
            *bad = key;
            snprintf(err, err_len, "unknown param '%s' for %s", key, def->name);
            return REALM_ERR_INVALID_PARAMS;
        }
    }
    for (size_t i = 0; i < def->params_cnt; i++) {
        const realm_param_def_t *p = &def->params[i];
        *bad = p->name;
        v = json_object_get(params, p->name);
        if (v == NULL || (json_is_null(v) && p->type != REALM_PARAM_ANY)) {
            if (p->is_required) {
                snprintf(err, err_len, "missing required param '%s'", p->name);
                return REALM_ERR_INVALID_PARAMS;
            }
            if (p->default_json) {
                json_t *dv = json_loads(p->default_json, JSON_DECODE_ANY, NULL);
                if (dv) json_object_set_new(params, p->name, dv);
            } else if (v) {
                json_object_del(params, p->name);
            }
            continue;
        }
        if (!type_ok(p->type, v)) {
            snprintf(err, err_len, "param '%s' must be %s", p->name, type_name(p->type));
            return REALM_ERR_INVALID_PARAMS;
        }
        if (p->type == REALM_PARAM_INTEGER && json_is_real(v)) {
            json_object_set_new(params, p->name, json_integer((json_int_t)json_real_value(v)));
            v = json_object_get(params, p->name);
        }
        double x;
        const char *what = "";
        if (json_is_number(v))
            x = json_number_value(v);
        else if (json_is_string(v))
            x = (double)json_string_length(v), what = " characters";
        else if (json_is_array(v))
            x = (double)json_array_size(v), what = " items";
        else
            continue;
        if ((p->has_min && x < p->min) || (p->has_max && x > p->max)) {
            char lo[32] = "", hi[32] = "";
            fmt_num(lo, sizeof(lo), p->min);
            fmt_num(hi, sizeof(hi), p->max);
            if (p->has_min && p->has_max)
                snprintf(err, err_len, "param '%s' must be between %s and %s%s", p->name, lo, hi,
                         what);
            else if (p->has_min)
                snprintf(err, err_len, "param '%s' must be at least %s%s", p->name, lo, what);
            else
                snprintf(err, err_len, "param '%s' must be at most %s%s", p->name, hi, what);
            return REALM_ERR_INVALID_PARAMS;
        }
    }
    *bad = NULL;
    return 0;
}

/* ---- calls ---- */

static void pending_free(pending_t *p)
{
    json_decref(p->data);
    free(p->message);
    free(p);
}

static void call_free(realm_call_t *call)
{
    while (call->pending_head) {
        pending_t *p = call->pending_head;
        call->pending_head = p->next;
        pending_free(p);
    }
    free(call->id);
    free(call->tenant_id);
    free(call->function);
    free(call);
}

/* The call's final event was delivered (or dropped): metrics, then it goes. */
static void call_end(realm_call_t *call, realm_metric_t *outcome)
{
    realm_dispatch_t *d = call->d;
    realm_metric_inc(outcome);
    realm_metric_observe(call->entry->m_duration, (double)(uv_hrtime() - call->start_ns) / 1e9);
    d->in_flight--;
    realm_metric_set(d->m_in_flight, (double)d->in_flight);
    call_free(call);
}

static void due_remove(realm_call_t *call)
{
    realm_dispatch_t *d = call->d;
    if (!call->is_due) return;
    if (call->due_prev)
        call->due_prev->due_next = call->due_next;
    else
        d->due_head = call->due_next;
    if (call->due_next)
        call->due_next->due_prev = call->due_prev;
    else
        d->due_tail = call->due_prev;
    call->due_prev = call->due_next = NULL;
    call->is_due = 0;
}

static void due_add(realm_call_t *call)
{
    realm_dispatch_t *d = call->d;
    if (call->is_due) return;
    call->is_due = 1;
    call->due_next = NULL;
    call->due_prev = d->due_tail;
    if (d->due_tail)
        d->due_tail->due_next = call;
    else
        d->due_head = call;
    d->due_tail = call;
    uv_idle_start(&d->flush_idle, on_flush);
}

/* Events are deferred while the call starts and until the deferred ones are out. */
static int is_deferring(const realm_call_t *call)
{
    return call->is_starting || call->pending_head != NULL;
}

static void defer(realm_call_t *call, ev_kind_t kind, json_t *data, int err, const char *message)
{
    pending_t *p = realm_calloc(1, sizeof(*p));
    p->kind = kind;
    p->data = data;
    p->err = err;
    p->message = message ? realm_strdup(message) : NULL;
    if (call->pending_tail)
        call->pending_tail->next = p;
    else
        call->pending_head = p;
    call->pending_tail = p;
    if (!call->is_starting) due_add(call);
}

/* Delivers a call's deferred events in order; the last may end (free) it. */
static void deliver(realm_call_t *call)
{
    while (call->pending_head) {
        pending_t *p = call->pending_head;
        call->pending_head = p->next;
        if (!call->pending_head) call->pending_tail = NULL;
        switch (p->kind) {
        case EV_STREAM:
            if (call->sink->on_stream) call->sink->on_stream(call, p->data, call->sink_data);
            pending_free(p);
            break;
        case EV_COMPLETE:
            call->sink->on_complete(call, p->data, call->sink_data);
            pending_free(p);
            call_end(call, call->entry->m_complete);
            return;
        case EV_ERROR:
            call->sink->on_error(call, p->err, p->message, p->data, call->sink_data);
            pending_free(p);
            call_end(call, call->entry->m_error);
            return;
        }
    }
}

void realm_call_flush(realm_call_t *call)
{
    if (!call->is_due) return;
    due_remove(call);
    deliver(call);
}

static void on_flush(uv_idle_t *h)
{
    realm_dispatch_t *d = h->data;
    uv_idle_stop(&d->flush_idle);
    /* One at a time from the head: a sink may cancel (and free) another due call. */
    while (d->due_head) {
        realm_call_t *call = d->due_head;
        due_remove(call);
        deliver(call);
    }
}

realm_call_t *realm_dispatch_call(realm_dispatch_t *d, const char *id, const char *function,
                                  json_t *params, const char *tenant_id, void *scope,
                                  const realm_call_sink_t *sink, void *sink_data)
{
    realm_call_t *call = realm_calloc(1, sizeof(*call));
    call->d = d;
    call->id = realm_strdup(id);
    call->tenant_id = tenant_id ? realm_strdup(tenant_id) : NULL;
    call->function = realm_strdup(function);
    call->scope = scope;
    call->sink = sink;
    call->sink_data = sink_data;
    call->start_ns = uv_hrtime();
    call->is_starting = 1;
    d->in_flight++;
    realm_metric_set(d->m_in_flight, (double)d->in_flight);

    entry_t *e = find(d, function);
    if (e == NULL && d->fallback) {
        /* Not a built-in: perhaps a deployed function; the fallback says. */
        call->entry = &d->fallback_entry;
        d->fallback->handler(call, params, d->fallback_data);
    } else if (e == NULL) {
        call->entry = &d->unknown;
        json_t *details = json_pack("{s:s}", "function", function);
        realm_call_fail(call, REALM_ERR_FUNCTION_NOT_FOUND, details,
                        "no function named '%.200s' (call metadata for the list)", function);
    } else {
        call->entry = e;
        char err[300];
        const char *bad = NULL;
        if (check_params(e->def, params, err, sizeof(err), &bad) != 0)
            realm_call_fail(call, REALM_ERR_INVALID_PARAMS,
                            json_pack("{s:s}", "param", bad ? bad : ""), "%s", err);
        else
            e->def->handler(call, params, e->fn_data);
    }
    call->is_starting = 0;
    if (call->pending_head) due_add(call); /* reported on the next turn */
    return call;
}

void realm_dispatch_set_fallback(realm_dispatch_t *d, const realm_fn_def_t *def, void *fn_data)
{
    d->fallback = def;
    d->fallback_data = fn_data;
    entry_metrics(d, &d->fallback_entry, def->name);
}

void realm_dispatch_set_describer(realm_dispatch_t *d, realm_dispatch_describe_cb cb, void *data)
{
    d->describe = cb;
    d->describe_data = data;
}

void realm_dispatch_set_annotator(realm_dispatch_t *d, realm_dispatch_annotate_cb cb, void *data)
{
    d->annotate = cb;
    d->annotate_data = data;
}

void realm_dispatch_annotate(const realm_dispatch_t *d, json_t *doc)
{
    if (d->annotate) d->annotate(doc, d->annotate_data);
}

int realm_dispatch_describe_more(const realm_dispatch_t *d, const char *tenant,
                                 realm_dispatch_described_cb done, void *ctx)
{
    return d->describe ? d->describe(tenant, done, ctx, d->describe_data) : -1;
}

const char *realm_call_function(const realm_call_t *call)
{
    return call->function;
}

const char *realm_call_id(const realm_call_t *call)
{
    return call->id;
}

const char *realm_call_tenant(const realm_call_t *call)
{
    return call->tenant_id;
}

void *realm_call_scope(const realm_call_t *call)
{
    return call->scope;
}

void realm_call_stream(realm_call_t *call, json_t *data)
{
    if (call->is_ended) {
        json_decref(data);
    } else if (is_deferring(call)) {
        defer(call, EV_STREAM, data, 0, NULL);
    } else {
        if (call->sink->on_stream) call->sink->on_stream(call, data, call->sink_data);
        json_decref(data);
    }
}

void realm_call_complete(realm_call_t *call, json_t *data)
{
    if (call->is_ended) {
        json_decref(data);
        return;
    }
    call->is_ended = 1;
    if (is_deferring(call)) {
        defer(call, EV_COMPLETE, data, 0, NULL);
        return;
    }
    call->sink->on_complete(call, data, call->sink_data);
    json_decref(data);
    call_end(call, call->entry->m_complete);
}

void realm_call_fail(realm_call_t *call, int err, json_t *details, const char *fmt, ...)
{
    if (call->is_ended) {
        json_decref(details);
        return;
    }
    call->is_ended = 1;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (is_deferring(call)) {
        defer(call, EV_ERROR, details, err, msg);
        return;
    }
    call->sink->on_error(call, err, msg, details, call->sink_data);
    json_decref(details);
    call_end(call, call->entry->m_error);
}

void realm_call_on_cancel(realm_call_t *call, realm_call_cancel_cb cb, void *data)
{
    call->cancel_cb = cb;
    call->cancel_data = data;
}

void realm_call_cancel(realm_call_t *call, int is_silent)
{
    due_remove(call);
    if (call->is_ended) {
        /* Its end is deferred (else the owner would not hold it): it ended on its own. */
        if (!is_silent) {
            deliver(call);
            return;
        }
        realm_metric_t *outcome = call->pending_tail && call->pending_tail->kind == EV_ERROR
                                      ? call->entry->m_error
                                      : call->entry->m_complete;
        call_end(call, outcome);
        return;
    }
    if (call->cancel_cb) call->cancel_cb(call, call->cancel_data);
    if (is_silent) {
        call_end(call, call->entry->m_cancelled);
        return;
    }
    /* Streamed replies already made go out before the cancellation. */
    call->is_ended = 1;
    while (call->pending_head) {
        pending_t *p = call->pending_head;
        call->pending_head = p->next;
        if (call->sink->on_stream) call->sink->on_stream(call, p->data, call->sink_data);
        pending_free(p);
    }
    call->pending_tail = NULL;
    if (call->sink->on_cancelled) call->sink->on_cancelled(call, call->sink_data);
    call_end(call, call->entry->m_cancelled);
}
