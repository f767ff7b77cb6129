/*
 * server.c - HTTP/1.1 connections, routing and responses (see server.h).
 *
 * DESIGN: each connection runs one loop, process(): parse from the buffered
 * input until a request completes, route it, call its handler, and stop while
 * the response is in progress. When the response ends (synchronously inside
 * the handler or later) parsing resumes on the bytes already buffered, which
 * is what makes pipelining correct. A connection is in one of four phases,
 * each with its own timer: idle between requests (idle timeout, then a
 * silent close), reading a header block (header timeout from the first
 * byte, then 408: a slowloris client cannot hold it), reading a body (idle
 * timeout re-armed on every read, then 408) and handling (no timer: the
 * handler owns the deadline).
 *
 * IDLE CONNECTIONS: connections waiting for a request (a keep-alive
 * connection between requests, or a new one that has sent nothing yet) are
 * kept in a list in the order they became idle. Past limits.max_idle_conns
 * the oldest is closed once it has been idle for limits.idle_grace_ms (a
 * burst of new connections is idle for the moment between accept and the
 * first read of its request, and must not close itself), and the listener
 * asks for the oldest to be closed, however young, when it is at its
 * connection limit: a flood of idle connections costs the flood its oldest
 * ones, not the server its descriptors (nginx and HAProxy close idle
 * keep-alive connections the same way).
 *
 * LIFETIME: the http_conn_t is the connection's handler data and is freed in
 * its on_close. A response is a separate allocation so that a handler that
 * set no abort callback can still end a response whose connection died
 * (the writes then go nowhere); one with an abort callback is freed right
 * after the callback runs.
 */
#include "http/server.h"

#include "base/alloc.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_ROUTES 64
#define MAX_MOUNTS 4
#define MAX_BUFFERED_INPUT (256 * 1024) /* pipelined bytes held while busy */

typedef struct {
    const char *method;
    const char *pattern;
    uint64_t max_body;
    realm_http_handler_cb handler;
    realm_http_body_cb on_body; /* streamed routes: body pieces as they arrive */
    void *data;
} route_t;

struct realm_http_server_s {
    char *name;
    realm_http_limits_t limits;
    route_t routes[MAX_ROUTES];
    size_t routes_cnt;
    struct {
        const char *prefix; /* borrowed; "/x" */
        size_t len;
        int tag;
    } mounts[MAX_MOUNTS];
    size_t mounts_cnt;
    realm_http_error_cb error_cb;
    void *error_data;
    realm_http_observe_cb observe_cb;
    void *observe_data;
    int is_draining;
    struct http_conn_s *conns; /* attached, not upgraded */
    realm_http_guard_cb guard; /* runs before every routed handler */
    void *guard_data;
    struct http_conn_s *idle_head, *idle_tail; /* idle connections, oldest first */
    size_t idle_cnt;
};

typedef enum { PHASE_IDLE, PHASE_HEAD, PHASE_BODY, PHASE_HANDLING } phase_t;

typedef struct http_conn_s http_conn_t;

struct realm_http_res_s {
    http_conn_t *hc;       /* NULL once the connection is gone */
    realm_http_req_t *req; /* borrowed from the parser */
    realm_buf_t headers;   /* extra "Name: value\r\n" lines */
    int status;
    unsigned is_head : 1; /* HEAD: never a body */
    unsigned is_http10 : 1;
    unsigned is_keep_alive : 1;
    unsigned is_started : 1; /* status line sent */
    unsigned is_chunked : 1;
    unsigned is_ended : 1;
    realm_http_abort_cb abort_cb;
    void *abort_data;
    realm_http_json_filter_cb json_filter; /* rewrites JSON bodies (a dialect) */
    void *json_filter_data;
};

struct http_conn_s {
    realm_conn_t *conn;
    realm_http_server_t *srv;
    realm_http_parser_t parser;
    realm_buf_t inbuf;     /* bytes received and not parsed yet */
    realm_http_res_t *res; /* the response in progress, if any */
    const route_t *route;  /* route of the request being read */
    int route_status;      /* 0, or 404/405 decided at HEAD_DONE */
    char allow[64];        /* Allow header for 405 */
    phase_t phase;
    unsigned in_process : 1;  /* process() is on the stack */
    unsigned is_upgraded : 1; /* handed to another protocol */
    unsigned close_when_idle : 1;
    unsigned is_eof : 1;                       /* the peer will send nothing more */
    unsigned is_idle : 1;                      /* in the server's idle list */
    uint64_t idle_since;                       /* loop time it joined the idle list */
    struct http_conn_s *prev, *next;           /* the server's list */
    struct http_conn_s *idle_prev, *idle_next; /* the server's idle list */
};

