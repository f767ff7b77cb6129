/*
 * session.c - wslay event context driven from memory (see session.h).
 *
 * THREADS: one session is used by one thread.
 */
#include "ws/session.h"

#include "base/alloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

struct realm_ws_session_s {
    wslay_event_context_ptr ctx;
    const realm_ws_session_cbs_t *cbs;
    void *ud;
    const uint8_t *in; /* input being fed */
    size_t in_len;
    int is_fatal;
};

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user_data)
{
    (void)flags;
    realm_ws_session_t *s = user_data;
    if (s->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < s->in_len ? len : s->in_len;
    memcpy(buf, s->in, n);
    s->in += n;
    s->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user_data)
{
    (void)ctx;
    (void)flags;
    realm_ws_session_t *s = user_data;
    s->cbs->on_output(s->ud, data, len);
    return (ssize_t)len;
}

static void on_msg_recv(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                        void *user_data)
{
    (void)ctx;
    realm_ws_session_t *s = user_data;
    if (arg->opcode == WSLAY_PING) return; /* wslay answers pings itself */
    s->cbs->on_message(s->ud, arg->opcode, arg->msg, arg->msg_length);
}

realm_ws_session_t *realm_ws_session_new(const realm_ws_session_cbs_t *cbs, void *ud,
                                         uint64_t max_message_bytes)
{
    static const struct wslay_event_callbacks wcbs = {
        .recv_callback = recv_cb,
        .send_callback = send_cb,
        .on_msg_recv_callback = on_msg_recv,
    };
    realm_ws_session_t *s = realm_calloc(1, sizeof(*s));
    s->cbs = cbs;
    s->ud = ud;
    if (wslay_event_context_server_init(&s->ctx, &wcbs, s) != 0) abort(); /* only ENOMEM */
    wslay_event_config_set_max_recv_msg_length(s->ctx, max_message_bytes);
    return s;
}

void realm_ws_session_free(realm_ws_session_t *s)
{
    if (!s) return;
    wslay_event_context_free(s->ctx);
    free(s);
}

static int flush(realm_ws_session_t *s)
{
    if (s->is_fatal) return -1;
    if (wslay_event_want_write(s->ctx) && wslay_event_send(s->ctx) != 0) {
        s->is_fatal = 1;
        return -1;
    }
    return 0;
}

int realm_ws_session_feed(realm_ws_session_t *s, const void *data, size_t len)
{
    if (s->is_fatal) return -1;
    s->in = data;
    s->in_len = len;
    int rc = 0;
    if (wslay_event_want_read(s->ctx) && wslay_event_recv(s->ctx) != 0) {
        s->is_fatal = 1;
        rc = -1;
    }
    s->in = NULL;
    s->in_len = 0;
    if (rc == 0) rc = flush(s);
    return rc;
}

int realm_ws_session_send(realm_ws_session_t *s, int opcode, const void *data, size_t len)
{
    struct wslay_event_msg msg = {(uint8_t)opcode, data, len};
    if (s->is_fatal || wslay_event_queue_msg(s->ctx, &msg) != 0) return -1;
    return flush(s);
}

int realm_ws_session_ping(realm_ws_session_t *s)
{
    struct wslay_event_msg msg = {WSLAY_PING, (const uint8_t *)"realm", 5};
    if (s->is_fatal || wslay_event_queue_msg(s->ctx, &msg) != 0) return -1;
    return flush(s);
}

int realm_ws_session_close(realm_ws_session_t *s, uint16_t code, const char *reason)
{
    if (s->is_fatal) return -1;
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > 123) rl = 123; /* control frame payload limit: 125 - 2 */
    if (wslay_event_queue_close(s->ctx, code, (const uint8_t *)reason, rl) != 0) return -1;
    return flush(s);
}

int realm_ws_session_is_done(const realm_ws_session_t *s)
{
    if (s->is_fatal) return 1;
    return !wslay_event_want_read(s->ctx) && !wslay_event_want_write(s->ctx);
}

int realm_ws_session_close_sent(const realm_ws_session_t *s)
{
    return wslay_event_get_close_sent(s->ctx);
}

uint16_t realm_ws_session_close_code_sent(const realm_ws_session_t *s)
{
    return wslay_event_get_status_code_sent(s->ctx);
}

uint16_t realm_ws_session_close_code_received(const realm_ws_session_t *s)
{
    return wslay_event_get_status_code_received(s->ctx);
}
