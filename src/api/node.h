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
#include "exec/exec.h"
#include "invoke/generate.h"
#include "invoke/invoker.h"
#include "metrics/metrics.h"
#include "registry/async.h"

#include <jansson.h>
#include <uv.h>

typedef struct realm_node_s realm_node_t;

typedef struct {
    const realm_config_t *cfg; /* --nats, --node-id, --db */
    int client_port;           /* names an "auto" node id */
    /* What the node adds to its heartbeat (a new JSON object, or NULL). */
    json_t *(*state)(void *ud);
    void *ud;
    /* This node's registry writes are told to the others before their
     * answers go out; theirs make invoker forget what it cached. */
    realm_registry_async_t *ra;
    realm_invoker_t *invoker;
    /* Its environments take concurrency leases (docs/cluster.md); or NULL. */
    realm_exec_t *exec;
    /* Its models are advertised; generations of other nodes' models go there. Or NULL. */
    realm_generate_t *generate;
    /* Every sample gets node="ID"; the cluster's families are added. */
    realm_metrics_t *metrics;
} realm_node_config_t;

/* Where a node says it wrote the registry: {"node": ID}. */
#define REALM_NODE_REGISTRY_SUBJECT "realm.registry.changed"
/* A function's log, asked of every node: {"from","tenant","name","tail"}; "ID\n" + bytes back. */
#define REALM_NODE_LOGS_SUBJECT "realm.node.logs"
#define REALM_NODE_LOGS_TIMEOUT_MS 2000
/* An Event was queued on a node: {"node": ID}; the others' dispatchers look. */
#define REALM_NODE_EVENTS_SUBJECT "realm.events.queued"
#define REALM_NODE_EVENTS_LOOK_MS 1000 /* each node looks at the queue at least this often */
/* A node was refused a concurrency lease: {"node","tenant","function" ("": any)}; the
 * others stop an idle environment holding one. */
#define REALM_NODE_LEASE_WANTED_SUBJECT "realm.lease.wanted"

/*
 * With cfg->nats "none": 0 and *out NULL (no cluster). Else opens the bus
 * and joins: 0 and *out; or -1 with a message (--nats without a
 * postgresql:// --db, a bad URL list or --node-id).
 */
int realm_node_open(uv_loop_t *loop, const realm_node_config_t *nc, realm_node_t **out, char *err,
                    size_t err_len);

/* NULL does nothing. */
void realm_node_close(realm_node_t *n);

/* health's "cluster" (a new object; data: the node, or NULL: none). */
json_t *realm_node_health(void *data);

#endif
