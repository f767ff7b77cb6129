/*
 * evdecode.h - an incremental decoder of AWS's event-stream framing
 * (application/vnd.amazon.eventstream), for `realm invoke`, which reads
 * InvokeWithResponseStream's answer as it arrives and prints each
 * PayloadChunk at once.
 *
 * DESIGN: bytes are fed in whatever pieces the socket gives; a message is
 * handed to the callback once all of it is there (the decoder keeps at
 * most one incomplete message). Each message is checked as the SDKs check
 * it: its lengths, the prelude CRC and the message CRC (zlib's CRC-32).
 * Of the headers, :event-type and :message-type are kept (string values);
 * other headers of any type are skipped.
 *
 * LIFETIME: realm_cli_evdecode_init .. realm_cli_evdecode_dispose.
 * THREADS: none; one thread uses a decoder at a time.
 */
#ifndef REALM_CLI_EVDECODE_H
#define REALM_CLI_EVDECODE_H

#include "base/buf.h"

#include <stddef.h>

/* The largest message accepted (AWS's decoders take 16 MiB of payload). */
#define REALM_CLI_EVDECODE_MAX_MESSAGE ((size_t)16 * 1024 * 1024 + 65536)

typedef struct {
    realm_buf_t pending; /* the start of a message not complete yet */
} realm_cli_evdecode_t;

/*
 * One message: its :event-type ("PayloadChunk", "InvokeComplete"...) and
 * :message-type ("event", "exception", "error"), "" when absent, and its
 * payload; all borrowed for the call. Returns 0 to go on, non-zero to stop
 * (realm_cli_evdecode_feed then returns that value).
 */
typedef int (*realm_cli_evdecode_cb)(const char *event_type, const char *message_type,
                                     const void *payload, size_t len, void *data);

void realm_cli_evdecode_init(realm_cli_evdecode_t *d);
void realm_cli_evdecode_dispose(realm_cli_evdecode_t *d);

/*
 * Feeds len bytes and calls cb for each message they complete, in order.
 * Returns 0; the callback's non-zero value when it stopped; or -1 with a
 * message in err when the stream is malformed (then nothing more can be
 * decoded).
 */
int realm_cli_evdecode_feed(realm_cli_evdecode_t *d, const void *bytes, size_t len,
                            realm_cli_evdecode_cb cb, void *data, char *err, size_t err_len);

/* Whether bytes of an incomplete message are waiting (a stream cut short). */
int realm_cli_evdecode_has_partial(const realm_cli_evdecode_t *d);

#endif
