/*
 * admit.h - admission: who may come in, and may it do this now. One path
 * for every surface (client WebSocket, control API, and the HTTP routes to
 * come): credentials to a principal, the tenant it acts for, connection
 * limits (all at once and per tenant), per-key rate limits (token buckets)
 * and draining. See docs/tenants.md.
 *
 * DESIGN: wire-free. A surface extracts the credentials itself (an
 * `Authorization: Bearer` header, a first {"type":"auth"} message, a SigV4
 * access key id), asks here, and renders the answer in its own wire format.
 * Every refusal is a REALM_ERR_* code (base/err.h) with the message the
 * surfaces show and, for the retryable ones, retry_after in whole seconds.
 * A principal's namespace is its tenant's 12-digit account id, so the
 * registry, the engine and the event queue keep tenants apart by that
 * string alone (and ARNs carry it). With auth off every caller is the
 * default principal (namespace "", no key, no limits but the connection
 * count and draining).
 *
 * The steps, in the order a surface takes them:
 *   realm_admit_conn_open      a connection arrives: draining, the overall cap
 *   realm_admit_conn_identify  its credentials (API key): principal, tenant cap
 *   realm_admit_call           each call/request: draining, act-as, rate limit
 *   realm_admit_conn_close     the connection is gone (always, once opened)
 * A request-per-connection surface (an HTTP route) may skip the conn_*
 * steps: realm_admit_api_key or realm_admit_sigv4_key, then realm_admit_call.
 *
 * HOW EACH SURFACE CALLS IT
 *   Client WebSocket (api/client.c): conn_open + conn_identify (Bearer key)
 *     at the upgrade; refused 401 (UNAUTHORIZED) or 503 + Retry-After
 *     (SHUTTING_DOWN, TOO_MANY_CONNECTIONS). Without a Bearer key,
 *     conn_identify on the first {"type":"auth"} message (auth_failed and
 *     close 1008 on a refusal). Each call message: realm_admit_call(ad,
 *     &conn.who, msg.tenant_id, def->is_exempt ? REALM_ADMIT_ENDS_WORK : 0,
 *     &as, &v), then the call runs in as.ns. The revocation sweep polls
 *     realm_admit_version and realm_admit_is_active.
 *   Control API (Lambda management and Invoke, one guard for the whole
 *     listener: realm_authn_control_guard in api/authn.c): the guard parses
 *     and checks the SigV4 header, realm_admit_sigv4_key for the principal
 *     and secret, verifies the signature (auth/sigv4.h), then
 *     realm_admit_call(ad, &who, who.is_admin ? X-Realm-Tenant : NULL,
 *     REALM_ADMIT_IN_DRAIN, &as, &v) and sets req->principal = as.ns.
 *     control.c and invoke.c (and src/invoke/) call nothing: they read
 *     req->principal, which the guard set. A route that must not run while
 *     draining checks realm_admit_is_draining (or calls realm_admit_call
 *     without REALM_ADMIT_IN_DRAIN) rather than keeping its own flag.
 *   An OpenAI-compatible HTTP route (Authorization: Bearer KEY):
 *     realm_admit_api_key(ad, key, &who, &v), then realm_admit_call(ad, &who,
 *     NULL, 0, &as, &v); render err with realm_err_http_status (401, 404,
 *     429, 503) and a Retry-After of v.retry_after when it is > 0. A
 *     streaming response that holds its connection open may count itself
 *     with conn_open/conn_identify/conn_close like a WebSocket.
 *   Metrics port: realm_admit_is_admin_key on the Bearer token.
 *
 * LIFETIME: realm_admit_new() before the surfaces start; realm_admit_free()
 * after they stopped. A realm_admit_conn_t is the caller's (embed it in the
 * connection's record); it must be closed before the admission is freed.
 * THREADS: loop thread only (the key store blocks on small transactions).
 */
#ifndef REALM_ADMIT_ADMIT_H
#define REALM_ADMIT_ADMIT_H

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct realm_admit_s realm_admit_t;

typedef struct {
    int auth;                      /* 0: no credentials asked, everyone is the default principal */
    const char *data_dir;          /* the key store's directory (auth on) */
    const char *db;                /* where keys live: NULL/"sqlite" or a postgresql:// URL */
    const char *server_key_file;   /* NULL: DATA_DIR/server.key (auth/keys.h) */
    const char *admin_key;         /* acts for any tenant; NULL or "none": no admin key */
    double rate_limit, rate_burst; /* per key, for keys without their own */
    size_t max_connections;        /* connections at once: TOO_MANY_CONNECTIONS beyond */
    size_t max_tenant_connections; /* identified connections of one tenant (admin exempt) */
    uint64_t (*now_ns)(void);      /* monotonic clock; NULL: uv_hrtime (tests pass their own) */
} realm_admit_config_t;

/* Who is calling. */
typedef struct {
    char tenant[65]; /* the tenant's name ("" when auth is off, or the admin acting for none) */
    char ns[80];     /* the namespace: the tenant's account id ("" when auth is off) */
    char key_id[32]; /* the key it came with ("" for none, "admin" for the admin key) */
    double rate, burst;
    int is_admin; /* may act for any tenant */
} realm_admit_principal_t;

