/*
 * handshake.h - RFC 6455 section 4.2 opening handshake checks, I/O-free.
 *
 * The caller passes the header values it received (NULL when absent); the
 * module says whether the upgrade is acceptable and computes
 * Sec-WebSocket-Accept.
 */
#ifndef REALM_WS_HANDSHAKE_H
#define REALM_WS_HANDSHAKE_H

#include <stddef.h>

typedef struct {
    const char *method;     /* must be GET */
    int http_major, http_minor; /* at least 1.1 */
    const char *upgrade;    /* must contain the token "websocket" */
    const char *connection; /* must contain the token "upgrade" */
    const char *key;        /* base64 of 16 bytes */
    const char *version;    /* must be "13" */
} realm_ws_handshake_t;

/*
 * Returns 0 when the upgrade is acceptable and writes the accept value
 * (28 characters + NUL) into accept (at least 29 bytes). Otherwise returns
 * the HTTP status to answer with: 426 when this is not a WebSocket upgrade or
 * the version is not 13 (answer with `Sec-WebSocket-Version: 13` and
 * `Upgrade: websocket`), 400 for a missing or malformed key, 405 for a
 * method other than GET; *why says what was wrong.
 */
int realm_ws_handshake_check(const realm_ws_handshake_t *h, char accept[29], const char **why);

#endif
