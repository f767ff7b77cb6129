/*
 * session.h - a server-side WebSocket session over wslay, I/O-free.
 *
 * DESIGN: wslay's event API does the RFC 6455 work: masking rule, reserved
 * bits, opcodes, fragmentation and reassembly, control frame rules, UTF-8
 * validation of text (1007), close code validation, echoing the peer's close,
 * answering pings, and the message size limit (1009). This wrapper feeds it
 * bytes from memory and hands its output to a callback, so the same code runs
 * on a socket, in unit tests and under a fuzzer.
 *
 * LIFETIME: callbacks may be invoked from inside feed/send/close/ping, never
 * later. A session is "done" once the close handshake has finished or a
 * fatal error happened; the owner then closes the transport.
 */
#ifndef REALM_WS_SESSION_H
#define REALM_WS_SESSION_H

#include <stddef.h>
#include <stdint.h>

typedef struct realm_ws_session_s realm_ws_session_t;

#define REALM_WS_TEXT 0x1
#define REALM_WS_BINARY 0x2
#define REALM_WS_CLOSE 0x8
#define REALM_WS_PING 0x9
#define REALM_WS_PONG 0xa

typedef struct {
    /* Bytes to send to the peer (borrowed for the call). */
    void (*on_output)(void *ud, const uint8_t *data, size_t len);
    /* A complete message: text (valid UTF-8), binary, or a pong/close frame. */
    void (*on_message)(void *ud, int opcode, const uint8_t *data, size_t len);
} realm_ws_session_cbs_t;

/* New session; cbs is borrowed for the session's life. */
realm_ws_session_t *realm_ws_session_new(const realm_ws_session_cbs_t *cbs, void *ud,
                                         uint64_t max_message_bytes);
void realm_ws_session_free(realm_ws_session_t *s);

/* Feeds received bytes. Returns 0, or a negative code on a fatal error. */
int realm_ws_session_feed(realm_ws_session_t *s, const void *data, size_t len);
/* Queues and sends a data message (opcode TEXT or BINARY). 0 or negative. */
int realm_ws_session_send(realm_ws_session_t *s, int opcode, const void *data, size_t len);
int realm_ws_session_ping(realm_ws_session_t *s);
/* Starts the closing handshake with code and reason (reason may be NULL). */
int realm_ws_session_close(realm_ws_session_t *s, uint16_t code, const char *reason);

/* The session needs the transport no more (handshake done or fatal error). */
int realm_ws_session_is_done(const realm_ws_session_t *s);
/* We have sent a close frame (no more data can be sent). */
int realm_ws_session_close_sent(const realm_ws_session_t *s);
/* The status code we sent in our close frame (0 if none). */
uint16_t realm_ws_session_close_code_sent(const realm_ws_session_t *s);
uint16_t realm_ws_session_close_code_received(const realm_ws_session_t *s);
/* The session holds no wslay context (idle between messages; session.c DESIGN). */
int realm_ws_session_is_asleep(const realm_ws_session_t *s);

#endif
