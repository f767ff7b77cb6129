/*
 * http.c - blocking HTTP/1.1 client for the CLI commands (see http.h).
 *
 * DESIGN: the socket is non-blocking and every wait is a poll() bounded by
 * what is left of the caller's total deadline, so a server that accepts and
 * then says nothing cannot hang the command. The request is written in two
 * pieces (head, body) without copying the body. While writing we also
 * watch for input: a server that refuses a large body (413) answers early
 * and may close before reading it all; we then stop writing and read its
 * answer, which is more useful than the EPIPE the write would give.
 *
 * The response goes through llhttp in HTTP_RESPONSE mode. Header names and
 * values may arrive in pieces across reads, so they are collected in two
 * buffers and compared at on_header_value_complete. on_message_complete
 * pauses the parser: the first final (non-1xx) response is the answer and
 * anything after it is ignored. A response without Content-Length or
 * chunking ends at EOF, which llhttp_finish() turns into completion.
 *
 * LIFETIME: everything but the response is freed before returning.
 */
#include "cli/http.h"

#include "auth/sigv4.h"

#include "base/alloc.h"

#include <errno.h>
#include <llhttp.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ERROR_TYPE_HEADER "x-amzn-ErrorType"

/* ---- endpoint URLs ------------------------------------------------------------------- */

int realm_cli_endpoint_parse(const char *url, realm_cli_endpoint_t *ep, char *err, size_t err_len)
{
    memset(ep, 0, sizeof(*ep));
    const char *p = url;
    if (strncasecmp(p, "https://", 8) == 0) {
        snprintf(err, err_len, "endpoint '%.200s': https:// is not supported yet (use http://)",
                 url);
        return -1;
    }
    if (strncasecmp(p, "http://", 7) == 0) {
        p += 7;
    } else if (strstr(p, "://") != NULL) {
        snprintf(err, err_len, "endpoint '%.200s': only http:// URLs are supported", url);
        return -1;
    }
    /* A bare HOST[:PORT] is taken as http://HOST[:PORT]. */
    size_t auth_len = strcspn(p, "/?#");
    const char *path = p + auth_len;
    if (auth_len == 0) {
        snprintf(err, err_len, "endpoint '%.200s': no host", url);
        return -1;
    }
    if (memchr(p, '@', auth_len) != NULL) {
        snprintf(err, err_len, "endpoint '%.200s': user info is not supported", url);
        return -1;
    }
    if (strpbrk(path, "?#") != NULL) {
        snprintf(err, err_len, "endpoint '%.200s': a query or fragment is not allowed", url);
        return -1;
    }

    const char *host = p, *host_end, *port = NULL;
    if (*p == '[') {
        const char *close = memchr(p, ']', auth_len);
        if (close == NULL) {
            snprintf(err, err_len, "endpoint '%.200s': unterminated '[' in the host", url);
            return -1;
        }
        host = p + 1;
        host_end = close;
        if (close + 1 < p + auth_len) {
            if (close[1] != ':') {
                snprintf(err, err_len, "endpoint '%.200s': junk after ']'", url);
                return -1;
            }
            port = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', auth_len);
        host_end = colon ? colon : p + auth_len;
        if (colon) port = colon + 1;
    }
    size_t host_len = (size_t)(host_end - host);
    if (host_len == 0 || host_len >= sizeof(ep->host)) {
        snprintf(err, err_len, "endpoint '%.200s': bad host", url);
        return -1;
    }
    memcpy(ep->host, host, host_len);

    if (port) {
        size_t port_len = (size_t)(p + auth_len - port);
        long v = 0;
        int ok = port_len >= 1 && port_len <= 5;
        for (size_t i = 0; ok && i < port_len; i++) {
            if (port[i] < '0' || port[i] > '9')
                ok = 0;
            else
                v = v * 10 + (port[i] - '0');
        }
        if (!ok || v < 1 || v > 65535) {
            snprintf(err, err_len, "endpoint '%.200s': bad port", url);
            return -1;
        }
        snprintf(ep->port, sizeof(ep->port), "%ld", v);
    } else {
        snprintf(ep->port, sizeof(ep->port), "80");
    }

    size_t path_len = strlen(path);
    while (path_len > 0 && path[path_len - 1] == '/')
        path_len--;
    if (path_len >= sizeof(ep->base)) {
        snprintf(err, err_len, "endpoint '%.200s': path too long", url);
        return -1;
    }
    memcpy(ep->base, path, path_len);
    int n = snprintf(ep->url, sizeof(ep->url), "http://%.*s%s", (int)auth_len, p, ep->base);
    if (n < 0 || (size_t)n >= sizeof(ep->url)) {
        snprintf(err, err_len, "endpoint '%.200s': too long", url);
        return -1;
    }
    return 0;
}

void realm_cli_url_encode(realm_buf_t *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
            *c == '-' || *c == '.' || *c == '_' || *c == '~') {
            realm_buf_append(out, c, 1);
        } else {
            char e[3] = {'%', hex[*c >> 4], hex[*c & 15]};
            realm_buf_append(out, e, 3);
        }
    }
}

