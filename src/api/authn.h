/*
 * authn.h - the HTTP adapters of admission (admit/admit.h): the control
 * API's SigV4 guard and the metrics port's admin-key guard, and the one
 * realm_admit_t of the server that every surface asks (docs/tenants.md).
 *
 * DESIGN: this file only extracts credentials from HTTP requests and
 * renders admission's verdicts as AWS errors; the decisions (keys, tenants,
 * limits, draining) are admit/'s.
 * THREADS: loop thread only.
 */
#ifndef REALM_API_AUTHN_H
#define REALM_API_AUTHN_H

#include "admit/admit.h"
#include "base/buf.h"
#include "config/config.h"
#include "http/server.h"

#include <stdint.h>

typedef struct realm_authn_s realm_authn_t;

/*
 * Admission configured from cfg (auth, data dir, admin key, rate limits,
 * max_connections, max_tenant_connections): opens the key store when
 * cfg->auth. NULL with a message in err.
 */
realm_authn_t *realm_authn_new(uv_loop_t *loop, const realm_config_t *cfg, char *err,
                               size_t err_len);
/* Stops the key store's worker (realm_admit_close); cb(data) once it is gone. Then free. */
void realm_authn_close(realm_authn_t *a, void (*cb)(void *data), void *data);
void realm_authn_free(realm_authn_t *a);
int realm_authn_is_on(const realm_authn_t *a);
/* The admission every surface calls (borrowed; lives as long as a). */
realm_admit_t *realm_authn_admit(realm_authn_t *a);
/* Metrics collector (realm_metrics_add_collector): realm_rate_limited_total{tenant}. */
void realm_authn_collect(realm_buf_t *out, void *data);

/*
 * The control API's guard (realm_http_server_set_guard, data: the authn):
 * verifies the request's SigV4 signature, then realm_admit_call (the
 * admin acting for the tenant of X-Realm-Tenant; the key's rate; served
 * while draining), sets req->principal to the namespace it acts in, or
 * answers AWS's error (403 MissingAuthenticationTokenException,
 * IncompleteSignatureException, UnrecognizedClientException,
 * InvalidSignatureException; 404 ResourceNotFoundException for an unknown
 * tenant; 429 TooManyRequestsException with Retry-After). Every route of
 * the control listener (control.c, invoke.c) reads req->principal only.
 * GET /healthz passes unsigned (principal ""): a load balancer's probe.
 * The key is looked up on the key store's worker: the guard answers
 * REALM_HTTP_GUARD_LATER and the request goes on (or is refused) when the
 * lookup answers; 503 ServiceException when the lookups are backed up.
 * on_admitted (realm_authn_on_admitted; may be NULL) runs on every request
 * admitted, right before its route.
 */
int realm_authn_control_guard(realm_http_req_t *req, realm_http_res_t *res, void *data);
void realm_authn_on_admitted(realm_authn_t *a, void (*cb)(realm_http_req_t *req));
/* The metrics port's guard: `Authorization: Bearer <admin key>`; /health stays open. */
int realm_authn_metrics_guard(realm_http_req_t *req, realm_http_res_t *res, void *data);

#endif
