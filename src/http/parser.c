/*
 * parser.c - HTTP/1.1 request parser over llhttp (see parser.h).
 *
 * llhttp hands out spans that may arrive in pieces across reads; we copy the
 * target, header names and values into one buffer (`head`) as they come,
 * NUL-terminate each at its *_complete callback, and only turn offsets into
 * pointers when the block is complete (the buffer may move while it grows).
 * Pausing from on_headers_complete and on_message_complete is how feed()
 * stops at the two points the caller needs.
 */
#include "http/parser.h"

#include "base/alloc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define P(llh) ((realm_http_parser_t *)(llh))

static int fail(realm_http_parser_t *p, int status, const char *reason)
{
    p->status = status;
    p->reason = reason;
    p->is_failed = 1;
    return HPE_USER;
}

static void reset_request(realm_http_parser_t *p)
{
    realm_http_req_t *r = &p->req;
    for (size_t i = 0; i < r->params_cnt; i++)
        free(r->param_values[i]);
    realm_buf_t body = r->body;
    realm_buf_reset(&body);
    memset(r, 0, sizeof(*r));
    r->body = body;
    r->content_length = -1;
    r->query = "";
    r->path = "";
    r->target = "";
    realm_buf_reset(&p->head);
    realm_buf_reset(&p->trail);
    p->in_field = 0;
    p->in_body = 0;
    p->is_discarding = 0;
    p->body_limit = UINT64_MAX;
}

static int head_append(realm_http_parser_t *p, const char *at, size_t len)
{
    if (p->head.len + len + 1 > p->max_header_bytes)
        return fail(p, 431, "request header block too large");
    realm_buf_append(&p->head, at, len);
    return 0;
}

static int on_message_begin(llhttp_t *l)
{
    realm_http_parser_t *p = P(l);
    reset_request(p);
    p->in_message = 1;
    return 0;
}

static int on_url(llhttp_t *l, const char *at, size_t len)
{
    return head_append(P(l), at, len);
}

static int on_url_complete(llhttp_t *l)
{
    realm_http_parser_t *p = P(l);
    p->offs[0] = 0;
    return head_append(p, "", 1);
}

/*
 * Trailer fields (after a chunked body) go to their own buffer: the header
 * block's pointers into `head` are live by then and must not move.
 */
static int trail_append(realm_http_parser_t *p, const char *at, size_t len)
{
    if (p->trail.len + len + 1 > p->max_header_bytes)
        return fail(p, 431, "request trailer fields too large");
    realm_buf_append(&p->trail, at, len);
    return 0;
}

static int on_trailer_field(realm_http_parser_t *p, const char *at, size_t len)
{
    realm_http_req_t *r = &p->req;
    if (!p->in_field) {
        if (r->trailers_cnt >= REALM_HTTP_MAX_TRAILERS)
            return fail(p, 431, "too many trailer fields");
        p->trail_offs[2 * r->trailers_cnt] = p->trail.len;
        p->trail_offs[2 * r->trailers_cnt + 1] = 0;
        r->trailers_cnt++;
        p->in_field = 1;
    }
    return trail_append(p, at, len);
}

static int on_header_field(llhttp_t *l, const char *at, size_t len)
{
    realm_http_parser_t *p = P(l);
    realm_http_req_t *r = &p->req;
    if (p->in_body) return on_trailer_field(p, at, len);
    if (!p->in_field) {
        /* A new header begins (llhttp may deliver a name in pieces). */
        if (r->headers_cnt >= REALM_HTTP_MAX_HEADERS)
            return fail(p, 431, "too many request headers");
        p->offs[2 + 2 * r->headers_cnt] = p->head.len;
        p->offs[2 + 2 * r->headers_cnt + 1] = 0;
        r->headers_cnt++;
        p->in_field = 1;
    }
    return head_append(p, at, len);
}

