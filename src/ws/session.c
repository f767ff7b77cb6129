/*
 * session.c - wslay event context driven from memory (see session.h).
 *
 * DESIGN: wslay does the RFC 6455 work, with two gaps this file closes by
 * looking at each frame header before wslay does (the "gate" below):
 *
 *  - Header-level violations that wslay's frame layer reports as a bare
 *    error (control frame longer than 125 bytes or fragmented, a
 *    non-minimal or 2^63+ payload length) make wslay queue a close frame
 *    without a status code and fail; a close frame with a 1-byte payload
 *    it takes for a close without status. RFC 6455 7.4.1 wants 1002 for
 *    all of them, so the gate detects them and closes with 1002 itself.
 *  - wslay checks a close reason's UTF-8 from offset 2 of every chunk it
 *    reads, not of the frame, so a close frame split across reads is
 *    validated wrongly (valid reasons rejected with 1007, invalid ones
 *    echoed). The gate hands wslay each control frame (at most 131 bytes)
 *    in one piece, holding back an incomplete one until the rest arrives.
 *
 * Output is gathered during one flush so a small frame's header and payload
 * leave in one write instead of two.
 *
 * Idle sessions sleep: wslay's event context holds two fixed 4 KB buffers
 * (frame input and output), most of an idle connection's memory. Whenever a
 * feed or a send ends at a message boundary (no frame partly read, no
 * fragmented message open, nothing queued, no close under way) the context
 * is freed, and made anew by the next feed or send: between messages it
 * holds nothing but its configuration.
 *
 * THREADS: one session is used by one thread.
 */
#include "ws/session.h"

#include "base/alloc.h"
#include "base/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

/* Largest frame the gate holds back: a masked control frame (2 + 4 + 125). */
#define HOLD_MAX 131
/* Output up to this size is gathered; larger payloads go out as they are. */
#define GATHER_MAX 4096

struct realm_ws_session_s {
    wslay_event_context_ptr ctx;
    const realm_ws_session_cbs_t *cbs;
    void *ud;
    const uint8_t *in; /* input being fed */
    size_t in_len;
    uint8_t hold[HOLD_MAX]; /* start of a frame not complete enough to hand over */
    size_t hold_len;
    uint64_t frame_left; /* bytes of the current frame wslay has yet to get */
    realm_buf_t out;     /* output gathered during one flush */
    uint16_t code_sent;  /* our close code when the gate or a failure sent it */
    int is_fatal;
    int in_message; /* a fragmented data message is being received (gate) */
    int in_feed;    /* inside wslay_event_recv: its callbacks may send, the context stays */
    uint64_t max_message_bytes;
};

/* ---- the gate: frame boundaries on the way into wslay ---- */

/* Copies up to n not-yet-handed-over bytes (held ones first) into dst. */
static size_t peek(const realm_ws_session_t *s, uint8_t *dst, size_t n)
{
    size_t a = s->hold_len < n ? s->hold_len : n;
    memcpy(dst, s->hold, a);
    size_t b = s->in_len < n - a ? s->in_len : n - a;
    memcpy(dst + a, s->in, b);
    return a + b;
}

/* Moves n bytes (held ones first) to dst. */
static void take(realm_ws_session_t *s, uint8_t *dst, size_t n)
{
    size_t a = s->hold_len < n ? s->hold_len : n;
    memcpy(dst, s->hold, a);
    memmove(s->hold, s->hold + a, s->hold_len - a);
    s->hold_len -= a;
    memcpy(dst + a, s->in, n - a);
    s->in += n - a;
    s->in_len -= n - a;
}

/*
 * Size of the frame starting at the next input byte (header included): 0 when
 * more bytes are needed to know it (or, for a control frame, to have all of
 * it), -1 for a header RFC 6455 5.2/5.5 forbids. *is_control says whether the
 * frame must be handed over in one piece.
 */
