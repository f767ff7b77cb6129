/*
 * admit.c - admission (see admit.h).
 *
 * Buckets live in memory, one per key id, refilled at the key's rate (or
 * the configured default) up to its burst. A restart refills them. Tenant
 * connection counts are a small table by tenant name, an entry dropped when
 * its count reaches zero.
 */
#include "admit/admit.h"

#include "auth/keys.h"
#include "base/alloc.h"
#include "base/err.h"
#include "metrics/metrics.h"
#include "storeq/storeq.h"

#include <math.h>
#include <stdatomic.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define ADMIN_ACCESS_KEY "admin" /* SigV4 access key id of the admin key */
#define MAX_LOOKUPS 4096          /* lookups waiting on the worker; beyond, 503 */
#define VERSION_POLL_MS 1000

typedef struct {
    char key_id[32];
    char ns[80]; /* the key's tenant, for metrics */
    double tokens;
    uint64_t at_ns;
    uint64_t refused; /* requests over the limit */
} bucket_t;

typedef struct {
    char tenant[65];
    size_t n;
} tenant_count_t;

struct realm_admit_s {
    realm_admit_config_t cfg;
    char *admin_key;    /* owned; NULL: none */
    realm_keys_t *keys; /* NULL when auth is off */
    bucket_t *buckets;
    size_t buckets_cnt, buckets_cap;
    tenant_count_t *tenants;
    size_t tenants_cnt, tenants_cap;
    size_t conns;
    int is_draining;
    /* The worker (auth on, with a loop): the store is its own from then on. */
    realm_storeq_t *q;
    int is_closing;
    void (*close_cb)(void *data);
    void *close_data;
    _Atomic uint64_t version; /* the store's change counter, as the worker last read it */
};

static uint64_t default_now(void)
{
    return uv_hrtime();
}

static int refuse(realm_admit_verdict_t *v, int err, int retry_after, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(realm_admit_verdict_t *v, int err, int retry_after, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->message, sizeof(v->message), fmt, ap);
    va_end(ap);
    v->err = err;
    v->retry_after = retry_after;
    return err;
}

static int admitted(realm_admit_verdict_t *v)
{
    v->err = 0;
    v->retry_after = 0;
    v->message[0] = '\0';
    return 0;
}

static int start_worker(realm_admit_t *ad, uv_loop_t *loop);

realm_admit_t *realm_admit_new(const realm_admit_config_t *cfg, char *err, size_t err_len)
{
    realm_admit_t *ad = realm_calloc(1, sizeof(*ad));
    ad->cfg = *cfg;
    ad->cfg.data_dir = NULL;
    ad->cfg.admin_key = NULL;
    if (!ad->cfg.now_ns) ad->cfg.now_ns = default_now;
    if (cfg->admin_key && cfg->admin_key[0] && strcmp(cfg->admin_key, "none") != 0)
        ad->admin_key = realm_strdup(cfg->admin_key);
    if (!cfg->auth) return ad;
    ad->keys = realm_keys_open(cfg->data_dir, cfg->db, cfg->server_key_file, err, err_len);
    if (!ad->keys) {
        realm_admit_free(ad);
        return NULL;
    }
    /* Read before the worker exists: until then the store is this thread's. */
    atomic_store(&ad->version, realm_keys_version(ad->keys));
    if (cfg->loop && start_worker(ad, cfg->loop) != 0) {
        snprintf(err, err_len, "could not start the key store's worker thread");
        realm_admit_free(ad);
        return NULL;
    }
    return ad;
}

void realm_admit_free(realm_admit_t *ad)
{
    if (!ad) return;
    /* Not closed (a server that failed to start): nothing runs on the worker
     * now that the loop is not run, so closing it and running the loop once
     * joins it. */
    if (ad->q && !ad->is_closing) {
        realm_admit_close(ad, NULL, NULL);
        uv_run(ad->cfg.loop, UV_RUN_DEFAULT);
    }
    realm_keys_close(ad->keys);
    if (ad->admin_key) OPENSSL_cleanse(ad->admin_key, strlen(ad->admin_key));
    free(ad->admin_key);
    free(ad->buckets);
    free(ad->tenants);
    free(ad);
}

