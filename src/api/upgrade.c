/*
 * upgrade.c - the WebSocket handshake on an HTTP request (see upgrade.h).
 */
#include "api/upgrade.h"

#include "ws/handshake.h"

#include <stdio.h>

realm_conn_t *realm_api_ws_upgrade(realm_http_req_t *req, realm_http_res_t *res, int refuse_status,
                                   const char *refuse_why, const char **rest, size_t *rest_len)
{
    realm_ws_handshake_t h = {
        .method = req->method_name,
        .http_major = req->http_major,
        .http_minor = req->http_minor,
        .upgrade = realm_http_req_header(req, "Upgrade"),
        .connection = realm_http_req_header(req, "Connection"),
        .key = realm_http_req_header(req, "Sec-WebSocket-Key"),
        .version = realm_http_req_header(req, "Sec-WebSocket-Version"),
    };
    char accept[29];
    const char *why;
    int status = realm_ws_handshake_check(&h, accept, &why);
    if (status == 0 && refuse_status) {
        status = refuse_status;
        why = refuse_why;
    }
    if (status != 0) {
        if (status == 426) {
            realm_http_res_header(res, "Sec-WebSocket-Version", "13");
            realm_http_res_header(res, "Upgrade", "websocket");
        }
        realm_http_res_error(res, status, why);
        return NULL;
    }
    char extra[128];
    snprintf(extra, sizeof(extra),
             "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n", accept);
    return realm_http_res_upgrade(res, extra, rest, rest_len);
}
