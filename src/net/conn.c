/*
 * conn.c - an accepted TCP connection (see conn.h).
 *
 * DESIGN: reads go into one loop-wide 64 KiB buffer: protocols consume bytes
 * synchronously in on_read and copy only what they must keep, so an idle
 * connection costs no read buffer. Each write is one allocation holding the
 * uv_write_t and a copy of the bytes.
 *
 * Graceful close (RFC 7230 6.6): after the last write completes we shut
 * down the write side and keep reading (and discarding) until the peer's EOF
 * or a short linger timeout. Closing with unread input would make the kernel
 * send RST, which can destroy a response (a 400 or 413) before the peer
 * has read it.
 *
 * LIFETIME: the connection is freed in the close callback of its last handle.
 */
#include "net/internal.h"

#include "base/alloc.h"

#include <stdlib.h>
#include <string.h>

#define LINGER_MS 2000

typedef struct {
    uv_write_t req;
    realm_conn_t *conn;
    size_t len;
    char data[];
} write_req_t;

static char read_buf[64 * 1024];
static int read_buf_busy;

static void on_handle_closed(uv_handle_t *h)
{
    realm_conn_t *c = h->data;
    if (--c->handles_open > 0) return;
    if (c->handler && c->handler->on_close) c->handler->on_close(c);
    if (c->tag_release) c->tag_release(c->tag);
    free(c);
}

static void close_now(realm_conn_t *c)
{
    if (c->handles_open == 0 || uv_is_closing((uv_handle_t *)&c->tcp)) return;
    realm_conn__unlink(c);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_linger_timeout(uv_timer_t *t)
{
    close_now(t->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    realm_conn_t *c = req->data;
    if (status < 0) {
        close_now(c);
        return;
    }
    c->is_lingering = 1;
    realm_conn_read_start(c);
    uv_timer_start(&c->timer, on_linger_timeout, LINGER_MS, 0);
}

static void start_shutdown(realm_conn_t *c)
{
    c->is_draining = 0;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) close_now(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    if (read_buf_busy) {
        /* Only possible if a handler re-entered the loop; never expected. */
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    read_buf_busy = 1;
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    realm_conn_t *c = s->data;
    if (buf->base == read_buf) read_buf_busy = 0;
    if (nread == 0) return;
    if (c->is_lingering) {
        if (nread < 0) close_now(c);
        return;
    }
    if (c->is_closing) return;
    if (nread < 0) {
        if (c->handler && c->handler->on_eof)
            c->handler->on_eof(c, (int)nread);
        else
            realm_conn_close(c, 0);
        return;
    }
    if (c->handler && c->handler->on_read) c->handler->on_read(c, buf->base, (size_t)nread);
}

static void on_write(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    realm_conn_t *c = w->conn;
    c->pending -= w->len;
    free(w);
    if (status < 0 && status != UV_ECANCELED) {
        /* The peer is gone; nothing queued after this can arrive either. */
        if (!c->is_closing) {
            if (c->handler && c->handler->on_eof)
                c->handler->on_eof(c, status);
            else
                realm_conn_close(c, 0);
        } else {
            close_now(c);
        }
        return;
    }
    if (c->pending != 0) return;
    if (c->is_draining) {
        start_shutdown(c);
        return;
    }
    if (!c->is_closing && c->handler && c->handler->on_drain) c->handler->on_drain(c);
}

void realm_conn__init(realm_conn_t *c, realm_listener_t *l, uv_loop_t *loop)
{
    memset(c, 0, sizeof(*c));
    c->listener = l;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
}

void realm_conn_set_handler(realm_conn_t *c, const realm_conn_handler_t *h, void *data)
{
    c->handler = h;
    c->data = data;
}

void realm_conn_set_tag(realm_conn_t *c, void *tag, void (*release)(void *tag))
{
    c->tag = tag;
    c->tag_release = release;
}

void *realm_conn_tag(const realm_conn_t *c)
{
    return c->tag;
}

int realm_conn_fd(const realm_conn_t *c)
{
    uv_os_fd_t fd;
    return uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0 ? (int)fd : -1;
}

void *realm_conn_data(const realm_conn_t *c)
{
    return c->data;
}

uv_loop_t *realm_conn_loop(const realm_conn_t *c)
{
    return c->tcp.loop;
}

realm_listener_t *realm_conn_listener(const realm_conn_t *c)
{
    return c->listener;
}

const char *realm_conn_peer(const realm_conn_t *c)
{
    return c->peer;
}

void realm_conn_read_start(realm_conn_t *c)
{
    if (c->is_reading || uv_is_closing((uv_handle_t *)&c->tcp)) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->is_reading = 1;
}

void realm_conn_read_stop(realm_conn_t *c)
{
    if (!c->is_reading || c->is_lingering) return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->is_reading = 0;
}

int realm_conn_writev(realm_conn_t *c, const uv_buf_t *bufs, size_t nbufs)
{
    if (c->is_closing) return UV_EPIPE;
    size_t total = 0;
    for (size_t i = 0; i < nbufs; i++)
        total += bufs[i].len;
    if (total == 0) return 0;
    write_req_t *w = realm_malloc(sizeof(*w) + total);
    w->conn = c;
    w->len = total;
    size_t off = 0;
    for (size_t i = 0; i < nbufs; i++) {
        memcpy(w->data + off, bufs[i].base, bufs[i].len);
        off += bufs[i].len;
    }
    uv_buf_t b = uv_buf_init(w->data, (unsigned)total);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc != 0) {
        free(w);
        realm_conn_close(c, 0);
        return rc;
    }
    c->pending += total;
    return 0;
}

int realm_conn_write(realm_conn_t *c, const void *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    return realm_conn_writev(c, &b, 1);
}

size_t realm_conn_pending(const realm_conn_t *c)
{
    return c->pending;
}

static void on_timer(uv_timer_t *t)
{
    realm_conn_t *c = t->data;
    realm_conn_timer_cb cb = c->timer_cb;
    if (!c->is_closing && cb) cb(c);
}

void realm_conn_timer(realm_conn_t *c, uint64_t ms, realm_conn_timer_cb cb)
{
    if (c->is_closing) return;
    c->timer_cb = cb;
    if (ms == 0 || cb == NULL)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, ms, 0);
}

void realm_conn_close(realm_conn_t *c, int is_graceful)
{
    if (c->is_closing) return;
    c->is_closing = 1;
    uv_timer_stop(&c->timer);
    realm_conn_read_stop(c);
    if (!is_graceful) {
        /* Abortive: pending writes are cancelled by uv_close. */
        close_now(c);
        return;
    }
    if (c->pending > 0)
        c->is_draining = 1;
    else
        start_shutdown(c);
}

int realm_conn_is_closing(const realm_conn_t *c)
{
    return c->is_closing;
}
