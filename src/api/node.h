/*
 * node.h - this server as a node of a cluster (--nats; docs/cluster.md):
 * the bus and membership opened from the configuration, with what health
 * and /metrics say about them.
 *
 * LIFETIME: realm_node_open() once the listeners are bound (the heartbeat
 * names their URLs); realm_node_close() says goodbye and closes the bus
 * (done on later loop turns; the server's final loop run completes it).
 * THREADS: loop thread only.
 */
#ifndef REALM_API_NODE_H
#define REALM_API_NODE_H

#include "base/buf.h"
#include "config/config.h"

#include <jansson.h>
#include <uv.h>

typedef struct realm_node_s realm_node_t;

/* What the node adds to its heartbeat (a new JSON object, or NULL). */
typedef json_t *(*realm_node_state_cb)(void *ud);

/*
 * With cfg->nats "none": 0 and *out NULL (no cluster). Else opens the bus
 * and joins: 0 and *out; or -1 with a message (--nats without a
 * postgresql:// --db, a bad URL list or --node-id). client_port names an
 * "auto" node id.
 */
int realm_node_open(uv_loop_t *loop, const realm_config_t *cfg, int client_port,
                    realm_node_state_cb state_cb, void *ud, realm_node_t **out, char *err,
                    size_t err_len);
/* NULL does nothing. */
void realm_node_close(realm_node_t *n);

/* health's "cluster" (a new object; data: the node, or NULL: none). */
json_t *realm_node_health(void *data);
/* Metrics collector: realm_cluster_nodes, realm_cluster_bus_connected (data: the node). */
void realm_node_collect(realm_buf_t *out, void *data);

#endif