int realm_admit_is_on(const realm_admit_t *ad)
{
    return ad && ad->keys != NULL;
}

/* ---- the worker ---- */

static void publish_version(realm_admit_t *ad)
{
    atomic_store(&ad->version, realm_keys_version(ad->keys));
}

static void poll_work(void *data)
{
    publish_version(data);
}

static int start_worker(realm_admit_t *ad, uv_loop_t *loop)
{
    ad->q = realm_storeq_new(loop, "auth", MAX_LOOKUPS);
    if (!ad->q) return -1;
    realm_storeq_every(ad->q, VERSION_POLL_MS, poll_work, ad);
    return 0;
}

static void on_queue_closed(void *data)
{
    realm_admit_t *ad = data;
    ad->q = NULL;
    if (ad->close_cb) ad->close_cb(ad->close_data);
}

void realm_admit_close(realm_admit_t *ad, void (*cb)(void *data), void *data)
{
    if (!ad || ad->is_closing) return;
    ad->is_closing = 1;
    if (!ad->q) {
        if (cb) cb(data);
        return;
    }
    ad->close_cb = cb;
    ad->close_data = data;
    realm_storeq_close(ad->q, on_queue_closed, ad);
}

typedef struct {
    realm_admit_t *ad;
    char *api_key, *access_key_id, *act_as; /* owned copies */
    realm_admit_principal_t who;            /* the query's, with has_who */
    int has_who;
    realm_admit_found_t f;
    realm_admit_found_cb cb;
    void *data;
} find_job_t;

static void wipe_free(char *s)
{
    if (!s) return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

static void find_work(void *data)
{
    find_job_t *j = data;
    realm_admit_found_t *f = &j->f;
    if (j->api_key)
        realm_admit_api_key(j->ad, j->api_key, &f->who, &f->v);
    else if (j->access_key_id)
        realm_admit_sigv4_key(j->ad, j->access_key_id, &f->who, f->secret, sizeof(f->secret),
                              &f->v);
    else if (j->has_who) {
        f->who = j->who;
        admitted(&f->v);
    } else {
        refuse(&f->v, REALM_ERR_UNAUTHORIZED, 0, "invalid API key");
    }
    if (f->v.err == 0) realm_admit_tenant(j->ad, &f->who, j->act_as, &f->as, &f->as_v);
}

static void find_done(void *data, int status)
{
    find_job_t *j = data;
    if (status != 0) {
        memset(&j->f, 0, sizeof(j->f));
        refuse(&j->f.v, REALM_ERR_SHUTTING_DOWN, 1, "the server is shutting down");
        j->f.as_v = j->f.v;
    }
    j->cb(&j->f, status, j->data);
    OPENSSL_cleanse(j->f.secret, sizeof(j->f.secret));
    wipe_free(j->api_key);
    free(j->access_key_id);
    free(j->act_as);
    free(j);
}

int realm_admit_find(realm_admit_t *ad, const realm_admit_query_t *q, realm_admit_found_cb cb,
                     void *data)
{
    if (!ad->q || ad->is_closing) return REALM_ERR_SHUTTING_DOWN;
    find_job_t *j = realm_calloc(1, sizeof(*j));
    j->ad = ad;
    j->api_key = realm_strdup_opt(q->api_key);
    j->access_key_id = realm_strdup_opt(q->access_key_id);
    j->act_as = realm_strdup_opt(q->act_as);
    if (q->who) {
        j->who = *q->who;
        j->has_who = 1;
    }
    j->cb = cb;
    j->data = data;
    int rc = realm_storeq_submit(ad->q, find_work, find_done, j);
    if (rc != 0) {
        wipe_free(j->api_key);
        free(j->access_key_id);
        free(j->act_as);
        free(j);
    }
    return rc;
}

typedef struct {
    realm_admit_t *ad;
    char **ids;
    size_t n, revoked_cnt;
    const char **revoked; /* into ids */
    realm_admit_revoked_cb cb;
    void *data;
} revoked_job_t;

static void revoked_work(void *data)
{
    revoked_job_t *j = data;
    for (size_t i = 0; i < j->n; i++) {
        realm_admit_principal_t p = {0};
        snprintf(p.key_id, sizeof(p.key_id), "%s", j->ids[i]);
        p.is_admin = strcmp(j->ids[i], "admin") == 0;
        if (!realm_admit_is_active(j->ad, &p)) j->revoked[j->revoked_cnt++] = j->ids[i];
    }
    publish_version(j->ad);
}

static void revoked_done(void *data, int status)
{
    revoked_job_t *j = data;
    j->cb(j->revoked, status == 0 ? j->revoked_cnt : 0, status, j->data);
    for (size_t i = 0; i < j->n; i++)
        free(j->ids[i]);
    free(j->ids);
    free(j->revoked);
    free(j);
}

int realm_admit_find_revoked(realm_admit_t *ad, const char *const *key_ids, size_t n,
                             realm_admit_revoked_cb cb, void *data)
{
    if (!ad->q || ad->is_closing) return REALM_ERR_SHUTTING_DOWN;
    revoked_job_t *j = realm_calloc(1, sizeof(*j));
    j->ad = ad;
    j->n = n;
    j->ids = realm_calloc(n ? n : 1, sizeof(*j->ids));
    j->revoked = realm_calloc(n ? n : 1, sizeof(*j->revoked));
    for (size_t i = 0; i < n; i++)
        j->ids[i] = realm_strdup(key_ids[i]);
    j->cb = cb;
    j->data = data;
    int rc = realm_storeq_submit(ad->q, revoked_work, revoked_done, j);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++)
            free(j->ids[i]);
        free(j->ids);
        free(j->revoked);
        free(j);
    }
    return rc;
}

