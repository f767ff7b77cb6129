/*
 * bus.h - the message bus between the nodes of a cluster: one NATS
 * connection (libnats), whose messages are handed to the event loop.
 * docs/cluster.md says what travels on it.
 *
 * DESIGN: libnats runs its own threads (the socket reader, the flusher, one
 * delivery thread per subscription), and its callbacks run there, also with
 * its libuv adapter. So every inbound message (and every connection event:
 * disconnected, reconnected, closed) is appended under a mutex to one list
 * and the loop is woken with uv_async_send; the loop's callback takes the
 * whole list and calls the subscribers in arrival order. Nothing of the
 * loop's state is ever touched from a libnats thread. Publishing is libnats'
 * own thread-safe call from the loop; with "send as soon as possible" set it
 * writes straight to the socket (a request/reply round trip of ~100 µs here
 * instead of the ~1 ms the flusher's timer costs).
 *
 * Subscriptions live as long as the bus (a node has a handful: its own
 * subject tree and the cluster-wide ones); one of them per bus is the
 * inbox every request's reply and every stream sent back to this node
 * comes to (realm_bus_inbox), so a call in flight costs no subscription.
 *
 * Connection: the first connect is retried in the background like a lost
 * one (the server may start later); reconnection is forever, with a
 * jittered wait. While disconnected, publishes are buffered by libnats up
 * to 8 MiB, then fail (REALM_ERR_BUS_UNAVAILABLE); a request's timer runs
 * on regardless, so a caller never hangs on a server that is away.
 *
 * LIFETIME: realm_bus_open() connects (in the background); realm_bus_close()
 * closes the connection (the requests in flight are answered
 * REALM_ERR_SHUTTING_DOWN), joins libnats' threads and calls its callback
 * on a later loop turn, after which the bus is gone. An open bus does not
 * keep the loop alive (a request's timer does, until it is answered).
 * THREADS: loop thread only (libnats' threads never call out of this file).
 */
#ifndef REALM_BUS_BUS_H
#define REALM_BUS_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct realm_bus_s realm_bus_t;

typedef struct {
    const char *urls; /* "nats://127.0.0.1:4222[,nats://...]" (copied) */
    const char *name; /* the connection's name on the servers (the node id; copied) */
    uint64_t reconnect_wait_ms; /* between attempts, jittered; 0: 250 ms */
} realm_bus_config_t;

/*
 * A message, on the loop. subject and data are borrowed for the call;
 * reply is the subject to answer to, or NULL. data may hold NULs; it is
 * followed by a NUL not counted in len.
 */
typedef void (*realm_bus_msg_cb)(const char *subject, const char *reply, const char *data,
                                 size_t len, void *ud);
/* The connection came (is_connected 1) or went (0), on the loop. */
typedef void (*realm_bus_state_cb)(int is_connected, void *ud);
/*
 * The answer to a request, on the loop: status 0 with the reply's data, or
 * REALM_ERR_BUS_TIMEOUT (nothing within the time), REALM_ERR_BUS_NO_RESPONDERS
 * (nobody listens on that subject: the servers say so at once) or
 * REALM_ERR_SHUTTING_DOWN (the bus closed), with data "" and len 0.
 */
typedef void (*realm_bus_reply_cb)(int status, const char *data, size_t len, void *ud);
typedef void (*realm_bus_close_cb)(void *data);

/*
 * Starts connecting to cfg->urls. Returns the bus, or NULL with a message
 * in err (a malformed URL list). state_cb (may be NULL) follows the
 * connection.
 */
realm_bus_t *realm_bus_open(uv_loop_t *loop, const realm_bus_config_t *cfg,
                            realm_bus_state_cb state_cb, void *state_ud, char *err,
                            size_t err_len);
/* Closes (see LIFETIME); cb (may be NULL) once the bus is gone. */
void realm_bus_close(realm_bus_t *b, realm_bus_close_cb cb, void *data);

/* 1 while connected to a server. */
int realm_bus_is_connected(const realm_bus_t *b);

/*
 * Publishes len bytes on subject (with reply, or NULL). 0, or
 * REALM_ERR_BUS_UNAVAILABLE (closed, or disconnected with the buffer full).
 */
int realm_bus_publish(realm_bus_t *b, const char *subject, const char *reply, const void *data,
                      size_t len);
/*
 * Subscribes cb to subject (wildcards "*" and ">" as NATS has them); with
 * queue (may be NULL) the subscribers of one queue group share the
 * messages, one each. 0, or REALM_ERR_BUS_UNAVAILABLE. For the bus's life.
 */
int realm_bus_subscribe(realm_bus_t *b, const char *subject, const char *queue,
                        realm_bus_msg_cb cb, void *ud);

/*
 * This bus's inbox prefix ("_INBOX.<unique>."): a subject under it reaches
 * inbox_cb (realm_bus_set_inbox; the subject's last token tells what it is
 * for). Requests use tokens of their own ("r<n>").
 */
const char *realm_bus_inbox(const realm_bus_t *b);
void realm_bus_set_inbox(realm_bus_t *b, realm_bus_msg_cb inbox_cb, void *ud);

/*
 * Sends a request and calls cb once with the first reply or the failure
 * (see realm_bus_reply_cb), never before returning. Returns 0, or
 * REALM_ERR_BUS_UNAVAILABLE (cb is then never called).
 */
int realm_bus_request(realm_bus_t *b, const char *subject, const void *data, size_t len,
                      uint64_t timeout_ms, realm_bus_reply_cb cb, void *ud);

/*
 * Sends a request every subscriber of subject answers (a question to all
 * nodes) and gathers the replies: cb once, with the first `want` replies,
 * or with those that came within timeout_ms (possibly none), never before
 * returning; datas and lens are borrowed for the call, in arrival order.
 * status 0, or REALM_ERR_SHUTTING_DOWN (the bus closed; n 0). Returns 0,
 * or REALM_ERR_BUS_UNAVAILABLE (cb is then never called).
 */
typedef void (*realm_bus_gather_cb)(int status, size_t n, const char *const *datas,
                                    const size_t *lens, void *ud);
int realm_bus_gather(realm_bus_t *b, const char *subject, const void *data, size_t len,
                     size_t want, uint64_t timeout_ms, realm_bus_gather_cb cb, void *ud);

#endif
