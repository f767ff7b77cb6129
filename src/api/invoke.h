/*
 * invoke.h - running deployed functions: a reference (name or ARN, and a
 * qualifier) is resolved through the registry to the version and code that
 * run, and handed to the execution engine. One invoker serves the control
 * API's Invoke, InvokeAsync and InvokeWithResponseStream, the client
 * WebSocket's `invoke`, and the durable queue of Event invocations
 * (retried with backoff, failures kept and listable; docs/execution.md).
 *
 * THREADS: loop thread only.
 */
#ifndef REALM_API_INVOKE_H
#define REALM_API_INVOKE_H

#include "config/config.h"
#include "exec/exec.h"
#include "http/server.h"
#include "pkg/pkg.h"
#include "queue/queue.h"
#include "registry/registry.h"

#include <uv.h>

typedef struct realm_invoker_s realm_invoker_t;

typedef struct {
    uv_loop_t *loop;
    const realm_config_t *cfg;
    realm_registry_t *reg;
    realm_pkg_store_t *store;
    realm_exec_t *exec;
} realm_invoker_opts_t;

/* Opens the event queue (DATA_DIR/events.db). NULL with a message in err. */
realm_invoker_t *realm_invoker_new(const realm_invoker_opts_t *o, char *err, size_t err_len);
void realm_invoker_free(realm_invoker_t *iv);
/* Starts the work that needs the runtime API: provisioned environments, queued events. */
void realm_invoker_begin(realm_invoker_t *iv);
/* Adds Invoke, InvokeAsync, InvokeWithResponseStream, logs and failed events to the control API. */
void realm_invoker_routes(realm_invoker_t *iv, realm_http_server_t *control);
/* Stops taking queued events (shutdown); what is leased stays queued. */
void realm_invoker_drain(realm_invoker_t *iv);
/* Event invocations queued, all tenants and functions (the metric). */
size_t realm_invoker_events_pending(realm_invoker_t *iv);

/*
 * Starts an invocation of a deployed function. Returns it, and the sink's
 * on_done comes exactly once on a later loop turn (also when it is
 * throttled: exec.h); or NULL with e filled (404, 400...) when there is
 * nothing to run, and then the sink is never called.
 * executed_version (24 bytes) gets the version that runs.
 */
realm_inv_t *realm_invoker_start(realm_invoker_t *iv, const char *tenant, const char *function,
                                 const char *qualifier, const realm_inv_req_t *req,
                                 const realm_inv_sink_t *sink, void *data, char *executed_version,
                                 realm_reg_err_t *e);

/* ---- Invoke's request, without a connection (also for fuzz/fuzz_invoke.c) ---- */

/* An Invoke or InvokeWithResponseStream request, decoded and checked. */
typedef struct {
    const char *tenant;    /* borrowed from the request: its principal */
    const char *fn;        /* borrowed: the path's FunctionName (percent-decoded); or NULL */
    const char *qualifier; /* the Qualifier query parameter (in q), or NULL */
    char q[160];
    const char *type;    /* RequestResponse, Event or DryRun (borrowed, or static) */
    int want_tail;       /* X-Amz-Log-Type: Tail */
    const char *payload; /* the event (borrowed from the body, or static "{}") */
    size_t len;
    realm_buf_t cc; /* owned: the decoded X-Amz-Client-Context (JSON object), or empty */
} realm_invoke_req_t;

/*
 * Reads the headers, query and body of an Invoke (is_stream: of an
 * InvokeWithResponseStream) as routed: the invocation type, the log type,
 * the payload (JSON; 6 MB, 256 KB for an Event) and the client context
 * (base64 of a JSON object). Returns 0 (dispose ir), or -1 with e (400,
 * 413) and nothing to dispose. req is borrowed for as long as ir is used.
 */
int realm_invoker_parse(const realm_http_req_t *req, int is_stream, realm_invoke_req_t *ir,
                        realm_reg_err_t *e);
void realm_invoke_req_dispose(realm_invoke_req_t *ir);
/*
 * An Event or DryRun request (not RequestResponse): resolves the function
 * and, for an Event, puts it in the durable queue (it runs later). Returns 0
 * with the version that would run in version; or -1 with e: the
 * registry's error (404, 400...), 429 when the queue is full (e->type is
 * then the throttle's Reason, EventQueueFull) or 500 on a storage error.
 */
int realm_invoker_submit(realm_invoker_t *iv, const realm_invoke_req_t *ir, char version[24],
                         realm_reg_err_t *e);
/* The Event queue (borrowed until realm_invoker_free; for tests and fuzzers). */
realm_queue_t *realm_invoker_queue(realm_invoker_t *iv);

/* Checks --provisioned's syntax: 0, or -1 with a message. */
int realm_invoker_check_provisioned(const char *spec, char *err, size_t err_len);
/*
 * Keeps the warm environments --provisioned asks for: of every function
 * listed (only NULL), or of the one named only (after it was created or
 * changed).
 */
void realm_invoker_provision(realm_invoker_t *iv, const char *only);

/* A function was deleted: its queued and failed events go too. */
void realm_invoker_forget(realm_invoker_t *iv, const char *tenant, const char *name);

/* Every deployed function of a tenant for `metadata` (a new array). */
json_t *realm_invoker_describe(realm_invoker_t *iv, const char *tenant);

#endif
