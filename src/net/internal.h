/*
 * internal.h - structures shared by conn.c and listener.c only. Nothing
 * outside src/net/ includes this file.
 */
#ifndef REALM_NET_INTERNAL_H
#define REALM_NET_INTERNAL_H

#include "net/listener.h"

struct realm_conn_s {
    uv_tcp_t tcp;                        /* embedded; freed with the conn */
    uv_timer_t timer;                    /* protocol timer, then the linger timer */
    uv_shutdown_t shutdown_req;          /* graceful close: FIN after the data */
    realm_listener_t *listener;          /* borrowed; outlives its conns' accept path */
    const realm_conn_handler_t *handler; /* borrowed */
    void *data;                          /* handler's */
    void *tag;                           /* the surface's, across protocol changes */
    void (*tag_release)(void *tag);
    realm_conn_timer_cb timer_cb;
    size_t pending;            /* bytes queued to the kernel, not yet written */
    int handles_open;          /* handles still to close (2 when live) */
    unsigned is_closing : 1;   /* realm_conn_close() was called */
    unsigned is_draining : 1;  /* graceful: waiting for writes, then FIN */
    unsigned is_lingering : 1; /* FIN sent; discarding input until EOF */
    unsigned is_reading : 1;
    unsigned in_list : 1;
    char peer[64];
    struct realm_conn_s *prev, *next; /* listener's list of live connections */
};

void realm_conn__init(realm_conn_t *c, realm_listener_t *l, uv_loop_t *loop);
void realm_conn__unlink(realm_conn_t *c);

#endif
