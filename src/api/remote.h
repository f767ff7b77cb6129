/*
 * remote.h - calls placed on other nodes of a cluster (docs/cluster.md,
 * "Calls across nodes"): exec's placer (exec.h) on the bus.
 *
 * DESIGN: an invocation no environment of this node can take at once is
 * offered here. Candidates, in order: the nodes whose last heartbeat names
 * an idle environment of the function's revision (most idle first), then
 * the nodes with room ranked by rendezvous hash of the node id and the
 * revision, down to this node (a revision's home is the same on every
 * node, so its environments gather there). This node first, or no
 * candidate: it runs here. A generation (exec.h's must_place: its model is
 * not loaded here) goes to the nodes whose heartbeat lists the model, or
 * fails NO_MODEL. Each candidate is asked on
 * realm.node.<id>.call (the request's reply: "accept" or "busy" at once);
 * busy, no responders or no answer within REALM_REMOTE_OFFER_MS: the next
 * (nothing ran), and after the last, here. Once accepted the call is the
 * running node's: its messages come to this node's inbox, numbered, with a
 * heartbeat every REALM_REMOTE_HEARTBEAT_MS; a gap in the numbers or
 * REALM_REMOTE_LOST_MS without a message ends the call with NODE_LOST
 * (never run again elsewhere: it may have run). A cancel goes to
 * realm.node.<id>.cancel. The running node runs it like any call of its
 * own (its invoker, no further placement) and streams the result back.
 *
 * Messages: a JSON header, a newline, then raw bytes (the payload, a chunk).
 *
 * LIFETIME: realm_remote_open .. realm_remote_close (before the bus closes):
 * calls still running elsewhere are cancelled there.
 * THREADS: loop thread only.
 */
#ifndef REALM_API_REMOTE_H
#define REALM_API_REMOTE_H

#include "bus/bus.h"
#include "cluster/cluster.h"
#include "exec/exec.h"
#include "invoke/generate.h"
#include "invoke/invoker.h"

#include <jansson.h>
#include <uv.h>

#define REALM_REMOTE_OFFER_MS 500
#define REALM_REMOTE_HEARTBEAT_MS 500
#define REALM_REMOTE_LOST_MS 2000
#define REALM_REMOTE_MAX_CANDIDATES 3
/* Payloads above this run where they arrive (NATS' messages are 1 MiB by default). */
#define REALM_REMOTE_MAX_PAYLOAD (768u * 1024u)
/* Results and chunks travel in parts of at most this many bytes. */
#define REALM_REMOTE_PART_BYTES (512u * 1024u)

typedef struct realm_remote_s realm_remote_t;

typedef struct {
    realm_bus_t *bus;
    realm_cluster_t *cluster;
    realm_exec_t *exec;
    realm_invoker_t *invoker;
    realm_generate_t *generate; /* generations placed here (or NULL) */
    uint64_t concurrency_limit; /* this node's: "busy" at it */
} realm_remote_config_t;

realm_remote_t *realm_remote_open(uv_loop_t *loop, const realm_remote_config_t *c);
/* NULL does nothing. */
void realm_remote_close(realm_remote_t *r);
/* The heartbeat's "idle": {"<pool key>": idle environments} (a new object). */
json_t *realm_remote_idle(realm_remote_t *r);
/* Calls placed elsewhere (placed_total), run here for others (served_total), lost. */
typedef struct {
    uint64_t placed_total, served_total, lost_total, returned_total;
} realm_remote_stats_t;
void realm_remote_stats(const realm_remote_t *r, realm_remote_stats_t *out);

#endif
