/*
 * bus.c - the NATS connection of a node (see bus.h).
 *
 * Threads: libnats' threads only append events to `in` (under mu) and wake
 * the loop; they send the wake-up while still holding mu, so once the loop
 * has seen the last event a thread will ever post (the connection closed,
 * every subscription complete), no thread is inside uv_async_send any more
 * and the handle may be closed.
 */
#include "bus/bus.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"

#include <inttypes.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_URLS 16
#define RECONNECT_BUF_BYTES (8 * 1024 * 1024)

typedef struct realm_bus_s bus_t;

typedef struct sub_s {
    bus_t *b;
    natsSubscription *ns;
    realm_bus_msg_cb cb; /* NULL for the inbox: requests, then inbox_cb */
    void *ud;
    struct sub_s *next;
} sub_t;

enum { EV_MSG, EV_CONNECTED, EV_DISCONNECTED, EV_CLOSED, EV_SUB_DONE };

typedef struct ev_s {
    struct ev_s *next;
    int kind;
    sub_t *sub;  /* EV_MSG */
    natsMsg *msg; /* EV_MSG, owned */
} ev_t;

typedef struct req_s {
    bus_t *b;
    uint64_t id;
    uv_timer_t timer;
    realm_bus_reply_cb cb; /* a request: the first reply */
    realm_bus_gather_cb gather_cb; /* a gather: every reply up to want */
    void *ud;
    size_t want, got;
    char **datas; /* a gather's replies so far (owned) */
    size_t *lens;
    struct req_s *prev, *next;
} req_t;

struct realm_bus_s {
    uv_loop_t *loop;
    natsOptions *opts;
    natsConnection *nc;
    uv_async_t async;
    uv_mutex_t mu;
    ev_t *in_head, *in_tail; /* under mu */
    sub_t *subs;
    size_t subs_cnt, subs_done;
    char inbox[64]; /* "_INBOX.<nuid>." */
    realm_bus_msg_cb inbox_cb;
    void *inbox_ud;
    req_t *reqs;
    uint64_t next_req;
    realm_bus_state_cb state_cb;
    void *state_ud;
    int is_connected;
    int is_closing, is_closed_seen;
    realm_bus_close_cb close_cb;
    void *close_data;
};

/* ---- from libnats' threads ---- */

static void post(bus_t *b, int kind, sub_t *sub, natsMsg *msg)
{
    ev_t *e = realm_malloc(sizeof(*e));
    e->next = NULL;
    e->kind = kind;
    e->sub = sub;
    e->msg = msg;
    uv_mutex_lock(&b->mu);
    if (b->in_tail)
        b->in_tail->next = e;
    else
        b->in_head = e;
    b->in_tail = e;
    uv_async_send(&b->async); /* under mu: see the file comment */
    uv_mutex_unlock(&b->mu);
}

static void on_nats_msg(natsConnection *nc, natsSubscription *ns, natsMsg *msg, void *closure)
{
    (void)nc, (void)ns;
    sub_t *s = closure;
    post(s->b, EV_MSG, s, msg);
}

static void on_nats_sub_done(void *closure)
{
    sub_t *s = closure;
    post(s->b, EV_SUB_DONE, s, NULL);
}

static void on_nats_connected(natsConnection *nc, void *closure)
{
    (void)nc;
    post(closure, EV_CONNECTED, NULL, NULL);
}

static void on_nats_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    post(closure, EV_DISCONNECTED, NULL, NULL);
}

static void on_nats_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    post(closure, EV_CLOSED, NULL, NULL);
}

/* ---- requests ---- */

static void req_closed(uv_handle_t *h)
{
    req_t *r = h->data;
    for (size_t i = 0; i < r->got; i++)
        free(r->datas[i]);
    free(r->datas);
    free(r->lens);
    free(r);
}

static void req_finish(req_t *r, int status, const char *data, size_t len)
{
    bus_t *b = r->b;
    if (r->prev)
        r->prev->next = r->next;
    else
        b->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, req_closed);
    if (r->gather_cb)
        r->gather_cb(status == REALM_ERR_SHUTTING_DOWN ? status : 0,
                     status == REALM_ERR_SHUTTING_DOWN ? 0 : r->got,
                     (const char *const *)r->datas, r->lens, r->ud);
    else
        r->cb(status, data, len, r->ud);
}

static void on_req_timeout(uv_timer_t *t)
{
    req_finish(t->data, REALM_ERR_BUS_TIMEOUT, "", 0);
}