static const realm_conn_handler_t http_handler;
static void process(http_conn_t *hc);

/* ---- helpers ------------------------------------------------------------ */

const char *realm_http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    }
    return "Unknown";
}

static const char *http_date(void)
{
    static char buf[40];
    static time_t last;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = now;
    }
    return buf;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A new string of s's len bytes decoded; its length (which a %00 makes
 * longer than strlen) in *out_len when given. */
static char *percent_decode(const char *s, size_t len, size_t *out_len)
{
    char *out = realm_malloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < len && (h = hexval((unsigned char)s[i + 1])) >= 0 &&
            (l = hexval((unsigned char)s[i + 2])) >= 0) {
            out[o++] = (char)(h * 16 + l);
            i += 2;
            continue;
        }
        out[o++] = s[i];
    }
    out[o] = '\0';
    if (out_len) *out_len = o;
    return out;
}

long realm_http_query_param(const char *query, const char *name, size_t nth, char *out,
                            size_t out_len)
{
    size_t nlen = strlen(name);
    const char *p = query;
    while (p && *p) {
        const char *end = strchr(p, '&');
        if (!end) end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *kend = eq ? eq : end;
        if ((size_t)(kend - p) == nlen && strncmp(p, name, nlen) == 0 && nth-- == 0) {
            const char *v = eq ? eq + 1 : end;
            if ((size_t)(end - v) >= out_len) return -1;
            char *dec = percent_decode(v, (size_t)(end - v), NULL);
            size_t dlen = strlen(dec);
            memcpy(out, dec, dlen + 1);
            free(dec);
            return (long)dlen;
        }
        p = *end ? end + 1 : end;
    }
    return -1;
}

/* ---- routing ------------------------------------------------------------ */

static void clear_params(realm_http_req_t *req)
{
    for (size_t i = 0; i < req->params_cnt; i++)
        free(req->param_values[i]);
    req->params_cnt = 0;
}

/* Does path match pattern? Fills req's params on success. */
static int route_match(const char *pattern, const char *path, realm_http_req_t *req)
{
    const char *p = pattern, *s = path;
    clear_params(req);
    while (*p && *s) {
        if (*p == '*' && p[1] == '\0') return 1;
        if (*p == '{') {
            const char *close = strchr(p, '}');
            if (!close) return 0;
            const char *seg_end = strchr(s, '/');
            if (!seg_end) seg_end = s + strlen(s);
            if (seg_end == s || req->params_cnt >= REALM_HTTP_MAX_PARAMS) goto no;
            /* The name is a literal in the pattern: point at a static copy. */
            static char names[MAX_ROUTES * REALM_HTTP_MAX_PARAMS][32];
            static size_t names_cnt;
            size_t nlen = (size_t)(close - p - 1);
            const char *name = NULL;
            for (size_t i = 0; i < names_cnt; i++)
                if (strlen(names[i]) == nlen && strncmp(names[i], p + 1, nlen) == 0)
                    name = names[i];
            if (!name && names_cnt < sizeof(names) / sizeof(names[0]) && nlen < 32) {
                memcpy(names[names_cnt], p + 1, nlen);
                names[names_cnt][nlen] = '\0';
                name = names[names_cnt++];
            }
            if (!name) goto no;
            /* A segment that decodes to a NUL (%00) would name something
             * shorter than it says (f%00x as f): it matches nothing. */
            size_t dlen;
            char *value = percent_decode(s, (size_t)(seg_end - s), &dlen);
            if (strlen(value) != dlen) {
                free(value);
                goto no;
            }
            req->param_names[req->params_cnt] = name;
            req->param_values[req->params_cnt++] = value;
            p = close + 1;
            s = seg_end;
            continue;
        }
        if (*p != *s) goto no;
        p++, s++;
    }
    if (*p == '*' && p[1] == '\0') return 1;
    if (*p == '\0' && *s == '\0') return 1;
no:
    clear_params(req);
    return 0;
}

/*
 * Does s hold a percent-escape of a control character (%00-%1F, %7F)? Raw
 * ones never get here (llhttp refuses them); escaped, a NUL would cut a
 * decoded name short ("victim%00junk" read as "victim").
 */
static int has_escaped_ctl(const char *s)
{
    for (; s && *s; s++) {
        int h, l;
        if (s[0] != '%' || (h = hexval((unsigned char)s[1])) < 0 ||
            (l = hexval((unsigned char)s[2])) < 0)
            continue;
        int c = h * 16 + l;
        if (c < 0x20 || c == 0x7f) return 1;
        s += 2;
    }
    return 0;
}

