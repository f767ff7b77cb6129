/*
 * httpc.c - the blocking HTTP/1.1 client of the CLI and realm-llm (see httpc.h).
 *
 * DESIGN: answers go through llhttp in HTTP_RESPONSE mode. Header names and
 * values may arrive in pieces across reads, so they are collected in two
 * buffers and compared at on_header_value_complete. on_message_begin
 * forgets what an interim (1xx) answer said; on_message_complete pauses the
 * parser at the first final answer, and anything after it is ignored. An
 * answer without Content-Length or chunking ends at EOF, which
 * llhttp_finish() turns into completion.
 *
 * Writes: sendmsg() with MSG_NOSIGNAL on a non-blocking socket; only when
 * the kernel's buffer is full does the client poll. A streamed chunk is
 * therefore one sendmsg in the common case, as it was with a blocking
 * socket.
 *
 * LIFETIME: the client owns its socket, parser and buffers.
 */
#include "httpc/httpc.h"

#include "base/alloc.h"

#include <errno.h>
#include <llhttp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

struct realm_httpc_s {
    char host[256];
    char port[8];
    realm_httpc_opts_t opts;
    int fd;             /* -1 when closed */
    long long deadline; /* CLOCK_MONOTONIC ms of the current exchange; 0: none */
    int timeout_ms;     /* as given, for messages */
    /* the answer */
    int status;
    int is_answered;
    int has_header;
    realm_buf_t body;
    realm_buf_t header; /* the kept header's value */
    /* the parser */
    llhttp_t llh;
    llhttp_settings_t settings;
    realm_buf_t field;   /* current header name, possibly in pieces */
    realm_buf_t value;   /* current header value */
    size_t head_bytes;   /* header block bytes seen in this answer */
    int is_complete;     /* a final answer has been parsed */
    const char *failure; /* static message when a callback refused input */
    char err[256];
};

