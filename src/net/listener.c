/*
 * listener.c - TCP listener and its list of live connections (see
 * listener.h).
 *
 * DESIGN: the listening socket is watched with a uv_poll_t and accepted
 * with accept4() here rather than by uv_listen(), for two things libuv's
 * accept loop cannot do:
 *
 *  - Pause. On EMFILE/ENFILE (or ENOBUFS/ENOMEM) the poll stops and a timer
 *    retries after PAUSE_MS; pending connections wait in the kernel's
 *    backlog. (libuv's own loop accepts and closes the backlog with a
 *    reserve descriptor, and when that descriptor is gone calls back with
 *    EMFILE in a loop that does not end until the backlog does.)
 *  - Refuse cheaply. Over the listener's limit, a connection is first made
 *    room for (the protocol closes its oldest idle connection); failing
 *    that it is accepted, sent the protocol's canned refusal (an HTTP 503
 *    with Retry-After) and closed at once, without ever becoming a
 *    realm_conn_t: its descriptor lives for microseconds.
 *
 * At most ACCEPT_BATCH connections are taken per wakeup, so a flood on one
 * listener cannot starve the rest of the loop.
 */
#include "net/internal.h"

#include "base/alloc.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BACKLOG 1024
#define ACCEPT_BATCH 128         /* connections taken per wakeup */
#define PAUSE_MS 100             /* accepting pauses this long on EMFILE and the like */
#define WARN_EVERY_MS 10000      /* refusals and pauses are logged at most this often */
#define REFUSE_DRAIN_BYTES 16384 /* request bytes read (and dropped) before refusing */

struct realm_listener_s {
    uv_poll_t poll;   /* readiness of the listening socket */
    uv_timer_t pause; /* resumes accepting after a pause */
    int fd;           /* the listening socket; closed with the listener */
    char *name;
    char host[64];
    int port;
    realm_listener_conn_cb on_conn;
    realm_listener_close_cb close_cb;
    void *data;
    realm_conn_t *conns; /* live connections (doubly linked) */
    size_t open_cnt;
    size_t max_conns;               /* 0: no limit */
    realm_listener_room_cb room_cb; /* closes an idle connection to make room */
    void *room_data;
    char *refusal; /* sent to a connection over the limit; owned, may be NULL */
    size_t refusal_len;
    uint64_t accepted_cnt;
    uint64_t rejected_cnt;
    uint64_t paused_cnt;
    uint64_t refused_since_warn; /* refusals not yet logged */
    uint64_t warned_at;          /* loop time of the last warning */
    int handles_open;            /* poll and timer not yet closed */
    unsigned is_paused : 1;      /* poll stopped until the timer fires */
    unsigned is_closing : 1;     /* realm_listener_close() was called */
    unsigned is_closed : 1;      /* the handles' close callbacks have run */
    unsigned free_on_close : 1;  /* realm_listener_free() came first */
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

/* Logs what was refused or paused, at most once per WARN_EVERY_MS. */
static void warn_refused(realm_listener_t *l, const char *why)
{
    uint64_t now = uv_now(l->poll.loop);
    if (l->warned_at != 0 && now - l->warned_at < WARN_EVERY_MS) return;
    l->warned_at = now;
    realm_warn("%s: %s; %llu connections refused since the last warning (limit %zu)", l->name, why,
               (unsigned long long)l->refused_since_warn, l->max_conns);
    l->refused_since_warn = 0;
}

/*
 * Over the limit: drop what the peer already sent (closing with unread
 * input would reset the connection and could destroy the answer), send the
 * refusal if it fits in the socket buffer, close.
 */
static void refuse(realm_listener_t *l, int fd)
{
    char junk[4096];
    size_t drained = 0;
    ssize_t n;
    while (drained < REFUSE_DRAIN_BYTES && (n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT)) > 0)
        drained += (size_t)n;
    if (l->refusal_len > 0) {
        n = send(fd, l->refusal, l->refusal_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)n; /* best effort: a refusal never waits */
        shutdown(fd, SHUT_WR);
    }
    close(fd);
    l->rejected_cnt++;
    l->refused_since_warn++;
    warn_refused(l, "over the connection limit");
}

static void on_readable(uv_poll_t *p, int status, int events);

