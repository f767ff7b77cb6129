/*
 * rapi.c - blocking Lambda runtime API client of realm-llm (see rapi.h).
 *
 * DESIGN: the runtime API is served on loopback by Realm, so the client is
 * deliberately plain: blocking sockets, one connection kept alive across
 * invocations, no timeouts (Realm owns every deadline and kills the
 * environment when one passes). A kept-alive connection the server closed
 * while we were generating shows up as readable-with-EOF; before each
 * request we peek for that and reconnect, and GET .../next and the error
 * posts are retried once on a fresh connection if the old one fails before
 * any answer byte (a repeated error post is at worst refused as a stale
 * request id). A streamed response is never retried: once chunks went out
 * they cannot be taken back.
 *
 * Answers go through llhttp. Header names and values can arrive split
 * across reads, so they are collected into r->field/r->value and compared
 * at on_header_value_complete; only Lambda-Runtime-Aws-Request-Id is kept.
 * on_message_complete pauses the parser at the first final answer; 1xx
 * answers are skipped.
 *
 * Each token is one chunk written with one sendmsg (head, data, CRLF as
 * three iovecs): no copy, one syscall, and with TCP_NODELAY one segment
 * that leaves at once.
 *
 * LIFETIME: r owns its socket and buffers; realm_rapi_dispose frees them.
 */
#include "llm/rapi.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define BASE "/2018-06-01/runtime"

/* ---- answers (llhttp) ------------------------------------------------------------------- */

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    realm_rapi_t *r = p->data;
    size_t room = sizeof(r->field) - 1 - r->field_len;
    if (len > room) len = room;
    memcpy(r->field + r->field_len, at, len);
    r->field_len += len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    realm_rapi_t *r = p->data;
    if (r->value_len + len >= sizeof(r->value)) {
        r->is_value_long = 1;
        return 0;
    }
    memcpy(r->value + r->value_len, at, len);
    r->value_len += len;
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    realm_rapi_t *r = p->data;
    static const char name[] = "Lambda-Runtime-Aws-Request-Id";
    if (r->field_len == sizeof(name) - 1 && strncasecmp(r->field, name, r->field_len) == 0 &&
        !r->is_value_long) {
        memcpy(r->request_id, r->value, r->value_len);
        r->request_id[r->value_len] = '\0';
    }
    r->field_len = 0;
    r->value_len = 0;
    r->is_value_long = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    realm_rapi_t *r = p->data;
    r->status = llhttp_get_status_code(p);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    realm_rapi_t *r = p->data;
    if (r->body.len + len > REALM_RAPI_MAX_BODY) {
        r->is_too_large = 1;
        return -1;
    }
    realm_buf_append(&r->body, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    realm_rapi_t *r = p->data;
    if (r->status < 200) { /* an interim answer (100 Continue): the real one follows */
        realm_buf_reset(&r->body);
        r->request_id[0] = '\0';
        return 0;
    }
    r->is_complete = 1;
    return HPE_PAUSED;
}

/* ---- the connection --------------------------------------------------------------------- */

int realm_rapi_init(realm_rapi_t *r, const char *address)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    realm_buf_init(&r->body);
    realm_buf_init(&r->head);
    llhttp_settings_init(&r->settings);
    r->settings.on_header_field = on_header_field;
    r->settings.on_header_value = on_header_value;
    r->settings.on_header_value_complete = on_header_value_complete;
    r->settings.on_headers_complete = on_headers_complete;
    r->settings.on_body = on_body;
    r->settings.on_message_complete = on_message_complete;

    const char *host = address, *colon;
    size_t host_len;
    if (*address == '[') {
        const char *close = strchr(address, ']');
        if (!close || close[1] != ':') return -1;
        host = address + 1;
        host_len = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(address, ':');
        if (!colon) return -1;
        host_len = (size_t)(colon - address);
    }
    size_t port_len = strlen(colon + 1);
    if (host_len == 0 || host_len >= sizeof(r->host) || port_len == 0 ||
        port_len >= sizeof(r->port) || strspn(colon + 1, "0123456789") != port_len)
        return -1;
    memcpy(r->host, host, host_len);
    memcpy(r->port, colon + 1, port_len);
    return 0;
}