static void set_err(realm_httpc_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(realm_httpc_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
}

/* ---- answers (llhttp) ------------------------------------------------------------------ */

#define C(l) ((realm_httpc_t *)(l)->data)

static int head_bytes_ok(realm_httpc_t *c, size_t len)
{
    c->head_bytes += len;
    if (c->head_bytes > c->opts.max_head) {
        c->failure = "response header block too large";
        return 0;
    }
    return 1;
}

static int on_message_begin(llhttp_t *l)
{
    realm_httpc_t *c = C(l);
    /* Also after a 1xx: only the final answer counts. */
    c->status = 0;
    c->has_header = 0;
    realm_buf_reset(&c->header);
    realm_buf_reset(&c->body);
    realm_buf_reset(&c->field);
    realm_buf_reset(&c->value);
    c->head_bytes = 0;
    return 0;
}

static int on_status(llhttp_t *l, const char *at, size_t len)
{
    return head_bytes_ok(C(l), len) ? 0 : -1;
}

static int on_header_field(llhttp_t *l, const char *at, size_t len)
{
    realm_httpc_t *c = C(l);
    if (!head_bytes_ok(c, len)) return -1;
    realm_buf_append(&c->field, at, len);
    return 0;
}

static int on_header_value(llhttp_t *l, const char *at, size_t len)
{
    realm_httpc_t *c = C(l);
    if (!head_bytes_ok(c, len)) return -1;
    realm_buf_append(&c->value, at, len);
    return 0;
}

static int on_header_value_complete(llhttp_t *l)
{
    realm_httpc_t *c = C(l);
    const char *want = c->opts.keep_header;
    if (want && c->field.len == strlen(want) && strcasecmp(c->field.data, want) == 0) {
        realm_buf_reset(&c->header);
        realm_buf_append(&c->header, c->value.data ? c->value.data : "", c->value.len);
        c->has_header = 1;
    }
    realm_buf_reset(&c->field);
    realm_buf_reset(&c->value);
    return 0;
}

static int on_headers_complete(llhttp_t *l)
{
    C(l)->status = llhttp_get_status_code(l);
    return 0;
}

static int on_body(llhttp_t *l, const char *at, size_t len)
{
    realm_httpc_t *c = C(l);
    if (c->opts.on_body && c->status >= 200 && c->status < 300) {
        if (c->opts.on_body(at, len, c->opts.body_data) == 0) return 0;
        c->failure = "stopped by the caller";
        return -1;
    }
    if (c->body.len + len > c->opts.max_body) {
        c->failure = "response body too large";
        return -1;
    }
    realm_buf_append(&c->body, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *l)
{
    if (llhttp_get_status_code(l) < 200) return 0; /* 1xx: the answer follows */
    C(l)->is_complete = 1;
    return HPE_PAUSED;
}

static void parser_reset(realm_httpc_t *c)
{
    llhttp_init(&c->llh, HTTP_RESPONSE, &c->settings);
    c->llh.data = c;
    c->status = 0;
    c->is_answered = 0;
    c->has_header = 0;
    c->is_complete = 0;
    c->failure = NULL;
    c->head_bytes = 0;
    realm_buf_reset(&c->body);
    realm_buf_reset(&c->header);
    realm_buf_reset(&c->field);
    realm_buf_reset(&c->value);
}

/* Feeds len bytes (len == 0: EOF). Returns 1 when complete, 0 for more, -1 on error. */
static int parser_feed(realm_httpc_t *c, const char *data, size_t len)
{
    if (c->is_complete) return 1;
    llhttp_errno_t e = len ? llhttp_execute(&c->llh, data, len) : llhttp_finish(&c->llh);
    if (e == HPE_PAUSED && c->is_complete) return 1;
    if (e == HPE_OK) return c->is_complete ? 1 : 0;
    const char *reason = c->failure ? c->failure : llhttp_get_error_reason(&c->llh);
    set_err(c, "bad response from the server: %s", reason ? reason : llhttp_errno_name(e));
    return -1;
}

/* ---- the connection -------------------------------------------------------------------- */

realm_httpc_t *realm_httpc_new(const char *host, const char *port, const realm_httpc_opts_t *opts)
{
    realm_httpc_t *c = realm_calloc(1, sizeof(*c));
    snprintf(c->host, sizeof(c->host), "%s", host);
    snprintf(c->port, sizeof(c->port), "%s", port);
    c->opts = *opts;
    c->fd = -1;
    realm_buf_init(&c->body);
    realm_buf_init(&c->header);
    realm_buf_init(&c->field);
    realm_buf_init(&c->value);
    llhttp_settings_init(&c->settings);
    c->settings.on_message_begin = on_message_begin;
    c->settings.on_status = on_status;
    c->settings.on_header_field = on_header_field;
    c->settings.on_header_value = on_header_value;
    c->settings.on_header_value_complete = on_header_value_complete;
    c->settings.on_headers_complete = on_headers_complete;
    c->settings.on_body = on_body;
    c->settings.on_message_complete = on_message_complete;
    return c;
}

void realm_httpc_close(realm_httpc_t *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

void realm_httpc_free(realm_httpc_t *c)
{
    if (!c) return;
    realm_httpc_close(c);
    realm_buf_dispose(&c->body);
    realm_buf_dispose(&c->header);
    realm_buf_dispose(&c->field);
    realm_buf_dispose(&c->value);
    free(c);
}

void realm_httpc_head(const realm_httpc_t *c, realm_buf_t *head, const char *method,
                      const char *target)
{
    int is_v6 = strchr(c->host, ':') != NULL;
    realm_buf_appendf(head, "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\n", method, target,
                      is_v6 ? "[" : "", c->host, is_v6 ? "]" : "", c->port);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* poll() the socket until the deadline; returns revents, 0 on timeout, -1 on error (errno). */
static int wait_fd(const realm_httpc_t *c, int fd, short events)
{
    for (;;) {
        int ms = -1;
        if (c->deadline) {
            long long left = c->deadline - now_ms();
            if (left <= 0) return 0;
            ms = left > 1000000 ? 1000000 : (int)left;
        }
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, ms);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) {
            if (!c->deadline || ms == 1000000) continue;
            return 0;
        }
        return pfd.revents;
    }
}

static int connect_one(realm_httpc_t *c, const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        set_err(c, "%s", strerror(errno));
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return fd;
    if (errno != EINPROGRESS) {
        set_err(c, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    int ev = wait_fd(c, fd, POLLOUT);
    if (ev <= 0) {
        set_err(c, "%s", ev == 0 ? "timed out connecting" : strerror(errno));
        close(fd);
        return -1;
    }
    int so_err = 0;
    socklen_t so_len = sizeof(so_err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &so_len) != 0) so_err = errno;
    if (so_err != 0) {
        set_err(c, "%s", strerror(so_err));
        close(fd);
        return -1;
    }
    return fd;
}

static int open_conn(realm_httpc_t *c)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(c->host, c->port, &hints, &res);
    if (rc != 0) {
        set_err(c, "cannot resolve '%s': %s", c->host,
                rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return REALM_HTTPC_ECONNECT;
    }
    int fd = -1;
    set_err(c, "no address for '%s'", c->host);
    /* Try every address (localhost may be ::1 and 127.0.0.1); report the last failure. */
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
        fd = connect_one(c, ai);
    freeaddrinfo(res);
    if (fd < 0) return REALM_HTTPC_ECONNECT;
    /* Small writes (a streamed token) leave at once. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    return 0;
}

/* Opens the connection, or reopens it when the server closed (or wrote unasked on) the
 * kept-alive one. */
static int ensure_conn(realm_httpc_t *c, int timeout_ms)
{
    c->err[0] = '\0';
    c->timeout_ms = timeout_ms;
    c->deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
    parser_reset(c);
    if (c->fd >= 0) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) != 0) realm_httpc_close(c); /* EOF, reset or stray bytes */
    }
    return c->fd >= 0 ? 0 : open_conn(c);
}

/*
 * Writes the iovecs (modified as they go). Returns 1 when all were written;
 * 0 when is_request and the server has something to say first or closed its
 * side (stop writing and read the answer); REALM_HTTPC_EIO on timeout or a
 * hard error (the connection is closed).
 */
static int send_iov(realm_httpc_t *c, struct iovec *iov, int cnt, int is_request)
{
    while (cnt > 0 && iov->iov_len == 0) {
        iov++;
        cnt--;
    }
    while (cnt > 0) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (n >= 0) {
            while (cnt > 0 && (size_t)n >= iov->iov_len) {
                n -= (ssize_t)iov->iov_len;
                iov++;
                cnt--;
            }
            if (cnt > 0) {
                iov->iov_base = (char *)iov->iov_base + n;
                iov->iov_len -= (size_t)n;
            }
            continue;
        }
        if (errno == EINTR) continue;
        if (is_request && (errno == EPIPE || errno == ECONNRESET)) return 0;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            set_err(c, "sending the request: %s", strerror(errno));
            goto fail;
        }
        int ev = wait_fd(c, c->fd, is_request ? POLLOUT | POLLIN : POLLOUT);
        if (ev == 0) {
            set_err(c, "timed out after %d s sending the request", c->timeout_ms / 1000);
            goto fail;
        }
        if (ev < 0) {
            set_err(c, "sending the request: %s", strerror(errno));
            goto fail;
        }
        if (is_request && (ev & (POLLIN | POLLHUP))) return 0;
    }
    return 1;

