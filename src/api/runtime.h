/*
 * runtime.h - the Lambda runtime API (2018-06-01) on the runtime listener:
 * AWS's HTTP routes and the WebSocket channel at
 * /2018-06-01/runtime/websocket (docs/runtime-channel.md), both adapters of
 * the execution engine (exec/exec.h).
 *
 * DESIGN: the environment is never named by the client: each accepted
 * connection is matched to the environment whose cgroup holds its peer
 * socket (realm_runtime_accept) and keeps that environment as its tag, so
 * a process Realm did not start in an environment is refused (403) on every
 * route.
 * THREADS: loop thread only.
 */
#ifndef REALM_API_RUNTIME_H
#define REALM_API_RUNTIME_H

#include "exec/exec.h"
#include "http/server.h"
#include "ws/ws.h"

typedef struct realm_runtime_s realm_runtime_t;

/* Adds the routes to http (the runtime listener's server). */
realm_runtime_t *realm_runtime_new(uv_loop_t *loop, realm_exec_t *x, realm_http_server_t *http,
                                   const realm_ws_config_t *ws);
void realm_runtime_free(realm_runtime_t *rt);
/* A new connection on the runtime listener: tags it with its environment. */
void realm_runtime_accept(realm_runtime_t *rt, realm_conn_t *c);

/*
 * The exec hooks (realm_exec_opts_t.private_listen/private_close, data: the
 * runtime): serve the runtime API on a listener made inside one
 * environment's own network namespace; its connections are that
 * environment's without a door check.
 */
void *realm_runtime_private_listen(realm_env_t *env, int fd, void *data);
void realm_runtime_private_close(void *handle, void *data);
/* Connections of the environments' private listeners: open now, accepted
 * and rejected so far (they count as the runtime listener's in metrics). */
void realm_runtime_private_counts(const realm_runtime_t *rt, uint64_t *open, uint64_t *accepted,
                                  uint64_t *rejected);

/* ---- the HTTP routes' decoding, without a connection (also for fuzz/fuzz_runtime.c) ---- */

/* The errorType of an HTTP-level refusal on this surface (413 RequestEntityTooLarge...). */
const char *realm_runtime_error_type(int status);
/*
 * A POST .../response's Lambda-Runtime-Function-Response-Mode: 0 buffered
 * (absent), 1 streaming, -1 anything else (400 InvalidFunctionResponseMode).
 */
int realm_runtime_response_mode(const realm_http_req_t *req);
/*
 * The error of a streamed response that failed midway: the
 * Lambda-Runtime-Function-Error-Type and -Error-Body trailers, else headers.
 * *type is borrowed from req (NULL when absent). Returns 1 when there is an
 * error body, its base64 decoded into body (what decodes of it when it is
 * not base64); 0 when none.
 */
int realm_runtime_stream_error(const realm_http_req_t *req, const char **type, realm_buf_t *body);

#endif
