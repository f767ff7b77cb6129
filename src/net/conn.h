/*
 * conn.h - one accepted TCP connection on the loop, independent of protocol.
 *
 * DESIGN: a connection owns its uv_tcp_t and one uv_timer_t. The protocol
 * that currently speaks on it (HTTP, then perhaps WebSocket after an upgrade)
 * installs a handler table and gets bytes, drain and close events. Writes are
 * copied once into a write request; the connection counts the bytes handed to
 * the kernel but not yet written (realm_conn_pending), which is how protocols
 * bound their send queues and apply backpressure.
 *
 * LIFETIME: created by the listener; freed after realm_conn_close() once both
 * handles have closed, right after the handler's on_close has run. After
 * realm_conn_close() no callback but on_close fires.
 * THREADS: loop thread only.
 */
#ifndef REALM_NET_CONN_H
#define REALM_NET_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct realm_conn_s realm_conn_t;
typedef struct realm_listener_s realm_listener_t;

typedef struct {
    /* Bytes arrived; data is borrowed for the duration of the call only. */
    void (*on_read)(realm_conn_t *c, const char *data, size_t len);
    /* The peer closed its side or the socket failed (status < 0). */
    void (*on_eof)(realm_conn_t *c, int status);
    /* Pending bytes fell to zero after having been non-zero. Optional. */
    void (*on_drain)(realm_conn_t *c);
    /* Last event; the connection is freed when it returns. */
    void (*on_close)(realm_conn_t *c);
} realm_conn_handler_t;

typedef void (*realm_conn_timer_cb)(realm_conn_t *c);

/* Installs the protocol handler; data is borrowed until on_close. */
void realm_conn_set_handler(realm_conn_t *c, const realm_conn_handler_t *h, void *data);
void *realm_conn_data(const realm_conn_t *c);
/*
 * A tag the surface that accepted the connection keeps on it whatever
 * protocol speaks (e.g. which execution environment it comes from);
 * release (may be NULL) runs when the connection is freed.
 */
void realm_conn_set_tag(realm_conn_t *c, void *tag, void (*release)(void *tag));
void *realm_conn_tag(const realm_conn_t *c);
/* The socket's file descriptor, or -1. */
int realm_conn_fd(const realm_conn_t *c);
uv_loop_t *realm_conn_loop(const realm_conn_t *c);
realm_listener_t *realm_conn_listener(const realm_conn_t *c);
/* Peer address as "ip:port" (borrowed until the connection is freed). */
const char *realm_conn_peer(const realm_conn_t *c);

/* Starts/stops delivering on_read (reading is started by the listener). */
void realm_conn_read_start(realm_conn_t *c);
void realm_conn_read_stop(realm_conn_t *c);

/*
 * Queues bytes (copied). Returns 0, or a negative libuv code if the
 * connection is closing or the write could not be queued (the connection is
 * then being closed).
 */
int realm_conn_write(realm_conn_t *c, const void *data, size_t len);
int realm_conn_writev(realm_conn_t *c, const uv_buf_t *bufs, size_t nbufs);
/* Bytes queued and not yet written to the socket. */
size_t realm_conn_pending(const realm_conn_t *c);

/* (Re)arms the connection's single timer; 0 ms disarms it. */
void realm_conn_timer(realm_conn_t *c, uint64_t ms, realm_conn_timer_cb cb);

/*
 * Closes after the pending writes are flushed (graceful: a FIN after the
 * data) when is_graceful, or at once. Idempotent.
 */
void realm_conn_close(realm_conn_t *c, int is_graceful);
int realm_conn_is_closing(const realm_conn_t *c);

#endif