/* A gather's reply: kept; the last one wanted finishes it. */
static void gathered(req_t *r, natsMsg *msg)
{
    if (natsMsg_IsNoResponders(msg)) {
        req_finish(r, 0, "", 0);
        return;
    }
    size_t len = (size_t)natsMsg_GetDataLength(msg);
    char *copy = realm_malloc(len + 1);
    memcpy(copy, natsMsg_GetData(msg), len);
    copy[len] = '\0';
    r->datas[r->got] = copy;
    r->lens[r->got++] = len;
    if (r->got == r->want) req_finish(r, 0, "", 0);
}

/* An inbox message: a request's reply ("r<n>"), else the owner's. */
static void on_inbox(bus_t *b, const char *subject, const char *reply, natsMsg *msg)
{
    const char *tok = subject + strlen(b->inbox);
    if (tok[0] == 'r' && tok[1] >= '0' && tok[1] <= '9') {
        uint64_t id = strtoull(tok + 1, NULL, 10);
        for (req_t *r = b->reqs; r; r = r->next) {
            if (r->id != id) continue;
            if (r->gather_cb)
                gathered(r, msg);
            else if (natsMsg_IsNoResponders(msg))
                req_finish(r, REALM_ERR_BUS_NO_RESPONDERS, "", 0);
            else
                req_finish(r, 0, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
            return;
        }
        return; /* late: its timer answered already */
    }
    if (b->inbox_cb)
        b->inbox_cb(subject, reply, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
                    b->inbox_ud);
}

/* ---- on the loop ---- */

static void bus_free(bus_t *b)
{
    for (sub_t *s = b->subs, *n; s; s = n) {
        n = s->next;
        natsSubscription_Destroy(s->ns);
        free(s);
    }
    natsConnection_Destroy(b->nc);
    natsOptions_Destroy(b->opts);
    uv_mutex_destroy(&b->mu);
    realm_bus_close_cb cb = b->close_cb;
    void *data = b->close_data;
    free(b);
    if (cb) cb(data);
}

static void on_async_closed(uv_handle_t *h)
{
    bus_free(h->data);
}

static void set_connected(bus_t *b, int is_connected)
{
    if (b->is_connected == is_connected || b->is_closing) return;
    b->is_connected = is_connected;
    if (is_connected) {
        char url[256] = "";
        natsConnection_GetConnectedUrl(b->nc, url, sizeof(url));
        realm_info("bus: connected to %s", url[0] ? url : "NATS");
    } else
        realm_warn("bus: disconnected from NATS; reconnecting");
    if (b->state_cb) b->state_cb(is_connected, b->state_ud);
}

static void on_async(uv_async_t *a)
{
    bus_t *b = a->data;
    uv_mutex_lock(&b->mu);
    ev_t *e = b->in_head;
    b->in_head = b->in_tail = NULL;
    uv_mutex_unlock(&b->mu);
    while (e) {
        ev_t *next = e->next;
        switch (e->kind) {
        case EV_MSG:
            if (!b->is_closing) {
                const char *subject = natsMsg_GetSubject(e->msg);
                const char *reply = natsMsg_GetReply(e->msg);
                if (e->sub->cb)
                    e->sub->cb(subject, reply, natsMsg_GetData(e->msg),
                               (size_t)natsMsg_GetDataLength(e->msg), e->sub->ud);
                else
                    on_inbox(b, subject, reply, e->msg);
            }
            natsMsg_Destroy(e->msg);
            break;
        case EV_CONNECTED:
            set_connected(b, 1);
            break;
        case EV_DISCONNECTED:
            set_connected(b, 0);
            break;
        case EV_CLOSED:
            b->is_closed_seen = 1;
            break;
        case EV_SUB_DONE:
            b->subs_done++;
            break;
        }
        free(e);
        e = next;
    }
    if (b->is_closing && b->is_closed_seen && b->subs_done == b->subs_cnt &&
        !uv_is_closing((uv_handle_t *)&b->async))
        uv_close((uv_handle_t *)&b->async, on_async_closed);
}

static int nats_fail(char *err, size_t err_len, const char *what, natsStatus s)
{
    snprintf(err, err_len, "%s: %s", what, natsStatus_GetText(s));
    return -1;
}

/* Splits "u1,u2" into servers (pointers into buf). */
static int split_urls(char *buf, const char **servers, int *n)
{
    *n = 0;
    for (char *p = strtok(buf, ","); p; p = strtok(NULL, ",")) {
        while (*p == ' ')
            p++;
        if (!*p) continue;
        if (*n == MAX_URLS || strncmp(p, "nats://", 7) != 0) return -1;
        servers[(*n)++] = p;
    }
    return *n > 0 ? 0 : -1;
}

static int subscribe(bus_t *b, const char *subject, const char *queue, realm_bus_msg_cb cb,
                     void *ud)
{
    sub_t *s = realm_calloc(1, sizeof(*s));
    s->b = b;
    s->cb = cb;
    s->ud = ud;
    natsStatus st = queue ? natsConnection_QueueSubscribe(&s->ns, b->nc, subject, queue,
                                                          on_nats_msg, s)
                          : natsConnection_Subscribe(&s->ns, b->nc, subject, on_nats_msg, s);
    if (st == NATS_OK) st = natsSubscription_SetOnCompleteCB(s->ns, on_nats_sub_done, s);
    /* No message is ever dropped for being slow: the loop drains as it can. */
    if (st == NATS_OK) st = natsSubscription_SetPendingLimits(s->ns, -1, -1);
    if (st != NATS_OK) {
        realm_warn("bus: subscribe %s: %s", subject, natsStatus_GetText(st));
        natsSubscription_Destroy(s->ns);
        free(s);
        return REALM_ERR_BUS_UNAVAILABLE;
    }
    s->next = b->subs;
    b->subs = s;
    b->subs_cnt++;
    return 0;
}

realm_bus_t *realm_bus_open(uv_loop_t *loop, const realm_bus_config_t *cfg,
                            realm_bus_state_cb state_cb, void *state_ud, char *err, size_t err_len)
{
    char *urls = realm_strdup(cfg->urls ? cfg->urls : "");
    const char *servers[MAX_URLS];
    int n;
    if (split_urls(urls, servers, &n) != 0) {
        snprintf(err, err_len, "--nats: '%s' is not a list of nats://HOST:PORT URLs (at most %d)",
                 cfg->urls ? cfg->urls : "", MAX_URLS);
        free(urls);
        return NULL;
    }
    bus_t *b = realm_calloc(1, sizeof(*b));
    b->loop = loop;
    b->state_cb = state_cb;
    b->state_ud = state_ud;
    uv_mutex_init(&b->mu);
    natsStatus st = natsOptions_Create(&b->opts);
    uint64_t wait = cfg->reconnect_wait_ms ? cfg->reconnect_wait_ms : 250;
    if (st == NATS_OK) st = natsOptions_SetServers(b->opts, servers, n);
    if (st == NATS_OK && cfg->name) st = natsOptions_SetName(b->opts, cfg->name);
    if (st == NATS_OK) st = natsOptions_SetSendAsap(b->opts, true);
    if (st == NATS_OK) st = natsOptions_SetAllowReconnect(b->opts, true);
    if (st == NATS_OK) st = natsOptions_SetMaxReconnect(b->opts, -1);
    if (st == NATS_OK) st = natsOptions_SetReconnectWait(b->opts, (int64_t)wait);
    if (st == NATS_OK) st = natsOptions_SetReconnectJitter(b->opts, (int64_t)wait / 2, 0);
    if (st == NATS_OK) st = natsOptions_SetReconnectBufSize(b->opts, RECONNECT_BUF_BYTES);
    if (st == NATS_OK) st = natsOptions_SetTimeout(b->opts, 2000);
    if (st == NATS_OK) st = natsOptions_SetPingInterval(b->opts, 2000);
    if (st == NATS_OK) st = natsOptions_SetMaxPingsOut(b->opts, 2);
    if (st == NATS_OK)
        st = natsOptions_SetRetryOnFailedConnect(b->opts, true, on_nats_connected, b);
    if (st == NATS_OK) st = natsOptions_SetDisconnectedCB(b->opts, on_nats_disconnected, b);
    if (st == NATS_OK) st = natsOptions_SetReconnectedCB(b->opts, on_nats_connected, b);
    if (st == NATS_OK) st = natsOptions_SetClosedCB(b->opts, on_nats_closed, b);
    free(urls);
    if (st != NATS_OK) {
        nats_fail(err, err_len, "nats options", st);
        goto fail;
    }
    if (uv_async_init(loop, &b->async, on_async) != 0) {
        snprintf(err, err_len, "bus: uv_async_init failed");
        goto fail;
    }
    b->async.data = b;
    uv_unref((uv_handle_t *)&b->async); /* the bus alone does not keep the loop alive */
    st = natsConnection_Connect(&b->nc, b->opts);
    if (st == NATS_OK) {
        post(b, EV_CONNECTED, NULL, NULL); /* connected at once: no callback says so */
    } else if (st != NATS_NOT_YET_CONNECTED) {
        nats_fail(err, err_len, "nats connect", st);
        uv_close((uv_handle_t *)&b->async, NULL);
        uv_run(loop, UV_RUN_NOWAIT);
        goto fail;
    }
    /* The inbox: "_INBOX.<nuid>." and everything under it. */
    char sub[80];
    natsInbox *ib = NULL;
    if (natsInbox_Create(&ib) == NATS_OK) {
        snprintf(b->inbox, sizeof(b->inbox), "%s.", ib);
        natsInbox_Destroy(ib);
    }
    snprintf(sub, sizeof(sub), "%s>", b->inbox);
    if (!b->inbox[0] || subscribe(b, sub, NULL, NULL, NULL) != 0) {
        snprintf(err, err_len, "bus: could not subscribe to the inbox");
        b->is_closing = 1;
        uv_ref((uv_handle_t *)&b->async);
        natsConnection_Close(b->nc);
        return NULL; /* freed on the loop once libnats is done (on_async) */
    }
    return b;

fail:
    natsOptions_Destroy(b->opts);
    uv_mutex_destroy(&b->mu);
    free(b);
    return NULL;
}

void realm_bus_close(realm_bus_t *b, realm_bus_close_cb cb, void *data)
{
    if (!b || b->is_closing) return;
    b->is_closing = 1;
    b->close_cb = cb;
    b->close_data = data;
    uv_ref((uv_handle_t *)&b->async); /* the loop runs until libnats is done */
    while (b->reqs)
        req_finish(b->reqs, REALM_ERR_SHUTTING_DOWN, "", 0);
    /* Joins libnats' reader and flusher; the subscriptions complete and the
     * connection's closed callback comes through on_async. */
    natsConnection_Close(b->nc);
}

int realm_bus_is_connected(const realm_bus_t *b)
{
    return b->is_connected;
}

int realm_bus_publish(realm_bus_t *b, const char *subject, const char *reply, const void *data,
                      size_t len)
{
    if (b->is_closing) return REALM_ERR_BUS_UNAVAILABLE;
    natsStatus st = reply ? natsConnection_PublishRequest(b->nc, subject, reply, data, (int)len)
                          : natsConnection_Publish(b->nc, subject, data, (int)len);
    return st == NATS_OK ? 0 : REALM_ERR_BUS_UNAVAILABLE;
}

int realm_bus_subscribe(realm_bus_t *b, const char *subject, const char *queue,
                        realm_bus_msg_cb cb, void *ud)
{
    if (b->is_closing || !cb) return REALM_ERR_BUS_UNAVAILABLE;
    return subscribe(b, subject, queue, cb, ud);
}

const char *realm_bus_inbox(const realm_bus_t *b)
{
    return b->inbox;
}

void realm_bus_set_inbox(realm_bus_t *b, realm_bus_msg_cb inbox_cb, void *ud)
{
    b->inbox_cb = inbox_cb;
    b->inbox_ud = ud;
}

static int request(realm_bus_t *b, const char *subject, const void *data, size_t len,
                   uint64_t timeout_ms, req_t *r)
{
    r->b = b;
    r->id = ++b->next_req;
    char reply[96];
    snprintf(reply, sizeof(reply), "%sr%" PRIu64, b->inbox, r->id);
    if (realm_bus_publish(b, subject, reply, data, len) != 0) {
        free(r->datas);
        free(r->lens);
        free(r);
        return REALM_ERR_BUS_UNAVAILABLE;
    }
    uv_timer_init(b->loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, on_req_timeout, timeout_ms, 0);
    r->next = b->reqs;
    if (b->reqs) b->reqs->prev = r;
    b->reqs = r;
    return 0;
}

int realm_bus_request(realm_bus_t *b, const char *subject, const void *data, size_t len,
                      uint64_t timeout_ms, realm_bus_reply_cb cb, void *ud)
{
    if (b->is_closing) return REALM_ERR_BUS_UNAVAILABLE;
    req_t *r = realm_calloc(1, sizeof(*r));
    r->cb = cb;
    r->ud = ud;
    return request(b, subject, data, len, timeout_ms, r);
}

int realm_bus_gather(realm_bus_t *b, const char *subject, const void *data, size_t len,
                     size_t want, uint64_t timeout_ms, realm_bus_gather_cb cb, void *ud)
{
    if (b->is_closing || want == 0) return REALM_ERR_BUS_UNAVAILABLE;
    req_t *r = realm_calloc(1, sizeof(*r));
    r->gather_cb = cb;
    r->ud = ud;
    r->want = want;
    r->datas = realm_calloc(want, sizeof(*r->datas));
    r->lens = realm_calloc(want, sizeof(*r->lens));
    return request(b, subject, data, len, timeout_ms, r);
}
