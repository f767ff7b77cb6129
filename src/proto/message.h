/*
 * message.h - the Realm call protocol's messages on the client WebSocket,
 * I/O-free (docs/protocol.md is the user-facing description).
 *
 *   call      {"id":"req_1","function":"health","params":{},"tenant_id":null}
 *   replies   {"id":..,"status":"complete","data":..}
 *             {"id":..,"status":"streaming","data":..}
 *             {"id":..,"status":"error","error":{"code":..,"message":..}}
 *             {"id":..,"status":"cancelled"}
 *   welcome   {"status":"connected","version":"0.1.0","tenant_id":null}
 */
#ifndef REALM_PROTO_MESSAGE_H
#define REALM_PROTO_MESSAGE_H

#include <jansson.h>
#include <stddef.h>

#define REALM_MSG_MAX_ID_LEN 256

typedef struct {
    json_t *root;          /* owned: the parsed message */
    const char *id;        /* borrowed from root; NULL if it could not be read */
    const char *function;  /* borrowed from root */
    json_t *params;        /* borrowed from root: always an object */
    const char *tenant_id; /* borrowed from root; NULL when absent or null */
} realm_msg_call_t;

/*
 * Parses one call message. Returns 0, or REALM_ERR_INVALID_REQUEST with a
 * message saying what was wrong in err (e.g. "'function' must be a string").
 * On failure out->id is still set when the id could be read, so the error
 * reply can carry it. Dispose out either way.
 */
int realm_msg_parse_call(const char *data, size_t len, realm_msg_call_t *out, char *err,
                         size_t err_len);
void realm_msg_call_dispose(realm_msg_call_t *c);

/*
 * Serializers. Each returns new compact JSON text (free() it) and its length
 * in *len. id NULL is written as null. data is borrowed.
 */
char *realm_msg_reply(const char *id, const char *status, json_t *data, size_t *len);
/* error: details (may be NULL) are merged into the error object (borrowed). */
char *realm_msg_error(const char *id, const char *code, const char *message, json_t *details,
                      size_t *len);
char *realm_msg_cancelled(const char *id, size_t *len);
char *realm_msg_welcome(const char *version, const char *tenant_id, size_t *len);

#endif
