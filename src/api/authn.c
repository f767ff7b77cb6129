/*
 * authn.c - HTTP adapters of admission: SigV4 on the control API, the admin
 * key on the metrics port (see authn.h). Decisions are admit/'s.
 */
#include "api/authn.h"

#include "api/control.h"
#include "auth/sigv4.h"
#include "base/alloc.h"
#include "base/err.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define TENANT_HEADER "X-Realm-Tenant" /* whom an admin acts for on the control API */

struct realm_authn_s {
    const realm_config_t *cfg;
    realm_admit_t *ad;
    void (*on_admitted)(realm_http_req_t *req);
};

realm_authn_t *realm_authn_new(uv_loop_t *loop, const realm_config_t *cfg, char *err,
                               size_t err_len)
{
    realm_admit_config_t ac = {
        .auth = cfg->auth,
        .data_dir = cfg->data_dir,
        .db = cfg->db,
        .server_key_file = cfg->server_key_file,
        .admin_key = cfg->admin_key,
        .rate_limit = (double)cfg->rate_limit,
        .rate_burst = (double)cfg->rate_burst,
        .max_connections = (size_t)cfg->max_connections,
        .max_tenant_connections = (size_t)cfg->max_tenant_connections,
        .loop = loop,
    };
    realm_admit_t *ad = realm_admit_new(&ac, err, err_len);
    if (!ad) return NULL;
    realm_authn_t *a = realm_calloc(1, sizeof(*a));
    a->cfg = cfg;
    a->ad = ad;
    return a;
}

void realm_authn_close(realm_authn_t *a, void (*cb)(void *data), void *data)
{
    realm_admit_close(a->ad, cb, data);
}

void realm_authn_on_admitted(realm_authn_t *a, void (*cb)(realm_http_req_t *req))
{
    a->on_admitted = cb;
}

void realm_authn_free(realm_authn_t *a)
{
    if (!a) return;
    realm_admit_free(a->ad);
    free(a);
}

int realm_authn_is_on(const realm_authn_t *a)
{
    return a && realm_admit_is_on(a->ad);
}

realm_admit_t *realm_authn_admit(realm_authn_t *a)
{
    return a->ad;
}

void realm_authn_collect(realm_buf_t *out, void *data)
{
    realm_authn_t *a = data;
    realm_admit_collect(out, a->ad);
}

/* ---- the control API ---- */

static void throttled(realm_http_res_t *res, int retry_after)
{
    char after[32];
    snprintf(after, sizeof(after), "%d", retry_after < 1 ? 1 : retry_after);
    realm_http_res_header(res, "Retry-After", after);
    realm_control_send_error(res, 429, "TooManyRequestsException", "Rate exceeded");
}

/* A control request waiting for its key: what the guard parsed. */
typedef struct {
    realm_authn_t *a;
    realm_http_res_t *res;
    realm_sigv4_auth_t sa;
    realm_admit_found_t *f; /* while resumed */
} pending_t;

/* The key was found (or not): verify the signature, then admit. */
static void on_found_resumed(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    pending_t *p = data;
    realm_authn_t *a = p->a;
    realm_admit_found_t *f = p->f;
    char msg[512];
    if (f->v.err == REALM_ERR_SHUTTING_DOWN) {
        realm_control_send_error(res, 503, "ServiceException", "The server is shutting down.");
        return;
    }
    if (f->v.err != 0) {
        realm_control_send_error(res, 403, "UnrecognizedClientException", f->v.message);
        return;
    }
    realm_sigv4_header_t hs[REALM_HTTP_MAX_HEADERS];
    for (size_t i = 0; i < req->headers_cnt; i++) {
        hs[i].name = req->headers[i].name;
        hs[i].value = req->headers[i].value;
    }
    realm_sigv4_req_t sr = {
        .method = req->method_name,
        .path = req->path,
        .query = req->query,
        .headers = hs,
        .headers_cnt = req->headers_cnt,
        .body = req->body.data ? req->body.data : "",
        .body_len = req->body.len,
    };
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int rc = realm_sigv4_verify(&sr, &p->sa, f->secret, now_ms, msg, sizeof(msg));
    if (rc != REALM_SIGV4_OK) {
        if (rc == REALM_SIGV4_MALFORMED)
            realm_control_send_error(res, 400, "IncompleteSignatureException", msg);
        else
            realm_control_send_error(res, 403, "InvalidSignatureException", msg);
        return;
    }
    /* The admin acts for the tenant it named (found with the key), else in
     * the default namespace; another key's X-Realm-Tenant is ignored. */
    const realm_admit_principal_t *as = f->who.is_admin ? &f->as : &f->who;
    realm_admit_verdict_t v;
    if (f->who.is_admin && f->as_v.err != 0) {
        realm_control_send_error(res, 404, "ResourceNotFoundException", "No such tenant");
        return;
    }
    if (realm_admit_call(a->ad, as, REALM_ADMIT_IN_DRAIN, &v) != 0) {
        throttled(res, v.retry_after);
        return;
    }
    snprintf(req->principal, sizeof(req->principal), "%s", as->ns);
    if (a->on_admitted) a->on_admitted(req);
    realm_http_req_route(req, res);
}

