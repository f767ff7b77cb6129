/*
 * node.c - this server in its cluster (see node.h).
 */
#include "api/node.h"

#include "api/remote.h"

#include "base/alloc.h"
#include "base/log.h"
#include "bus/bus.h"
#include "cluster/cluster.h"
#include "cluster/lease.h"
#include "metrics/metrics.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct realm_node_s {
    realm_bus_t *bus;
    realm_cluster_t *cluster;
    realm_leases_t *leases; /* with nc.exec */
    realm_remote_t *remote; /* with nc.exec and nc.invoker */
    realm_node_config_t nc;
};

json_t *realm_node_health(void *data)
{
    realm_node_t *n = data;
    if (!n) return NULL;
    json_t *ids = json_array();
    json_t *nodes = realm_cluster_nodes(n->cluster);
    size_t i;
    json_t *o;
    json_array_foreach(nodes, i, o) json_array_append(ids, json_object_get(o, "id"));
    json_decref(nodes);
    return json_pack("{s:s, s:o, s:b}", "node", realm_cluster_node_id(n->cluster), "nodes", ids,
                     "bus_connected", realm_bus_is_connected(n->bus));
}

static void collect(realm_buf_t *out, void *data)
{
    realm_node_t *n = data;
    if (!n) return;
    realm_metrics_emit_header(out, "realm_cluster_nodes",
                              "Nodes of the cluster up, this one included", REALM_METRIC_GAUGE);
    realm_metrics_emit_sample(out, "realm_cluster_nodes", NULL,
                              (double)realm_cluster_size(n->cluster));
    realm_metrics_emit_header(out, "realm_cluster_bus_connected",
                              "1 while this node is connected to the cluster's NATS servers",
                              REALM_METRIC_GAUGE);
    realm_metrics_emit_sample(out, "realm_cluster_bus_connected", NULL,
                              realm_bus_is_connected(n->bus));
    if (!n->remote) return;
    realm_remote_stats_t st;
    realm_remote_stats(n->remote, &st);
    const struct {
        const char *name, *help;
        uint64_t v;
    } counters[] = {
        {"realm_cluster_calls_placed_total", "Calls this node placed on another node (accepted)",
         st.placed_total},
        {"realm_cluster_calls_served_total", "Calls another node placed on this one",
         st.served_total},
        {"realm_cluster_calls_lost_total",
         "Calls placed on another node that ended NODE_LOST (gap or silence)", st.lost_total},
        {"realm_cluster_calls_returned_total",
         "Calls no other node took (busy, silent, unreachable) that ran here", st.returned_total},
    };
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        realm_metrics_emit_header(out, counters[i].name, counters[i].help, REALM_METRIC_COUNTER);
        realm_metrics_emit_sample(out, counters[i].name, NULL, (double)counters[i].v);
    }
}

/* "auto": the host name (20 characters at most, others made '-') and the client port. */
static void auto_id(int client_port, char *id, size_t len)
{
    char host[64] = "node";
    size_t hl = sizeof(host);
    if (uv_os_gethostname(host, &hl) != 0) snprintf(host, sizeof(host), "node");
    host[20] = '\0';
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            *p = '-';
    snprintf(id, len, "%s-%d", host, client_port);
}

/* Another node wrote the registry: what this one cached goes now. */
static void on_registry_hint(const char *subject, const char *reply, const char *data, size_t len,
                             void *ud)
{
    (void)subject, (void)reply;
    realm_node_t *n = ud;
    json_t *m = json_loadb(data, len, 0, NULL);
    const char *from = json_string_value(json_object_get(m, "node"));
    /* Its own writes a node has seen already. */
    if (from && strcmp(from, realm_cluster_node_id(n->cluster)) != 0 && n->nc.invoker)
        realm_invoker_forget_cached(n->nc.invoker);
    json_decref(m);
}

/* ---- Events: wake the others ---- */

/* {"node": this node's id} on subject: a hint to the others. */
static void tell_others(realm_node_t *n, const char *subject)
{
    char msg[96];
    int len = snprintf(msg, sizeof(msg), "{\"node\":\"%s\"}", realm_cluster_node_id(n->cluster));
    realm_bus_publish(n->bus, subject, NULL, msg, (size_t)len);
}

static void on_event_pushed(void *data)
{
    tell_others(data, REALM_NODE_EVENTS_SUBJECT);
}

static void on_event_queued(const char *subject, const char *reply, const char *data, size_t len,
                            void *ud)
{
    (void)subject, (void)reply, (void)data, (void)len;
    realm_node_t *n = ud;
    if (n->nc.invoker) realm_invoker_events_wake(n->nc.invoker); /* its own: kicked already */
}

/* ---- logs from every node ---- */

