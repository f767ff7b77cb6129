/*
 * sigv4.h - an AWS Signature Version 4 verifier for the control API (the
 * Lambda REST API that the AWS CLI, boto3/botocore and the AWS SDKs sign).
 * I/O-free and allocation-bounded by its inputs: the caller hands over a
 * parsed request and the secret of the access key the Authorization header
 * names; nothing here knows HTTP servers or where keys live.
 *
 * Usage:
 *
 *   realm_sigv4_auth_t a;
 *   char msg[512];
 *   int rc = realm_sigv4_parse(realm_sigv4_header_get(&req, "authorization"),
 *                              &a, msg, sizeof(msg));
 *   if (rc == 0) { look up a.access_key_id's secret, check a.service is
 *                  "lambda" (and a.region if you care), then }
 *       rc = realm_sigv4_verify(&req, &a, secret, now_ms, msg, sizeof(msg));
 *   rc < 0: answer the exception named at the code, with msg as its message.
 *
 * The canonical request is built exactly as botocore's SigV4Auth builds it
 * for non-S3 services (botocore/auth.py), since that is what the AWS CLI and
 * boto3 send:
 *
 *   METHOD\n
 *   canonical URI: the path as sent (still percent-encoded), dot segments
 *     and empty segments removed (botocore's remove_dot_segments), then
 *     percent-encoded again keeping only A-Z a-z 0-9 - _ . ~ and '/'
 *     ("%3A" becomes "%253A")\n
 *   canonical query: the query split on '&', each part at its first '='
 *     into name and value (no '=': empty value), both percent-decoded and
 *     re-encoded keeping only the unreserved characters, sorted by name
 *     then value, joined "name=value" with '&'\n
 *   one "name:value\n" per SignedHeaders entry, in that list's order: the
 *     values of every header of that name (any case), each trimmed with
 *     inner runs of whitespace collapsed to one space, joined with ','\n
 *   \n
 *   SignedHeaders as given\n
 *   hashed payload: the x-amz-content-sha256 value when that header is
 *     present, else the lowercase hex SHA-256 of the body
 *
 * and the string to sign is
 *   "AWS4-HMAC-SHA256\n" TIMESTAMP "\n" DATE/REGION/SERVICE/aws4_request "\n"
 *   hex(SHA-256(canonical request))
 * where TIMESTAMP is X-Amz-Date (or Date, rewritten as YYYYMMDDTHHMMSSZ).
 *
 * Messages are AWS's own wording where AWS's is known, so AWS clients show
 * what they would show against AWS.
 */
#ifndef REALM_AUTH_SIGV4_H
#define REALM_AUTH_SIGV4_H

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;  /* borrowed; any case */
    const char *value; /* borrowed; as received (surrounding spaces allowed) */
} realm_sigv4_header_t;

/* One received request. Every pointer is borrowed for the duration of the call. */
typedef struct {
    const char *method; /* "POST" */
    const char *path;   /* request-target's path exactly as sent (percent-encoded) */
    const char *query;  /* after '?', raw; "" when none (NULL is taken as "") */
    const realm_sigv4_header_t *headers; /* as received, in order; repeats allowed */
    size_t headers_cnt;
    const void *body; /* may be NULL when body_len is 0 */
    size_t body_len;
} realm_sigv4_req_t;

/* What an Authorization header says; filled by realm_sigv4_parse. */
typedef struct {
    char access_key_id[129];   /* Credential's first part */
    char date[9];              /* YYYYMMDD of the credential scope */
    char region[64];           /* "us-east-1" */
    char service[64];          /* "lambda" */
    char signed_headers[1024]; /* "host;x-amz-date", as given */
    char signature[65];        /* hex, as given (at most 64 characters) */
} realm_sigv4_auth_t;

enum {
    REALM_SIGV4_OK = 0,
    REALM_SIGV4_MISSING = -1,   /* no Authorization: MissingAuthenticationTokenException (403) */
    REALM_SIGV4_MALFORMED = -2, /* IncompleteSignatureException (400) */
    REALM_SIGV4_MISMATCH = -3,  /* InvalidSignatureException (403) */
    REALM_SIGV4_EXPIRED = -4,   /* InvalidSignatureException (403), "Signature expired: ..." */
};