const char realm_http_msg_ctl[] = "the request path or query holds a control character";

/*
 * The route for req (params filled), or NULL with *status 400 (an escaped
 * control character in the path or query), 404 or 405 (the methods the
 * path allows then in allow, when given).
 */
static const route_t *find_route(const realm_http_server_t *srv, realm_http_req_t *req, int *status,
                                 char *allow, size_t allow_len)
{
    const char *method = req->method_name;
    if (strcmp(method, "HEAD") == 0) method = "GET";
    *status = 404;
    if (allow) allow[0] = '\0';
    req->mount = 0;
    req->route_path = req->path;
    if (has_escaped_ctl(req->path) || has_escaped_ctl(req->query)) {
        *status = 400;
        return NULL;
    }
    for (size_t i = 0; i < srv->mounts_cnt; i++) {
        if (strncmp(req->path, srv->mounts[i].prefix, srv->mounts[i].len) == 0 &&
            req->path[srv->mounts[i].len] == '/') {
            req->mount = srv->mounts[i].tag;
            req->route_path = req->path + srv->mounts[i].len;
            break;
        }
    }
    for (size_t i = 0; i < srv->routes_cnt; i++) {
        const route_t *r = &srv->routes[i];
        if (!route_match(r->pattern, req->route_path, req)) continue;
        if (strcmp(r->method, method) == 0) {
            *status = 0;
            return r;
        }
        *status = 405;
        if (!allow) continue;
        size_t n = strlen(allow);
        if (!strstr(allow, r->method) && n + strlen(r->method) + 8 < allow_len) {
            snprintf(allow + n, allow_len - n, "%s%s%s", n ? ", " : "", r->method,
                     strcmp(r->method, "GET") == 0 ? ", HEAD" : "");
        }
    }
    clear_params(req);
    return NULL;
}

/* Finds the route; on failure sets hc->route_status to 400, 404 or 405. */
static void route_request(http_conn_t *hc)
{
    hc->route =
        find_route(hc->srv, &hc->parser.req, &hc->route_status, hc->allow, sizeof(hc->allow));
}

int realm_http_server_match(const realm_http_server_t *s, realm_http_req_t *req,
                            const char **pattern, uint64_t *max_body)
{
    int status;
    const route_t *r = find_route(s, req, &status, NULL, 0);
    if (!r) return status;
    if (pattern) *pattern = r->pattern;
    if (max_body) *max_body = r->max_body ? r->max_body : s->limits.max_body_bytes;
    return 0;
}

/* ---- server ------------------------------------------------------------- */

static void default_error(realm_http_res_t *res, int status, const char *message, void *data)
{
    (void)data;
    json_t *body = json_pack("{s:{s:i, s:s, s:s}}", "error", "status", status, "code",
                             realm_http_status_text(status), "message", message);
    realm_http_res_send_json(res, status, body);
}

realm_http_server_t *realm_http_server_new(const char *name, const realm_http_limits_t *limits)
{
    realm_http_server_t *s = realm_calloc(1, sizeof(*s));
    s->name = realm_strdup(name);
    s->limits = *limits;
    s->error_cb = default_error;
    return s;
}

void realm_http_server_free(realm_http_server_t *s)
{
    if (!s) return;
    free(s->name);
    free(s);
}

void realm_http_server_route(realm_http_server_t *s, const char *method, const char *pattern,
                             uint64_t max_body, realm_http_handler_cb handler, void *data)
{
    if (s->routes_cnt >= MAX_ROUTES) abort(); /* a programming error */
    route_t *r = &s->routes[s->routes_cnt++];
    r->method = method;
    r->pattern = pattern;
    r->max_body = max_body ? max_body : s->limits.max_body_bytes;
    r->handler = handler;
    r->on_body = NULL;
    r->data = data;
}

void realm_http_server_route_streamed(realm_http_server_t *s, const char *method,
                                      const char *pattern, uint64_t max_body,
                                      realm_http_body_cb on_body, realm_http_handler_cb handler,
                                      void *data)
{
    realm_http_server_route(s, method, pattern, max_body, handler, data);
    s->routes[s->routes_cnt - 1].on_body = on_body;
}

void realm_http_server_mount(realm_http_server_t *s, const char *prefix, int tag)
{
    if (s->mounts_cnt >= MAX_MOUNTS || prefix[0] != '/' || tag == 0) abort(); /* a bug */
    s->mounts[s->mounts_cnt].prefix = prefix;
    s->mounts[s->mounts_cnt].len = strlen(prefix);
    s->mounts[s->mounts_cnt++].tag = tag;
}