/* Another node asks for a function's log: this node's part. */
static void on_logs_asked(const char *subject, const char *reply, const char *data, size_t len,
                          void *ud)
{
    (void)subject;
    realm_node_t *n = ud;
    json_t *m = json_loadb(data, len, 0, NULL);
    const char *from = json_string_value(json_object_get(m, "from"));
    const char *tenant = json_string_value(json_object_get(m, "tenant"));
    const char *name = json_string_value(json_object_get(m, "name"));
    json_int_t tail = json_integer_value(json_object_get(m, "tail"));
    const char *self = realm_cluster_node_id(n->cluster);
    if (reply && from && strcmp(from, self) != 0 && tenant && name && tail > 0 &&
        tail <= 16 * 1024 * 1024 && !strchr(name, '/') && !strchr(tenant, '/') &&
        strcmp(name, "..") != 0 && n->nc.invoker) {
        realm_buf_t out;
        realm_buf_init(&out);
        realm_buf_appendf(&out, "%s\n", self);
        realm_invoker_read_log(n->nc.invoker, tenant, name, (long)tail, &out);
        realm_bus_publish(n->bus, reply, NULL, out.data, out.len);
        realm_buf_dispose(&out);
    }
    json_decref(m);
}

typedef struct {
    realm_node_t *n;
    char *tenant, *name;
    long tail;
    realm_invoker_logs_cb done;
    void *done_data;
} logs_wait_t;

typedef struct {
    const char *id;
    const char *text;
    size_t len;
} part_t;

static int by_id(const void *a, const void *b)
{
    return strcmp(((const part_t *)a)->id, ((const part_t *)b)->id);
}

static void on_logs_gathered(int status, size_t cnt, const char *const *datas, const size_t *lens,
                             void *ud)
{
    (void)status;
    logs_wait_t *w = ud;
    realm_node_t *n = w->n;
    realm_buf_t own;
    realm_buf_init(&own);
    realm_invoker_read_log(n->nc.invoker, w->tenant, w->name, w->tail, &own);
    part_t *parts = realm_calloc(cnt + 1, sizeof(*parts));
    size_t np = 0;
    char *ids = realm_calloc(cnt + 1, 40);
    parts[np++] = (part_t){realm_cluster_node_id(n->cluster), own.data ? own.data : "", own.len};
    for (size_t i = 0; i < cnt; i++) {
        const char *nl = memchr(datas[i], '\n', lens[i]);
        size_t id_len = nl ? (size_t)(nl - datas[i]) : 0;
        if (!nl || id_len == 0 || id_len > 32) continue;
        char *id = ids + 40 * (i + 1);
        memcpy(id, datas[i], id_len);
        id[id_len] = '\0';
        parts[np++] = (part_t){id, nl + 1, lens[i] - id_len - 1};
    }
    qsort(parts, np, sizeof(*parts), by_id);
    realm_buf_t text, nodes;
    realm_buf_init(&text);
    realm_buf_init(&nodes);
    for (size_t i = 0; i < np; i++) {
        realm_buf_append(&text, parts[i].text, parts[i].len);
        realm_buf_appendf(&nodes, "%s%s", i ? "," : "", parts[i].id);
    }
    w->done(text.data ? text.data : "", text.len, nodes.data, w->done_data);
    realm_buf_dispose(&text);
    realm_buf_dispose(&nodes);
    realm_buf_dispose(&own);
    free(parts);
    free(ids);
    free(w->tenant);
    free(w->name);
    free(w);
}

/* realm_invoker_logs_gather_cb: every other node up is asked; those that answer in time count. */
static int gather_logs(const char *tenant, const char *name, long tail, realm_invoker_logs_cb done,
                       void *done_data, void *data)
{
    realm_node_t *n = data;
    size_t others = realm_cluster_size(n->cluster) - 1;
    if (others == 0 || !realm_bus_is_connected(n->bus)) return -1;
    json_t *q = json_pack("{s:s, s:s, s:s, s:I}", "from", realm_cluster_node_id(n->cluster),
                          "tenant", tenant, "name", name, "tail", (json_int_t)tail);
    char *text = json_dumps(q, JSON_COMPACT);
    json_decref(q);
    logs_wait_t *w = realm_calloc(1, sizeof(*w));
    *w = (logs_wait_t){n, realm_strdup(tenant), realm_strdup(name), tail, done, done_data};
    int rc = text ? realm_bus_gather(n->bus, REALM_NODE_LOGS_SUBJECT, text, strlen(text), others,
                                     REALM_NODE_LOGS_TIMEOUT_MS, on_logs_gathered, w)
                  : -1;
    free(text);
    if (rc != 0) {
        free(w->tenant);
        free(w->name);
        free(w);
        return -1;
    }
    return 0;
}

