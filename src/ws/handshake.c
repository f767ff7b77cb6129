/*
 * handshake.c - opening handshake validation (RFC 6455 4.2.1, 4.2.2).
 */
#include "ws/handshake.h"

#include "base/str.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static int key_is_valid(const char *key)
{
    /* 16 random bytes, base64: 22 characters and "==". */
    if (strlen(key) != 24 || key[22] != '=' || key[23] != '=') return 0;
    unsigned char out[24];
    int n = EVP_DecodeBlock(out, (const unsigned char *)key, 24);
    return n == 18; /* EVP_DecodeBlock counts the padding as zero bytes */
}

int realm_ws_handshake_check(const realm_ws_handshake_t *h, char accept[29], const char **why)
{
    if (!h->upgrade || !realm_str_has_token(h->upgrade, "websocket") || !h->connection ||
        !realm_str_has_token(h->connection, "upgrade")) {
        *why = "this endpoint speaks WebSocket: send an Upgrade: websocket request";
        return 426;
    }
    if (strcmp(h->method, "GET") != 0) {
        *why = "a WebSocket upgrade must use GET";
        return 405;
    }
    if (h->http_major < 1 || (h->http_major == 1 && h->http_minor < 1)) {
        *why = "a WebSocket upgrade needs HTTP/1.1";
        return 400;
    }
    if (!h->version || strcmp(h->version, "13") != 0) {
        *why = "unsupported Sec-WebSocket-Version (only 13 is supported)";
        return 426;
    }
    if (!h->key || !key_is_valid(h->key)) {
        *why = "missing or malformed Sec-WebSocket-Key";
        return 400;
    }
    unsigned char digest[SHA_DIGEST_LENGTH];
    char src[64];
    size_t kl = strlen(h->key);
    memcpy(src, h->key, kl);
    memcpy(src + kl, WS_GUID, sizeof(WS_GUID) - 1);
    SHA1((const unsigned char *)src, kl + sizeof(WS_GUID) - 1, digest);
    EVP_EncodeBlock((unsigned char *)accept, digest, SHA_DIGEST_LENGTH);
    *why = NULL;
    return 0;
}
