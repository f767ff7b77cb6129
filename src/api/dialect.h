/*
 * dialect.h - the control API in Lambda@Home's dialect: the same routes
 * under the control port's /lambda-at-home prefix, answered with
 * snake_case keys (proto/lah.h), so that Lambda@Home's own clients (its e2e
 * suite, console and CLI) work with only their base URL changed
 * (docs/compatibility.md). Requests without the prefix, which is every AWS
 * client, are not touched: they see exactly the AWS shapes.
 *
 * DESIGN: the prefix is an HTTP mount (realm_http_server_mount), so every
 * control and Invoke route exists under it with no second route table.
 * The guard of the control listener, before admission runs, puts a JSON
 * filter on the response (errors included, whoever sends them), and after
 * admission (SigV4 is over the body as sent) rewrites a control
 * operation's JSON body into AWS's form. Invoke bodies are the function's
 * payload and are never rewritten, in either direction.
 * LIFETIME: no state of its own; the filter and the rewritten body live and
 * die with the request.
 * THREADS: loop thread only.
 */
#ifndef REALM_API_DIALECT_H
#define REALM_API_DIALECT_H

#include "api/authn.h"
#include "exec/exec.h"
#include "http/server.h"

#define REALM_DIALECT_LAH_PREFIX "/lambda-at-home"

/*
 * Mounts the dialects on the control listener and installs its guard
 * (realm_authn_control_guard behind the dialect's; authn borrowed, it must
 * outlive the server's requests).
 */
void realm_dialect_attach(realm_http_server_t *control, realm_authn_t *authn);

/*
 * Lambda@Home's routes that are not the Lambda API, served under the prefix
 * only (elsewhere a 404 like any unknown path): GET
 * /admin/warm-pool/{FunctionName} answers {"total": environments of the
 * caller's function now, "entries": []} (Realm's environments are not
 * containers: no ids to list). exec is borrowed and outlives the server's
 * requests.
 */
void realm_dialect_routes(realm_http_server_t *control, realm_exec_t *exec);

/* The guard realm_dialect_attach installs (data: the authn). */
int realm_dialect_control_guard(realm_http_req_t *req, realm_http_res_t *res, void *data);

#endif
