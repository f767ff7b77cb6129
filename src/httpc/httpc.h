/*
 * httpc.h - a small blocking HTTP/1.1 client: the one the `realm` CLI and
 * the model worker (realm-llm) share.
 *
 * DESIGN: a client talks to one host:port over one connection at a time.
 * The caller writes the request head itself (realm_httpc_head() starts it
 * with the request line and Host) and hands it over with the body;
 * realm_httpc_request() sends both with one sendmsg where it can, then reads
 * the answer through llhttp (HTTP_RESPONSE mode) until the first final
 * (non-1xx) answer is complete. The connection is kept when the answer
 * allows it (the next request reuses it, after checking that the server did
 * not close it meanwhile) and closed otherwise.
 *
 * A streamed (chunked) request: realm_httpc_stream_begin() sends a head that
 * says Transfer-Encoding: chunked, realm_httpc_stream_chunk() sends one
 * chunk per call with one sendmsg of three iovecs (size line, the caller's
 * bytes, CRLF: no copy, one syscall), realm_httpc_stream_end() sends the
 * last chunk with optional trailers, then reads the answer.
 *
 * The socket is non-blocking and every wait is a poll() bounded by the
 * caller's total deadline (timeout_ms; <= 0 waits for ever), so a server
 * that accepts and then says nothing cannot hang a command with a timeout.
 * While a request (not a stream) is written the client also watches for
 * input: a server that refuses a body early (413) and closes gets its answer
 * read instead of an EPIPE.
 *
 * Of the answer the client keeps the status, the body (capped at
 * opts.max_body) and the value of one header the caller names
 * (opts.keep_header); the header block is capped at opts.max_head. Going
 * over a cap is an error (REALM_HTTPC_EPROTO), never a truncation.
 *
 * LIFETIME: realm_httpc_new/realm_httpc_free; the answer's body and header
 * belong to the client until the next request (or realm_httpc_swap_body).
 * THREADS: none of its own; everything blocks the calling thread, and one
 * thread uses a client at a time. SIGPIPE is avoided with MSG_NOSIGNAL.
 * Depends on base/ and llhttp only, so that realm-llm can compile it in.
 */
#ifndef REALM_HTTPC_H
#define REALM_HTTPC_H

#include "base/buf.h"

#include <stddef.h>

/* Return codes (besides 0). After any of them the connection is closed. */
#define REALM_HTTPC_ECONNECT (-1) /* could not resolve or connect: nothing was sent */
#define REALM_HTTPC_EIO (-2)      /* send or receive failed, timed out, or EOF before any answer */
#define REALM_HTTPC_EPROTO                                                                         \
    (-3) /* the answer was not HTTP we understand, cut short, or too large                         \
          */

typedef struct realm_httpc_s realm_httpc_t;

typedef struct {
    size_t max_body;         /* bytes of answer body accepted */
    size_t max_head;         /* bytes of answer header block accepted (names, values, status) */
    const char *keep_header; /* borrowed for the client's life: the header whose value to keep;
                              * NULL for none. Compared case-insensitively. */
    /*
     * Optional: the body of a 2xx answer goes to on_body piece by piece as
     * it arrives (bytes borrowed for the call) instead of to the body
     * buffer, and max_body does not apply; other answers are kept as
     * usual. A non-zero return stops reading (REALM_HTTPC_EPROTO, with the
     * message "stopped by the caller").
     */
    int (*on_body)(const char *bytes, size_t len, void *data);
    void *body_data;
} realm_httpc_opts_t;

/* host: a name or address without IPv6 brackets; port: decimal. Both copied. */
realm_httpc_t *realm_httpc_new(const char *host, const char *port, const realm_httpc_opts_t *opts);
void realm_httpc_free(realm_httpc_t *c); /* closes the connection; NULL is fine */

/* Closes the connection; the next request opens a new one. */
void realm_httpc_close(realm_httpc_t *c);

/* Appends "METHOD TARGET HTTP/1.1\r\nHost: HOST:PORT\r\n" (IPv6 bracketed) to head. */
void realm_httpc_head(const realm_httpc_t *c, realm_buf_t *head, const char *method,
                      const char *target);

/*
 * Sends head (head_len bytes: the complete header block, ending with the
 * empty line) and body (body_len bytes, may be NULL/0), then reads the
 * answer. timeout_ms bounds the whole exchange, connecting included.
 * Returns 0 when a complete answer (of any status) was read, or a
 * REALM_HTTPC_E* code with a message in realm_httpc_strerror().
 */
int realm_httpc_request(realm_httpc_t *c, const char *head, size_t head_len, const void *body,
                        size_t body_len, int timeout_ms);

/*
 * Streaming: sends head (which says Transfer-Encoding: chunked) and starts
 * the deadline for the whole stream. Returns 0 or a REALM_HTTPC_E* code.
 */
int realm_httpc_stream_begin(realm_httpc_t *c, const char *head, size_t head_len, int timeout_ms);

/* Sends data[0..len) as one chunk (len == 0 sends nothing). Returns 0 or REALM_HTTPC_EIO. */
int realm_httpc_stream_chunk(realm_httpc_t *c, const void *data, size_t len);

/*
 * Sends the last chunk with trailers (trailers_len bytes of header lines,
 * each ending with CRLF; NULL/0 for none), then reads the answer as
 * realm_httpc_request() does. Returns 0 or a REALM_HTTPC_E* code.
 */
int realm_httpc_stream_end(realm_httpc_t *c, const char *trailers, size_t trailers_len);

/* ---- the last answer (valid after 0, and partly after an error) ---- */

int realm_httpc_status(const realm_httpc_t *c); /* 0 when none was read */
/* The kept header's value (NUL-terminated) or NULL when the answer had none. */
const char *realm_httpc_header(const realm_httpc_t *c, size_t *len_out);
/* The answer's body: data (NUL-terminated once any byte arrived, else NULL) and len. */
const realm_buf_t *realm_httpc_body(const realm_httpc_t *c);
/* Exchanges the answer's body buffer with *b (no copy): the caller takes the body. */
void realm_httpc_swap_body(realm_httpc_t *c, realm_buf_t *b);
/* Whether any byte of an answer arrived (a failure before that may be retried). */
int realm_httpc_is_answered(const realm_httpc_t *c);
/* What the last error was, for people ("Connection refused", "timed out after 60 s ..."). */
const char *realm_httpc_strerror(const realm_httpc_t *c);

#endif