void realm_http_server_set_guard(realm_http_server_t *s, realm_http_guard_cb cb, void *data)
{
    s->guard = cb;
    s->guard_data = data;
}

void realm_http_server_set_error_cb(realm_http_server_t *s, realm_http_error_cb cb, void *data)
{
    s->error_cb = cb ? cb : default_error;
    s->error_data = data;
}

void realm_http_server_set_observer(realm_http_server_t *s, realm_http_observe_cb cb, void *data)
{
    s->observe_cb = cb;
    s->observe_data = data;
}

void realm_http_server_drain(realm_http_server_t *s)
{
    s->is_draining = 1;
}

void realm_http_server_attach(realm_http_server_t *s, realm_conn_t *c)
{
    http_conn_t *hc = realm_calloc(1, sizeof(*hc));
    hc->conn = c;
    hc->srv = s;
    realm_http_parser_init(&hc->parser, s->limits.max_header_bytes);
    realm_buf_init(&hc->inbuf);
    hc->phase = PHASE_IDLE;
    hc->next = s->conns;
    if (s->conns) s->conns->prev = hc;
    s->conns = hc;
    realm_conn_set_handler(c, &http_handler, hc);
    process(hc); /* arms the idle timer */
}

/* ---- responses ---------------------------------------------------------- */

static realm_http_res_t *res_new(http_conn_t *hc, realm_http_req_t *req)
{
    realm_http_res_t *res = realm_calloc(1, sizeof(*res));
    res->hc = hc;
    res->req = req;
    realm_buf_init(&res->headers);
    res->is_head = req->method == HTTP_HEAD;
    res->is_http10 = req->http_major == 1 && req->http_minor == 0;
    res->is_keep_alive = req->is_keep_alive && !hc->srv->is_draining && !hc->close_when_idle;
    hc->res = res;
    return res;
}

static void res_free(realm_http_res_t *res)
{
    realm_buf_dispose(&res->headers);
    free(res);
}

void realm_http_res_header(realm_http_res_t *res, const char *name, const char *value)
{
    if (res->is_started) return;
    realm_buf_appendf(&res->headers, "%s: %s\r\n", name, value);
}

static void write_head(realm_http_res_t *res, int status, const char *content_type,
                       int64_t content_length)
{
    realm_buf_t b;
    realm_buf_init(&b);
    res->status = status;
    realm_buf_appendf(&b, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: realm/" REALM_VERSION "\r\n",
                      status, realm_http_status_text(status), http_date());
    if (content_type) realm_buf_appendf(&b, "Content-Type: %s\r\n", content_type);
    if (content_length >= 0) {
        if (status != 204 && status != 304 && status >= 200)
            realm_buf_appendf(&b, "Content-Length: %lld\r\n", (long long)content_length);
    } else if (res->is_chunked) {
        realm_buf_appends(&b, "Transfer-Encoding: chunked\r\n");
    }
    if (!res->is_keep_alive)
        realm_buf_appends(&b, "Connection: close\r\n");
    else if (res->is_http10)
        realm_buf_appends(&b, "Connection: keep-alive\r\n");
    realm_buf_append(&b, res->headers.data ? res->headers.data : "", res->headers.len);
    realm_buf_appends(&b, "\r\n");
    realm_conn_write(res->hc->conn, b.data, b.len);
    realm_buf_dispose(&b);
    res->is_started = 1;
}

/* The response is complete: account, then go on with the connection. */
static void res_finish(realm_http_res_t *res)
{
    http_conn_t *hc = res->hc;
    res->is_ended = 1;
    if (hc == NULL) { /* orphaned: the connection died earlier */
        res_free(res);
        return;
    }
    if (hc->srv->observe_cb) hc->srv->observe_cb(res->status, hc->srv->observe_data);
    int keep = res->is_keep_alive;
    hc->res = NULL;
    res_free(res);
    hc->phase = PHASE_IDLE;
    if (!keep) {
        realm_conn_close(hc->conn, 1);
        return;
    }
    if (!hc->in_process) process(hc);
}

void realm_http_res_send(realm_http_res_t *res, int status, const char *content_type,
                         const void *body, size_t len)
{
    if (res->is_ended || res->is_started) return;
    if (res->hc == NULL) {
        res_finish(res);
        return;
    }
    write_head(res, status, content_type, (int64_t)len);
    if (!res->is_head && len > 0) realm_conn_write(res->hc->conn, body, len);
    res_finish(res);
}

void realm_http_res_set_json_filter(realm_http_res_t *res, realm_http_json_filter_cb cb, void *data)
{
    res->json_filter = cb;
    res->json_filter_data = data;
}

