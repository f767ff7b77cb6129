/*
 * cluster.c - membership over the bus (see cluster.h).
 */
#include "cluster/cluster.h"

#include "base/alloc.h"
#include "base/log.h"
#include "base/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct node_s {
    char id[33];
    char instance[33];
    json_t *state; /* its last heartbeat (owned) */
    uint64_t seen_ms; /* uv_now() when heard */
    struct node_s *next;
} node_t;

struct realm_cluster_s {
    uv_loop_t *loop;
    realm_bus_t *bus;
    realm_cluster_config_t cfg;
    char id[33];
    char instance[33]; /* this process's nonce: tells a restarted node, or a twin, apart */
    uint64_t seq;
    uint64_t started_ms; /* wall clock */
    json_t *self;        /* this node's last state (owned) */
    node_t *nodes;       /* the others */
    size_t nodes_cnt;
    uint64_t conflicts;
    uv_timer_t timer;
    int is_closing;
    void (*close_cb)(void *data);
    void *close_data;
};

int realm_cluster_id_is_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n < 1 || n > 32) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static node_t *find(realm_cluster_t *c, const char *id)
{
    for (node_t *n = c->nodes; n; n = n->next)
        if (strcmp(n->id, id) == 0) return n;
    return NULL;
}

static void drop(realm_cluster_t *c, node_t *gone, const char *why)
{
    node_t **pp = &c->nodes;
    while (*pp && *pp != gone)
        pp = &(*pp)->next;
    if (!*pp) return;
    *pp = gone->next;
    c->nodes_cnt--;
    realm_info("cluster: node %s left (%s); %zu node%s up", gone->id, why, c->nodes_cnt + 1,
               c->nodes_cnt ? "s" : "");
    if (c->cfg.change_cb) c->cfg.change_cb(gone->id, 0, c->cfg.ud);
    json_decref(gone->state);
    free(gone);
}

static void on_state(const char *subject, const char *reply, const char *data, size_t len,
                     void *ud)
{
    (void)subject, (void)reply;
    realm_cluster_t *c = ud;
    json_t *st = json_loadb(data, len, 0, NULL);
    const char *id = json_string_value(json_object_get(st, "id"));
    const char *inst = json_string_value(json_object_get(st, "instance"));
    if (!json_is_object(st) || !realm_cluster_id_is_valid(id) || !inst || strlen(inst) > 32) {
        json_decref(st);
        return; /* not ours to read */
    }
    if (strcmp(id, c->id) == 0) {
        if (strcmp(inst, c->instance) != 0) {
            if (c->conflicts++ % 60 == 0)
                realm_error("cluster: another process also calls itself node %s: give every "
                            "node its own --node-id",
                            id);
        }
        json_decref(st);
        return;
    }
    node_t *n = find(c, id);
    if (!n) {
        n = realm_calloc(1, sizeof(*n));
        snprintf(n->id, sizeof(n->id), "%s", id);
        n->next = c->nodes;
        c->nodes = n;
        c->nodes_cnt++;
        realm_info("cluster: node %s joined; %zu nodes up", id, c->nodes_cnt + 1);
        if (c->cfg.change_cb) c->cfg.change_cb(id, 1, c->cfg.ud);
    } else if (strcmp(n->instance, inst) != 0) {
        realm_info("cluster: node %s restarted", id);
    }
    snprintf(n->instance, sizeof(n->instance), "%s", inst);
    json_decref(n->state);
    n->state = st;
    n->seen_ms = uv_now(c->loop);
}

static void on_leave(const char *subject, const char *reply, const char *data, size_t len,
                     void *ud)
{
    (void)subject, (void)reply;
    realm_cluster_t *c = ud;
    json_t *m = json_loadb(data, len, 0, NULL);
    const char *id = json_string_value(json_object_get(m, "id"));
    const char *inst = json_string_value(json_object_get(m, "instance"));
    node_t *n = id && inst ? find(c, id) : NULL;
    if (n && strcmp(n->instance, inst) == 0) drop(c, n, "shut down");
    json_decref(m);
}

static void publish(realm_cluster_t *c, const char *subject, json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    if (text) realm_bus_publish(c->bus, subject, NULL, text, strlen(text));
    free(text);
}

static void beat(realm_cluster_t *c)
{
    json_t *st = c->cfg.state_cb ? c->cfg.state_cb(c->cfg.ud) : NULL;
    if (!json_is_object(st)) {
        json_decref(st);
        st = json_object();
    }
    json_object_set_new(st, "id", json_string(c->id));
    json_object_set_new(st, "instance", json_string(c->instance));
    json_object_set_new(st, "seq", json_integer((json_int_t)++c->seq));
    json_object_set_new(st, "started_ms", json_integer((json_int_t)c->started_ms));
    publish(c, REALM_CLUSTER_STATE_SUBJECT, st);
    json_decref(c->self);
    c->self = st;
}