void realm_rapi_close(realm_rapi_t *r)
{
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
}

void realm_rapi_dispose(realm_rapi_t *r)
{
    realm_rapi_close(r);
    realm_buf_dispose(&r->body);
    realm_buf_dispose(&r->head);
}

static int open_conn(realm_rapi_t *r)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(r->host, r->port, &hints, &res) != 0) return REALM_RAPI_EIO;
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        int rc;
        do
            rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        while (rc < 0 && errno == EINTR);
        if (rc == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return REALM_RAPI_EIO;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    r->fd = fd;
    return 0;
}

/* Opens the connection, or reopens it when the server closed (or wrote
 * unasked on) the kept-alive one. */
static int ensure_conn(realm_rapi_t *r)
{
    if (r->fd >= 0) {
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) != 0) realm_rapi_close(r); /* EOF, reset or stray bytes: start over */
    }
    return r->fd >= 0 ? 0 : open_conn(r);
}

static int send_iov(realm_rapi_t *r, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        ssize_t n = sendmsg(r->fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            realm_rapi_close(r);
            return REALM_RAPI_EIO;
        }
        while (cnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

/*
 * Reads one answer into r. *got_bytes tells whether anything arrived (a
 * failure before that may be retried). Closes the connection unless the
 * answer allows keeping it.
 */
static int read_answer(realm_rapi_t *r, int *got_bytes)
{
    llhttp_init(&r->parser, HTTP_RESPONSE, &r->settings);
    r->parser.data = r;
    r->status = 0;
    r->is_complete = 0;
    r->is_too_large = 0;
    r->request_id[0] = '\0';
    r->field_len = r->value_len = 0;
    r->is_value_long = 0;
    realm_buf_reset(&r->body);
    *got_bytes = 0;

    char buf[16384];
    for (;;) {
        ssize_t n = recv(r->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR) continue;
        llhttp_errno_t e;
        if (n < 0) {
            realm_rapi_close(r);
            return REALM_RAPI_EIO;
        }
        if (n == 0) {
            e = llhttp_finish(&r->parser); /* an answer that ends at EOF completes here */
            realm_rapi_close(r);
            if (r->is_complete || (e == HPE_OK && r->status >= 200 && *got_bytes)) {
                r->is_complete = 1;
                return 0;
            }
            return *got_bytes ? REALM_RAPI_EPROTO : REALM_RAPI_EIO;
        }
        *got_bytes = 1;
        e = llhttp_execute(&r->parser, buf, (size_t)n);
        if (e == HPE_PAUSED && r->is_complete) break;
        if (e != HPE_OK) {
            realm_rapi_close(r);
            return REALM_RAPI_EPROTO;
        }
    }
    if (!llhttp_should_keep_alive(&r->parser)) realm_rapi_close(r);
    return 0;
}

/* Sends head (+ body) and reads the answer, once more on a new connection
 * when the old one failed before answering anything. */
static int exchange(realm_rapi_t *r, const char *body, size_t body_len)
{
    for (int attempt = 0;; attempt++) {
        int rc = ensure_conn(r);
        if (rc != 0) return rc;
        struct iovec iov[2] = {{r->head.data, r->head.len}, {(void *)body, body_len}};
        rc = send_iov(r, iov, body_len ? 2 : 1);
        int got = 0;
        if (rc == 0) rc = read_answer(r, &got);
        if (rc == REALM_RAPI_EIO && !got && attempt == 0) continue;
        return rc;
    }
}

static int is_good_id(const char *id)
{
    size_t n = strlen(id);
    return n > 0 &&
           strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == n;
}

/* ---- the routes ------------------------------------------------------------------------- */

int realm_rapi_next(realm_rapi_t *r)
{
    realm_buf_reset(&r->head);
    realm_buf_appendf(&r->head, "GET " BASE "/invocation/next HTTP/1.1\r\nHost: %s:%s\r\n\r\n",
                      r->host, r->port);
    int rc = exchange(r, NULL, 0);
    if (rc != 0) return r->is_too_large ? REALM_RAPI_EPROTO : rc;
    if (r->status != 200) return REALM_RAPI_ESTATUS;
    if (!is_good_id(r->request_id)) return REALM_RAPI_EPROTO;
    if (!r->body.data) realm_buf_append(&r->body, "", 0);
    return 0;
}

static void error_json(realm_buf_t *out, const char *type, const char *message)
{
    realm_buf_appends(out, "{\"errorMessage\":\"");
    realm_buf_t clean;
    realm_buf_init(&clean);
    realm_str_utf8_repair(message, strlen(message), &clean);
    llm_json_escape(out, clean.data, clean.len);
    realm_buf_dispose(&clean);
    realm_buf_appends(out, "\",\"errorType\":\"");
    llm_json_escape(out, type, strlen(type));
    realm_buf_appends(out, "\"}");
}

int realm_rapi_post_error(realm_rapi_t *r, const char *request_id, const char *type,
                          const char *message)
{
    realm_buf_t body;
    realm_buf_init(&body);
    error_json(&body, type, message);
    realm_buf_reset(&r->head);
    if (request_id)
        realm_buf_appendf(&r->head, "POST " BASE "/invocation/%s/error HTTP/1.1\r\n", request_id);
    else
        realm_buf_appends(&r->head, "POST " BASE "/init/error HTTP/1.1\r\n");
    realm_buf_appendf(&r->head,
                      "Host: %s:%s\r\nContent-Type: application/json\r\n"
                      "Lambda-Runtime-Function-Error-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                      r->host, r->port, type, body.len);
    int rc = exchange(r, body.data, body.len);
    realm_buf_dispose(&body);
    if (rc != 0) return rc;
    return r->status == 202 || r->status == 200 ? 0 : REALM_RAPI_ESTATUS;
}

int realm_rapi_stream_begin(realm_rapi_t *r, const char *request_id, const char *content_type)
{
    int rc = ensure_conn(r);
    if (rc != 0) return rc;
    realm_buf_reset(&r->head);
    realm_buf_appendf(&r->head,
                      "POST " BASE "/invocation/%s/response HTTP/1.1\r\n"
                      "Host: %s:%s\r\n"
                      "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
                      "Transfer-Encoding: chunked\r\n"
                      "Content-Type: %s\r\n"
                      "Trailer: Lambda-Runtime-Function-Error-Type, "
                      "Lambda-Runtime-Function-Error-Body\r\n\r\n",
                      request_id, r->host, r->port, content_type);
    struct iovec iov = {r->head.data, r->head.len};
    return send_iov(r, &iov, 1);
}

int realm_rapi_stream_chunk(realm_rapi_t *r, const char *data, size_t len)
{
    if (r->fd < 0) return REALM_RAPI_EIO;
    if (len == 0) return 0; /* an empty chunk would end the body */
    char size[24];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    struct iovec iov[3] = {{size, (size_t)n}, {(void *)data, len}, {"\r\n", 2}};
    return send_iov(r, iov, 3);
}

int realm_rapi_stream_end(realm_rapi_t *r, const char *error_type, const char *message)
{
    if (r->fd < 0) return REALM_RAPI_EIO;
    realm_buf_reset(&r->head);
    realm_buf_appends(&r->head, "0\r\n");
    if (error_type) {
        realm_buf_t body;
        realm_buf_init(&body);
        error_json(&body, error_type, message ? message : "");
        realm_buf_appendf(&r->head, "Lambda-Runtime-Function-Error-Type: %s\r\n", error_type);
        realm_buf_appends(&r->head, "Lambda-Runtime-Function-Error-Body: ");
        realm_str_b64_encode(body.data, body.len, &r->head);
        realm_buf_appends(&r->head, "\r\n");
        realm_buf_dispose(&body);
    }
    realm_buf_appends(&r->head, "\r\n");
    struct iovec iov = {r->head.data, r->head.len};
    int rc = send_iov(r, &iov, 1);
    int got = 0;
    if (rc == 0) rc = read_answer(r, &got);
    if (rc != 0) return rc;
    return r->status == 202 || r->status == 200 ? 0 : REALM_RAPI_ESTATUS;
}