long realm_http_res_header_value(const realm_http_res_t *res, const char *name, char *out,
                                 size_t out_len)
{
    size_t nlen = strlen(name);
    long found = -1;
    const char *p = res->headers.data, *end = p ? p + res->headers.len : NULL;
    while (p && p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol) break;
        if ((size_t)(eol - p) > nlen + 1 && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (v < eol && *v == ' ')
                v++;
            size_t vlen = (size_t)(eol - v);
            if (vlen < out_len) {
                memcpy(out, v, vlen);
                out[vlen] = '\0';
                found = (long)vlen;
            } else {
                found = -1;
            }
        }
        p = eol + 2;
    }
    return found;
}

void realm_http_res_send_json(realm_http_res_t *res, int status, json_t *body)
{
    if (res->json_filter && body) body = res->json_filter(res, status, body, res->json_filter_data);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        realm_http_res_send(res, 500, "application/json", "{}", 2);
        return;
    }
    size_t len = strlen(text);
    realm_http_res_send(res, status, "application/json", text, len);
    free(text);
}

void realm_http_res_error(realm_http_res_t *res, int status, const char *message)
{
    if (res->hc == NULL) {
        res_finish(res);
        return;
    }
    realm_http_server_t *srv = res->hc->srv;
    srv->error_cb(res, status, message, srv->error_data);
}

void realm_http_res_begin(realm_http_res_t *res, int status, const char *content_type)
{
    if (res->is_started || res->is_ended || res->hc == NULL) return;
    if (res->is_http10)
        res->is_keep_alive = 0; /* close-delimited body */
    else
        res->is_chunked = !res->is_head;
    write_head(res, status, content_type, -1);
}

int realm_http_res_write(realm_http_res_t *res, const void *data, size_t len)
{
    if (res->hc == NULL) return UV_EPIPE;
    if (!res->is_started || res->is_ended) return UV_EINVAL;
    if (res->is_head || len == 0) return 0;
    if (!res->is_chunked) return realm_conn_write(res->hc->conn, data, len);
    char size[24];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    uv_buf_t bufs[3] = {uv_buf_init(size, (unsigned)n), uv_buf_init((char *)data, (unsigned)len),
                        uv_buf_init("\r\n", 2)};
    return realm_conn_writev(res->hc->conn, bufs, 3);
}

void realm_http_res_end(realm_http_res_t *res, const char *trailers)
{
    if (res->is_ended) return;
    if (res->hc && res->is_chunked) {
        realm_buf_t b;
        realm_buf_init(&b);
        realm_buf_appends(&b, "0\r\n");
        if (trailers) realm_buf_appends(&b, trailers);
        realm_buf_appends(&b, "\r\n");
        realm_conn_write(res->hc->conn, b.data, b.len);
        realm_buf_dispose(&b);
    }
    res_finish(res);
}

void realm_http_res_on_abort(realm_http_res_t *res, realm_http_abort_cb cb, void *data)
{
    res->abort_cb = cb;
    res->abort_data = data;
}

realm_conn_t *realm_http_res_conn(realm_http_res_t *res)
{
    return res->hc ? res->hc->conn : NULL;
}

size_t realm_http_res_pending(const realm_http_res_t *res)
{
    return res->hc ? realm_conn_pending(res->hc->conn) : 0;
}

realm_conn_t *realm_http_res_upgrade(realm_http_res_t *res, const char *extra_headers,
                                     const char **rest, size_t *rest_len)
{
    http_conn_t *hc = res->hc;
    if (hc == NULL || res->is_started) return NULL;
    realm_buf_t b;
    realm_buf_init(&b);
    realm_buf_appendf(&b,
                      "HTTP/1.1 101 Switching Protocols\r\nServer: realm/" REALM_VERSION "\r\n");
    realm_buf_append(&b, res->headers.data ? res->headers.data : "", res->headers.len);
    if (extra_headers) realm_buf_appends(&b, extra_headers);
    realm_buf_appends(&b, "\r\n");
    realm_conn_write(hc->conn, b.data, b.len);
    realm_buf_dispose(&b);
    res->status = 101;
    if (hc->srv->observe_cb) hc->srv->observe_cb(101, hc->srv->observe_data);
    hc->is_upgraded = 1;
    hc->res = NULL;
    res_free(res);
    realm_conn_timer(hc->conn, 0, NULL);
    *rest = hc->inbuf.data ? hc->inbuf.data : "";
    *rest_len = hc->inbuf.len;
    /* process() sees is_upgraded and frees hc once the handler returns. */
    return hc->conn;
}

/* ---- the connection ----------------------------------------------------- */

