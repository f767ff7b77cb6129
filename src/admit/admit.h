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
 *   realm_admit_find           credentials to a principal (the key store, on
 *                              the auth worker; answered later on the loop)
 *   realm_admit_conn_open      a connection arrives: draining, the overall cap
 *   realm_admit_conn_identify  its principal: the tenant's connection cap
 *   realm_admit_act_as         each call/request: whom it acts for (an
 *                              admin naming a tenant: realm_admit_find again)
 *   realm_admit_call           each call/request: draining, rate limit
 *   realm_admit_conn_close     the connection is gone (always, once opened)
 * A request-per-connection surface (an HTTP route) skips the conn_* steps.
 *
 * THE KEY STORE IS NEVER CALLED ON THE LOOP. With auth on it lives on a
 * worker thread of its own ("auth", storeq/storeq.h): every lookup
 * (realm_admit_find, realm_admit_find_revoked) is a job there, answered by
 * a callback on the loop, so a slow or unreachable database (PostgreSQL)
 * holds up only the requests that wait for a key, never the loop. The
 * worker also reads the store's change counter every second and publishes
 * it (realm_admit_version, an atomic). Everything else here (connection
 * counts, buckets, draining) is memory on the loop.
 *
 * HOW EACH SURFACE CALLS IT
 *   Client WebSocket (api/client.c): a Bearer key on the upgrade is found
 *     by the listener's guard (the upgrade waits), then conn_open +
 *     conn_identify; refused 401 (UNAUTHORIZED) or 503 + Retry-After
 *     (SHUTTING_DOWN, TOO_MANY_CONNECTIONS). Without a Bearer key, the
 *     first {"type":"auth"} message is found and identified (auth_failed
 *     and close 1008 on a refusal; messages behind it wait). Each call
 *     message: realm_admit_act_as(ad, &conn.who, msg.tenant_id, &as, &v)
 *     (REALM_ADMIT_FIND: an admin naming a tenant, found on the worker
 *     while the session's later messages wait), then realm_admit_call(ad,
 *     &as, def->is_exempt ? REALM_ADMIT_ENDS_WORK : 0, &v), and the call
 *     runs in as.ns. The revocation sweep watches realm_admit_version and
 *     asks realm_admit_find_revoked about the keys of its sessions.
 *   Control API (Lambda management and Invoke, one guard for the whole
 *     listener: realm_authn_control_guard in api/authn.c): the guard parses
 *     and checks the SigV4 header, then realm_admit_find {access_key_id,
 *     act_as = who.is_admin ? X-Realm-Tenant : NULL} answers later with
 *     the principal, its secret and whom it acts for; the guard verifies the
 *     signature (auth/sigv4.h), then realm_admit_call(ad, &as,
 *     REALM_ADMIT_IN_DRAIN, &v) and sets req->principal = as.ns.
 *     control.c and invoke.c (and src/invoke/) call nothing: they read
 *     req->principal, which the guard set. A route that must not run while
 *     draining checks realm_admit_is_draining (or calls realm_admit_call
 *     without REALM_ADMIT_IN_DRAIN) rather than keeping its own flag.
 *   An OpenAI-compatible HTTP route (Authorization: Bearer KEY):
 *     realm_admit_find {api_key}, then realm_admit_call(ad, &f->who, 0, &v);
 *     render err with realm_err_http_status (401, 404,
 *     429, 503) and a Retry-After of v.retry_after when it is > 0. A
 *     streaming response that holds its connection open may count itself
 *     with conn_open/conn_identify/conn_close like a WebSocket.
 *   Metrics port: realm_admit_is_admin_key on the Bearer token.
 *
 * LIFETIME: realm_admit_new() before the surfaces start; realm_admit_close()
 * (the worker: lookups not started are answered REALM_ERR_SHUTTING_DOWN)
 * and, once its callback ran, realm_admit_free() after the surfaces
 * stopped. A realm_admit_conn_t is the caller's (embed it in the
 * connection's record); it must be closed before the admission is freed.
 * THREADS: the loop thread, but for the STORE FUNCTIONS below (the auth
 * worker's; a test without a loop calls them directly).
 */
#ifndef REALM_ADMIT_ADMIT_H
#define REALM_ADMIT_ADMIT_H

#include "base/buf.h"

#include <uv.h>

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
    uv_loop_t *loop; /* the surfaces' loop (auth on): the key store's worker answers there;
                        NULL: no worker (tests of the store functions) */
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
 * Identifies an open connection as who (found by realm_admit_find): 0 and
 * c->who; TOO_MANY_CONNECTIONS ("too many connections for this tenant",
 * retry_after 1). With auth off: 0, the default principal, whatever who is.
 * Identifying twice is a no-op.
 */
int realm_admit_conn_identify(realm_admit_t *ad, realm_admit_conn_t *c,
                              const realm_admit_principal_t *who, realm_admit_verdict_t *v);
/* The connection is gone. A connection never opened (or closed) is fine. */
void realm_admit_conn_close(realm_admit_t *ad, realm_admit_conn_t *c);
/* Connections open now. */
size_t realm_admit_connections(const realm_admit_t *ad);

/* ---- asynchronous lookups: the key store, on the auth worker ---- */

/* What to find: one of api_key, access_key_id or who; act_as optional. Strings are copied. */
typedef struct {
    const char *api_key;                /* an API key (or the admin key) */
    const char *access_key_id;          /* a SigV4 access key id ("admin": the admin key) */
    const realm_admit_principal_t *who; /* a principal found before */
    const char *act_as; /* the tenant it acts for (name or account id), or NULL */
} realm_admit_query_t;

/* What was found. */
typedef struct {
    realm_admit_verdict_t v;     /* the credentials: 0 or UNAUTHORIZED (as the store functions) */
    realm_admit_principal_t who; /* when v.err == 0 */
    realm_admit_verdict_t as_v;  /* act_as (when v.err == 0): as realm_admit_act_as and
                                    realm_admit_tenant */
    realm_admit_principal_t as;  /* who acting for act_as (who itself without one) */
    char secret[128];            /* access_key_id lookups: the secret (wiped after the callback) */
} realm_admit_found_t;

/*
 * Called on the loop with what was found; status 0, or
 * REALM_ERR_SHUTTING_DOWN when the worker closed before the lookup ran (f
 * then refuses: v.err SHUTTING_DOWN).
 */
typedef void (*realm_admit_found_cb)(realm_admit_found_t *f, int status, void *data);
/*
 * Looks q up on the auth worker (auth on; cb never before this returns).
 * Returns 0 (cb is called once, later), or REALM_ERR_BACKPRESSURE (too many
 * lookups waiting) or REALM_ERR_SHUTTING_DOWN (closing; no worker): cb is
 * never called then and the caller answers 503.
 */
int realm_admit_find(realm_admit_t *ad, const realm_admit_query_t *q, realm_admit_found_cb cb,
                     void *data);
/* The key ids among those asked about that are no longer active (revoked, or gone). */
typedef void (*realm_admit_revoked_cb)(const char *const *revoked, size_t n, int status,
                                       void *data);
/* Asks which of key_ids (copied; "" and "admin" are always active) are revoked; as realm_admit_find. */
int realm_admit_find_revoked(realm_admit_t *ad, const char *const *key_ids, size_t n,
                             realm_admit_revoked_cb cb, void *data);
/* Stops the worker (see LIFETIME); cb(data) on the loop once it is gone. cb may be NULL. */
void realm_admit_close(realm_admit_t *ad, void (*cb)(void *data), void *data);

/* ---- the STORE FUNCTIONS: the auth worker's (blocking; never on the loop) ---- */

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
/*
 * An admin acting for act_as (a tenant name or account id): 0 and *as (the
 * admin, in that tenant), or TENANT_NOT_FOUND ("no such tenant"). Anyone
 * else: as realm_admit_act_as.
 */
int realm_admit_tenant(realm_admit_t *ad, const realm_admit_principal_t *who, const char *act_as,
                       realm_admit_principal_t *as, realm_admit_verdict_t *v);
/* 1 while the principal's key is still valid (revocation takes effect). */
int realm_admit_is_active(realm_admit_t *ad, const realm_admit_principal_t *who);

/* ---- the loop's ---- */

/* 1 if key is the admin key (compared in constant time), else 0. Any thread. */
int realm_admit_is_admin_key(const realm_admit_t *ad, const char *key);

/*
 * Whom who acts for, naming act_as (a tenant name or account id; NULL:
 * who's own): 0 and *as (who, with the tenant and namespace it acts in).
 * With auth on, a key other than the admin's acts only for its own tenant
 * (name or account id), else UNAUTHORIZED ("this connection's key does not
 * act for that tenant_id"). The admin acts for any existing tenant: that
 * takes the store, so it returns REALM_ADMIT_FIND (realm_admit_find {who,
 * act_as} answers: TENANT_NOT_FOUND "no such tenant", or as).
 */
#define REALM_ADMIT_FIND 1
int realm_admit_act_as(realm_admit_t *ad, const realm_admit_principal_t *who, const char *act_as,
                       realm_admit_principal_t *as, realm_admit_verdict_t *v);
/*
 * One call or request of as (whom realm_admit_act_as or realm_admit_find
 * answered). In order:
 *   draining (unless ENDS_WORK or IN_DRAIN): SHUTTING_DOWN, retry_after 1;
 *   the rate limit of as's key (unless ENDS_WORK; the admin has none):
 *     RATE_LIMIT_EXCEEDED ("rate limit of this key exceeded: retry in N s"),
 *     retry_after N.
 * 0 when admitted.
 */
int realm_admit_call(realm_admit_t *ad, const realm_admit_principal_t *as, unsigned flags,
                     realm_admit_verdict_t *v);

/* New connections and calls get SHUTTING_DOWN from now on (see the flags). */
void realm_admit_drain(realm_admit_t *ad);
int realm_admit_is_draining(const realm_admit_t *ad);

/*
 * Changes whenever keys change (another process included): the store's
 * change counter as the worker last read it (each second, and after each
 * realm_admit_find_revoked); without a worker, read from the store.
 */
uint64_t realm_admit_version(realm_admit_t *ad);
/* Metrics collector (realm_metrics_add_collector): realm_rate_limited_total{tenant}. */
void realm_admit_collect(realm_buf_t *out, void *data);

#endif
