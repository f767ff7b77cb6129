/*
 * listener.h - a named TCP listener and the set of its live connections.
 *
 * DESIGN: accepting pauses for a short while when the process is out of
 * descriptors (EMFILE) instead of spinning, and a listener may have a
 * connection limit (realm_listener_set_limit): past it, the oldest idle
 * connection makes room, or the newcomer gets a canned refusal and is
 * closed at once.
 *
 * LIFETIME: realm_listener_new() binds and listens synchronously (so errors
 * such as EADDRINUSE come back at once); realm_listener_close() stops
 * accepting and calls close_cb once the handle is closed; existing
 * connections stay open, listed and counted, until their owners close them.
 * realm_listener_free() releases the listener (closing it first if needed);
 * connections still open then lose their listener (realm_conn_listener()
 * returns NULL).
 * THREADS: loop thread only.
 */
#ifndef REALM_NET_LISTENER_H
#define REALM_NET_LISTENER_H

#include "net/conn.h"

#include <stdint.h>
#include <uv.h>

/* A new connection; install a handler with realm_conn_set_handler(). */
typedef void (*realm_listener_conn_cb)(realm_listener_t *l, realm_conn_t *c, void *data);
typedef void (*realm_listener_close_cb)(realm_listener_t *l, void *data);
typedef void (*realm_listener_each_cb)(realm_conn_t *c, void *data);

/*
 * Binds host:port (port 0: ephemeral) and listens. name ("client") is copied.
 * Returns a listener in *out and 0, or a negative libuv code.
 */
int realm_listener_new(uv_loop_t *loop, const char *name, const char *host, int port,
                       realm_listener_conn_cb on_conn, void *data, realm_listener_t **out);
/*
 * Takes over a socket that is already bound and listening (e.g. one made in
 * another network namespace). The listener owns fd, also on failure.
 */
int realm_listener_adopt(uv_loop_t *loop, const char *name, int fd, realm_listener_conn_cb on_conn,
                         void *data, realm_listener_t **out);
/* Stops accepting; close_cb (may be NULL) runs once the handle is closed. */
void realm_listener_close(realm_listener_t *l, realm_listener_close_cb close_cb);
/* Frees the listener, after its handle has closed (asynchronously if needed). */
void realm_listener_free(realm_listener_t *l);

const char *realm_listener_name(const realm_listener_t *l);
/* The port actually bound. */
int realm_listener_port(const realm_listener_t *l);
const char *realm_listener_host(const realm_listener_t *l);
void *realm_listener_data(const realm_listener_t *l);

/* Calls cb for every live connection (cb may close the connection). */
void realm_listener_each(realm_listener_t *l, realm_listener_each_cb cb, void *data);

size_t realm_listener_open_cnt(const realm_listener_t *l);
uint64_t realm_listener_accepted_cnt(const realm_listener_t *l);
uint64_t realm_listener_rejected_cnt(const realm_listener_t *l);
/* Protocols count connections they refuse (e.g. 503 over a limit). */
void realm_listener_count_rejected(realm_listener_t *l);

/*
 * Makes room for one more connection by closing one (the protocol's oldest
 * idle connection, say) with realm_conn_close(). Returns 1 if it closed
 * one, 0 if it had none to give.
 */
typedef int (*realm_listener_room_cb)(realm_listener_t *l, void *data);

/*
 * Limits the listener to max_conns open connections (0: no limit). A
 * connection arriving at the limit first gets room made for it (room_cb);
 * failing that it is accepted, sent refusal (copied; e.g. an HTTP 503 with
 * Retry-After; NULL or empty: nothing) without waiting, and closed. It is
 * counted in realm_listener_rejected_cnt and never reaches on_conn.
 */
void realm_listener_set_limit(realm_listener_t *l, size_t max_conns, const char *refusal,
                              size_t refusal_len);
/* cb (may be NULL) is called to make room at the limit; data is borrowed. */
void realm_listener_set_room_cb(realm_listener_t *l, realm_listener_room_cb cb, void *data);
size_t realm_listener_max_conns(const realm_listener_t *l);
/* Times accepting paused for want of descriptors (EMFILE, ENFILE) or memory. */
uint64_t realm_listener_paused_cnt(const realm_listener_t *l);

/*
 * Raises the soft limit on open descriptors (RLIMIT_NOFILE) towards want,
 * as far as the hard limit allows; never lowers it. Returns the soft limit
 * in force afterwards (UINT64_MAX when unlimited).
 */
uint64_t realm_listener_raise_fd_limit(uint64_t want);

#endif