static void idle_leave(http_conn_t *hc)
{
    if (!hc->is_idle) return;
    realm_http_server_t *s = hc->srv;
    if (hc->idle_prev)
        hc->idle_prev->idle_next = hc->idle_next;
    else
        s->idle_head = hc->idle_next;
    if (hc->idle_next)
        hc->idle_next->idle_prev = hc->idle_prev;
    else
        s->idle_tail = hc->idle_prev;
    hc->idle_prev = hc->idle_next = NULL;
    hc->is_idle = 0;
    s->idle_cnt--;
}

/*
 * Closes the oldest idle connection other than keep that has been idle for
 * at least min_age_ms; 1 if there was one. The list is in idle_since order,
 * so the first one too young ends the search.
 */
static int close_oldest_idle(realm_http_server_t *s, http_conn_t *keep, uint64_t min_age_ms)
{
    http_conn_t *hc = s->idle_head;
    while (hc && (hc == keep || hc->in_process || realm_conn_is_closing(hc->conn))) {
        http_conn_t *next = hc->idle_next;
        if (realm_conn_is_closing(hc->conn)) idle_leave(hc); /* closing already */
        hc = next;
    }
    if (!hc) return 0;
    if (min_age_ms && uv_now(realm_conn_loop(hc->conn)) - hc->idle_since < min_age_ms) return 0;
    idle_leave(hc);
    realm_debug("%s: closing idle connection from %s to make room", s->name,
                realm_conn_peer(hc->conn));
    /* Nothing unread or unsent: a plain close is a clean FIN, and frees the
     * descriptor now. */
    realm_conn_close(hc->conn, 0);
    return 1;
}

/* hc now waits for a request: it joins the idle list at the young end. */
static void idle_enter(http_conn_t *hc)
{
    if (hc->is_idle) return;
    realm_http_server_t *s = hc->srv;
    hc->is_idle = 1;
    hc->idle_since = uv_now(realm_conn_loop(hc->conn));
    hc->idle_next = NULL;
    hc->idle_prev = s->idle_tail;
    if (s->idle_tail)
        s->idle_tail->idle_next = hc;
    else
        s->idle_head = hc;
    s->idle_tail = hc;
    s->idle_cnt++;
    size_t cap = s->limits.max_idle_conns;
    while (cap && s->idle_cnt > cap && close_oldest_idle(s, hc, s->limits.idle_grace_ms))
        ;
}

int realm_http_server_close_oldest_idle(realm_http_server_t *s)
{
    return close_oldest_idle(s, NULL, 0);
}

void realm_http_server_sweep_idle(realm_http_server_t *s)
{
    size_t cap = s->limits.max_idle_conns;
    while (cap && s->idle_cnt > cap && close_oldest_idle(s, NULL, s->limits.idle_grace_ms))
        ;
}

size_t realm_http_server_idle_cnt(const realm_http_server_t *s)
{
    return s->idle_cnt;
}

static void http_conn_free(http_conn_t *hc)
{
    idle_leave(hc);
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        hc->srv->conns = hc->next;
    if (hc->next) hc->next->prev = hc->prev;
    realm_http_parser_dispose(&hc->parser);
    realm_buf_dispose(&hc->inbuf);
    free(hc);
}

static void fail_request(http_conn_t *hc, int status, const char *message)
{
    realm_http_res_t *res = hc->res ? hc->res : res_new(hc, &hc->parser.req);
    res->is_keep_alive = 0;
    hc->phase = PHASE_HANDLING;
    realm_http_res_error(res, status, message);
}

static void on_timeout(realm_conn_t *c)
{
    http_conn_t *hc = realm_conn_data(c);
    if (hc->phase == PHASE_HEAD || hc->phase == PHASE_BODY) {
        realm_debug("%s: request timeout from %s", hc->srv->name, realm_conn_peer(c));
        fail_request(hc, 408, "request not received in time");
    } else if (hc->phase == PHASE_IDLE) {
        idle_leave(hc);
        realm_conn_close(c, 1);
    }
}

static void set_phase_timer(http_conn_t *hc, phase_t before)
{
    const realm_http_limits_t *lim = &hc->srv->limits;
    switch (hc->phase) {
    case PHASE_IDLE:
        if (before != PHASE_IDLE || !hc->in_process)
            realm_conn_timer(hc->conn, lim->idle_timeout_ms, on_timeout);
        break;
    case PHASE_HEAD:
        if (before != PHASE_HEAD) realm_conn_timer(hc->conn, lim->header_timeout_ms, on_timeout);
        break;
    case PHASE_BODY:
        realm_conn_timer(hc->conn, lim->idle_timeout_ms, on_timeout);
        break;
    case PHASE_HANDLING:
        realm_conn_timer(hc->conn, 0, NULL);
        break;
    }
}