/* ---- response parsing ------------------------------------------------------------------ */

typedef struct {
    llhttp_t llh;
    llhttp_settings_t settings;
    realm_cli_http_res_t *res; /* borrowed: the caller's response */
    realm_buf_t field;         /* current header name, possibly in pieces */
    realm_buf_t value;         /* current header value */
    size_t head_bytes;         /* header block bytes seen in this message */
    int is_complete;           /* a final response has been parsed */
    const char *failure;       /* static message when a callback refused input */
} resp_parser_t;

#define RP(l) ((resp_parser_t *)(l)->data)

static int head_bytes_ok(resp_parser_t *rp, size_t len)
{
    rp->head_bytes += len;
    if (rp->head_bytes > REALM_CLI_HTTP_MAX_HEAD) {
        rp->failure = "response header block too large";
        return 0;
    }
    return 1;
}

static int on_message_begin(llhttp_t *l)
{
    resp_parser_t *rp = RP(l);
    /* Also after a 1xx: only the final response counts. */
    free(rp->res->error_type);
    rp->res->error_type = NULL;
    rp->res->status = 0;
    realm_buf_reset(&rp->res->body);
    realm_buf_reset(&rp->field);
    realm_buf_reset(&rp->value);
    rp->head_bytes = 0;
    return 0;
}

static int on_status(llhttp_t *l, const char *at, size_t len)
{
    return head_bytes_ok(RP(l), len) ? 0 : -1;
}

static int on_header_field(llhttp_t *l, const char *at, size_t len)
{
    resp_parser_t *rp = RP(l);
    if (!head_bytes_ok(rp, len)) return -1;
    realm_buf_append(&rp->field, at, len);
    return 0;
}

static int on_header_value(llhttp_t *l, const char *at, size_t len)
{
    resp_parser_t *rp = RP(l);
    if (!head_bytes_ok(rp, len)) return -1;
    realm_buf_append(&rp->value, at, len);
    return 0;
}

static int on_header_value_complete(llhttp_t *l)
{
    resp_parser_t *rp = RP(l);
    if (rp->field.len == strlen(ERROR_TYPE_HEADER) &&
        strcasecmp(rp->field.data, ERROR_TYPE_HEADER) == 0) {
        free(rp->res->error_type);
        rp->res->error_type = realm_strndup(rp->value.data ? rp->value.data : "", rp->value.len);
    }
    realm_buf_reset(&rp->field);
    realm_buf_reset(&rp->value);
    return 0;
}

static int on_headers_complete(llhttp_t *l)
{
    RP(l)->res->status = llhttp_get_status_code(l);
    return 0;
}

