/*
 * client.h - the client WebSocket surface: the Realm call protocol.
 *
 * Upgrades requests on the client listener to WebSocket, sends the welcome,
 * turns each text message into a dispatcher call and each call event into a
 * reply, and owns the per-connection table of calls in flight (which is what
 * the `cancel` function acts on).
 *
 * LIFETIME: realm_client_new() before the listener accepts; realm_client_close()
 * after every client connection has closed (it frees on a later loop turn).
 * THREADS: loop thread only.
 */
#ifndef REALM_API_CLIENT_H
#define REALM_API_CLIENT_H

#include "api/authn.h"
#include "dispatch/dispatch.h"
#include "http/server.h"
#include "metrics/metrics.h"
#include "ws/ws.h"

typedef struct realm_client_s realm_client_t;

typedef struct {
    realm_ws_config_t ws;            /* limits for each WebSocket */
    size_t max_calls_per_connection; /* TOO_MANY_CALLS above */
    uint64_t auth_timeout_ms;        /* time to send {"type":"auth"} when auth is on */
    realm_authn_t *authn;            /* borrowed, not NULL: its admission (connection limits,
                                        keys, rates, draining) decides who comes in */
} realm_client_config_t;

/* Registers the upgrade route on http and the `cancel` function on d. */
realm_client_t *realm_client_new(uv_loop_t *loop, realm_dispatch_t *d, realm_metrics_t *m,
                                 realm_http_server_t *http, const realm_client_config_t *cfg);
/*
 * Closes the sweep timer; in its close callback frees cl and then calls
 * cb(data) (cb may be NULL): on a later loop turn, never inside this call.
 * NULL cl does nothing (cb is not called).
 */
typedef void (*realm_client_close_cb)(void *data);
void realm_client_close(realm_client_t *cl, realm_client_close_cb cb, void *data);

/* Open client WebSockets. */
size_t realm_client_connections(const realm_client_t *cl);

/*
 * Graceful shutdown: each connection is closed with 1001 as soon as it has
 * no call in flight. New connections and calls are refused (503,
 * SHUTTING_DOWN) by admission: call realm_admit_drain first.
 */
void realm_client_drain(realm_client_t *cl);
/* End of the grace period: cancel every call still in flight, close all with 1001. */
void realm_client_cancel_all(realm_client_t *cl);

#endif