/* Answers a request that matched no route: 400, 405 with Allow, or 404. */
static void answer_unrouted(http_conn_t *hc, realm_http_res_t *res)
{
    if (hc->route_status == 400) {
        realm_http_res_error(res, 400, realm_http_msg_ctl);
        return;
    }
    if (hc->route_status == 405) {
        realm_http_res_header(res, "Allow", hc->allow);
        realm_http_res_error(res, 405, "method not allowed on this path");
        return;
    }
    realm_http_res_error(res, 404, "no such path");
}

/* Headers are complete: route, apply the body limit, answer Expect. */
static int on_head(http_conn_t *hc)
{
    realm_http_req_t *req = &hc->parser.req;
    if (req->has_other_expect) {
        fail_request(hc, 417, "only 'Expect: 100-continue' is supported");
        return -1;
    }
    route_request(hc);
    int has_body = req->is_chunked || req->content_length > 0;
    if (req->has_expect_continue && has_body && hc->route == NULL) {
        /* RFC 7231 5.1.1: the final status instead of 100, now, since the
         * client may be holding the body back. Whether it sends the body
         * anyway is unknown, so the connection cannot carry another request. */
        realm_http_res_t *res = res_new(hc, req);
        res->is_keep_alive = 0;
        hc->phase = PHASE_HANDLING;
        answer_unrouted(hc, res);
        return -1;
    }
    uint64_t limit = hc->route ? hc->route->max_body : hc->srv->limits.max_body_bytes;
    if (req->content_length >= 0 && (uint64_t)req->content_length > limit) {
        char msg[96];
        snprintf(msg, sizeof(msg), "request body of %lld bytes is over the limit of %llu",
                 (long long)req->content_length, (unsigned long long)limit);
        fail_request(hc, 413, msg);
        return -1;
    }
    realm_http_parser_set_body_limit(&hc->parser, limit, hc->route == NULL);
    if (req->has_expect_continue && has_body && hc->route)
        realm_conn_write(hc->conn, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return 0;
}

static void on_message(http_conn_t *hc)
{
    realm_http_req_t *req = &hc->parser.req;
    realm_http_res_t *res = res_new(hc, req);
    hc->phase = PHASE_HANDLING;
    if (hc->route == NULL) {
        answer_unrouted(hc, res);
        return;
    }
    realm_http_server_t *srv = hc->srv;
    if (srv->guard && srv->guard(req, res, srv->guard_data) != 0) return;
    hc->route->handler(req, res, hc->route->data);
}

void realm_http_req_route(realm_http_req_t *req, realm_http_res_t *res)
{
    http_conn_t *hc = res->hc;
    if (hc && hc->route) hc->route->handler(req, res, hc->route->data);
}

int realm_http_res_resume(realm_http_res_t *res, realm_http_handler_cb cb, void *data)
{
    http_conn_t *hc = res->hc;
    if (hc == NULL) { /* orphaned by on_close, which left it to us */
        res_free(res);
        return 0;
    }
    hc->in_process = 1; /* as in process(): an ended response does not re-enter it */
    cb(&hc->parser.req, res, data);
    hc->in_process = 0;
    if (hc->is_upgraded) {
        http_conn_free(hc);
        return 1;
    }
    if (!hc->res) process(hc); /* answered: on with the connection */
    return 1;
}

/* A streamed route gets the body bytes parsed so far (first call: is_first). */
static void deliver_body(http_conn_t *hc, int is_first)
{
    realm_http_req_t *req = &hc->parser.req;
    if (!hc->route || !hc->route->on_body) return;
    if (!is_first && req->body.len == 0) return;
    if (hc->route->on_body(req, hc->conn, req->body.data ? req->body.data : "", req->body.len,
                           is_first, hc->route->data))
        realm_buf_reset(&req->body);
}

static void process(http_conn_t *hc)
{
    if (hc->in_process) return;
    hc->in_process = 1;
    phase_t before = hc->phase;
    size_t off = 0;
    while (!hc->res && !hc->is_upgraded && !realm_conn_is_closing(hc->conn)) {
        if (hc->close_when_idle && !realm_http_parser_in_message(&hc->parser)) {
            /* Idle with nothing unread or unsent: a plain close is a clean
             * FIN, and lingering would only keep shutdown waiting on
             * keep-alive clients (SDKs hold their connections open). */
            int idle = off >= hc->inbuf.len && realm_conn_pending(hc->conn) == 0;
            realm_conn_close(hc->conn, !idle);
            break;
        }
        /* After HEAD_DONE the parser may finish a body-less message without
         * any more input, so it is fed even when nothing is buffered. */
        if (off >= hc->inbuf.len && !realm_http_parser_in_body(&hc->parser)) break;
        size_t used = 0;
        int rc =
            realm_http_parser_feed(&hc->parser, hc->inbuf.data + off, hc->inbuf.len - off, &used);
        off += used;
        if (rc == REALM_HTTP_NEED_MORE) {
            if (realm_http_parser_in_body(&hc->parser)) deliver_body(hc, 0);
            hc->phase = realm_http_parser_in_body(&hc->parser)      ? PHASE_BODY
                        : realm_http_parser_in_message(&hc->parser) ? PHASE_HEAD
                                                                    : PHASE_IDLE;
            break;
        }
        if (rc == REALM_HTTP_FAILED) {
            off = hc->inbuf.len;
            fail_request(hc, realm_http_parser_status(&hc->parser),
                         realm_http_parser_reason(&hc->parser));
            break;
        }
        if (rc == REALM_HTTP_HEAD_DONE) {
            hc->phase = PHASE_BODY;
            if (on_head(hc) != 0) {
                off = hc->inbuf.len;
                break;
            }
            deliver_body(hc, 1);
            continue;
        }
        /* REALM_HTTP_MSG_DONE: the handler may upgrade, which reads inbuf
         * from the current offset, so drop what is parsed first. */
        realm_buf_consume(&hc->inbuf, off);
        off = 0;
        deliver_body(hc, 0);
        on_message(hc);
    }
    if (hc->is_upgraded) {
        http_conn_free(hc);
        return;
    }
    realm_buf_consume(&hc->inbuf, off);
    hc->in_process = 0;
    if (realm_conn_is_closing(hc->conn)) {
        idle_leave(hc);
        return;
    }
    if (hc->res)
        hc->phase = PHASE_HANDLING;
    else if (hc->phase == PHASE_HANDLING)
        hc->phase = PHASE_IDLE;
    if (hc->is_eof) {
        /* Answer what was complete, then close: nothing more can come. */
        idle_leave(hc);
        if (!hc->res) realm_conn_close(hc->conn, 1);
        return;
    }
    if (hc->phase == PHASE_IDLE && hc->inbuf.len == 0 && realm_conn_pending(hc->conn) == 0)
        idle_enter(hc);
    else
        idle_leave(hc);
    set_phase_timer(hc, before);
    /* Hold back a peer that pipelines faster than we answer. */
    if (hc->inbuf.len > MAX_BUFFERED_INPUT)
        realm_conn_read_stop(hc->conn);
    else
        realm_conn_read_start(hc->conn);
}

static void on_read(realm_conn_t *c, const char *data, size_t len)
{
    http_conn_t *hc = realm_conn_data(c);
    realm_buf_append(&hc->inbuf, data, len);
    process(hc);
}

static void on_eof(realm_conn_t *c, int status)
{
    http_conn_t *hc = realm_conn_data(c);
    if (status != UV_EOF) {
        realm_conn_close(c, 0);
        return;
    }
    /* A half-close: requests already received still get their answers. */
    hc->is_eof = 1;
    realm_conn_read_stop(c);
    if (!hc->res) process(hc);
}

static void on_close(realm_conn_t *c)
{
    http_conn_t *hc = realm_conn_data(c);
    realm_http_res_t *res = hc->res;
    if (res) {
        res->hc = NULL;
        hc->res = NULL;
        if (res->abort_cb) {
            res->abort_cb(res, res->abort_data);
            res_free(res);
        }
    }
    http_conn_free(hc);
}

/* A response's last bytes left: a keep-alive connection is idle from now. */
static void on_drain(realm_conn_t *c)
{
    http_conn_t *hc = realm_conn_data(c);
    if (!hc->in_process && !hc->res && !hc->is_eof && hc->phase == PHASE_IDLE && hc->inbuf.len == 0)
        idle_enter(hc);
}

static const realm_conn_handler_t http_handler = {
    .on_read = on_read,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_close = on_close,
};

void realm_http_server_each(realm_http_server_t *s, void (*cb)(realm_conn_t *c, void *data),
                            void *data)
{
    http_conn_t *hc = s->conns;
    while (hc) {
        http_conn_t *next = hc->next; /* cb may free hc */
        cb(hc->conn, data);
        hc = next;
    }
}

void realm_http_conn_close_when_idle(realm_conn_t *c)
{
    http_conn_t *hc = realm_conn_data(c);
    hc->close_when_idle = 1;
    if (!hc->res && !hc->in_process) process(hc);
}