static int on_body(llhttp_t *l, const char *at, size_t len)
{
    resp_parser_t *rp = RP(l);
    if (rp->res->body.len + len > REALM_CLI_HTTP_MAX_BODY) {
        rp->failure = "response body too large";
        return -1;
    }
    realm_buf_append(&rp->res->body, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *l)
{
    resp_parser_t *rp = RP(l);
    if (llhttp_get_status_code(l) < 200) return 0; /* 1xx: the answer follows */
    rp->is_complete = 1;
    return HPE_PAUSED;
}

static void parser_init(resp_parser_t *rp, realm_cli_http_res_t *res)
{
    memset(rp, 0, sizeof(*rp));
    llhttp_settings_init(&rp->settings);
    rp->settings.on_message_begin = on_message_begin;
    rp->settings.on_status = on_status;
    rp->settings.on_header_field = on_header_field;
    rp->settings.on_header_value = on_header_value;
    rp->settings.on_header_value_complete = on_header_value_complete;
    rp->settings.on_headers_complete = on_headers_complete;
    rp->settings.on_body = on_body;
    rp->settings.on_message_complete = on_message_complete;
    llhttp_init(&rp->llh, HTTP_RESPONSE, &rp->settings);
    rp->llh.data = rp;
    rp->res = res;
    realm_buf_init(&rp->field);
    realm_buf_init(&rp->value);
}

static void parser_dispose(resp_parser_t *rp)
{
    realm_buf_dispose(&rp->field);
    realm_buf_dispose(&rp->value);
}

/* Feeds len bytes (len == 0: EOF). Returns 1 when complete, 0 for more, -1 on error. */
static int parser_feed(resp_parser_t *rp, const char *data, size_t len, char *err, size_t err_len)
{
    if (rp->is_complete) return 1;
    llhttp_errno_t e = len ? llhttp_execute(&rp->llh, data, len) : llhttp_finish(&rp->llh);
    if (e == HPE_PAUSED && rp->is_complete) return 1;
    if (e == HPE_OK) return rp->is_complete ? 1 : 0;
    const char *reason = rp->failure ? rp->failure : llhttp_get_error_reason(&rp->llh);
    snprintf(err, err_len, "bad response from the server: %s",
             reason ? reason : llhttp_errno_name(e));
    return -1;
}

/* ---- sockets ------------------------------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* poll() one fd until deadline; returns revents, 0 on timeout, -1 on error (errno). */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) return 0;
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, left > 1000000 ? 1000000 : (int)left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) return 0;
        return pfd.revents;
    }
}

static int connect_one(const struct addrinfo *ai, long long deadline, char *err, size_t err_len)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        snprintf(err, err_len, "%s", strerror(errno));
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return fd;
    if (errno != EINPROGRESS) {
        snprintf(err, err_len, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    int ev = wait_fd(fd, POLLOUT, deadline);
    if (ev <= 0) {
        snprintf(err, err_len, "%s", ev == 0 ? "timed out connecting" : strerror(errno));
        close(fd);
        return -1;
    }
    int so_err = 0;
    socklen_t so_len = sizeof(so_err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &so_len) != 0) so_err = errno;
    if (so_err != 0) {
        snprintf(err, err_len, "%s", strerror(so_err));
        close(fd);
        return -1;
    }
    return fd;
}

static int connect_endpoint(const realm_cli_endpoint_t *ep, long long deadline, char *err,
                            size_t err_len)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(ep->host, ep->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_len, "cannot resolve '%s': %s", ep->host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    snprintf(err, err_len, "no address for '%s'", ep->host);
    /* Try every address (localhost may be ::1 and 127.0.0.1); report the last failure. */
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
        fd = connect_one(ai, deadline, err, err_len);
    freeaddrinfo(res);
    return fd;
}

/*
 * Writes len bytes. Returns 1 when all were written, 0 when the server has
 * something to say first (or closed its side: stop writing and read), -1 on
 * timeout or a hard error (message in err).
 */
static int send_all(int fd, const char *data, size_t len, long long deadline, int timeout_ms,
                    char *err, size_t err_len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) return 0;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            snprintf(err, err_len, "sending the request: %s", strerror(errno));
            return -1;
        }
        int ev = wait_fd(fd, POLLOUT | POLLIN, deadline);
        if (ev == 0) {
            snprintf(err, err_len, "timed out after %d s sending the request", timeout_ms / 1000);
            return -1;
        }
        if (ev < 0) {
            snprintf(err, err_len, "sending the request: %s", strerror(errno));
            return -1;
        }
        if (ev & (POLLIN | POLLHUP)) return 0;
    }
    return 1;
}

/* ---- requests ------------------------------------------------------------------------ */

/*
 * With AWS credentials in the environment (AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY; region from AWS_REGION or AWS_DEFAULT_REGION, else
 * us-east-1), signs the request with SigV4 as the AWS CLI would, so the
 * commands work against a server started with --auth.
 */
