/*
 * authn.c - API keys, SigV4, the admin key and token buckets (see authn.h).
 *
 * Buckets live in memory, one per key id, refilled at the key's rate (or
 * --rate-limit) up to its burst (or --rate-burst). A restart refills them.
 */
#include "api/authn.h"

#include "api/control.h"
#include "auth/keys.h"
#include "auth/sigv4.h"
#include "base/alloc.h"
#include "base/log.h"
#include "metrics/metrics.h"

#include <math.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#define ADMIN_ACCESS_KEY "admin"       /* SigV4 access key id of the admin key */
#define TENANT_HEADER "X-Realm-Tenant" /* whom an admin acts for on the control API */

typedef struct {
    char key_id[32];
    char ns[80]; /* the key's tenant, for metrics */
    double tokens;
    uint64_t at_ns;
    uint64_t refused; /* requests over the limit */
} bucket_t;

struct realm_authn_s {
    const realm_config_t *cfg;
    realm_keys_t *keys; /* NULL when auth is off */
    bucket_t *buckets;
    size_t buckets_cnt, buckets_cap;
};

realm_authn_t *realm_authn_new(const realm_config_t *cfg, char *err, size_t err_len)
{
    realm_authn_t *a = realm_calloc(1, sizeof(*a));
    a->cfg = cfg;
    if (!cfg->auth) return a;
    a->keys = realm_keys_open(cfg->data_dir, err, err_len);
    if (!a->keys) {
        free(a);
        return NULL;
    }
    return a;
}

void realm_authn_free(realm_authn_t *a)
{
    if (!a) return;
    realm_keys_close(a->keys);
    free(a->buckets);
    free(a);
}

int realm_authn_is_on(const realm_authn_t *a)
{
    return a && a->keys != NULL;
}

static int is_admin_key(const realm_authn_t *a, const char *key)
{
    const char *admin = a->cfg->admin_key;
    if (!admin || strcmp(admin, "none") == 0 || !key) return 0;
    size_t n = strlen(admin);
    return strlen(key) == n && CRYPTO_memcmp(key, admin, n) == 0;
}

static void from_info(realm_principal_t *out, const realm_key_info_t *k)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->tenant, sizeof(out->tenant), "%s", k->tenant);
    snprintf(out->ns, sizeof(out->ns), "%s", k->account_id);
    snprintf(out->key_id, sizeof(out->key_id), "%s", k->key_id);
    out->rate = k->rate;
    out->burst = k->burst;
}

static void admin(realm_principal_t *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->key_id, sizeof(out->key_id), "admin");
    out->is_admin = 1;
}

int realm_authn_api_key(realm_authn_t *a, const char *key, realm_principal_t *out)
{
    if (!a->keys || !key) return 0;
    if (is_admin_key(a, key)) {
        admin(out);
        return 1;
    }
    realm_key_info_t k;
    if (realm_keys_check_api_key(a->keys, key, &k) != 1) return 0;
    from_info(out, &k);
    return 1;
}

int realm_authn_act_as(realm_authn_t *a, const char *tenant, realm_principal_t *out)
{
    if (!a->keys || !tenant) return 0;
    char account[13];
    json_t *all = NULL;
    if (realm_keys_tenant_account(a->keys, tenant, account) != 1) {
        /* An account id names its tenant too. */
        all = realm_keys_list(a->keys);
        size_t i;
        json_t *k;
        int found = 0;
        json_array_foreach(all, i, k)
        {
            const char *acc = json_string_value(json_object_get(k, "account_id"));
            const char *t = json_string_value(json_object_get(k, "tenant"));
            if (acc && t && strcmp(acc, tenant) == 0) {
                snprintf(account, sizeof(account), "%s", acc);
                tenant = t;
                found = 1;
                break;
            }
        }
        if (!found) {
            json_decref(all);
            return 0;
        }
    }
    admin(out);
    snprintf(out->tenant, sizeof(out->tenant), "%s", tenant);
    snprintf(out->ns, sizeof(out->ns), "%s", account);
    json_decref(all);
    return 1;
}

double realm_authn_take(realm_authn_t *a, const realm_principal_t *p)
{
    if (!a->keys || p->is_admin) return 0;
    double rate = p->rate > 0 ? p->rate : (double)a->cfg->rate_limit;
    double burst = p->burst > 0 ? p->burst : (double)a->cfg->rate_burst;
    if (burst < 1) burst = 1;
    uint64_t now = uv_hrtime();
    bucket_t *b = NULL;
    for (size_t i = 0; i < a->buckets_cnt && !b; i++)
        if (strcmp(a->buckets[i].key_id, p->key_id) == 0) b = &a->buckets[i];
    if (!b) {
        if (a->buckets_cnt == a->buckets_cap) {
            a->buckets_cap = a->buckets_cap ? a->buckets_cap * 2 : 16;
            a->buckets = realm_realloc(a->buckets, a->buckets_cap * sizeof(*a->buckets));
        }
        b = &a->buckets[a->buckets_cnt++];
        snprintf(b->key_id, sizeof(b->key_id), "%s", p->key_id);
        snprintf(b->ns, sizeof(b->ns), "%s", p->ns);
        b->tokens = burst;
        b->refused = 0;
        b->at_ns = now;
    }
    b->tokens += (double)(now - b->at_ns) / 1e9 * rate;
    if (b->tokens > burst) b->tokens = burst;
    b->at_ns = now;
    if (b->tokens >= 1) {
        b->tokens -= 1;
        return 0;
    }
    b->refused++;
    return (1 - b->tokens) / rate;
}

