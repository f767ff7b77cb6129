/*
 * listener.c - TCP listener and its list of live connections (see
 * listener.h).
 */
#include "net/internal.h"

#include "base/alloc.h"
#include "base/log.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define BACKLOG 1024

struct realm_listener_s {
    uv_tcp_t tcp;
    char *name;
    char host[64];
    int port;
    realm_listener_conn_cb on_conn;
    realm_listener_close_cb close_cb;
    void *data;
    realm_conn_t *conns; /* live connections (doubly linked) */
    size_t open_cnt;
    uint64_t accepted_cnt;
    uint64_t rejected_cnt;
    unsigned is_closed : 1;     /* the handle's close callback has run */
    unsigned free_on_close : 1; /* realm_listener_free() came first */
};

static void free_listener(realm_listener_t *l);

void realm_conn__unlink(realm_conn_t *c)
{
    if (!c->in_list) return;
    realm_listener_t *l = c->listener;
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->in_list = 0;
    l->open_cnt--;
}

static void format_peer(realm_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, ip, sizeof(ip));
            port = ntohs(a->sin6_port);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, ip, sizeof(ip));
            port = ntohs(a->sin_port);
        }
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
}

static void on_connection(uv_stream_t *server, int status)
{
    realm_listener_t *l = server->data;
    if (status < 0) {
        realm_warn("%s: accept failed: %s", l->name, uv_strerror(status));
        return;
    }
    realm_conn_t *c = realm_malloc(sizeof(*c));
    realm_conn__init(c, l, server->loop);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        l->rejected_cnt++;
        c->handles_open = 2;
        realm_conn_close(c, 0);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    format_peer(c);
    c->next = l->conns;
    if (l->conns) l->conns->prev = c;
    l->conns = c;
    c->in_list = 1;
    l->open_cnt++;
    l->accepted_cnt++;
    l->on_conn(l, c, l->data);
    realm_conn_read_start(c);
}

static realm_listener_t *listener_alloc(uv_loop_t *loop, const char *name,
                                        realm_listener_conn_cb on_conn, void *data)
{
    realm_listener_t *l = realm_calloc(1, sizeof(*l));
    l->name = realm_strdup(name);
    l->on_conn = on_conn;
    l->data = data;
    uv_tcp_init(loop, &l->tcp);
    l->tcp.data = l;
    return l;
}

/* Listens on the bound socket and learns the address it has. */
static int listener_start(realm_listener_t *l, realm_listener_t **out)
{
    int rc = uv_listen((uv_stream_t *)&l->tcp, BACKLOG, on_connection);
    if (rc != 0) {
        realm_listener_free(l);
        return rc;
    }
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &len);
    if (!l->host[0] && bound.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&bound, l->host, sizeof(l->host));
    l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    *out = l;
    return 0;
}

int realm_listener_new(uv_loop_t *loop, const char *name, const char *host, int port,
                       realm_listener_conn_cb on_conn, void *data, realm_listener_t **out)
{
    struct sockaddr_storage addr;
    int rc;
    if (strchr(host, ':'))
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    else
        rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc != 0) return rc;

    realm_listener_t *l = listener_alloc(loop, name, on_conn, data);
    snprintf(l->host, sizeof(l->host), "%s", host);
    if ((rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&addr, 0)) != 0) {
        realm_listener_free(l);
        return rc;
    }
    return listener_start(l, out);
}

int realm_listener_adopt(uv_loop_t *loop, const char *name, int fd, realm_listener_conn_cb on_conn,
                         void *data, realm_listener_t **out)
{
    realm_listener_t *l = listener_alloc(loop, name, on_conn, data);
    int rc = uv_tcp_open(&l->tcp, (uv_os_sock_t)fd);
    if (rc != 0) {
        close(fd);
        realm_listener_free(l);
        return rc;
    }
    return listener_start(l, out);
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    realm_listener_t *l = h->data;
    l->is_closed = 1;
    if (l->close_cb) l->close_cb(l, l->data);
    if (l->free_on_close) free_listener(l);
}

static void free_listener(realm_listener_t *l)
{
    /* Connections still open lose their back pointer; they are counted no more. */
    for (realm_conn_t *c = l->conns; c; c = c->next)
        c->in_list = 0, c->listener = NULL;
    free(l->name);
    free(l);
}

void realm_listener_close(realm_listener_t *l, realm_listener_close_cb close_cb)
{
    if (uv_is_closing((uv_handle_t *)&l->tcp)) return;
    l->close_cb = close_cb;
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
}

void realm_listener_free(realm_listener_t *l)
{
    if (l->is_closed)
        free_listener(l);
    else {
        l->free_on_close = 1;
        realm_listener_close(l, l->close_cb);
    }
}

const char *realm_listener_name(const realm_listener_t *l)
{
    return l->name;
}

int realm_listener_port(const realm_listener_t *l)
{
    return l->port;
}

const char *realm_listener_host(const realm_listener_t *l)
{
    return l->host;
}

void *realm_listener_data(const realm_listener_t *l)
{
    return l->data;
}

void realm_listener_each(realm_listener_t *l, realm_listener_each_cb cb, void *data)
{
    realm_conn_t *c = l->conns;
    while (c) {
        realm_conn_t *next = c->next; /* cb may unlink c */
        cb(c, data);
        c = next;
    }
}

size_t realm_listener_open_cnt(const realm_listener_t *l)
{
    return l->open_cnt;
}

uint64_t realm_listener_accepted_cnt(const realm_listener_t *l)
{
    return l->accepted_cnt;
}

uint64_t realm_listener_rejected_cnt(const realm_listener_t *l)
{
    return l->rejected_cnt;
}

void realm_listener_count_rejected(realm_listener_t *l)
{
    l->rejected_cnt++;
}

uint64_t realm_listener_raise_fd_limit(uint64_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    if (rl.rlim_cur == RLIM_INFINITY) return UINT64_MAX;
    if ((uint64_t)rl.rlim_cur >= want) return (uint64_t)rl.rlim_cur;
    rlim_t to =
        rl.rlim_max == RLIM_INFINITY || (uint64_t)rl.rlim_max > want ? (rlim_t)want : rl.rlim_max;
    if (to > rl.rlim_cur) {
        rl.rlim_cur = to;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (uint64_t)rl.rlim_cur;
}