static void sign_request(realm_buf_t *head, const realm_cli_endpoint_t *ep, const char *method,
                         const char *path, const char *body, size_t body_len)
{
    const char *akid = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");
    if (!akid || !*akid || !secret || !*secret) return;
    const char *region = getenv("AWS_REGION");
    if (!region || !*region) region = getenv("AWS_DEFAULT_REGION");
    if (!region || !*region) region = "us-east-1";
    char target[4096], host[300], date[17];
    snprintf(target, sizeof(target), "%s%s", ep->base, path);
    char *q = strchr(target, '?');
    if (q) *q++ = '\0';
    int is_v6 = strchr(ep->host, ':') != NULL;
    snprintf(host, sizeof(host), "%s%s%s:%s", is_v6 ? "[" : "", ep->host, is_v6 ? "]" : "",
             ep->port);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    realm_sigv4_amz_date((int64_t)ts.tv_sec * 1000, date);
    realm_sigv4_header_t hs[] = {{"Host", host}, {"X-Amz-Date", date}};
    realm_sigv4_req_t req = {.method = method,
                             .path = target,
                             .query = q ? q : "",
                             .headers = hs,
                             .headers_cnt = 2,
                             .body = body ? body : "",
                             .body_len = body_len};
    char authz[1024];
    if (realm_sigv4_sign(&req, akid, secret, region, "lambda", date, authz, sizeof(authz)) != 0)
        return;
    realm_buf_appendf(head, "X-Amz-Date: %s\r\nAuthorization: %s\r\n", date, authz);
}

int realm_cli_http_request(const realm_cli_endpoint_t *ep, const char *method, const char *path,
                           const void *body, size_t body_len, int timeout_ms,
                           realm_cli_http_res_t *res, char *err, size_t err_len)
{
    memset(res, 0, sizeof(*res));
    realm_buf_init(&res->body);
    long long deadline = now_ms() + timeout_ms;
    int fd = connect_endpoint(ep, deadline, err, err_len);
    if (fd < 0) return REALM_CLI_HTTP_ECONNECT;

    int rc = REALM_CLI_HTTP_EIO;
    resp_parser_t rp;
    parser_init(&rp, res);
    realm_buf_t head;
    realm_buf_init(&head);
    int is_v6 = strchr(ep->host, ':') != NULL;
    realm_buf_appendf(&head,
                      "%s %s%s HTTP/1.1\r\n"
                      "Host: %s%s%s:%s\r\n"
                      "User-Agent: realm/%s\r\n"
                      "Accept: application/json\r\n",
                      method, ep->base, path, is_v6 ? "[" : "", ep->host, is_v6 ? "]" : "",
                      ep->port, REALM_VERSION);
    if (body != NULL) realm_buf_appends(&head, "Content-Type: application/json\r\n");
    sign_request(&head, ep, method, path, body, body ? body_len : 0);
    realm_buf_appendf(&head, "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      body ? body_len : 0);

    int sent = send_all(fd, head.data, head.len, deadline, timeout_ms, err, err_len);
    if (sent == 1 && body != NULL && body_len > 0)
        sent = send_all(fd, body, body_len, deadline, timeout_ms, err, err_len);
    if (sent < 0) goto done;

    char chunk[16384];
    for (;;) {
        ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int ev = wait_fd(fd, POLLIN, deadline);
            if (ev == 0) {
                snprintf(err, err_len, "timed out after %d s waiting for the response",
                         timeout_ms / 1000);
                goto done;
            }
            if (ev < 0) {
                snprintf(err, err_len, "waiting for the response: %s", strerror(errno));
                goto done;
            }
            continue;
        }
        if (n < 0) {
            snprintf(err, err_len, "reading the response: %s", strerror(errno));
            goto done;
        }
        int st = parser_feed(&rp, chunk, (size_t)n, err, err_len);
        if (st < 0) goto done;
        if (st == 1) break;
        if (n == 0) {
            snprintf(err, err_len,
                     "the server closed the connection before the response was "
                     "complete");
            goto done;
        }
    }
    rc = 0;

done:
    realm_buf_dispose(&head);
    parser_dispose(&rp);
    close(fd);
    return rc;
}

void realm_cli_http_res_dispose(realm_cli_http_res_t *res)
{
    free(res->error_type);
    res->error_type = NULL;
    realm_buf_dispose(&res->body);
}