int realm_authn_is_active(realm_authn_t *a, const realm_principal_t *p)
{
    if (!a->keys || p->is_admin || !p->key_id[0]) return 1;
    return realm_keys_is_active(a->keys, p->key_id) == 1;
}

void realm_authn_collect(realm_buf_t *out, void *data)
{
    realm_authn_t *a = data;
    if (!a->keys) return;
    realm_metrics_emit_header(out, "realm_rate_limited_total",
                              "Requests refused by a key's rate limit, by tenant (account id)",
                              REALM_METRIC_COUNTER);
    for (size_t i = 0; i < a->buckets_cnt; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(a->buckets[j].ns, a->buckets[i].ns) == 0;
        if (seen) continue;
        uint64_t n = 0;
        for (size_t j = i; j < a->buckets_cnt; j++)
            if (strcmp(a->buckets[j].ns, a->buckets[i].ns) == 0) n += a->buckets[j].refused;
        const char *labels[] = {"tenant", a->buckets[i].ns, NULL};
        realm_metrics_emit_sample(out, "realm_rate_limited_total", labels, (double)n);
    }
}

uint64_t realm_authn_version(realm_authn_t *a)
{
    return a->keys ? realm_keys_version(a->keys) : 0;
}

/* ---- the control API ---- */

static void throttled(realm_http_res_t *res, double wait)
{
    char after[32];
    snprintf(after, sizeof(after), "%.0f", ceil(wait < 1 ? 1 : wait));
    realm_http_res_header(res, "Retry-After", after);
    realm_control_send_error(res, 429, "TooManyRequestsException", "Rate exceeded");
}

int realm_authn_control_guard(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_authn_t *a = data;
    req->principal[0] = '\0';
    if (!a->keys) return 0;
    const char *authz = realm_http_req_header(req, "Authorization");
    char msg[512];
    realm_sigv4_auth_t sa;
    if (!authz) {
        realm_control_send_error(res, 403, "MissingAuthenticationTokenException",
                                 "Missing Authentication Token");
        return -1;
    }
    if (realm_sigv4_parse(authz, &sa, msg, sizeof(msg)) != 0) {
        realm_control_send_error(res, 400, "IncompleteSignatureException", msg);
        return -1;
    }
    if (strcmp(sa.service, "lambda") != 0) {
        realm_control_send_error(res, 403, "InvalidSignatureException",
                                 "Credential should be scoped to correct service: 'lambda'.");
        return -1;
    }
    if (strcmp(sa.region, a->cfg->region) != 0) {
        snprintf(msg, sizeof(msg), "Credential should be scoped to a valid region, not '%.60s'.",
                 sa.region);
        realm_control_send_error(res, 403, "InvalidSignatureException", msg);
        return -1;
    }
    /* The signer normalizes dot segments; a path that has any is not ours to route. */
    size_t plen = strlen(req->path);
    if (strstr(req->path, "/./") || strstr(req->path, "/../") || strstr(req->path, "//") ||
        (plen >= 2 && strcmp(req->path + plen - 2, "/.") == 0) ||
        (plen >= 3 && strcmp(req->path + plen - 3, "/..") == 0)) {
        realm_control_send_error(res, 400, "InvalidRequestContentException",
                                 "The request path must not hold '.', '..' or empty segments");
        return -1;
    }
    realm_principal_t p;
    char secret[128] = "";
    int found = 0;
    if (strcmp(sa.access_key_id, ADMIN_ACCESS_KEY) == 0 && strcmp(a->cfg->admin_key, "none") != 0) {
        snprintf(secret, sizeof(secret), "%s", a->cfg->admin_key);
        admin(&p);
        found = 1;
    } else {
        realm_key_info_t k;
        if (realm_keys_find_access_key(a->keys, sa.access_key_id, &k, secret, sizeof(secret)) ==
            1) {
            from_info(&p, &k);
            found = 1;
        }
    }
    if (!found) {
        realm_control_send_error(res, 403, "UnrecognizedClientException",
                                 "The security token included in the request is invalid.");
        return -1;
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
    int rc = realm_sigv4_verify(&sr, &sa, secret, now_ms, msg, sizeof(msg));
    OPENSSL_cleanse(secret, sizeof(secret));
    if (rc != REALM_SIGV4_OK) {
        if (rc == REALM_SIGV4_MALFORMED)
            realm_control_send_error(res, 400, "IncompleteSignatureException", msg);
        else
            realm_control_send_error(res, 403, "InvalidSignatureException", msg);
        return -1;
    }
    if (p.is_admin) {
        /* The admin acts for the tenant it names, else in the default namespace. */
        const char *as = realm_http_req_header(req, TENANT_HEADER);
        if (as && realm_authn_act_as(a, as, &p) != 1) {
            realm_control_send_error(res, 404, "ResourceNotFoundException", "No such tenant");
            return -1;
        }
    }
    double wait = realm_authn_take(a, &p);
    if (wait > 0) {
        throttled(res, wait);
        return -1;
    }
    snprintf(req->principal, sizeof(req->principal), "%s", p.ns);
    return 0;
}

int realm_authn_metrics_guard(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_authn_t *a = data;
    if (!a->keys || strcmp(req->path, "/health") == 0) return 0;
    const char *authz = realm_http_req_header(req, "Authorization");
    if (authz && strncasecmp(authz, "Bearer ", 7) == 0 && is_admin_key(a, authz + 7)) return 0;
    realm_http_res_header(res, "WWW-Authenticate", "Bearer realm=\"metrics\"");
    realm_http_res_error(res, 401, "the metrics need the admin key (Authorization: Bearer KEY)");
    return -1;
}
