/*
 * dispatch.h - the function registry and the life of a call.
 *
 * DESIGN: every callable function is one realm_fn_def_t table entry: name,
 * description, parameters (type, required, default, range, description),
 * result shape and whether it streams. The dispatcher validates a call's
 * params against that table before the handler runs (so handlers see
 * well-typed params with defaults filled in) and `metadata` is generated
 * from the same entries, so what is described is exactly what is callable.
 *
 * A call ends exactly once: complete, error, or cancelled. Replies leave
 * through a sink supplied by whoever started the call (the client WebSocket
 * adapts it to protocol messages), so this module knows nothing of wire
 * formats.
 *
 * Handler rule: a handler either ends the call before returning, or it goes
 * asynchronous and must then register a cancel hook
 * (realm_call_on_cancel) that stops its work at once; after the hook runs
 * the handler must not touch the call again.
 *
 * Callback rule (libuv's): realm_dispatch_call never calls the sink before
 * it returns. Whatever happens while the call starts (a refusal, a handler
 * that answers at once) is deferred, in order, and reported on the next
 * loop turn or when the owner flushes it (realm_call_flush), so the
 * caller always gets the call back and records it before any event.
 *
 * LIFETIME: definitions are borrowed (static tables) until the dispatcher is
 * closed. A realm_call_t lives from realm_dispatch_call() until its final
 * sink event has returned (or its owner cancelled it).
 * THREADS: loop thread only.
 */
#ifndef REALM_DISPATCH_DISPATCH_H
#define REALM_DISPATCH_DISPATCH_H

#include "metrics/metrics.h"

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

typedef struct realm_dispatch_s realm_dispatch_t;
typedef struct realm_call_s realm_call_t;

typedef enum {
    REALM_PARAM_STRING,
    REALM_PARAM_INTEGER,
    REALM_PARAM_NUMBER,
    REALM_PARAM_BOOLEAN,
    REALM_PARAM_OBJECT,
    REALM_PARAM_ARRAY,
    REALM_PARAM_ANY,
} realm_param_type_t;

typedef struct {
    const char *name;
    realm_param_type_t type;
    int is_required;
    const char *default_json; /* JSON text, or NULL for no default */
    const char *description;
    int has_min, has_max; /* numeric range (inclusive), or string length */
    double min, max;
} realm_param_def_t;

/* Returns nothing: the call is ended through realm_call_* (see the rule above). */
typedef void (*realm_fn_handler_cb)(realm_call_t *call, json_t *params, void *fn_data);

typedef struct {
    const char *name;
    const char *description;
    const realm_param_def_t *params;
    size_t params_cnt;
    const char *result_json; /* JSON text describing the result's shape */
    int is_streaming;        /* sends `streaming` replies before the final one */
    int is_exempt;           /* only ends work, at once: allowed past call limits
                                and during shutdown (cancel) */
    realm_fn_handler_cb handler;
} realm_fn_def_t;

typedef struct {
    /* data borrowed for the call */
    void (*on_stream)(realm_call_t *call, json_t *data, void *sink_data);
    void (*on_complete)(realm_call_t *call, json_t *data, void *sink_data);
    /* details: extra error fields such as {"param":"x"}, may be NULL */
    void (*on_error)(realm_call_t *call, int err, const char *message, json_t *details,
                     void *sink_data);
    void (*on_cancelled)(realm_call_t *call, void *sink_data);
} realm_call_sink_t;

/* loop carries the deferred sink events; metrics is borrowed until the dispatcher is gone. */
realm_dispatch_t *realm_dispatch_new(uv_loop_t *loop, realm_metrics_t *metrics);
/*
 * Closes the dispatcher's handle; its memory goes in the close callback, on
 * a later loop turn, after which cb (if not NULL) is called with data.
 * Calls still in flight must have been cancelled by their owners; deferred
 * events left are dropped. NULL d is a no-op (cb is not called).
 */
typedef void (*realm_dispatch_close_cb)(void *data);
void realm_dispatch_close(realm_dispatch_t *d, realm_dispatch_close_cb cb, void *data);

/*
 * Registers a function. def and fn_data are borrowed until the dispatcher is
 * freed. Returns 0, or REALM_ERR_INVALID_REQUEST if the name is taken.
 */