fail:
    realm_httpc_close(c);
    return REALM_HTTPC_EIO;
}

/* Reads one answer. Closes the connection unless the answer allows keeping it. */
static int read_answer(realm_httpc_t *c)
{
    char chunk[16384];
    int rc = REALM_HTTPC_EIO;
    for (;;) {
        ssize_t n = recv(c->fd, chunk, sizeof(chunk), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int ev = wait_fd(c, c->fd, POLLIN);
            if (ev == 0) {
                set_err(c, "timed out after %d s waiting for the response", c->timeout_ms / 1000);
                goto fail;
            }
            if (ev < 0) {
                set_err(c, "waiting for the response: %s", strerror(errno));
                goto fail;
            }
            continue;
        }
        if (n < 0) {
            set_err(c, "reading the response: %s", strerror(errno));
            goto fail;
        }
        if (n > 0) c->is_answered = 1;
        int st = parser_feed(c, chunk, (size_t)n);
        if (st < 0) {
            rc = REALM_HTTPC_EPROTO;
            goto fail;
        }
        if (st == 1) break;
        if (n == 0) {
            set_err(c, "the server closed the connection before the response was complete");
            rc = c->is_answered ? REALM_HTTPC_EPROTO : REALM_HTTPC_EIO;
            goto fail;
        }
    }
    if (!llhttp_should_keep_alive(&c->llh)) realm_httpc_close(c);
    return 0;

fail:
    realm_httpc_close(c);
    return rc;
}

