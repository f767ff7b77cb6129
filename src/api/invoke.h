/*
 * invoke.h - the invoker (invoke/invoker.h) on the control API: Invoke,
 * InvokeAsync, InvokeWithResponseStream, a function's logs and its failed
 * Event invocations, as HTTP routes. This adapter reads requests (headers,
 * query, body limits) and writes AWS-shaped answers; resolution, policy and
 * the Event queue are the invoker's.
 *
 * THREADS: loop thread only.
 */
#ifndef REALM_API_INVOKE_H
#define REALM_API_INVOKE_H

#include "base/buf.h"
#include "http/server.h"
#include "invoke/invoker.h"

/* Adds Invoke, InvokeAsync, InvokeWithResponseStream, logs and failed events to http.
 * iv is borrowed for as long as http serves requests. */
void realm_invoke_routes(realm_invoker_t *iv, realm_http_server_t *http);

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
int realm_invoke_parse(const realm_http_req_t *req, int is_stream, realm_invoke_req_t *ir,
                       realm_error_t *e);
void realm_invoke_req_dispose(realm_invoke_req_t *ir);
/*
 * An Event or DryRun request (not RequestResponse) handed to the invoker:
 * realm_invoker_submit's contract (cb later, or -1 with e now).
 */
int realm_invoke_submit(realm_invoker_t *iv, const realm_invoke_req_t *ir,
                        realm_invoker_submitted_cb cb, void *data, realm_error_t *e);

#endif
