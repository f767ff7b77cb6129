/*
 * upgrade.h - the WebSocket handshake on an HTTP request, shared by the
 * client surface and the runtime API's channel.
 */
#ifndef REALM_API_UPGRADE_H
#define REALM_API_UPGRADE_H

#include "http/server.h"

/*
 * Checks req as an RFC 6455 handshake and switches protocols. refuse_status
 * (0: none) answers a valid handshake with that status and refuse_why
 * instead (e.g. 503 while shutting down). Returns the connection, with the
 * bytes that followed the request in rest/rest_len (borrowed for the
 * handler call); or NULL after answering an error in the surface's shape.
 */
realm_conn_t *realm_api_ws_upgrade(realm_http_req_t *req, realm_http_res_t *res, int refuse_status,
                                   const char *refuse_why, const char **rest, size_t *rest_len);

#endif
