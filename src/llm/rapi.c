/*
 * rapi.c - blocking Lambda runtime API client of realm-llm (see rapi.h).
 *
 * DESIGN: the runtime API is served on loopback by Realm, so the client is
 * deliberately plain: one connection kept alive across invocations, no
 * timeouts (Realm owns every deadline and kills the environment when one
 * passes). The HTTP is src/httpc/'s: it notices a kept-alive connection the
 * server closed while we were generating and reconnects. GET .../next and
 * the error posts are retried once on a fresh connection if the old one
 * fails before any answer byte (a repeated error post is at worst refused
 * as a stale request id). A streamed response is never retried: once
 * chunks went out they cannot be taken back. Of the answers' headers only
 * Lambda-Runtime-Aws-Request-Id is kept.
 *
 * Each token is one chunk written with one sendmsg (head, data, CRLF as
 * three iovecs): no copy, one syscall, and with TCP_NODELAY one segment
 * that leaves at once.
 *
 * LIFETIME: r owns its client and buffers; realm_rapi_dispose frees them.
 */
#include "llm/rapi.h"

#include <stdio.h>
#include <string.h>

#define BASE "/2018-06-01/runtime"
#define REQUEST_ID_HEADER "Lambda-Runtime-Aws-Request-Id"

/* ---- the connection --------------------------------------------------------------------- */

int realm_rapi_init(realm_rapi_t *r, const char *address)
{
    memset(r, 0, sizeof(*r));
    realm_buf_init(&r->body);
    realm_buf_init(&r->head);

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
    realm_httpc_opts_t opts = {.max_body = REALM_RAPI_MAX_BODY,
                               .max_head = (size_t)64 << 10,
                               .keep_header = REQUEST_ID_HEADER};
    r->http = realm_httpc_new(r->host, r->port, &opts);
    return 0;
}

void realm_rapi_close(realm_rapi_t *r)
{
    if (r->http) realm_httpc_close(r->http);
}

void realm_rapi_dispose(realm_rapi_t *r)
{
    realm_httpc_free(r->http);
    r->http = NULL;
    realm_buf_dispose(&r->body);
    realm_buf_dispose(&r->head);
}

static int map_err(int rc)
{
    return rc == REALM_HTTPC_EPROTO ? REALM_RAPI_EPROTO : REALM_RAPI_EIO;
}

/* Takes the answer the client read: status, body (no copy), request id. */
static void take_answer(realm_rapi_t *r)
{
    r->status = realm_httpc_status(r->http);
    realm_buf_reset(&r->body);
    realm_httpc_swap_body(r->http, &r->body);
    size_t len;
    const char *id = realm_httpc_header(r->http, &len);
    r->request_id[0] = '\0';
    if (id && len < sizeof(r->request_id)) {
        memcpy(r->request_id, id, len);
        r->request_id[len] = '\0';
    }
}

/* Sends head (+ body) and reads the answer, once more on a new connection
 * when the old one failed before answering anything. */
static int exchange(realm_rapi_t *r, const char *body, size_t body_len)
{
    for (int attempt = 0;; attempt++) {
        int rc = realm_httpc_request(r->http, r->head.data, r->head.len, body, body_len, 0);
        take_answer(r);
        if (rc == REALM_HTTPC_EIO && !realm_httpc_is_answered(r->http) && attempt == 0) continue;
        return rc == 0 ? 0 : map_err(rc);
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
    realm_httpc_head(r->http, &r->head, "GET", BASE "/invocation/next");
    realm_buf_appends(&r->head, "\r\n");
    int rc = exchange(r, NULL, 0);
    if (rc != 0) return rc;
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
    char target[REALM_RAPI_ID_MAX + 64];
    if (request_id)
        snprintf(target, sizeof(target), BASE "/invocation/%s/error", request_id);
    else
        snprintf(target, sizeof(target), BASE "/init/error");
    realm_buf_reset(&r->head);
    realm_httpc_head(r->http, &r->head, "POST", target);
    realm_buf_appendf(&r->head,
                      "Content-Type: application/json\r\n"
                      "Lambda-Runtime-Function-Error-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                      type, body.len);
    int rc = exchange(r, body.data, body.len);
    realm_buf_dispose(&body);
    if (rc != 0) return rc;
    return r->status == 202 || r->status == 200 ? 0 : REALM_RAPI_ESTATUS;
}

int realm_rapi_stream_begin(realm_rapi_t *r, const char *request_id, const char *content_type)
{
    char target[REALM_RAPI_ID_MAX + 64];
    snprintf(target, sizeof(target), BASE "/invocation/%s/response", request_id);
    realm_buf_reset(&r->head);
    realm_httpc_head(r->http, &r->head, "POST", target);
    realm_buf_appendf(&r->head,
                      "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
                      "Transfer-Encoding: chunked\r\n"
                      "Content-Type: %s\r\n"
                      "Trailer: Lambda-Runtime-Function-Error-Type, "
                      "Lambda-Runtime-Function-Error-Body\r\n\r\n",
                      content_type);
    int rc = realm_httpc_stream_begin(r->http, r->head.data, r->head.len, 0);
    return rc == 0 ? 0 : REALM_RAPI_EIO;
}

int realm_rapi_stream_chunk(realm_rapi_t *r, const char *data, size_t len)
{
    return realm_httpc_stream_chunk(r->http, data, len) == 0 ? 0 : REALM_RAPI_EIO;
}

int realm_rapi_stream_end(realm_rapi_t *r, const char *error_type, const char *message)
{
    realm_buf_reset(&r->head);
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
    int rc = realm_httpc_stream_end(r->http, r->head.data, r->head.len);
    take_answer(r);
    if (rc != 0) return map_err(rc);
    return r->status == 202 || r->status == 200 ? 0 : REALM_RAPI_ESTATUS;
}
