/*
 * parser.h - an I/O-free HTTP/1.1 request parser over llhttp.
 *
 * DESIGN: a pull parser in the picohttpparser spirit. realm_http_parser_feed()
 * consumes bytes and stops at two points of every request: when the header
 * block is complete (the caller looks at the request, picks the body limit,
 * answers `Expect: 100-continue`) and when the whole message is complete (the
 * caller handles it; bytes after it, pipelined requests or another protocol
 * after an upgrade, are left unconsumed). "Need more input" is not an error.
 * Limits are enforced while parsing: header block size and header count
 * (431), body size (413); anything llhttp rejects is 400 (request smuggling
 * shapes such as Content-Length together with Transfer-Encoding included).
 *
 * LIFETIME: the request and every string in it belong to the parser and stay
 * valid until the next realm_http_parser_feed() after MSG_DONE, or dispose.
 */
#ifndef REALM_HTTP_PARSER_H
#define REALM_HTTP_PARSER_H

#include "base/buf.h"

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>

#define REALM_HTTP_MAX_HEADERS 100
#define REALM_HTTP_MAX_PARAMS 4
#define REALM_HTTP_MAX_TRAILERS 16

typedef struct {
    const char *name;  /* NUL-terminated; as sent (case preserved) */
    const char *value; /* NUL-terminated; surrounding whitespace trimmed */
} realm_http_header_t;

typedef struct {
    int method;                 /* llhttp_method_t */
    const char *method_name;    /* "GET" */
    const char *target;         /* request-target as sent ("/a/b?x=1") */
    const char *path;           /* target up to '?', not decoded */
    const char *query;          /* after '?', "" when none */
    int http_major, http_minor; /* 1.1 */
    realm_http_header_t headers[REALM_HTTP_MAX_HEADERS];
    size_t headers_cnt;
    int64_t content_length;     /* -1 when absent */
    unsigned is_chunked : 1;    /* Transfer-Encoding: chunked */
    unsigned is_keep_alive : 1; /* per version and Connection */
    unsigned is_upgrade : 1;    /* Connection: upgrade + Upgrade present */
    unsigned has_expect_continue : 1;
    unsigned has_other_expect : 1; /* Expect with a value we cannot meet (417) */
    realm_buf_t body;              /* decoded body (unless discarded) */
    /* Trailer fields of a chunked body, readable once the message is complete. */
    realm_http_header_t trailers[REALM_HTTP_MAX_TRAILERS];
    size_t trailers_cnt;
    uint64_t body_len; /* body bytes seen (also when discarded) */
    /* Who sent it, as the surface's guard established (a tenant); "" when none. */
    char principal[80];
    /* The mount the path came under (realm_http_server_mount's tag), 0 when
     * none, and the path the routes saw: past the mount's prefix (path
     * itself when none). Set by the router. */
    int mount;
    const char *route_path;
    /* Route captures, filled by the router ({name} segments). */
    const char *param_names[REALM_HTTP_MAX_PARAMS];
    char *param_values[REALM_HTTP_MAX_PARAMS]; /* owned; percent-decoded */
    size_t params_cnt;
} realm_http_req_t;

typedef enum {
    REALM_HTTP_NEED_MORE = 0, /* every byte consumed; feed more */
    REALM_HTTP_HEAD_DONE = 1, /* header block complete; req is readable */
    REALM_HTTP_MSG_DONE = 2,  /* message complete */
    REALM_HTTP_FAILED = -1,   /* see realm_http_parser_status/_reason */
} realm_http_parse_rc;

typedef struct {
    llhttp_t llhttp;
    llhttp_settings_t settings;
    realm_http_req_t req;
    realm_buf_t head;  /* header bytes: target, names, values, each NUL-terminated */
    realm_buf_t trail; /* trailer names and values, the same way */
    size_t trail_offs[2 * REALM_HTTP_MAX_TRAILERS];
    size_t offs[2 + 2 * REALM_HTTP_MAX_HEADERS]; /* offsets into head */
    size_t max_header_bytes;
    uint64_t body_limit;
    int in_message;     /* a message has begun and not completed */
    int in_body;        /* headers done, message not complete */
    int is_discarding;  /* count body bytes, keep none */
    int in_field;       /* inside a header name */
    int status;         /* HTTP status for FAILED */
    const char *reason; /* static text for FAILED */
    int is_failed;
} realm_http_parser_t;

void realm_http_parser_init(realm_http_parser_t *p, size_t max_header_bytes);
void realm_http_parser_dispose(realm_http_parser_t *p);

/*
 * Parses up to len bytes; *consumed says how many were used. Returns one of
 * realm_http_parse_rc. After FAILED the parser is dead (answer and close).
 */
int realm_http_parser_feed(realm_http_parser_t *p, const char *data, size_t len, size_t *consumed);

/* After HEAD_DONE: body over limit fails with 413; is_discarding keeps none. */
void realm_http_parser_set_body_limit(realm_http_parser_t *p, uint64_t limit, int is_discarding);

int realm_http_parser_status(const realm_http_parser_t *p);
const char *realm_http_parser_reason(const realm_http_parser_t *p);
/* A message has started (bytes seen) and not finished. */
int realm_http_parser_in_message(const realm_http_parser_t *p);
int realm_http_parser_in_body(const realm_http_parser_t *p);

/* Case-insensitive header lookup; the first match, or NULL. */
const char *realm_http_req_header(const realm_http_req_t *req, const char *name);
/* Route capture by name, or NULL. */
/* A trailer field's value (chunked requests, after the body), or NULL. */
const char *realm_http_req_trailer(const realm_http_req_t *req, const char *name);
const char *realm_http_req_param(const realm_http_req_t *req, const char *name);

#endif