/* The heartbeat's state: the server's, and the environments. */
static json_t *node_state(void *data)
{
    realm_node_t *n = data;
    json_t *o = n->nc.state ? n->nc.state(n->nc.ud) : NULL;
    if (!o) o = json_object();
    if (n->nc.exec) {
        realm_exec_stats_t st;
        realm_exec_stats(n->nc.exec, &st);
        json_object_set_new(o, "environments",
                            json_pack("{s:I, s:I, s:I, s:I, s:I}", "limit",
                                      (json_int_t)n->nc.cfg->concurrency_limit, "busy",
                                      (json_int_t)(st.busy + st.starting), "idle",
                                      (json_int_t)st.idle, "queued", (json_int_t)st.queued,
                                      "leases",
                                      (json_int_t)(n->leases ? realm_leases_held(n->leases) : 0)));
    }
    if (n->remote) json_object_set_new(o, "idle", realm_remote_idle(n->remote));
    if (n->nc.generate)
        json_object_set_new(o, "models", realm_generate_model_names(n->nc.generate));
    return o;
}

/* Another node up has model loaded (generate's hook). */
static int model_elsewhere(const char *model, void *ud)
{
    realm_node_t *n = ud;
    json_t *nodes = realm_cluster_nodes(n->cluster);
    int found = 0;
    size_t i, j;
    json_t *nd, *m;
    json_array_foreach(nodes, i, nd)
    {
        if (json_is_true(json_object_get(nd, "self"))) continue;
        json_array_foreach(json_object_get(nd, "models"), j, m) found =
            found || (json_is_string(m) && strcmp(json_string_value(m), model) == 0);
    }
    json_decref(nodes);
    return found;
}

/* ---- concurrency leases: exec's hooks (exec.h) on cluster/lease.h ---- */

typedef struct {
    realm_node_t *n;
    char *tenant, *name;
    realm_exec_lease_cb cb;
    void *token;
} take_t;

/* A refusal asks the nodes holding such leases in idle environments to let one go. */
static void on_taken(int64_t lease, void *data)
{
    take_t *t = data;
    realm_node_t *n = t->n;
    if ((lease == REALM_EXEC_LEASE_FN_FULL || lease == REALM_EXEC_LEASE_TENANT_FULL) && n->bus) {
        json_t *m =
            json_pack("{s:s, s:s, s:s}", "node", realm_cluster_node_id(n->cluster), "tenant",
                      t->tenant, "function", lease == REALM_EXEC_LEASE_FN_FULL ? t->name : "");
        char *text = json_dumps(m, JSON_COMPACT);
        realm_bus_publish(n->bus, REALM_NODE_LEASE_WANTED_SUBJECT, NULL, text, strlen(text));
        free(text);
        json_decref(m);
    }
    t->cb(lease, t->token);
    free(t->tenant);
    free(t->name);
    free(t);
}

static void lease_take(void *ud, const char *tenant, const char *name, int64_t fn_cap,
                       int64_t tenant_cap, realm_exec_lease_cb cb, void *token)
{
    realm_node_t *n = ud;
    take_t *t = realm_calloc(1, sizeof(*t));
    *t = (take_t){n, realm_strdup(tenant), realm_strdup(name), cb, token};
    realm_leases_take(n->leases, tenant, name, fn_cap, tenant_cap, on_taken, t);
}

static void on_lease_wanted(const char *subject, const char *reply, const char *data, size_t len,
                            void *ud)
{
    (void)subject, (void)reply;
    realm_node_t *n = ud;
    json_t *m = json_loadb(data, len, 0, NULL);
    const char *from = json_string_value(json_object_get(m, "node"));
    const char *tenant = json_string_value(json_object_get(m, "tenant"));
    const char *fn = json_string_value(json_object_get(m, "function"));
    if (from && tenant && fn && strcmp(from, realm_cluster_node_id(n->cluster)) != 0)
        realm_exec_yield_idle(n->nc.exec, tenant, fn[0] ? fn : NULL);
    json_decref(m);
}

static void lease_drop(void *ud, int64_t lease)
{
    realm_node_t *n = ud;
    realm_leases_drop(n->leases, lease);
}

static int lease_is_live(void *ud, int64_t lease)
{
    realm_node_t *n = ud;
    return realm_leases_is_live(n->leases, lease);
}

static void on_lease_lost(int64_t lease, void *data)
{
    realm_node_t *n = data;
    realm_exec_lease_lost(n->nc.exec, lease);
}

/* This node wrote the registry (registry/async.h's write hook): the others
 * hear it before the writer's caller has its answer. */
static void on_registry_write(void *data)
{
    tell_others(data, REALM_NODE_REGISTRY_SUBJECT);
}

