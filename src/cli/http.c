/*
 * http.c - blocking HTTP/1.1 client for the CLI commands (see http.h).
 *
 * DESIGN: the exchange itself is src/httpc/ (the client realm-llm uses
 * too): one connection per request (`Connection: close`), one total
 * deadline, the x-amzn-ErrorType header kept. This file adds what is the
 * CLI's own: endpoint URLs, the request head (User-Agent, Accept,
 * Content-Type, SigV4 signing) and the mapping of the client's errors onto
 * REALM_CLI_HTTP_ECONNECT / REALM_CLI_HTTP_EIO.
 *
 * LIFETIME: everything but the response is freed before returning.
 */
#include "cli/http.h"

#include "auth/sigv4.h"
#include "httpc/httpc.h"

#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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

static int request(const realm_cli_endpoint_t *ep, const char *method, const char *path,
                   const void *body, size_t body_len, int timeout_ms,
                   realm_cli_http_body_cb on_body, void *body_data, realm_cli_http_res_t *res,
                   char *err, size_t err_len)
{
    memset(res, 0, sizeof(*res));
    realm_buf_init(&res->body);
    realm_httpc_opts_t opts = {.max_body = REALM_CLI_HTTP_MAX_BODY,
                               .max_head = REALM_CLI_HTTP_MAX_HEAD,
                               .keep_header = ERROR_TYPE_HEADER,
                               .on_body = on_body,
                               .body_data = body_data};
    realm_httpc_t *c = realm_httpc_new(ep->host, ep->port, &opts);
    realm_buf_t head, target;
    realm_buf_init(&head);
    realm_buf_init(&target);
    realm_buf_appendf(&target, "%s%s", ep->base, path);
    realm_httpc_head(c, &head, method, target.data);
    realm_buf_appendf(&head,
                      "User-Agent: realm/%s\r\n"
                      "Accept: application/json\r\n",
                      REALM_VERSION);
    if (body != NULL) realm_buf_appends(&head, "Content-Type: application/json\r\n");
    sign_request(&head, ep, method, path, body, body ? body_len : 0);
    realm_buf_appendf(&head, "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      body ? body_len : 0);

    int rc = realm_httpc_request(c, head.data, head.len, body, body ? body_len : 0, timeout_ms);
    if (rc == 0) {
        res->status = realm_httpc_status(c);
        size_t len;
        const char *et = realm_httpc_header(c, &len);
        if (et) res->error_type = realm_strndup(et, len);
        realm_httpc_swap_body(c, &res->body);
    } else {
        snprintf(err, err_len, "%s", realm_httpc_strerror(c));
        rc = rc == REALM_HTTPC_ECONNECT ? REALM_CLI_HTTP_ECONNECT : REALM_CLI_HTTP_EIO;
    }
    realm_buf_dispose(&target);
    realm_buf_dispose(&head);
    realm_httpc_free(c);
    return rc;
}

int realm_cli_http_request(const realm_cli_endpoint_t *ep, const char *method, const char *path,
                           const void *body, size_t body_len, int timeout_ms,
                           realm_cli_http_res_t *res, char *err, size_t err_len)
{
    return request(ep, method, path, body, body_len, timeout_ms, NULL, NULL, res, err, err_len);
}

int realm_cli_http_stream(const realm_cli_endpoint_t *ep, const char *method, const char *path,
                          const void *body, size_t body_len, int timeout_ms,
                          realm_cli_http_body_cb on_body, void *data, realm_cli_http_res_t *res,
                          char *err, size_t err_len)
{
    return request(ep, method, path, body, body_len, timeout_ms, on_body, data, res, err, err_len);
}

void realm_cli_http_res_dispose(realm_cli_http_res_t *res)
{
    free(res->error_type);
    res->error_type = NULL;
    realm_buf_dispose(&res->body);
}