/* A refusal: err (0 when admitted), the message to show, seconds to wait. */
typedef struct {
    int err;         /* 0 or REALM_ERR_* */
    int retry_after; /* >= 1 with RATE_LIMIT_EXCEEDED, SHUTTING_DOWN, TOO_MANY_CONNECTIONS */
    char message[160];
} realm_admit_verdict_t;

/* One connection's admission state; zero it before realm_admit_conn_open. */
typedef struct {
    realm_admit_principal_t who; /* valid once is_identified */
    unsigned is_open : 1;
    unsigned is_identified : 1;
} realm_admit_conn_t;

/* Flags of realm_admit_call. */
enum {
    REALM_ADMIT_ENDS_WORK = 1, /* only stops work (cancel): passes draining and the rate limit */
    REALM_ADMIT_IN_DRAIN = 2,  /* still served while draining (the control API) */
};

/* Opens the key store when cfg->auth (cfg is copied; its strings too). NULL with a message. */
realm_admit_t *realm_admit_new(const realm_admit_config_t *cfg, char *err, size_t err_len);
void realm_admit_free(realm_admit_t *ad);
int realm_admit_is_on(const realm_admit_t *ad);

/*
 * A connection arrives. 0: counted (call realm_admit_conn_close when it
 * goes). Else SHUTTING_DOWN ("the server is shutting down") or
 * TOO_MANY_CONNECTIONS ("too many connections"), retry_after 1, not counted.
 */
int realm_admit_conn_open(realm_admit_t *ad, realm_admit_conn_t *c, realm_admit_verdict_t *v);
/*
 * Identifies an open connection by its API key (or the admin key): 0 and
 * c->who; UNAUTHORIZED ("invalid API key"); TOO_MANY_CONNECTIONS ("too many
 * connections for this tenant", retry_after 1). With auth off: 0, the
 * default principal, whatever the key. Identifying twice is a no-op.
 */
int realm_admit_conn_identify(realm_admit_t *ad, realm_admit_conn_t *c, const char *api_key,
                              realm_admit_verdict_t *v);
/* The connection is gone. A connection never opened (or closed) is fine. */
void realm_admit_conn_close(realm_admit_t *ad, realm_admit_conn_t *c);
/* Connections open now. */
size_t realm_admit_connections(const realm_admit_t *ad);

/* An API key without a connection: 0 and *who, or UNAUTHORIZED ("invalid API key"). */
int realm_admit_api_key(realm_admit_t *ad, const char *api_key, realm_admit_principal_t *who,
                        realm_admit_verdict_t *v);
/*
 * A SigV4 access key id ("admin" for the admin key): 0, *who and its secret
 * (NUL-terminated; secret_len >= 41 and longer than the admin key, 128 in
 * the control guard; wipe it after use) for the caller to
 * verify the signature with (auth/sigv4.h); else UNAUTHORIZED ("The security
 * token included in the request is invalid.") and secret "". The identity
 * counts only once the signature verified.
 */
int realm_admit_sigv4_key(realm_admit_t *ad, const char *access_key_id,
                          realm_admit_principal_t *who, char *secret, size_t secret_len,
                          realm_admit_verdict_t *v);
/* 1 if key is the admin key (compared in constant time), else 0. */
int realm_admit_is_admin_key(const realm_admit_t *ad, const char *key);

/*
 * One call or request of who, acting for act_as (a tenant name or account
 * id; NULL: who's own). In order:
 *   draining (unless ENDS_WORK or IN_DRAIN): SHUTTING_DOWN, retry_after 1;
 *   act_as (auth on only): an admin acts for any existing tenant, else
 *     TENANT_NOT_FOUND ("no such tenant"); any other key only for its own
 *     tenant (name or account id), else UNAUTHORIZED ("this connection's key
 *     does not act for that tenant_id");
 *   the rate limit of who's key (unless ENDS_WORK; the admin has none):
 *     RATE_LIMIT_EXCEEDED ("rate limit of this key exceeded: retry in N s"),
 *     retry_after N.
 * 0 and *as (who, with the tenant and namespace it acts in) when admitted.
 */
int realm_admit_call(realm_admit_t *ad, const realm_admit_principal_t *who, const char *act_as,
                     unsigned flags, realm_admit_principal_t *as, realm_admit_verdict_t *v);

/* New connections and calls get SHUTTING_DOWN from now on (see the flags). */
void realm_admit_drain(realm_admit_t *ad);
int realm_admit_is_draining(const realm_admit_t *ad);

/* 1 while the principal's key is still valid (revocation takes effect). */
int realm_admit_is_active(realm_admit_t *ad, const realm_admit_principal_t *who);
/* Changes whenever keys change (another process included). */
uint64_t realm_admit_version(realm_admit_t *ad);
/* Metrics collector (realm_metrics_add_collector): realm_rate_limited_total{tenant}. */
void realm_admit_collect(realm_buf_t *out, void *data);

#endif