/* ---- requests -------------------------------------------------------------------------- */

int realm_httpc_request(realm_httpc_t *c, const char *head, size_t head_len, const void *body,
                        size_t body_len, int timeout_ms)
{
    int rc = ensure_conn(c, timeout_ms);
    if (rc != 0) return rc;
    struct iovec iov[2] = {{(void *)head, head_len}, {(void *)body, body ? body_len : 0}};
    rc = send_iov(c, iov, 2, 1);
    if (rc < 0) return rc;
    return read_answer(c);
}

int realm_httpc_stream_begin(realm_httpc_t *c, const char *head, size_t head_len, int timeout_ms)
{
    int rc = ensure_conn(c, timeout_ms);
    if (rc != 0) return rc;
    struct iovec iov = {(void *)head, head_len};
    rc = send_iov(c, &iov, 1, 0);
    return rc < 0 ? rc : 0;
}

int realm_httpc_stream_chunk(realm_httpc_t *c, const void *data, size_t len)
{
    if (c->fd < 0) return REALM_HTTPC_EIO;
    if (len == 0) return 0; /* an empty chunk would end the body */
    char size[24];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    struct iovec iov[3] = {{size, (size_t)n}, {(void *)data, len}, {"\r\n", 2}};
    int rc = send_iov(c, iov, 3, 0);
    return rc < 0 ? rc : 0;
}

int realm_httpc_stream_end(realm_httpc_t *c, const char *trailers, size_t trailers_len)
{
    if (c->fd < 0) return REALM_HTTPC_EIO;
    struct iovec iov[3] = {
        {"0\r\n", 3}, {(void *)trailers, trailers ? trailers_len : 0}, {"\r\n", 2}};
    int rc = send_iov(c, iov, 3, 0);
    if (rc < 0) return rc;
    return read_answer(c);
}

/* ---- the last answer ------------------------------------------------------------------- */

int realm_httpc_status(const realm_httpc_t *c)
{
    return c->status;
}

const char *realm_httpc_header(const realm_httpc_t *c, size_t *len_out)
{
    if (len_out) *len_out = c->has_header ? c->header.len : 0;
    if (!c->has_header) return NULL;
    return c->header.data ? c->header.data : "";
}

const realm_buf_t *realm_httpc_body(const realm_httpc_t *c)
{
    return &c->body;
}

void realm_httpc_swap_body(realm_httpc_t *c, realm_buf_t *b)
{
    realm_buf_t t = c->body;
    c->body = *b;
    *b = t;
}

int realm_httpc_is_answered(const realm_httpc_t *c)
{
    return c->is_answered;
}

const char *realm_httpc_strerror(const realm_httpc_t *c)
{
    return c->err;
}
