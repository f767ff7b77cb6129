/*
 * cluster.h - membership: which nodes are up, and what each last said
 * about itself (docs/cluster.md).
 *
 * DESIGN: every node publishes its state on REALM_CLUSTER_STATE_SUBJECT
 * every heartbeat_ms (a JSON object: its id, an instance nonce, a sequence
 * number, its listeners' URLs, and what state_cb adds: free capacity, idle
 * environments, models...), and every node keeps a table of the nodes it
 * hears from. A node not heard from for expiry_ms is gone; a node that
 * shuts down says so (REALM_CLUSTER_LEAVE_SUBJECT) and is gone at once.
 * Nodes find each other through the bus alone: no list of peers, so a node
 * joins or leaves without the others restarting. Two nodes claiming one id
 * are logged (the later instance wins the entry) and counted.
 *
 * LIFETIME: realm_cluster_open() after the bus; realm_cluster_close()
 * (publishes the leave) before the bus closes.
 * THREADS: loop thread only.
 */
#ifndef REALM_CLUSTER_CLUSTER_H
#define REALM_CLUSTER_CLUSTER_H

#include "bus/bus.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define REALM_CLUSTER_STATE_SUBJECT "realm.node.state"
#define REALM_CLUSTER_LEAVE_SUBJECT "realm.node.leave"

typedef struct realm_cluster_s realm_cluster_t;

/* What this node adds to its state (a new JSON object, or NULL). */
typedef json_t *(*realm_cluster_state_cb)(void *ud);
/* A node joined (is_up 1) or left (0): its id (borrowed for the call). */
typedef void (*realm_cluster_change_cb)(const char *id, int is_up, void *ud);

typedef struct {
    const char *node_id;   /* [A-Za-z0-9_-]{1,32} (realm_cluster_id_is_valid); copied */
    uint64_t heartbeat_ms; /* 0: 1000 */
    uint64_t expiry_ms;    /* 0: 3.5 heartbeats */
    realm_cluster_state_cb state_cb; /* may be NULL */
    realm_cluster_change_cb change_cb; /* may be NULL */
    void *ud;
} realm_cluster_config_t;

int realm_cluster_id_is_valid(const char *id);

/* Starts publishing and listening. NULL with a message in err (a bad id, the bus refused). */
realm_cluster_t *realm_cluster_open(uv_loop_t *loop, realm_bus_t *bus,
                                    const realm_cluster_config_t *cfg, char *err,
                                    size_t err_len);
/* Says goodbye and stops; cb (may be NULL) once its timer is closed. */
void realm_cluster_close(realm_cluster_t *c, void (*cb)(void *data), void *data);

const char *realm_cluster_node_id(const realm_cluster_t *c);
/* Nodes up now, this one included. */
size_t realm_cluster_size(const realm_cluster_t *c);
/*
 * The nodes up now, this one first, each its last state plus "age_ms"
 * (since it was heard) and "self" (true for this node): a new array.
 */
json_t *realm_cluster_nodes(const realm_cluster_t *c);
/* A node's last state (borrowed until the next loop turn), or NULL if it is not up. */
const json_t *realm_cluster_node(const realm_cluster_t *c, const char *id);
/* Heartbeats from another instance with this node's id, ever. */
uint64_t realm_cluster_id_conflicts(const realm_cluster_t *c);

#endif
