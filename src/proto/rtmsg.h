/*
 * rtmsg.h - the runtime API's WebSocket channel messages
 * (/2018-06-01/runtime/websocket, docs/runtime-channel.md), I/O-free: what
 * an environment sends, decoded into what the engine is told, and what
 * Realm sends back. api/runtime.c adapts them to the engine; the fuzzer
 * (fuzz/fuzz_runtime.c) drives the same functions.
 *
 *   environment -> Realm   register, response, error, stream_start, chunk,
 *                          stream_end, ping, pong
 *   Realm -> environment   invocation, error_response, pong
 */
#ifndef REALM_PROTO_RTMSG_H
#define REALM_PROTO_RTMSG_H

#include "base/buf.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    REALM_RTMSG_BAD = 0,      /* not a JSON object with a string "type" */
    REALM_RTMSG_UNKNOWN,      /* a "type" the channel does not know */
    REALM_RTMSG_PING,         /* answered with pong */
    REALM_RTMSG_PONG,         /* keep-alive answer */
    REALM_RTMSG_REGISTER,     /* first message: invocations may come */
    REALM_RTMSG_RESPONSE,     /* data: the payload as compact JSON ("null" when absent) */
    REALM_RTMSG_ERROR,        /* data: {"errorMessage","errorType","stackTrace"} */
    REALM_RTMSG_STREAM_START, /* content_type may be NULL */
    REALM_RTMSG_CHUNK,        /* data: the bytes ("data", or "data_b64" decoded) */
    REALM_RTMSG_STREAM_END,   /* is_failed: data is {"errorMessage","errorType"} */
} realm_rtmsg_kind_t;

typedef struct {
    realm_rtmsg_kind_t kind;
    const char *request_id;   /* borrowed from the message; NULL when absent or not a string */
    const char *error_type;   /* ERROR, STREAM_END: "error_type" as sent (borrowed); or NULL */
    const char *content_type; /* STREAM_START: borrowed; or NULL */
    const char *bad;          /* BAD, or a CHUNK that cannot be read: why (static text) */
    const char *data;         /* see the kinds; borrowed from this struct; NULL when none */
    size_t data_len;          /* bytes at data (binary-safe for CHUNK) */
    int is_failed;            /* STREAM_END: the stream ended with an error */
    json_t *root;             /* owned: the parsed message, or NULL */
    realm_buf_t buf;          /* owned: what data points into when it was made here */
} realm_rtmsg_t;

/*
 * Decodes one message from an environment (is_text: a text frame; a binary
 * frame is always BAD). Returns out->kind; every kind but BAD and UNKNOWN
 * is well formed, except a CHUNK with bad set (neither "data" nor a
 * base64 "data_b64"). The request id is not checked here: the engine says
 * whether it names the current invocation. Dispose out whatever the kind.
 */
realm_rtmsg_kind_t realm_rtmsg_parse(const char *data, size_t len, int is_text, realm_rtmsg_t *out);
/* Frees what out owns; safe on a zeroed or already disposed message. */
void realm_rtmsg_dispose(realm_rtmsg_t *m);

/* An invocation as it goes to the environment (strings borrowed). */
typedef struct {
    const char *request_id;
    const char *payload; /* the event: JSON, else sent as a JSON string */
    size_t payload_len;
    int64_t deadline_ms; /* Unix epoch ms */
    const char *invoked_arn;
    const char *trace_id;
    const char *client_context; /* JSON text, or NULL */
} realm_rtmsg_invocation_t;

/*
 * Serializers: each returns new compact JSON text (free() it) and its length
 * in *len; never NULL. Strings that are not UTF-8 are sent repaired (U+FFFD).
 */
char *realm_rtmsg_invocation(const realm_rtmsg_invocation_t *inv, size_t *len);
/* {"type":"error_response","message":..,"code":..} (code: BAD_MESSAGE, INVALID_STATE...) */
char *realm_rtmsg_error_response(const char *code, const char *message, size_t *len);
/* {"type":"pong"} */
char *realm_rtmsg_pong(size_t *len);

#endif
