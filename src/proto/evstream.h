/*
 * evstream.h - an encoder for AWS's event-stream binary framing
 * (Content-Type: application/vnd.amazon.eventstream), as Lambda's
 * InvokeWithResponseStream answers. I/O-free: messages are appended to a
 * buffer the caller writes out.
 *
 * One message, every integer big-endian:
 *
 *   [total_len u32][headers_len u32][prelude_crc u32]
 *   [headers: headers_len bytes][payload][message_crc u32]
 *
 * total_len counts the whole message (12-byte prelude, headers, payload and
 * the 4-byte trailing CRC); prelude_crc is the CRC-32 (zlib's, ISO-HDLC) of
 * the first 8 bytes and message_crc that of everything before it. Each
 * header is [name_len u8][name][type u8][value], and Realm only writes
 * strings (type 7), whose value is [value_len u16][value bytes].
 *
 * Lambda's stream is a series of PayloadChunk events carrying the response
 * bytes, then one InvokeComplete event (with the error, if the function
 * failed, and the log tail when asked for).
 */
#ifndef REALM_PROTO_EVSTREAM_H
#define REALM_PROTO_EVSTREAM_H

#include "base/buf.h"

#include <stddef.h>

/* Framing overhead around headers and payload: prelude (12) + message CRC (4). */
#define REALM_EVSTREAM_OVERHEAD 16
/* The largest payload of one message that AWS's decoders accept (botocore's
 * and the SDKs' limit is 16 MiB); realm_evstream_chunk splits above it. */
#define REALM_EVSTREAM_MAX_PAYLOAD (16u * 1024 * 1024)

/*
 * Appends one message with n string headers (names[i]: values[i]; both
 * borrowed for the call, NUL-terminated) and len bytes of payload (may be
 * NULL when len is 0). A name longer than 255 bytes, a value longer than
 * 65535 bytes or a payload above REALM_EVSTREAM_MAX_PAYLOAD is a programming
 * error and aborts: callers pass fixed headers and bounded chunks.
 */
void realm_evstream_message(realm_buf_t *out, const char *const *names, const char *const *values,
                            size_t n, const void *payload, size_t len);

/*
 * Appends a PayloadChunk event with headers
 *   :event-type PayloadChunk, :content-type application/octet-stream,
 *   :message-type event
 * and data as its payload. Data longer than REALM_EVSTREAM_MAX_PAYLOAD is
 * split over several PayloadChunk events; len 0 appends one empty chunk.
 */
void realm_evstream_chunk(realm_buf_t *out, const void *data, size_t len);

/*
 * Appends the InvokeComplete event with headers
 *   :event-type InvokeComplete, :content-type application/json,
 *   :message-type event
 * and the payload {"ErrorCode":..,"ErrorDetails":..,"LogResult":..}, each
 * field omitted when its argument is NULL (all NULL: "{}"). All arguments are
 * borrowed text; bytes that are not valid UTF-8 are replaced by U+FFFD.
 * log_result_b64 is the base64 log tail (LogType Tail).
 */
void realm_evstream_complete(realm_buf_t *out, const char *error_code, const char *error_details,
                             const char *log_result_b64);

#endif