/* Requests signed more than this far from now (either way) are refused. */
#define REALM_SIGV4_MAX_SKEW_MS (5 * 60 * 1000)

/*
 * The value of the first header named name (compared ignoring case), or NULL.
 * Borrowed from req.
 */
const char *realm_sigv4_header_get(const realm_sigv4_req_t *req, const char *name);

/*
 * Parses an Authorization value as botocore writes it:
 *   AWS4-HMAC-SHA256 Credential=AKID/YYYYMMDD/REGION/SERVICE/aws4_request,
 *   SignedHeaders=host;x-amz-date, Signature=<64 hex>
 * Parameters may come in any order, separated by commas and/or whitespace
 * (as AWS splits them); unknown parameters are ignored.
 *
 * authorization: borrowed for the call; NULL (or blank) when the request had none.
 * out: filled on success (and zeroed on failure).
 * msg: msg_len bytes (may be 0) receiving the error message ("" on success),
 *   always NUL-terminated when msg_len > 0, truncated to fit.
 *
 * Returns REALM_SIGV4_OK, REALM_SIGV4_MISSING (no header; msg "Missing
 * Authentication Token") or REALM_SIGV4_MALFORMED (another algorithm than
 * AWS4-HMAC-SHA256, a parameter that is missing, empty, repeated or too
 * long, a token without '=', a Credential that is not five '/'-separated
 * parts ending in aws4_request with an 8-digit date, or an empty
 * SignedHeaders entry).
 */
int realm_sigv4_parse(const char *authorization, realm_sigv4_auth_t *out, char *msg,
                      size_t msg_len);

/*
 * Verifies req against a (from realm_sigv4_parse) and secret (the secret
 * access key of a->access_key_id; borrowed for the call). now_ms is the
 * current time in milliseconds since the Unix epoch. In order:
 *
 *  - host must be among the signed headers: REALM_SIGV4_MALFORMED;
 *  - X-Amz-Date (YYYYMMDDTHHMMSSZ), or when absent Date (RFC 7231/2822
 *    form), must be present and well-formed: REALM_SIGV4_MALFORMED;
 *  - the credential scope's date must equal that date's YYYYMMDD:
 *    REALM_SIGV4_MISMATCH;
 *  - that time must be within REALM_SIGV4_MAX_SKEW_MS of now_ms:
 *    REALM_SIGV4_EXPIRED ("Signature expired: ..." or "Signature not yet
 *    current: ...");
 *  - x-amz-content-sha256, when present, must be the body's SHA-256
 *    (UNSIGNED-PAYLOAD and the streaming forms are refused: only S3 takes
 *    them): REALM_SIGV4_MISMATCH; when absent, the body's SHA-256 is what
 *    the canonical request holds;
 *  - the signature must equal the one computed (compared in constant
 *    time): REALM_SIGV4_MISMATCH.
 *
 * Returns REALM_SIGV4_OK or one of the codes above, with msg as for
 * realm_sigv4_parse. The service and region of the scope are not checked
 * here: they are the caller's to compare with its own.
 */
int realm_sigv4_verify(const realm_sigv4_req_t *req, const realm_sigv4_auth_t *a,
                       const char *secret, int64_t now_ms, char *msg, size_t msg_len);

/*
 * Appends the canonical request of req for the given SignedHeaders list
 * (borrowed; "host;x-amz-date") to out, as described at the top of this
 * file, for logging a mismatch and for tests. Checks nothing.
 */
void realm_sigv4_canonical_request(const realm_sigv4_req_t *req, const char *signed_headers,
                                   realm_buf_t *out);

/*
 * Signs req as AWS SigV4 with the headers `host` and `x-amz-date` (req must
 * carry both, the latter equal to amz_date, "YYYYMMDDTHHMMSSZ"): writes the
 * Authorization header's value. For Realm's own clients (the CLI). Returns
 * REALM_SIGV4_OK, or REALM_SIGV4_MALFORMED if an argument does not fit.
 */
int realm_sigv4_sign(const realm_sigv4_req_t *req, const char *access_key_id, const char *secret,
                     const char *region, const char *service, const char *amz_date,
                     char *authorization, size_t auth_len);
/* "YYYYMMDDTHHMMSSZ" of a Unix time in ms. */
void realm_sigv4_amz_date(int64_t now_ms, char out[17]);

#endif
