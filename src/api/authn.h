/*
 * authn.h - who is calling: API keys on the client WebSocket, AWS Signature
 * Version 4 on the control API, an admin key for operators, and a token
 * bucket per key (docs/tenants.md).
 *
 * DESIGN: a principal's namespace is its tenant's 12-digit account id, so
 * the registry, the engine and the event queue keep tenants apart by that
 * string alone (and ARNs carry it). With --auth off every caller is the
 * default principal: namespace "" and no limits.
 * THREADS: loop thread only.
 */
#ifndef REALM_API_AUTHN_H
#define REALM_API_AUTHN_H

#include "config/config.h"
#include "base/buf.h"
#include "http/server.h"

#include <stdint.h>

typedef struct realm_authn_s realm_authn_t;

typedef struct {
    char tenant[65]; /* the tenant's name ("" when auth is off) */
    char ns[80];     /* the namespace: the tenant's account id ("" when auth is off) */
    char key_id[32]; /* the key it came with ("" for none, "admin" for the admin key) */
    double rate, burst;
    int is_admin; /* may act for any tenant */
} realm_principal_t;

/* Opens the key store when cfg->auth. NULL with a message in err. */
realm_authn_t *realm_authn_new(const realm_config_t *cfg, char *err, size_t err_len);
void realm_authn_free(realm_authn_t *a);
int realm_authn_is_on(const realm_authn_t *a);

/* An API key (or the admin key): 1 and *out, or 0. */
int realm_authn_api_key(realm_authn_t *a, const char *key, realm_principal_t *out);
/*
 * An admin acting for a tenant (by name or account id): 1 and *out with that
 * tenant's namespace (still is_admin), or 0 if there is no such tenant.
 */
int realm_authn_act_as(realm_authn_t *a, const char *tenant, realm_principal_t *out);
/* One request of a principal: 0 if its bucket allows it, else the seconds to wait. */
double realm_authn_take(realm_authn_t *a, const realm_principal_t *p);
/* 1 while the principal's key is still valid (revocation takes effect). */
int realm_authn_is_active(realm_authn_t *a, const realm_principal_t *p);
/* Metrics collector (realm_metrics_add_collector): realm_rate_limited_total{tenant}. */
void realm_authn_collect(realm_buf_t *out, void *data);
/* Changes whenever keys change (another process included). */
uint64_t realm_authn_version(realm_authn_t *a);

/*
 * The control API's guard (realm_http_server_set_guard, data: the authn):
 * verifies the request's SigV4 signature and rate, sets req->principal to
 * the tenant's namespace, or answers AWS's error (403
 * MissingAuthenticationTokenException, IncompleteSignatureException,
 * UnrecognizedClientException, InvalidSignatureException; 429
 * TooManyRequestsException).
 */
int realm_authn_control_guard(realm_http_req_t *req, realm_http_res_t *res, void *data);
/* The metrics port's guard: `Authorization: Bearer <admin key>`; /health stays open. */
int realm_authn_metrics_guard(realm_http_req_t *req, realm_http_res_t *res, void *data);

#endif