int realm_dispatch_register(realm_dispatch_t *d, const realm_fn_def_t *def, void *fn_data);
const realm_fn_def_t *realm_dispatch_lookup(const realm_dispatch_t *d, const char *name);
/*
 * Names not in the table go to def's handler (params unchecked) instead of
 * FUNCTION_NOT_FOUND; the handler reads the name with realm_call_function
 * and fails the call with FUNCTION_NOT_FOUND itself if it has no such
 * function. Used for deployed functions. def is borrowed.
 */
void realm_dispatch_set_fallback(realm_dispatch_t *d, const realm_fn_def_t *def, void *fn_data);
/*
 * More functions for `metadata` (deployed ones), found off the loop: the
 * describer answers 0 and calls done(more, ctx) once, on a later loop turn,
 * with a new JSON array (or NULL when it could not say); or answers -1 and
 * never calls done. tenant is borrowed for the call only.
 */
typedef void (*realm_dispatch_described_cb)(json_t *more, void *ctx);
typedef int (*realm_dispatch_describe_cb)(const char *tenant, realm_dispatch_described_cb done,
                                          void *ctx, void *data);
void realm_dispatch_set_describer(realm_dispatch_t *d, realm_dispatch_describe_cb cb, void *data);
/* As the describer (see above); -1 when there is none. */
int realm_dispatch_describe_more(const realm_dispatch_t *d, const char *tenant,
                                 realm_dispatch_described_cb done, void *ctx);
/* A last touch to the metadata document (e.g. the loaded models). */
typedef void (*realm_dispatch_annotate_cb)(json_t *doc, void *data);
void realm_dispatch_set_annotator(realm_dispatch_t *d, realm_dispatch_annotate_cb cb, void *data);
void realm_dispatch_annotate(const realm_dispatch_t *d, json_t *doc);
/* Every function in registration order. */
size_t realm_dispatch_count(const realm_dispatch_t *d);
const realm_fn_def_t *realm_dispatch_at(const realm_dispatch_t *d, size_t i);
/* Calls in flight across all sinks. */
size_t realm_dispatch_in_flight(const realm_dispatch_t *d);

/*
 * Starts a call. id, function and tenant_id are copied; params is borrowed
 * for the duration of this call (handlers that keep it take a reference).
 * scope is the caller's context (e.g. its connection), readable by handlers.
 * Returns the call (never NULL): the sink gets its events, and exactly one
 * final event, after this returns: on the next loop turn (e.g.
 * FUNCTION_NOT_FOUND), or sooner when the owner calls
 * realm_call_flush; unless the owner cancels the call first.
 */
realm_call_t *realm_dispatch_call(realm_dispatch_t *d, const char *id, const char *function,
                                  json_t *params, const char *tenant_id, void *scope,
                                  const realm_call_sink_t *sink, void *sink_data);

/*
 * Delivers now what call said while it started (in order), instead of on
 * the next loop turn: an owner that has recorded its call calls this to
 * answer in the order messages came (a reply before a close that follows
 * it on the same connection). The call may end, and be freed, inside.
 * Not from inside one of the call's own sink events.
 */
void realm_call_flush(realm_call_t *call);

/* ---- used by handlers ---- */
const char *realm_call_id(const realm_call_t *call);
const char *realm_call_tenant(const realm_call_t *call);   /* NULL when none */
const char *realm_call_function(const realm_call_t *call); /* the name it was called by */
void *realm_call_scope(const realm_call_t *call);
/* Streams a partial result; takes ownership of data. */
void realm_call_stream(realm_call_t *call, json_t *data);
/* Ends the call; takes ownership of data. */
void realm_call_complete(realm_call_t *call, json_t *data);
/* Ends the call with an error (err from base/err.h); details may be NULL (stolen). */
void realm_call_fail(realm_call_t *call, int err, json_t *details, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The hook that stops an asynchronous handler's work. */
typedef void (*realm_call_cancel_cb)(realm_call_t *call, void *data);
void realm_call_on_cancel(realm_call_t *call, realm_call_cancel_cb cb, void *data);

/* ---- used by the call's owner ---- */
/*
 * Cancels an in-flight call: runs its cancel hook, then the sink gets
 * on_cancelled, unless is_silent (the owner is going away): then no sink
 * event at all. A call whose end is decided but not yet reported (it ended
 * while starting) is not cancelled: its events are delivered now, or
 * dropped when is_silent. The call is freed.
 */
void realm_call_cancel(realm_call_t *call, int is_silent);

#endif