static void on_resume(uv_timer_t *t)
{
    realm_listener_t *l = t->data;
    if (l->is_closing || !l->is_paused) return;
    l->is_paused = 0;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

/* Out of descriptors (or kernel memory): stop accepting for PAUSE_MS. */
static void pause_accepting(realm_listener_t *l, int err)
{
    l->is_paused = 1;
    l->paused_cnt++;
    uv_poll_stop(&l->poll);
    uv_timer_start(&l->pause, on_resume, PAUSE_MS, 0);
    warn_refused(l, err == EMFILE || err == ENFILE ? "out of file descriptors: accepting pauses"
                                                   : "accept failed: accepting pauses");
}

/* A new connection on fd (non-blocking, close-on-exec) joins the listener. */
static void adopt_conn(realm_listener_t *l, int fd)
{
    realm_conn_t *c = realm_malloc(sizeof(*c));
    realm_conn__init(c, l, l->poll.loop);
    if (uv_tcp_open(&c->tcp, (uv_os_sock_t)fd) != 0) {
        close(fd);
        l->rejected_cnt++;
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

static void on_readable(uv_poll_t *p, int status, int events)
{
    (void)events;
    realm_listener_t *l = p->data;
    if (status < 0) {
        realm_warn("%s: listening socket failed: %s", l->name, uv_strerror(status));
        pause_accepting(l, EIO);
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH && !l->is_closing && !l->is_paused; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EAGAIN || err == EWOULDBLOCK) return;
            if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == EPERM) continue;
            l->rejected_cnt++;
            pause_accepting(l, err);
            return;
        }
        /* Over the limit: the protocol may close an idle connection for it. */
        if (l->max_conns && l->open_cnt >= l->max_conns &&
            !(l->room_cb && l->room_cb(l, l->room_data) && l->open_cnt < l->max_conns)) {
            refuse(l, fd);
            continue;
        }
        adopt_conn(l, fd);
    }
}

static realm_listener_t *listener_alloc(uv_loop_t *loop, const char *name,
                                        realm_listener_conn_cb on_conn, void *data)
{
    realm_listener_t *l = realm_calloc(1, sizeof(*l));
    l->name = realm_strdup(name);
    l->on_conn = on_conn;
    l->data = data;
    l->fd = -1;
    uv_timer_init(loop, &l->pause);
    l->pause.data = l;
    l->handles_open = 1;
    return l;
}

/* Watches the bound, listening l->fd and learns the address it has. */
static int listener_start(realm_listener_t *l, uv_loop_t *loop, realm_listener_t **out)
{
    int rc = uv_poll_init(loop, &l->poll, l->fd);
    if (rc == 0) {
        l->poll.data = l;
        l->handles_open = 2;
        rc = uv_poll_start(&l->poll, UV_READABLE, on_readable);
    }
    if (rc != 0) {
        realm_listener_free(l);
        return rc;
    }
    struct sockaddr_storage bound;
    socklen_t len = sizeof(bound);
    getsockname(l->fd, (struct sockaddr *)&bound, &len);
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
    int one = 1;
    socklen_t alen =
        addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    l->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0 || setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(l->fd, (struct sockaddr *)&addr, alen) != 0 || listen(l->fd, BACKLOG) != 0) {
        rc = -errno;
        realm_listener_free(l);
        return rc;
    }
    return listener_start(l, loop, out);
}

int realm_listener_adopt(uv_loop_t *loop, const char *name, int fd, realm_listener_conn_cb on_conn,
                         void *data, realm_listener_t **out)
{
    realm_listener_t *l = listener_alloc(loop, name, on_conn, data);
    l->fd = fd;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        int rc = -errno;
        realm_listener_free(l);
        return rc;
    }
    return listener_start(l, loop, out);
}

static void on_listener_closed(uv_handle_t *h)
{
    realm_listener_t *l = h->data;
    if (--l->handles_open > 0) return;
    l->is_closed = 1;
    if (l->close_cb) l->close_cb(l, l->data);
    if (l->free_on_close) free_listener(l);
}

static void free_listener(realm_listener_t *l)
{
    /* Connections still open lose their back pointer; they are counted no more. */
    for (realm_conn_t *c = l->conns; c; c = c->next)
        c->in_list = 0, c->listener = NULL;
    free(l->refusal);
    free(l->name);
    free(l);
}

void realm_listener_close(realm_listener_t *l, realm_listener_close_cb close_cb)
{
    if (l->is_closing) return;
    l->is_closing = 1;
    l->close_cb = close_cb;
    uv_close((uv_handle_t *)&l->pause, on_listener_closed);
    if (l->handles_open == 2) uv_close((uv_handle_t *)&l->poll, on_listener_closed);
    /* uv_close() has taken the socket out of the loop's poll set: it can go
     * now, so a connect right after this is refused, not left in a backlog. */
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
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

void realm_listener_set_limit(realm_listener_t *l, size_t max_conns, const char *refusal,
                              size_t refusal_len)
{
    l->max_conns = max_conns;
    free(l->refusal);
    l->refusal = NULL;
    l->refusal_len = 0;
    if (refusal && refusal_len) {
        l->refusal = realm_malloc(refusal_len);
        memcpy(l->refusal, refusal, refusal_len);
        l->refusal_len = refusal_len;
    }
}

void realm_listener_set_room_cb(realm_listener_t *l, realm_listener_room_cb cb, void *data)
{
    l->room_cb = cb;
    l->room_data = data;
}

size_t realm_listener_max_conns(const realm_listener_t *l)
{
    return l->max_conns;
}

uint64_t realm_listener_paused_cnt(const realm_listener_t *l)
{
    return l->paused_cnt;
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