static int64_t next_frame_size(const realm_ws_session_t *s, int *is_control)
{
    uint8_t h[HOLD_MAX];
    size_t avail = peek(s, h, sizeof(h));
    if (avail < 2) return 0;
    int fin = h[0] >> 7, opcode = h[0] & 0xf, masked = h[1] >> 7, len7 = h[1] & 0x7f;
    size_t hlen = 2 + (masked ? 4 : 0) + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
    *is_control = (opcode & 0x8) != 0;
    if (*is_control) {
        if (!fin || len7 > 125) return -1; /* 5.5: short and unfragmented */
        if (opcode == WSLAY_CONNECTION_CLOSE && len7 == 1) return -1; /* 5.5.1 */
        return avail >= hlen + (size_t)len7 ? (int64_t)(hlen + (size_t)len7) : 0;
    }
    if (avail < hlen) return 0;
    uint64_t len = (uint64_t)len7;
    if (len7 == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        if (len < 126) return -1; /* 5.2: the minimal number of bytes */
    } else if (len7 == 127) {
        len = 0;
        for (int i = 2; i < 10; i++)
            len = len << 8 | h[i];
        if (len >> 63 || len < 65536) return -1;
    }
    return (int64_t)(hlen + len);
}

/* Closes with 1002 (the read side is done: nothing more is parsed). */
static void gate_fail(realm_ws_session_t *s)
{
    wslay_event_queue_close(s->ctx, WSLAY_CODE_PROTOCOL_ERROR, NULL, 0);
    wslay_event_shutdown_read(s->ctx);
    s->hold_len = 0;
    s->in_len = 0;
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user_data)
{
    (void)flags;
    realm_ws_session_t *s = user_data;
    size_t given = 0;
    while (given < len && s->hold_len + s->in_len > 0) {
        if (s->frame_left == 0) {
            int is_control = 0;
            int64_t size = next_frame_size(s, &is_control);
            if (size < 0) {
                gate_fail(s);
                break;
            }
            if (size == 0) {
                /* Keep the incomplete start (< HOLD_MAX bytes) for the next feed. */
                memcpy(s->hold + s->hold_len, s->in, s->in_len);
                s->hold_len += s->in_len;
                s->in_len = 0;
                break;
            }
            /* A control frame goes in one piece: wait for wslay's next read. */
            if (is_control && (uint64_t)size > len - given && given > 0) break;
            s->frame_left = (uint64_t)size;
            if (!is_control) {
                uint8_t h0;
                peek(s, &h0, 1);
                s->in_message = !(h0 >> 7); /* open until a data frame with FIN */
            }
        }
        size_t n = len - given;
        if (n > s->frame_left) n = (size_t)s->frame_left;
        if (n > s->hold_len + s->in_len) n = s->hold_len + s->in_len;
        take(s, buf + given, n);
        given += n;
        s->frame_left -= n;
    }
    if (given == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return (ssize_t)given;
}

/* ---- output ---- */

static void emit(realm_ws_session_t *s)
{
    if (s->out.len == 0) return;
    s->cbs->on_output(s->ud, (const uint8_t *)s->out.data, s->out.len);
    /* Freed, not kept: an idle connection should hold no output buffer. */
    realm_buf_dispose(&s->out);
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user_data)
{
    (void)ctx;
    (void)flags;
    realm_ws_session_t *s = user_data;
    if (s->out.len + len <= GATHER_MAX) {
        realm_buf_append(&s->out, data, len);
    } else {
        emit(s);
        s->cbs->on_output(s->ud, data, len);
    }
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

/* ---- sleeping between messages ---- */

static void wake(realm_ws_session_t *s)
{
    static const struct wslay_event_callbacks wcbs = {
        .recv_callback = recv_cb,
        .send_callback = send_cb,
        .on_msg_recv_callback = on_msg_recv,
    };
    if (s->ctx) return;
    if (wslay_event_context_server_init(&s->ctx, &wcbs, s) != 0) abort(); /* only ENOMEM */
    wslay_event_config_set_max_recv_msg_length(s->ctx, s->max_message_bytes);
}

/* Frees the context at a message boundary with nothing under way (see DESIGN). */
static void sleep_if_idle(realm_ws_session_t *s)
{
    if (!s->ctx || s->in_feed || s->is_fatal || s->frame_left || s->hold_len || s->in_message)
        return;
    if (wslay_event_want_write(s->ctx) || !wslay_event_want_read(s->ctx) ||
        wslay_event_get_close_sent(s->ctx) || wslay_event_get_close_received(s->ctx))
        return;
    wslay_event_context_free(s->ctx);
    s->ctx = NULL;
}

realm_ws_session_t *realm_ws_session_new(const realm_ws_session_cbs_t *cbs, void *ud,
                                         uint64_t max_message_bytes)
{
    realm_ws_session_t *s = realm_calloc(1, sizeof(*s));
    s->cbs = cbs;
    s->ud = ud;
    s->max_message_bytes = max_message_bytes;
    realm_buf_init(&s->out);
    return s; /* asleep until the first feed or send */
}

void realm_ws_session_free(realm_ws_session_t *s)
{
    if (!s) return;
    if (s->ctx) wslay_event_context_free(s->ctx);
    realm_buf_dispose(&s->out);
    free(s);
}

static int flush(realm_ws_session_t *s)
{
    if (s->is_fatal) return -1;
    int rc = 0;
    if (wslay_event_want_write(s->ctx) && wslay_event_send(s->ctx) != 0) {
        s->is_fatal = 1;
        rc = -1;
    }
    emit(s);
    return rc;
}

/*
 * wslay failed while reading (out of memory, or a header error the gate did
 * not foresee): what it queued is a close without a status, so send the
 * close 1002 ourselves unless a close already went out.
 */
static void read_failed(realm_ws_session_t *s)
{
    static const uint8_t close_1002[] = {0x88, 0x02, 0x03, 0xea};
    emit(s);
    if (!wslay_event_get_close_sent(s->ctx)) {
        s->cbs->on_output(s->ud, close_1002, sizeof(close_1002));
        s->code_sent = WSLAY_CODE_PROTOCOL_ERROR;
    }
    s->is_fatal = 1;
}

int realm_ws_session_feed(realm_ws_session_t *s, const void *data, size_t len)
{
    if (s->is_fatal) return -1;
    wake(s);
    s->in = data;
    s->in_len = len;
    int rc = 0;
    s->in_feed = 1;
    if (wslay_event_want_read(s->ctx) && wslay_event_recv(s->ctx) != 0) {
        read_failed(s);
        rc = -1;
    }
    s->in_feed = 0;
    s->in = NULL;
    s->in_len = 0;
    if (rc == 0) rc = flush(s);
    if (rc == 0) sleep_if_idle(s);
    return rc;
}

/* Queues msg and writes it out, waking the context first and letting it sleep after. */
static int send_msg(realm_ws_session_t *s, const struct wslay_event_msg *msg)
{
    if (s->is_fatal) return -1;
    wake(s);
    if (wslay_event_queue_msg(s->ctx, msg) != 0) return -1;
    int rc = flush(s);
    if (rc == 0) sleep_if_idle(s);
    return rc;
}

int realm_ws_session_send(realm_ws_session_t *s, int opcode, const void *data, size_t len)
{
    struct wslay_event_msg msg = {(uint8_t)opcode, data, len};
    return send_msg(s, &msg);
}

int realm_ws_session_ping(realm_ws_session_t *s)
{
    struct wslay_event_msg msg = {WSLAY_PING, (const uint8_t *)"realm", 5};
    return send_msg(s, &msg);
}

int realm_ws_session_close(realm_ws_session_t *s, uint16_t code, const char *reason)
{
    if (s->is_fatal) return -1;
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > 123) rl = 123; /* control frame payload limit: 125 - 2 */
    wake(s);
    if (wslay_event_queue_close(s->ctx, code, (const uint8_t *)reason, rl) != 0) return -1;
    return flush(s);
}

int realm_ws_session_is_done(const realm_ws_session_t *s)
{
    if (s->is_fatal) return 1;
    if (!s->ctx) return 0; /* asleep: open, nothing under way */
    return !wslay_event_want_read(s->ctx) && !wslay_event_want_write(s->ctx);
}

int realm_ws_session_close_sent(const realm_ws_session_t *s)
{
    return s->code_sent != 0 || (s->ctx && wslay_event_get_close_sent(s->ctx));
}

uint16_t realm_ws_session_close_code_sent(const realm_ws_session_t *s)
{
    if (s->code_sent) return s->code_sent;
    /* wslay says 1006 until a close went out; the contract is 0. */
    return s->ctx && wslay_event_get_close_sent(s->ctx) ? wslay_event_get_status_code_sent(s->ctx)
                                                        : 0;
}

uint16_t realm_ws_session_close_code_received(const realm_ws_session_t *s)
{
    /* Asleep means no close came in; wslay says 1006 (none) then too. */
    return s->ctx ? wslay_event_get_status_code_received(s->ctx) : WSLAY_CODE_ABNORMAL_CLOSURE;
}

int realm_ws_session_is_asleep(const realm_ws_session_t *s)
{
    return s->ctx == NULL;
}