static void on_found(realm_admit_found_t *f, int status, void *data)
{
    (void)status; /* a lookup cancelled by shutdown says so in f->v */
    pending_t *p = data;
    p->f = f;
    realm_http_res_resume(p->res, on_found_resumed, p);
    free(p);
}

int realm_authn_control_guard(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_authn_t *a = data;
    req->principal[0] = '\0';
    if (!realm_admit_is_on(a->ad)) return 0;
    /* A load balancer's probe: unsigned, and it answers nothing but OK. */
    if (strcmp(req->route_path ? req->route_path : req->path, "/healthz") == 0) return 0;
    const char *authz = realm_http_req_header(req, "Authorization");
    char msg[512];
    pending_t *p = realm_calloc(1, sizeof(*p));
    realm_sigv4_auth_t *sa = &p->sa;
    int rc = -1;
    if (!authz) {
        realm_control_send_error(res, 403, "MissingAuthenticationTokenException",
                                 "Missing Authentication Token");
        goto done;
    }
    if (realm_sigv4_parse(authz, sa, msg, sizeof(msg)) != 0) {
        realm_control_send_error(res, 400, "IncompleteSignatureException", msg);
        goto done;
    }
    if (strcmp(sa->service, "lambda") != 0) {
        realm_control_send_error(res, 403, "InvalidSignatureException",
                                 "Credential should be scoped to correct service: 'lambda'.");
        goto done;
    }
    if (strcmp(sa->region, a->cfg->region) != 0) {
        snprintf(msg, sizeof(msg), "Credential should be scoped to a valid region, not '%.60s'.",
                 sa->region);
        realm_control_send_error(res, 403, "InvalidSignatureException", msg);
        goto done;
    }
    /* The signer normalizes dot segments; a path that has any is not ours to route. */
    size_t plen = strlen(req->path);
    if (strstr(req->path, "/./") || strstr(req->path, "/../") || strstr(req->path, "//") ||
        (plen >= 2 && strcmp(req->path + plen - 2, "/.") == 0) ||
        (plen >= 3 && strcmp(req->path + plen - 3, "/..") == 0)) {
        realm_control_send_error(res, 400, "InvalidRequestContentException",
                                 "The request path must not hold '.', '..' or empty segments");
        goto done;
    }
    /* The tenant header counts for the admin only: the worker resolves it
     * only for the admin key. */
    realm_admit_query_t q = {
        .access_key_id = sa->access_key_id,
        .act_as = realm_http_req_header(req, TENANT_HEADER),
    };
    p->a = a;
    p->res = res;
    int err = realm_admit_find(a->ad, &q, on_found, p);
    if (err == 0) return REALM_HTTP_GUARD_LATER;
    if (err == REALM_ERR_SHUTTING_DOWN)
        realm_control_send_error(res, 503, "ServiceException", "The server is shutting down.");
    else
        realm_control_send_error(res, 503, "ServiceException",
                                 "Too many requests are waiting for their keys; retry.");
done:
    free(p);
    return rc;
}

int realm_authn_metrics_guard(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_authn_t *a = data;
    if (!realm_admit_is_on(a->ad) || strcmp(req->path, "/health") == 0) return 0;
    const char *authz = realm_http_req_header(req, "Authorization");
    if (authz && strncasecmp(authz, "Bearer ", 7) == 0 &&
        realm_admit_is_admin_key(a->ad, authz + 7))
        return 0;
    realm_http_res_header(res, "WWW-Authenticate", "Bearer realm=\"metrics\"");
    realm_http_res_error(res, 401, "the metrics need the admin key (Authorization: Bearer KEY)");
    return -1;
}
