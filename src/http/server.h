/*
 * server.h - HTTP/1.1 on accepted connections: routing, limits, timeouts and
 * a response writer that can stream.
 *
 * DESIGN: one realm_http_server_t per listener holds the route table, the
 * limits and how errors are shaped on that surface (a Lambda API answers
 * errors differently from the metrics port). Requests on a connection are
 * handled strictly one at a time in arrival order: while a response is in
 * progress, pipelined bytes wait in the connection's buffer (reading stops if
 * they pile up), so responses can never be reordered.
 *
 * Handlers: a handler is called once per request with the request (borrowed
 * until the response ends) and a response. It must end the response exactly
 * once, now or later (realm_http_res_send*, or _begin/_write/_end), unless
 * the response is aborted first (the peer went away): then the abort
 * callback, if set, runs and the handler must not touch res again.
 *
 * LIFETIME: the server outlives every connection attached to it.
 * THREADS: loop thread only.
 */
#ifndef REALM_HTTP_SERVER_H
#define REALM_HTTP_SERVER_H

#include "http/parser.h"
#include "net/conn.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct realm_http_server_s realm_http_server_t;
typedef struct realm_http_res_s realm_http_res_t;

typedef void (*realm_http_handler_cb)(realm_http_req_t *req, realm_http_res_t *res, void *data);
typedef void (*realm_http_abort_cb)(realm_http_res_t *res, void *data);
/*
 * Writes an error response in the surface's own shape. status is the HTTP
 * status; message says what was wrong. Must end res.
 */
typedef void (*realm_http_error_cb)(realm_http_res_t *res, int status, const char *message,
                                    void *data);
/* Observes each finished response (for metrics). */
typedef void (*realm_http_observe_cb)(int status, void *data);

typedef struct {
    size_t max_header_bytes;    /* 431 above */
    uint64_t max_body_bytes;    /* default route body limit (413 above) */
    uint64_t header_timeout_ms; /* first byte of a request to end of headers (408) */
    uint64_t idle_timeout_ms;   /* between requests, and body progress (408) */
    size_t max_idle_conns;      /* idle keep-alive connections kept; the oldest close (0: any) */
    uint64_t idle_grace_ms;     /* idle this long before the cap may close it (0: at once) */
} realm_http_limits_t;

/* New server; limits copied. Free with realm_http_server_free(). */
realm_http_server_t *realm_http_server_new(const char *name, const realm_http_limits_t *limits);
void realm_http_server_free(realm_http_server_t *s);

/*
 * Adds a route. method is "GET", "POST", ... (HEAD is served by GET routes).
 * pattern is a path; a segment "{name}" captures one segment (percent-
 * decoded, read with realm_http_req_param; a segment holding %00 matches
 * nothing); a final "*" matches any rest.
 * max_body 0 means the server default. Strings are borrowed (use literals).
 */
void realm_http_server_route(realm_http_server_t *s, const char *method, const char *pattern,
                             uint64_t max_body, realm_http_handler_cb handler, void *data);
/*
 * A route whose body can be handed over as it arrives: on_body runs right
 * after the header block (is_first), then whenever more is parsed, with the
 * body bytes not yet taken. It returns 1 to take them (they are dropped
 * from req->body) or 0 to leave them (the body accumulates as on any
 * route). The handler runs at the end as usual, trailers readable.
 */
typedef int (*realm_http_body_cb)(realm_http_req_t *req, realm_conn_t *c, const char *bytes,
                                  size_t len, int is_first, void *data);
void realm_http_server_route_streamed(realm_http_server_t *s, const char *method,
                                      const char *pattern, uint64_t max_body,
                                      realm_http_body_cb on_body, realm_http_handler_cb handler,
                                      void *data);
/*
 * Serves every route under a path prefix too ("/lah": "/lah/x" routes as
 * "/x"), and tags such requests: req->mount is tag (non-zero), req->path
 * stays as sent and req->route_path is the rest. prefix is borrowed (use a
 * literal), starts with '/' and has no trailing '/'. At most 4 mounts.
 */
void realm_http_server_mount(realm_http_server_t *s, const char *prefix, int tag);
void realm_http_server_set_error_cb(realm_http_server_t *s, realm_http_error_cb cb, void *data);
/*
 * A check every routed request passes before its handler (authentication):
 * it returns 0 to go on (having set req->principal, say), -1 after ending
 * res itself, or REALM_HTTP_GUARD_LATER when it decides later (it waits for
 * a key store, say): then it calls realm_http_res_resume with a callback
 * that either ends res or goes on with realm_http_req_route. A guard that
 * answers later must not set an abort callback on res.
 */
#define REALM_HTTP_GUARD_LATER 1
typedef int (*realm_http_guard_cb)(realm_http_req_t *req, realm_http_res_t *res, void *data);
void realm_http_server_set_guard(realm_http_server_t *s, realm_http_guard_cb cb, void *data);
/*
 * Runs cb(req, res, data) on a response left pending (a guard's
 * REALM_HTTP_GUARD_LATER, or a handler that returned without ending res and
 * set no abort callback), as a handler runs: cb may read the request, end
 * res, upgrade the connection, or go on to the route (realm_http_req_route).
 * Returns 1 when cb ran; 0 when the connection died meanwhile: res is freed
 * then and cb is not called. Never from inside a handler.
 */
