/*
 * http.h - a small blocking HTTP/1.1 client for the `realm` CLI commands.
 *
 * DESIGN: one request per connection, over the shared blocking client
 * (httpc/httpc.h): it resolves the endpoint's host (getaddrinfo), connects
 * to each address in turn, writes the whole request (with Content-Length
 * and `Connection: close`), then reads the response until it is complete
 * or the peer closes, all under one total deadline (poll). Only plain
 * http:// is supported; an https:// endpoint is refused by
 * realm_cli_endpoint_parse with a message saying so.
 *
 * The response keeps what the control API's callers need: the status, the
 * x-amzn-ErrorType header and the body. The body is capped at
 * REALM_CLI_HTTP_MAX_BODY and the header block at REALM_CLI_HTTP_MAX_HEAD;
 * a larger response is an error, not a truncation.
 *
 * THREADS: none; everything blocks the calling thread. SIGPIPE is avoided
 * with MSG_NOSIGNAL, so callers need not ignore it.
 */
#ifndef REALM_CLI_HTTP_H
#define REALM_CLI_HTTP_H

#include "base/buf.h"

#include <stddef.h>

#define REALM_CLI_HTTP_MAX_BODY ((size_t)64 << 20) /* bytes of response body */
#define REALM_CLI_HTTP_MAX_HEAD ((size_t)64 << 10) /* bytes of response header block */

/* Return codes of realm_cli_http_request (besides 0). */
#define REALM_CLI_HTTP_ECONNECT (-1) /* could not resolve or connect: nothing was sent */
#define REALM_CLI_HTTP_EIO (-2)      /* failed after connecting: timeout, reset, bad response */

typedef struct {
    char url[512];  /* the endpoint as given, without a trailing '/' (for messages) */
    char host[256]; /* host name or address, without IPv6 brackets */
    char port[6];   /* decimal, "80" when the URL names none */
    char base[256]; /* path prefix without a trailing '/' ("" for none) */
} realm_cli_endpoint_t;

typedef struct {
    int status;       /* HTTP status code */
    char *error_type; /* owned; x-amzn-ErrorType value, NULL when absent */
    realm_buf_t body; /* owned; the response body (NUL-terminated) */
} realm_cli_http_res_t;

/*
 * Parses "http://HOST[:PORT][/PATH]" (HOST may be a bracketed IPv6 address)
 * into ep. Returns 0, or -1 with a message in err (https://, another
 * scheme, user info, a query, a bad port...).
 */
int realm_cli_endpoint_parse(const char *url, realm_cli_endpoint_t *ep, char *err, size_t err_len);

/*
 * Sends METHOD ep->base + path (path starts with '/' and is already
 * URL-encoded) with body (body_len bytes, may be NULL/0; sent as
 * application/json when body is not NULL) and fills res with the answer.
 * timeout_ms bounds the whole exchange, from resolving to the last byte.
 * res is initialised by this call and must be disposed of by the caller
 * whatever it returns. Returns 0 when a complete response was read (of any
 * status), REALM_CLI_HTTP_ECONNECT or REALM_CLI_HTTP_EIO with a message in
 * err ("Connection refused", "timed out after 60 s waiting for the
 * response").
 */
int realm_cli_http_request(const realm_cli_endpoint_t *ep, const char *method, const char *path,
                           const void *body, size_t body_len, int timeout_ms,
                           realm_cli_http_res_t *res, char *err, size_t err_len);

/*
 * The same, but the body of a 2xx answer goes to on_body as it arrives
 * (res->body stays empty; REALM_CLI_HTTP_MAX_BODY does not apply); other
 * answers are read whole into res as above. on_body returns 0 to go on;
 * non-zero stops reading (REALM_CLI_HTTP_EIO).
 */
typedef int (*realm_cli_http_body_cb)(const char *bytes, size_t len, void *data);
int realm_cli_http_stream(const realm_cli_endpoint_t *ep, const char *method, const char *path,
                          const void *body, size_t body_len, int timeout_ms,
                          realm_cli_http_body_cb on_body, void *data, realm_cli_http_res_t *res,
                          char *err, size_t err_len);

/* Frees what res owns; safe on a zeroed or already disposed response. */
void realm_cli_http_res_dispose(realm_cli_http_res_t *res);

/*
 * Appends s to out percent-encoded for use as one path segment or query
 * value: every byte but ALPHA / DIGIT / "-" / "." / "_" / "~" becomes %XX
 * (RFC 3986 section 2.3).
 */
void realm_cli_url_encode(realm_buf_t *out, const char *s);

#endif