static int on_header_field_complete(llhttp_t *l)
{
    realm_http_parser_t *p = P(l);
    p->in_field = 0;
    if (p->in_body) {
        int rc = trail_append(p, "", 1);
        p->trail_offs[2 * (p->req.trailers_cnt - 1) + 1] = p->trail.len;
        return rc;
    }
    /* RFC 7230 3.2.4: whitespace between a field name and the colon must be
     * rejected (llhttp's non-strict build keeps it as part of the name). */
    if (p->head.len > 0) {
        char last = p->head.data[p->head.len - 1];
        if (last == ' ' || last == '\t')
            return fail(p, 400, "whitespace between header field name and colon");
    }
    int rc = head_append(p, "", 1);
    /* The value starts after the name's terminator. */
    p->offs[2 + 2 * (p->req.headers_cnt - 1) + 1] = p->head.len;
    return rc;
}

static int on_header_value(llhttp_t *l, const char *at, size_t len)
{
    realm_http_parser_t *p = P(l);
    return p->in_body ? trail_append(p, at, len) : head_append(p, at, len);
}

static int on_header_value_complete(llhttp_t *l)
{
    realm_http_parser_t *p = P(l);
    return p->in_body ? trail_append(p, "", 1) : head_append(p, "", 1);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

static int on_headers_complete(llhttp_t *l)
{
    realm_http_parser_t *p = P(l);
    realm_http_req_t *r = &p->req;
    char *base = p->head.data;
    if (base == NULL) return fail(p, 400, "empty request target");
    /* Keep the whole target and append a copy of its path part. */
    const char *q = strchr(base, '?');
    size_t plen = q ? (size_t)(q - base) : strlen(base);
    int has_query = q != NULL;
    size_t path_off = p->head.len;
    realm_buf_reserve(&p->head, plen + 1); /* base must not move while we copy from it */
    base = p->head.data;
    realm_buf_append(&p->head, base, plen);
    realm_buf_append(&p->head, "", 1);
    base = p->head.data; /* may have moved */
    r->target = base;
    r->path = base + path_off;
    r->query = has_query ? base + plen + 1 : "";
    for (size_t i = 0; i < r->headers_cnt; i++) {
        r->headers[i].name = base + p->offs[2 + 2 * i];
        r->headers[i].value = trim(base + p->offs[2 + 2 * i + 1]);
    }
    r->method = llhttp_get_method(l);
    r->method_name = llhttp_method_name((llhttp_method_t)r->method);
    r->http_major = llhttp_get_http_major(l);
    r->http_minor = llhttp_get_http_minor(l);
    /* llhttp also takes HTTP/0.9 (a request line without a version) and
     * HTTP/2.0 in HTTP/1 syntax; neither is something we speak. */
    if (r->http_major == 0) return fail(p, 400, "request line without an HTTP version");
    if (r->http_major != 1) return fail(p, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    r->is_keep_alive = llhttp_should_keep_alive(l) ? 1 : 0;
    r->is_upgrade = llhttp_get_upgrade(l) ? 1 : 0;
    r->is_chunked = (l->flags & F_CHUNKED) ? 1 : 0;
    if (l->flags & F_CONTENT_LENGTH) r->content_length = (int64_t)l->content_length;
    const char *expect = realm_http_req_header(r, "Expect");
    if (expect) {
        if (strcasecmp(expect, "100-continue") == 0) {
            if (r->http_major == 1 && r->http_minor >= 1) r->has_expect_continue = 1;
        } else {
            r->has_other_expect = 1;
        }
    }
    p->in_body = 1;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *l, const char *at, size_t len)
{
    realm_http_parser_t *p = P(l);
    p->req.body_len += len;
    if (p->req.body_len > p->body_limit) return fail(p, 413, "request body too large");
    if (!p->is_discarding) realm_buf_append(&p->req.body, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *l)
{
    realm_http_parser_t *p = P(l);
    realm_http_req_t *r = &p->req;
    for (size_t i = 0; i < r->trailers_cnt; i++) {
        r->trailers[i].name = p->trail.data + p->trail_offs[2 * i];
        r->trailers[i].value = trim(p->trail.data + p->trail_offs[2 * i + 1]);
    }
    p->in_message = 0;
    p->in_body = 0;
    return HPE_PAUSED;
}

void realm_http_parser_init(realm_http_parser_t *p, size_t max_header_bytes)
{
    memset(p, 0, sizeof(*p));
    llhttp_settings_init(&p->settings);
    p->settings.on_message_begin = on_message_begin;
    p->settings.on_url = on_url;
    p->settings.on_url_complete = on_url_complete;
    p->settings.on_header_field = on_header_field;
    p->settings.on_header_field_complete = on_header_field_complete;
    p->settings.on_header_value = on_header_value;
    p->settings.on_header_value_complete = on_header_value_complete;
    p->settings.on_headers_complete = on_headers_complete;
    p->settings.on_body = on_body;
    p->settings.on_message_complete = on_message_complete;
    llhttp_init(&p->llhttp, HTTP_REQUEST, &p->settings);
    realm_buf_init(&p->head);
    realm_buf_init(&p->trail);
    realm_buf_init(&p->req.body);
    p->max_header_bytes = max_header_bytes;
    reset_request(p);
}

void realm_http_parser_dispose(realm_http_parser_t *p)
{
    reset_request(p);
    realm_buf_dispose(&p->head);
    realm_buf_dispose(&p->trail);
    realm_buf_dispose(&p->req.body);
}

int realm_http_parser_feed(realm_http_parser_t *p, const char *data, size_t len, size_t *consumed)
{
    *consumed = 0;
    if (p->is_failed) return REALM_HTTP_FAILED;
    llhttp_errno_t err = llhttp_execute(&p->llhttp, data, len);
    switch (err) {
    case HPE_OK:
        *consumed = len;
        return REALM_HTTP_NEED_MORE;
    case HPE_PAUSED: {
        *consumed = (size_t)(llhttp_get_error_pos(&p->llhttp) - data);
        llhttp_resume(&p->llhttp);
        return p->in_message ? REALM_HTTP_HEAD_DONE : REALM_HTTP_MSG_DONE;
    }
    case HPE_PAUSED_UPGRADE:
        /* on_message_complete already reported the request. If the caller
         * keeps feeding, the upgrade was refused: continue as HTTP. */
        *consumed = (size_t)(llhttp_get_error_pos(&p->llhttp) - data);
        llhttp_resume_after_upgrade(&p->llhttp);
        if (*consumed == len) return REALM_HTTP_NEED_MORE;
        {
            size_t more = 0;
            int rc = realm_http_parser_feed(p, data + *consumed, len - *consumed, &more);
            *consumed += more;
            return rc;
        }
    default:
        if (!p->is_failed) {
            p->is_failed = 1;
            p->status = 400;
            p->reason = llhttp_get_error_reason(&p->llhttp);
            if (p->reason == NULL) p->reason = llhttp_errno_name(err);
        }
        *consumed = len;
        return REALM_HTTP_FAILED;
    }
}

void realm_http_parser_set_body_limit(realm_http_parser_t *p, uint64_t limit, int is_discarding)
{
    p->body_limit = limit;
    p->is_discarding = is_discarding;
}

int realm_http_parser_status(const realm_http_parser_t *p)
{
    return p->status;
}

const char *realm_http_parser_reason(const realm_http_parser_t *p)
{
    return p->reason ? p->reason : "";
}

int realm_http_parser_in_message(const realm_http_parser_t *p)
{
    return p->in_message;
}

int realm_http_parser_in_body(const realm_http_parser_t *p)
{
    return p->in_body;
}

const char *realm_http_req_header(const realm_http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->headers_cnt; i++)
        if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
    return NULL;
}

const char *realm_http_req_trailer(const realm_http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->trailers_cnt; i++)
        if (req->trailers[i].name && strcasecmp(req->trailers[i].name, name) == 0)
            return req->trailers[i].value;
    return NULL;
}

const char *realm_http_req_param(const realm_http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->params_cnt; i++)
        if (strcmp(req->param_names[i], name) == 0) return req->param_values[i];
    return NULL;
}