/* ---- principals ---- */

int realm_admit_is_admin_key(const realm_admit_t *ad, const char *key)
{
    if (!ad->admin_key || !key) return 0;
    size_t n = strlen(ad->admin_key);
    return strlen(key) == n && CRYPTO_memcmp(key, ad->admin_key, n) == 0;
}

static void from_info(realm_admit_principal_t *out, const realm_key_info_t *k)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->tenant, sizeof(out->tenant), "%s", k->tenant);
    snprintf(out->ns, sizeof(out->ns), "%s", k->account_id);
    snprintf(out->key_id, sizeof(out->key_id), "%s", k->key_id);
    out->rate = k->rate;
    out->burst = k->burst;
}

static void admin(realm_admit_principal_t *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->key_id, sizeof(out->key_id), "admin");
    out->is_admin = 1;
}

int realm_admit_api_key(realm_admit_t *ad, const char *api_key, realm_admit_principal_t *who,
                        realm_admit_verdict_t *v)
{
    memset(who, 0, sizeof(*who));
    if (!ad->keys) return admitted(v);
    if (api_key && realm_admit_is_admin_key(ad, api_key)) {
        admin(who);
        return admitted(v);
    }
    realm_key_info_t k;
    if (!api_key || realm_keys_check_api_key(ad->keys, api_key, &k) != 1)
        return refuse(v, REALM_ERR_UNAUTHORIZED, 0, "invalid API key");
    from_info(who, &k);
    return admitted(v);
}

int realm_admit_sigv4_key(realm_admit_t *ad, const char *access_key_id,
                          realm_admit_principal_t *who, char *secret, size_t secret_len,
                          realm_admit_verdict_t *v)
{
    memset(who, 0, sizeof(*who));
    if (secret_len) secret[0] = '\0';
    if (ad->keys && access_key_id) {
        if (strcmp(access_key_id, ADMIN_ACCESS_KEY) == 0) {
            if (ad->admin_key) {
                snprintf(secret, secret_len, "%s", ad->admin_key);
                admin(who);
                return admitted(v);
            }
        } else {
            realm_key_info_t k;
            if (realm_keys_find_access_key(ad->keys, access_key_id, &k, secret, secret_len) == 1) {
                from_info(who, &k);
                return admitted(v);
            }
        }
    }
    return refuse(v, REALM_ERR_UNAUTHORIZED, 0,
                  "The security token included in the request is invalid.");
}

