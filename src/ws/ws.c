/*
 * ws.c - WebSocket on a TCP connection (see ws.h).
 *
 * The connection's one timer serves three purposes in turn: the keep-alive
 * ping cycle while open, the close handshake deadline once we have sent a
 * close, and (in net/conn.c) the linger after our FIN.
 */
#include "ws/ws.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "ws/session.h"

#include <stdlib.h>
#include <string.h>

#define CLOSE_TIMEOUT_MS 5000
#define HIGH_WATER (1024 * 1024)

struct realm_ws_s {
    realm_conn_t *conn;
    realm_ws_session_t *session;
    const realm_ws_cbs_t *cbs;
    void *ud;
    realm_ws_config_t cfg;
    size_t high_water;
    unsigned got_input : 1; /* something arrived since the last ping tick */
    unsigned ping_outstanding : 1;
    unsigned is_paused : 1; /* reading stopped for backpressure */
    unsigned is_held : 1;   /* reading stopped by realm_ws_hold */
    unsigned is_dropping : 1;
};

static const realm_conn_handler_t ws_handler;

static void on_output(void *ud, const uint8_t *data, size_t len)
{
    realm_ws_t *ws = ud;
    realm_conn_write(ws->conn, data, len);
}

static void on_message(void *ud, int opcode, const uint8_t *data, size_t len)
{
    realm_ws_t *ws = ud;
    if (opcode == REALM_WS_TEXT || opcode == REALM_WS_BINARY)
        ws->cbs->on_message(ws, opcode == REALM_WS_TEXT, (const char *)data, len, ws->ud);
}

static const realm_ws_session_cbs_t session_cbs = {on_output, on_message};

static void on_ping_tick(realm_conn_t *c);

static void arm_ping(realm_ws_t *ws)
{
    if (ws->cfg.ping_interval_ms > 0)
        realm_conn_timer(ws->conn, ws->cfg.ping_interval_ms, on_ping_tick);
}

static void on_close_timeout(realm_conn_t *c)
{
    realm_conn_close(c, 0);
}

static void after_io(realm_ws_t *ws)
{
    if (realm_conn_is_closing(ws->conn)) return;
    if (realm_ws_session_is_done(ws->session)) {
        /* RFC 6455 7.1.1: the server closes the TCP connection first. */
        realm_conn_close(ws->conn, 1);
        return;
    }
    size_t pending = realm_conn_pending(ws->conn);
    if (pending > ws->cfg.max_send_queue_bytes) {
        realm_warn("websocket %s: %zu bytes unsent, over the limit: dropping the peer",
                   realm_conn_peer(ws->conn), pending);
        ws->is_dropping = 1;
        realm_conn_close(ws->conn, 0);
        return;
    }
    if (pending > ws->high_water && !ws->is_paused) {
        ws->is_paused = 1;
        realm_conn_read_stop(ws->conn);
    }
}

static void on_ping_tick(realm_conn_t *c)
{
    realm_ws_t *ws = realm_conn_data(c);
    if (ws->got_input) {
        ws->got_input = 0;
        ws->ping_outstanding = 0;
        arm_ping(ws);
        return;
    }
    if (ws->ping_outstanding) {
        realm_debug("websocket %s: no answer to ping, dropping", realm_conn_peer(c));
        realm_conn_close(c, 0);
        return;
    }
    ws->ping_outstanding = 1;
    realm_ws_session_ping(ws->session);
    arm_ping(ws);
    after_io(ws);
}

static void on_read(realm_conn_t *c, const char *data, size_t len)
{
    realm_ws_t *ws = realm_conn_data(c);
    ws->got_input = 1;
    realm_ws_session_feed(ws->session, data, len);
    after_io(ws);
}

static void on_eof(realm_conn_t *c, int status)
{
    (void)status;
    realm_conn_close(c, 0);
}

static void on_drain(realm_conn_t *c)
{
    realm_ws_t *ws = realm_conn_data(c);
    if (ws->is_paused) {
        ws->is_paused = 0;
        if (!ws->is_held) realm_conn_read_start(c);
    }
}

static void on_conn_close(realm_conn_t *c)
{
    realm_ws_t *ws = realm_conn_data(c);
    ws->cbs->on_close(ws, ws->ud);
    realm_ws_session_free(ws->session);
    free(ws);
}

static const realm_conn_handler_t ws_handler = {
    .on_read = on_read,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_close = on_conn_close,
};

realm_ws_t *realm_ws_new(realm_conn_t *c, const realm_ws_config_t *cfg, const realm_ws_cbs_t *cbs,
                         void *ud)
{
    realm_ws_t *ws = realm_calloc(1, sizeof(*ws));
    ws->conn = c;
    ws->cbs = cbs;
    ws->ud = ud;
    ws->cfg = *cfg;
    ws->high_water =
        cfg->max_send_queue_bytes < HIGH_WATER ? cfg->max_send_queue_bytes : HIGH_WATER;
    ws->session = realm_ws_session_new(&session_cbs, ws, cfg->max_message_bytes);
    realm_conn_set_handler(c, &ws_handler, ws);
    arm_ping(ws);
    realm_conn_read_start(c);
    return ws;
}

void realm_ws_feed(realm_ws_t *ws, const char *data, size_t len)
{
    if (!realm_conn_is_closing(ws->conn)) on_read(ws->conn, data, len);
}

int realm_ws_send_text(realm_ws_t *ws, const char *data, size_t len)
{
    if (realm_conn_is_closing(ws->conn) || realm_ws_session_close_sent(ws->session))
        return REALM_ERR_CLOSED;
    if (realm_ws_session_send(ws->session, REALM_WS_TEXT, data, len) != 0) return REALM_ERR_CLOSED;
    after_io(ws);
    return ws->is_dropping ? REALM_ERR_BACKPRESSURE : 0;
}

void realm_ws_close(realm_ws_t *ws, uint16_t code, const char *reason)
{
    if (realm_conn_is_closing(ws->conn) || realm_ws_session_close_sent(ws->session)) return;
    realm_ws_session_close(ws->session, code, reason);
    realm_conn_timer(ws->conn, CLOSE_TIMEOUT_MS, on_close_timeout);
    after_io(ws);
}

size_t realm_ws_pending(const realm_ws_t *ws)
{
    return realm_conn_pending(ws->conn);
}

void realm_ws_hold(realm_ws_t *ws, int hold)
{
    if (!ws->is_held == !hold) return;
    ws->is_held = hold != 0;
    if (hold)
        realm_conn_read_stop(ws->conn);
    else if (!ws->is_paused)
        realm_conn_read_start(ws->conn);
}

realm_conn_t *realm_ws_conn(const realm_ws_t *ws)
{
    return ws->conn;
}