static void on_timer(uv_timer_t *t)
{
    realm_cluster_t *c = t->data;
    beat(c);
    uint64_t now = uv_now(c->loop);
    for (node_t *n = c->nodes, *next; n; n = next) {
        next = n->next;
        if (now - n->seen_ms > c->cfg.expiry_ms) drop(c, n, "silent");
    }
}

realm_cluster_t *realm_cluster_open(uv_loop_t *loop, realm_bus_t *bus,
                                    const realm_cluster_config_t *cfg, char *err, size_t err_len)
{
    if (!realm_cluster_id_is_valid(cfg->node_id)) {
        snprintf(err, err_len, "--node-id: '%s' is not 1 to 32 of [A-Za-z0-9_-]",
                 cfg->node_id ? cfg->node_id : "");
        return NULL;
    }
    realm_cluster_t *c = realm_calloc(1, sizeof(*c));
    c->loop = loop;
    c->bus = bus;
    c->cfg = *cfg;
    c->cfg.node_id = NULL;
    if (!c->cfg.heartbeat_ms) c->cfg.heartbeat_ms = 1000;
    if (!c->cfg.expiry_ms) c->cfg.expiry_ms = c->cfg.heartbeat_ms * 7 / 2;
    snprintf(c->id, sizeof(c->id), "%s", cfg->node_id);
    char uuid[37];
    realm_str_uuid4(uuid);
    snprintf(c->instance, sizeof(c->instance), "%.8s%.4s%.4s", uuid, uuid + 9, uuid + 14);
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    c->started_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    if (realm_bus_subscribe(bus, REALM_CLUSTER_STATE_SUBJECT, NULL, on_state, c) != 0 ||
        realm_bus_subscribe(bus, REALM_CLUSTER_LEAVE_SUBJECT, NULL, on_leave, c) != 0) {
        snprintf(err, err_len, "cluster: could not subscribe on the bus");
        free(c);
        return NULL;
    }
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    beat(c); /* heard at once, not a heartbeat later */
    uv_timer_start(&c->timer, on_timer, c->cfg.heartbeat_ms, c->cfg.heartbeat_ms);
    uv_unref((uv_handle_t *)&c->timer);
    return c;
}

static void on_closed(uv_handle_t *h)
{
    realm_cluster_t *c = h->data;
    void (*cb)(void *) = c->close_cb;
    void *data = c->close_data;
    while (c->nodes) {
        node_t *n = c->nodes;
        c->nodes = n->next;
        json_decref(n->state);
        free(n);
    }
    json_decref(c->self);
    free(c);
    if (cb) cb(data);
}

void realm_cluster_close(realm_cluster_t *c, void (*cb)(void *data), void *data)
{
    if (!c || c->is_closing) return;
    c->is_closing = 1;
    c->close_cb = cb;
    c->close_data = data;
    json_t *bye = json_pack("{s:s, s:s}", "id", c->id, "instance", c->instance);
    publish(c, REALM_CLUSTER_LEAVE_SUBJECT, bye);
    json_decref(bye);
    uv_close((uv_handle_t *)&c->timer, on_closed);
}

const char *realm_cluster_node_id(const realm_cluster_t *c)
{
    return c->id;
}

size_t realm_cluster_size(const realm_cluster_t *c)
{
    return c->nodes_cnt + 1;
}

static json_t *describe(const realm_cluster_t *c, const json_t *state, uint64_t seen_ms,
                        int is_self)
{
    json_t *o = json_deep_copy(state);
    if (!o) o = json_object();
    uint64_t now = uv_now(c->loop);
    json_object_set_new(o, "age_ms", json_integer(is_self ? 0 : (json_int_t)(now - seen_ms)));
    json_object_set_new(o, "self", json_boolean(is_self));
    return o;
}

json_t *realm_cluster_nodes(const realm_cluster_t *c)
{
    json_t *all = json_array();
    json_array_append_new(all, describe(c, c->self, 0, 1));
    for (node_t *n = c->nodes; n; n = n->next)
        json_array_append_new(all, describe(c, n->state, n->seen_ms, 0));
    return all;
}

const json_t *realm_cluster_node(const realm_cluster_t *c, const char *id)
{
    if (strcmp(id, c->id) == 0) return c->self;
    for (node_t *n = c->nodes; n; n = n->next)
        if (strcmp(n->id, id) == 0) return n->state;
    return NULL;
}

uint64_t realm_cluster_id_conflicts(const realm_cluster_t *c)
{
    return c->conflicts;
}
