/*
 * ws.h - a WebSocket connection: a session (session.h) on a TCP connection,
 * with keep-alive pings, a close timeout and a bounded send queue.
 *
 * DESIGN: received bytes go straight into the session; its output goes to
 * the connection's write queue. Two limits protect the server from a peer
 * that does not read: above a high-water mark (1 MiB or the send-queue limit
 * if smaller) we stop reading its new messages until the queue drains; above
 * max_send_queue_bytes the peer is dropped. A peer silent for ping_interval
 * gets a ping; silent for another interval, it is dropped.
 *
 * LIFETIME: realm_ws_new() takes over the connection. on_close runs exactly
 * once, when the connection is gone; the realm_ws_t is freed right after it
 * returns. Sending after realm_ws_close() fails with REALM_ERR_CLOSED.
 * THREADS: loop thread only.
 */
#ifndef REALM_WS_WS_H
#define REALM_WS_WS_H

#include "net/conn.h"

#include <stddef.h>
#include <stdint.h>

typedef struct realm_ws_s realm_ws_t;

typedef struct {
    /* A complete text message (valid UTF-8) or binary message; borrowed. */
    void (*on_message)(realm_ws_t *ws, int is_text, const char *data, size_t len, void *ud);
    /* The connection is gone. */
    void (*on_close)(realm_ws_t *ws, void *ud);
} realm_ws_cbs_t;

typedef struct {
    uint64_t max_message_bytes;    /* larger incoming messages: close 1009 */
    uint64_t max_send_queue_bytes; /* unsent bytes before the peer is dropped */
    uint64_t ping_interval_ms;     /* 0: never ping */
} realm_ws_config_t;

/*
 * Takes over c (which must have no other handler any more). cbs is borrowed
 * for the connection's life. Never calls a callback before returning: bytes
 * that arrived behind the handshake are given afterwards with realm_ws_feed,
 * once the caller has stored the returned connection.
 */
realm_ws_t *realm_ws_new(realm_conn_t *c, const realm_ws_config_t *cfg, const realm_ws_cbs_t *cbs,
                         void *ud);

/* Feeds bytes received outside the connection (behind the handshake); may
 * call on_message and on_close before returning. */
void realm_ws_feed(realm_ws_t *ws, const char *data, size_t len);

/*
 * Sends a text message. Returns 0; REALM_ERR_CLOSED if closing; or
 * REALM_ERR_BACKPRESSURE if the send queue limit was passed (the peer is
 * then being dropped).
 */
int realm_ws_send_text(realm_ws_t *ws, const char *data, size_t len);
/* Starts the closing handshake (the peer gets close_timeout to answer). */
void realm_ws_close(realm_ws_t *ws, uint16_t code, const char *reason);
/*
 * Stops reading the peer (hold 1) until told to go on (hold 0), whatever
 * the send queue does: a surface that must answer one message before it
 * reads more (a key being looked up). Messages of bytes already read still
 * come; they are few (one read's worth).
 */
void realm_ws_hold(realm_ws_t *ws, int hold);
/* Unsent bytes queued for this peer. */
size_t realm_ws_pending(const realm_ws_t *ws);
realm_conn_t *realm_ws_conn(const realm_ws_t *ws);

#endif