int realm_node_open(uv_loop_t *loop, const realm_node_config_t *nc, realm_node_t **out, char *err,
                    size_t err_len)
{
    const realm_config_t *cfg = nc->cfg;
    *out = NULL;
    if (strcmp(cfg->nats, "none") == 0) return 0;
    if (!realm_store_is_pg(cfg->db)) {
        snprintf(err, err_len,
                 "--nats: the nodes of a cluster share one database: add --db "
                 "postgresql://USER@HOST:PORT/DB (the same on every node)");
        return -1;
    }
    char id[96];
    if (strcmp(cfg->node_id, "auto") == 0)
        auto_id(nc->client_port, id, sizeof(id));
    else
        snprintf(id, sizeof(id), "%s", cfg->node_id);
    if (!realm_cluster_id_is_valid(id)) {
        snprintf(err, err_len, "--node-id: '%.64s' is not 1 to 32 of [A-Za-z0-9_-]", id);
        return -1;
    }
    realm_node_t *n = realm_calloc(1, sizeof(*n));
    n->nc = *nc;
    if (nc->exec) {
        n->leases = realm_leases_open(loop, cfg->db, id, cfg->node_lease_ms, on_lease_lost, n, err,
                                      err_len);
        if (!n->leases) {
            free(n);
            return -1;
        }
    }
    realm_bus_config_t bc = {.urls = cfg->nats, .name = id};
    n->bus = realm_bus_open(loop, &bc, NULL, NULL, err, err_len);
    if (!n->bus) {
        realm_leases_close(n->leases);
        free(n);
        return -1;
    }
    realm_cluster_config_t cc = {.node_id = id, .state_cb = node_state, .ud = n};
    n->cluster = realm_cluster_open(loop, n->bus, &cc, err, err_len);
    if (!n->cluster ||
        realm_bus_subscribe(n->bus, REALM_NODE_REGISTRY_SUBJECT, NULL, on_registry_hint, n) != 0) {
        if (n->cluster) {
            snprintf(err, err_len, "cluster: could not subscribe on the bus");
            realm_cluster_close(n->cluster, NULL, NULL);
        }
        realm_bus_close(n->bus, NULL, NULL);
        realm_leases_close(n->leases);
        free(n);
        return -1;
    }
    if (n->leases) {
        realm_bus_subscribe(n->bus, REALM_NODE_LEASE_WANTED_SUBJECT, NULL, on_lease_wanted, n);
        realm_exec_set_leases(nc->exec,
                              &(realm_exec_leases_t){
                                  .take = lease_take, .drop = lease_drop, .is_live = lease_is_live},
                              n);
    }
    if (nc->exec && nc->invoker)
        n->remote = realm_remote_open(
            loop, &(realm_remote_config_t){.bus = n->bus,
                                           .cluster = n->cluster,
                                           .exec = nc->exec,
                                           .invoker = nc->invoker,
                                           .generate = nc->generate,
                                           .concurrency_limit = cfg->concurrency_limit});
    if (n->remote && nc->generate) realm_generate_set_elsewhere(nc->generate, model_elsewhere, n);
    if (nc->ra) realm_registry_async_on_write(nc->ra, on_registry_write, n);
    if (nc->invoker) {
        realm_bus_subscribe(n->bus, REALM_NODE_LOGS_SUBJECT, NULL, on_logs_asked, n);
        realm_invoker_set_logs_gather(nc->invoker, gather_logs, n);
        realm_bus_subscribe(n->bus, REALM_NODE_EVENTS_SUBJECT, NULL, on_event_queued, n);
        realm_invoker_events_cluster(nc->invoker, REALM_NODE_EVENTS_LOOK_MS, on_event_pushed, n);
    }
    if (nc->metrics) {
        realm_metrics_set_const_label(nc->metrics, "node", id);
        realm_metrics_add_collector(nc->metrics, collect, n);
    }
    realm_info("cluster: node %s on %s", id, cfg->nats);
    *out = n;
    return 0;
}

static void on_cluster_closed(void *data)
{
    realm_node_t *n = data;
    realm_bus_close(n->bus, NULL, NULL); /* after the goodbye went out */
    free(n);
}

void realm_node_close(realm_node_t *n)
{
    if (!n) return;
    if (n->nc.generate) realm_generate_set_elsewhere(n->nc.generate, NULL, NULL);
    realm_remote_close(n->remote);
    if (n->leases) {
        realm_exec_set_leases(n->nc.exec, NULL, NULL);
        realm_leases_close(n->leases);
    }
    if (n->nc.ra) realm_registry_async_on_write(n->nc.ra, NULL, NULL);
    if (n->nc.invoker) {
        realm_invoker_set_logs_gather(n->nc.invoker, NULL, NULL);
        realm_invoker_events_cluster(n->nc.invoker, 0, NULL, NULL);
    }
    realm_cluster_close(n->cluster, on_cluster_closed, n);
}