int realm_http_res_resume(realm_http_res_t *res, realm_http_handler_cb cb, void *data);
/* From a guard's resumed callback: runs the request's route handler. */
void realm_http_req_route(realm_http_req_t *req, realm_http_res_t *res);
void realm_http_server_set_observer(realm_http_server_t *s, realm_http_observe_cb cb, void *data);
/* New requests get `Connection: close` from now on (graceful shutdown). */
void realm_http_server_drain(realm_http_server_t *s);
/*
 * Routes a parsed request without a connection, as a request on one would
 * be (for fuzzers and tests): 0 with the route's pattern (borrowed) and body
 * limit, req's params filled (freed by the parser's dispose or the next
 * match); or 404 (no such path) or 405 (not with this method).
 */
int realm_http_server_match(const realm_http_server_t *s, realm_http_req_t *req,
                            const char **pattern, uint64_t *max_body);
/* Starts speaking HTTP on a newly accepted connection. */
void realm_http_server_attach(realm_http_server_t *s, realm_conn_t *c);
/* Calls cb for every HTTP connection of this server (not upgraded ones). */
void realm_http_server_each(realm_http_server_t *s, void (*cb)(realm_conn_t *c, void *data),
                            void *data);
/*
 * Closes the server's oldest idle connection (one waiting for a request,
 * with nothing unread or unsent), however young, to make room for another.
 * Returns 1 if it closed one, 0 if none is idle. Fits realm_listener_room_cb.
 */
int realm_http_server_close_oldest_idle(realm_http_server_t *s);
/*
 * Closes the oldest idle connections, those idle for at least
 * limits.idle_grace_ms, while more than limits.max_idle_conns are idle.
 * Call it now and then (each second): a burst leaves young idle
 * connections over the cap that only age later.
 */
void realm_http_server_sweep_idle(realm_http_server_t *s);
/* Idle connections (waiting for a request) of this server now. */
size_t realm_http_server_idle_cnt(const realm_http_server_t *s);
/* Closes an idle keep-alive connection now, or the busy one after its response. */
void realm_http_conn_close_when_idle(realm_conn_t *c);

/*
 * The nth (0-based) value of query parameter name in query (the part after
 * '?'), percent-decoded into out ('+' is kept as is). Returns the decoded
 * length, or -1 if there is no such value or it does not fit in out.
 */
long realm_http_query_param(const char *query, const char *name, size_t nth, char *out,
                            size_t out_len);

/* ---- responses ---- */

/* Adds a response header (copied). Only before the status line is sent. */
void realm_http_res_header(realm_http_res_t *res, const char *name, const char *value);
/* A complete response with a body (Content-Length). */
void realm_http_res_send(realm_http_res_t *res, int status, const char *content_type,
                         const void *body, size_t len);
/* A complete JSON response; takes ownership of body (a reference). */
void realm_http_res_send_json(realm_http_res_t *res, int status, json_t *body);
/*
 * A rewrite of every JSON body this response sends (realm_http_res_send_json,
 * so the error callback's too): cb takes body (a reference) and returns the
 * one to send (a new reference, or body itself). For a dialect of an API.
 */
typedef json_t *(*realm_http_json_filter_cb)(realm_http_res_t *res, int status, json_t *body,
                                             void *data);
void realm_http_res_set_json_filter(realm_http_res_t *res, realm_http_json_filter_cb cb,
                                    void *data);
/*
 * The value of the last header named name (case-insensitive) added with
 * realm_http_res_header, copied into out. Returns its length, or -1 when
 * there is none or it does not fit.
 */
long realm_http_res_header_value(const realm_http_res_t *res, const char *name, char *out,
                                 size_t out_len);
/* An error in the surface's shape (the server's error callback). */
void realm_http_res_error(realm_http_res_t *res, int status, const char *message);
/*
 * Streaming: status line and headers now, then any number of writes, then
 * end. Uses chunked encoding for HTTP/1.1 and a close-delimited body for
 * HTTP/1.0. trailers ("Name: value\r\n" lines, or NULL) are sent on end
 * when chunked. Writes return 0, or a negative code when the peer is gone.
 */
void realm_http_res_begin(realm_http_res_t *res, int status, const char *content_type);
int realm_http_res_write(realm_http_res_t *res, const void *data, size_t len);
void realm_http_res_end(realm_http_res_t *res, const char *trailers);
/* Called if the connection dies before the response ends. */
void realm_http_res_on_abort(realm_http_res_t *res, realm_http_abort_cb cb, void *data);
/* The connection this response goes out on (borrowed). */
realm_conn_t *realm_http_res_conn(realm_http_res_t *res);
/* Bytes queued on the connection and not yet written. */
size_t realm_http_res_pending(const realm_http_res_t *res);

/*
 * Switches protocols: writes `101 Switching Protocols` with the headers
 * added so far plus extra_headers (raw "Name: value\r\n" lines), detaches
 * the connection from HTTP and returns it; the bytes that followed the
 * request are handed over in rest and rest_len (borrowed for the duration of
 * the handler call only: consume or copy them before returning). After this
 * the handler owns the connection and must install a new handler on it.
 */
realm_conn_t *realm_http_res_upgrade(realm_http_res_t *res, const char *extra_headers,
                                     const char **rest, size_t *rest_len);

/*
 * The message of the 400 every server answers, before routing, to a path or
 * query holding a percent-escaped control character (%00-%1F, %7F); error
 * callbacks may compare with it to answer in their own terms.
 */
extern const char realm_http_msg_ctl[];

/* Reason phrase for a status ("Not Found"). */
const char *realm_http_status_text(int status);

#endif
