/*
 * rapi.h - a blocking client of the Lambda runtime API (HTTP, 2018-06-01) for
 * the model worker: take the next invocation, answer it with an error or a
 * streamed (chunked) response, report an init error.
 * See docs/runtime-channel.md for the routes.
 *
 * DESIGN: the routes over the shared blocking client (httpc/httpc.h): one
 * keep-alive TCP connection (TCP_NODELAY), reopened when the server closed
 * it between requests. Every call blocks the calling thread; GET .../next
 * waits without a timeout (the server holds it until there is work).
 * SIGPIPE is avoided with MSG_NOSIGNAL.
 *
 * A streamed response: realm_rapi_stream_begin() sends the request head,
 * realm_rapi_stream_chunk() sends one chunk per call (a single sendmsg), and
 * realm_rapi_stream_end() sends the last chunk, with the error trailers
 * (declared in the head's Trailer header) when the stream failed, then
 * reads the server's answer.
 *
 * THREADS: one thread uses a client at a time.
 */
#ifndef REALM_LLM_RAPI_H
#define REALM_LLM_RAPI_H

#include "httpc/httpc.h"
#include "llm/text.h"

#define REALM_RAPI_MAX_BODY ((size_t)8 << 20) /* bytes of an event we accept */
#define REALM_RAPI_ID_MAX 128                 /* bytes of a request id, with its NUL */

/* Return codes (besides 0). */
#define REALM_RAPI_EIO (-1)     /* connect, send or receive failed; the connection is closed */
#define REALM_RAPI_EPROTO (-2)  /* the server's answer was not HTTP we understand, or too large */
#define REALM_RAPI_ESTATUS (-3) /* a complete answer with an unexpected status */

typedef struct {
    char host[64];    /* numeric IPv4/IPv6 address or name from AWS_LAMBDA_RUNTIME_API */
    char port[8];     /* decimal */
    int status;       /* status of the last answer read */
    realm_buf_t body; /* the last answer's body (NUL-terminated) */
    realm_buf_t head; /* scratch: a request head being written */
    char request_id[REALM_RAPI_ID_MAX]; /* Lambda-Runtime-Aws-Request-Id of the last answer */
    realm_httpc_t *http;                /* the connection */
} realm_rapi_t;

/*
 * Parses "HOST:PORT" (AWS_LAMBDA_RUNTIME_API; "[v6]:PORT" also works) into
 * r; connects lazily. Returns 0, or -1 when address is malformed.
 */
int realm_rapi_init(realm_rapi_t *r, const char *address);
void realm_rapi_dispose(realm_rapi_t *r); /* closes the connection, frees the buffers */

/*
 * GET /runtime/invocation/next. On 0 the event is in r->body (r->body.len
 * bytes, NUL-terminated, owned by r until the next call) and its id in
 * r->request_id (non-empty, only [A-Za-z0-9._:-]). Retries once on a fresh
 * connection when the kept-alive one fails. Returns 0, REALM_RAPI_EIO,
 * REALM_RAPI_EPROTO (also: a missing or unusable request id) or
 * REALM_RAPI_ESTATUS (r->status says which).
 */
int realm_rapi_next(realm_rapi_t *r);

/*
 * POST /runtime/invocation/ID/error (request_id non-NULL) or
 * /runtime/init/error (request_id NULL) with the JSON
 * {"errorMessage":message,"errorType":type} and the
 * Lambda-Runtime-Function-Error-Type header. Expects 202. Returns 0 or a
 * REALM_RAPI_E* code.
 */
int realm_rapi_post_error(realm_rapi_t *r, const char *request_id, const char *type,
                          const char *message);

/*
 * Starts POST /runtime/invocation/ID/response in streaming mode with the
 * given Content-Type. Returns 0 or REALM_RAPI_EIO.
 */
int realm_rapi_stream_begin(realm_rapi_t *r, const char *request_id, const char *content_type);

/* Sends data[0..len) (len > 0) as one chunk, with one sendmsg. Returns 0 or REALM_RAPI_EIO. */
int realm_rapi_stream_chunk(realm_rapi_t *r, const char *data, size_t len);

/*
 * Ends the stream: the last chunk, then, when error_type is not NULL, the
 * trailers Lambda-Runtime-Function-Error-Type and
 * Lambda-Runtime-Function-Error-Body (base64 of
 * {"errorMessage":message,"errorType":error_type}); then reads the answer
 * and expects 202. Returns 0 or a REALM_RAPI_E* code.
 */
int realm_rapi_stream_end(realm_rapi_t *r, const char *error_type, const char *message);

/* Closes the connection (the next call opens a new one). */
void realm_rapi_close(realm_rapi_t *r);

#endif