/* An admin acting for a tenant (by name or account id): 1 and *out, or 0. */
static int act_as_tenant(realm_admit_t *ad, const char *tenant, realm_admit_principal_t *out)
{
    char account[13];
    json_t *all = NULL;
    if (realm_keys_tenant_account(ad->keys, tenant, account) != 1) {
        /* An account id names its tenant too. */
        all = realm_keys_list(ad->keys);
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

/* ---- connections ---- */

static tenant_count_t *tenant_count(realm_admit_t *ad, const char *tenant, int create)
{
    for (size_t i = 0; i < ad->tenants_cnt; i++)
        if (strcmp(ad->tenants[i].tenant, tenant) == 0) return &ad->tenants[i];
    if (!create) return NULL;
    if (ad->tenants_cnt == ad->tenants_cap) {
        ad->tenants_cap = ad->tenants_cap ? ad->tenants_cap * 2 : 16;
        ad->tenants = realm_realloc(ad->tenants, ad->tenants_cap * sizeof(*ad->tenants));
    }
    tenant_count_t *t = &ad->tenants[ad->tenants_cnt++];
    snprintf(t->tenant, sizeof(t->tenant), "%s", tenant);
    t->n = 0;
    return t;
}

int realm_admit_conn_open(realm_admit_t *ad, realm_admit_conn_t *c, realm_admit_verdict_t *v)
{
    memset(c, 0, sizeof(*c));
    if (ad->is_draining)
        return refuse(v, REALM_ERR_SHUTTING_DOWN, 1, "the server is shutting down");
    if (ad->conns >= ad->cfg.max_connections)
        return refuse(v, REALM_ERR_TOO_MANY_CONNECTIONS, 1, "too many connections");
    ad->conns++;
    c->is_open = 1;
    return admitted(v);
}

int realm_admit_conn_identify(realm_admit_t *ad, realm_admit_conn_t *c,
                              const realm_admit_principal_t *found, realm_admit_verdict_t *v)
{
    if (c->is_identified) return admitted(v);
    realm_admit_principal_t who;
    if (ad->keys)
        who = *found;
    else
        memset(&who, 0, sizeof(who));
    tenant_count_t *t = NULL;
    if (ad->keys && !who.is_admin) {
        t = tenant_count(ad, who.tenant, 1);
        if (t->n >= ad->cfg.max_tenant_connections) {
            if (t->n == 0) *t = ad->tenants[--ad->tenants_cnt];
            return refuse(v, REALM_ERR_TOO_MANY_CONNECTIONS, 1,
                          "too many connections for this tenant");
        }
        t->n++;
    }
    c->who = who;
    c->is_identified = 1;
    return admitted(v);
}

void realm_admit_conn_close(realm_admit_t *ad, realm_admit_conn_t *c)
{
    if (!c->is_open) return;
    if (c->is_identified && ad->keys && !c->who.is_admin) {
        tenant_count_t *t = tenant_count(ad, c->who.tenant, 0);
        if (t && --t->n == 0) *t = ad->tenants[--ad->tenants_cnt];
    }
    ad->conns--;
    c->is_open = 0;
    c->is_identified = 0;
}

size_t realm_admit_connections(const realm_admit_t *ad)
{
    return ad->conns;
}

/* ---- calls ---- */

/* One request of a principal: 0 if its bucket allows it, else the seconds to wait. */
static double take(realm_admit_t *ad, const realm_admit_principal_t *p)
{
    if (!ad->keys || p->is_admin) return 0;
    double rate = p->rate > 0 ? p->rate : ad->cfg.rate_limit;
    double burst = p->burst > 0 ? p->burst : ad->cfg.rate_burst;
    if (burst < 1) burst = 1;
    uint64_t now = ad->cfg.now_ns();
    bucket_t *b = NULL;
    for (size_t i = 0; i < ad->buckets_cnt && !b; i++)
        if (strcmp(ad->buckets[i].key_id, p->key_id) == 0) b = &ad->buckets[i];
    if (!b) {
        if (ad->buckets_cnt == ad->buckets_cap) {
            ad->buckets_cap = ad->buckets_cap ? ad->buckets_cap * 2 : 16;
            ad->buckets = realm_realloc(ad->buckets, ad->buckets_cap * sizeof(*ad->buckets));
        }
        b = &ad->buckets[ad->buckets_cnt++];
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

int realm_admit_act_as(realm_admit_t *ad, const realm_admit_principal_t *who, const char *act_as,
                       realm_admit_principal_t *as, realm_admit_verdict_t *v)
{
    *as = *who;
    if (!act_as || !ad->keys) return admitted(v);
    if (who->is_admin) return REALM_ADMIT_FIND;
    if (strcmp(act_as, who->tenant) != 0 && strcmp(act_as, who->ns) != 0)
        return refuse(v, REALM_ERR_UNAUTHORIZED, 0,
                      "this connection's key does not act for that tenant_id");
    return admitted(v);
}

int realm_admit_tenant(realm_admit_t *ad, const realm_admit_principal_t *who, const char *act_as,
                       realm_admit_principal_t *as, realm_admit_verdict_t *v)
{
    int rc = realm_admit_act_as(ad, who, act_as, as, v);
    if (rc != REALM_ADMIT_FIND) return rc;
    if (!act_as_tenant(ad, act_as, as))
        return refuse(v, REALM_ERR_TENANT_NOT_FOUND, 0, "no such tenant");
    return admitted(v);
}

int realm_admit_call(realm_admit_t *ad, const realm_admit_principal_t *as, unsigned flags,
                     realm_admit_verdict_t *v)
{
    int ends_work = (flags & REALM_ADMIT_ENDS_WORK) != 0;
    if (ad->is_draining && !ends_work && !(flags & REALM_ADMIT_IN_DRAIN))
        return refuse(v, REALM_ERR_SHUTTING_DOWN, 1, "the server is shutting down");
    double wait = ends_work ? 0 : take(ad, as);
    if (wait > 0) {
        int secs = (int)ceil(wait);
        if (secs < 1) secs = 1;
        return refuse(v, REALM_ERR_RATE_LIMIT_EXCEEDED, secs,
                      "rate limit of this key exceeded: retry in %d s", secs);
    }
    return admitted(v);
}

/* ---- draining, revocation, metrics ---- */

void realm_admit_drain(realm_admit_t *ad)
{
    ad->is_draining = 1;
}

int realm_admit_is_draining(const realm_admit_t *ad)
{
    return ad->is_draining;
}

int realm_admit_is_active(realm_admit_t *ad, const realm_admit_principal_t *who)
{
    if (!ad->keys || who->is_admin || !who->key_id[0]) return 1;
    return realm_keys_is_active(ad->keys, who->key_id) == 1;
}

uint64_t realm_admit_version(realm_admit_t *ad)
{
    if (!ad->keys) return 0;
    if (!ad->q) return realm_keys_version(ad->keys); /* no worker: the store is ours */
    return atomic_load(&ad->version);
}

void realm_admit_collect(realm_buf_t *out, void *data)
{
    realm_admit_t *ad = data;
    if (!ad->keys) return;
    realm_metrics_emit_header(out, "realm_rate_limited_total",
                              "Requests refused by a key's rate limit, by tenant (account id)",
                              REALM_METRIC_COUNTER);
    for (size_t i = 0; i < ad->buckets_cnt; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(ad->buckets[j].ns, ad->buckets[i].ns) == 0;
        if (seen) continue;
        uint64_t n = 0;
        for (size_t j = i; j < ad->buckets_cnt; j++)
            if (strcmp(ad->buckets[j].ns, ad->buckets[i].ns) == 0) n += ad->buckets[j].refused;
        const char *labels[] = {"tenant", ad->buckets[i].ns, NULL};
        realm_metrics_emit_sample(out, "realm_rate_limited_total", labels, (double)n);
    }
}
