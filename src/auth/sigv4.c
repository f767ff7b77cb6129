/*
 * sigv4.c - AWS Signature Version 4 verification (see sigv4.h).
 *
 * DESIGN: the reference is botocore's SigV4Auth (botocore/auth.py), which
 * both the AWS CLI v2 (its vendored copy, awscli/botocore) and boto3 sign
 * with; where AWS's published description and botocore differ, botocore
 * wins, since its requests are the ones that must verify:
 *
 *  - the canonical URI is botocore's quote(remove_dot_segments(path),
 *    safe='/~') over the path as sent. botocore sends the path already
 *    percent-encoded (its rest-json serializer encodes a FunctionName ARN's
 *    ':' as %3A), so the canonical URI holds it encoded twice (%253A).
 *    remove_dot_segments also drops empty segments ("//").
 *  - the canonical query: botocore signs the pairs of the URL it built,
 *    which it encoded with quote(safe='-_.~'); decoding what arrived and
 *    re-encoding gives the same bytes for those, and the same as AWS's
 *    servers for other clients that encode differently (%3a, a raw ':').
 *    '+' is not a space here (AWS treats it as a literal '+').
 *  - header values: botocore's ' '.join(value.split()) - Python's split()
 *    cuts at any ASCII whitespace, not only spaces.
 *  - the hashed payload is the x-amz-content-sha256 header itself whenever
 *    it is present (botocore reads it back from the request), which is why
 *    the verifier also checks that header against the body, and refuses
 *    UNSIGNED-PAYLOAD (S3's escape hatch, not the Lambda API's); without
 *    the header it is the SHA-256 of the body received.
 *
 * Bytes above 0x7f in header values are taken as they arrive. (botocore
 * sends its str header values Latin-1 encoded but hashes them UTF-8
 * encoded; no AWS client sends such values to the Lambda API.)
 *
 * LIFETIME: nothing outlives a call. Temporary text lives in realm_buf_t's
 * freed before returning; the secret-derived keys are wiped.
 * THREADS: no state; callable from any thread.
 */
#include "auth/sigv4.h"

#include "base/alloc.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ALGORITHM "AWS4-HMAC-SHA256"
#define TERMINATOR "aws4_request"
#define UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define SHA256_HEX_LEN 64

#define MSG_MISMATCH                                                                               \
    "The request signature we calculated does not match the signature you provided. Check your "   \
    "AWS Secret Access Key and signing method. Consult the service documentation for details."

/* ---- small helpers ---- */

static void set_msg(char *msg, size_t msg_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_msg(char *msg, size_t msg_len, const char *fmt, ...)
{
    if (!msg || msg_len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msg_len, fmt, ap);
    va_end(ap);
}

/* ASCII whitespace as Python's str.split() sees it (HT LF VT FF CR, FS GS RS US, SP). */
static int is_ws(unsigned char c)
{
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
}

/* RFC 3986 unreserved characters: the only ones SigV4 leaves unencoded. */
static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void sha256_hex(const void *data, size_t len, char out[SHA256_HEX_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!EVP_Digest(len ? data : "", len, md, &md_len, EVP_sha256(), NULL) || md_len != 32)
        abort(); /* only fails when OpenSSL itself is broken or out of memory */
    hex_encode(md, md_len, out);
}

static void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                        unsigned char out[32])
{
    unsigned int out_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &out_len) || out_len != 32) abort();
}

/* Appends bytes percent-encoded: unreserved characters (and '/' when
 * keep_slash) as they are, every other byte as %XX with upper-case hex. */
static void uri_encode(realm_buf_t *out, const char *p, size_t n, int keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t run = 0; /* start of the pending run of bytes kept as they are */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) continue;
        realm_buf_append(out, p + run, i - run);
        char esc[3] = {'%', digits[c >> 4], digits[c & 15]};
        realm_buf_append(out, esc, sizeof(esc));
        run = i + 1;
    }
    realm_buf_append(out, p + run, n - run);
}

/* Appends p percent-decoded; a '%' not followed by two hex digits stays as it is. */
static void uri_decode(realm_buf_t *out, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (p[i] == '%' && i + 2 < n && (hi = hex_val((unsigned char)p[i + 1])) >= 0 &&
            (lo = hex_val((unsigned char)p[i + 2])) >= 0) {
            char c = (char)(hi << 4 | lo);
            realm_buf_append(out, &c, 1);
            i += 2;
        } else {
            realm_buf_append(out, p + i, 1);
        }
    }
}

/* Appends text with surrounding whitespace dropped and inner runs collapsed to one space. */
static void append_trimall(realm_buf_t *out, const char *v)
{
    const unsigned char *p = (const unsigned char *)v;
    int started = 0;
    while (*p) {
        if (is_ws(*p)) {
            p++;
            continue;
        }
        const unsigned char *word = p;
        while (*p && !is_ws(*p))
            p++;
        if (started) realm_buf_append(out, " ", 1);
        realm_buf_append(out, word, (size_t)(p - word));
        started = 1;
    }
}

/* Bounds of v without surrounding whitespace. */
static const char *trim(const char *v, size_t *len)
{
    while (*v && is_ws((unsigned char)*v))
        v++;
    size_t n = strlen(v);
    while (n > 0 && is_ws((unsigned char)v[n - 1]))
        n--;
    *len = n;
    return v;
}

/* Does the ';'-separated list hold name (ignoring case)? */
static int list_has(const char *list, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = list;;) {
        const char *e = strchr(p, ';');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == nl && strncasecmp(p, name, nl) == 0) return 1;
        if (!e) return 0;
        p = e + 1;
    }
}

const char *realm_sigv4_header_get(const realm_sigv4_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->headers_cnt; i++)
        if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
    return NULL;
}

/* ---- dates ---- */

static int64_t days_from_civil(int64_t y, int m, int d)
{
    /* Howard Hinnant's algorithm: days since 1970-01-01 in the proleptic Gregorian calendar. */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Seconds since the epoch of a UTC civil time; -1 if a field is out of range. */
static int civil_to_epoch(int y, int mo, int d, int h, int mi, int s, int64_t *out)
{
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h < 0 ||
        h > 23 || mi < 0 || mi > 59 || s < 0 || s > 59)
        return -1;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
    return 0;
}

static int digits(const char *p, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* X-Amz-Date: exactly YYYYMMDDTHHMMSSZ (ISO 8601 basic format, UTC). */
static int parse_amz_date(const char *v, size_t n, int64_t *out)
{
    if (n != 16 || v[8] != 'T' || v[15] != 'Z') return -1;
    int y = digits(v, 4), mo = digits(v + 4, 2), d = digits(v + 6, 2);
    int h = digits(v + 9, 2), mi = digits(v + 11, 2), s = digits(v + 13, 2);
    if (y < 0 || mo < 0 || d < 0 || h < 0 || mi < 0 || s < 0) return -1;
    return civil_to_epoch(y, mo, d, h, mi, s, out);
}

/* Date: "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 7231), or with a numeric zone
 * as Python's email.utils.formatdate writes it ("... 08:49:37 -0000"). */
static int parse_http_date(const char *v, size_t n, int64_t *out)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char s[64], mon[4], zone[8];
    int d, y, h, mi, sec, used = -1;
    if (n >= sizeof(s)) return -1;
    memcpy(s, v, n);
    s[n] = '\0';
    const char *p = strchr(s, ',');
    p = p ? p + 1 : s; /* the weekday is optional and not checked */
    if (sscanf(p, "%2d %3s %4d %2d:%2d:%2d %7s%n", &d, mon, &y, &h, &mi, &sec, zone, &used) != 7 ||
        used < 0 || p[used] != '\0' || strlen(mon) != 3)
        return -1;
    const char *m = strstr(months, mon);
    if (!m || (m - months) % 3 != 0) return -1;
    int64_t offset = 0;
    if (strcmp(zone, "GMT") && strcmp(zone, "UTC") && strcmp(zone, "UT") && strcmp(zone, "Z")) {
        int hhmm = strlen(zone) == 5 ? digits(zone + 1, 4) : -1;
        if ((zone[0] != '+' && zone[0] != '-') || hhmm < 0 || hhmm % 100 > 59) return -1;
        offset = (int64_t)(hhmm / 100 * 3600 + hhmm % 100 * 60) * (zone[0] == '-' ? -1 : 1);
    }
    if (civil_to_epoch(y, (int)(m - months) / 3 + 1, d, h, mi, sec, out) != 0) return -1;
    *out -= offset;
    return 0;
}

static void format_amz_date(int64_t t, char out[17])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
        snprintf(out, 17, "%s", "00000000T000000Z"); /* out of range: only in messages */
}

/* ---- Authorization header ---- */

static int is_delim(char c)
{
    return c == ',' || is_ws((unsigned char)c);
}

static int copy_field(char *dst, size_t cap, const char *src, size_t n)
{
    if (n == 0 || n >= cap) return -1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

/* Splits AKID/YYYYMMDD/REGION/SERVICE/aws4_request from the right (so only
 * the access key id could hold a '/'). */
static int parse_credential(const char *v, size_t n, realm_sigv4_auth_t *out, char *msg,
                            size_t msg_len)
{
    const char *slash[4]; /* the last four '/' from the right: slash[0] is the last */
    size_t found = 0;
    for (size_t i = n; i > 0 && found < 4; i--)
        if (v[i - 1] == '/') slash[found++] = v + i - 1;
    if (found < 4) goto malformed;
    const char *term = slash[0] + 1, *end = v + n;
    if ((size_t)(end - term) != strlen(TERMINATOR) ||
        memcmp(term, TERMINATOR, strlen(TERMINATOR)) != 0) {
        set_msg(msg, msg_len,
                "Credential should be scoped with a valid terminator: 'aws4_request', not '%.*s'.",
                (int)(end - term), term);
        return REALM_SIGV4_MALFORMED;
    }
    const char *date = slash[3] + 1, *region = slash[2] + 1, *service = slash[1] + 1;
    if (slash[2] - date != 8 || digits(date, 8) < 0 ||
        copy_field(out->access_key_id, sizeof(out->access_key_id), v, (size_t)(slash[3] - v)) ||
        copy_field(out->date, sizeof(out->date), date, 8) ||
        copy_field(out->region, sizeof(out->region), region, (size_t)(slash[1] - region)) ||
        copy_field(out->service, sizeof(out->service), service, (size_t)(slash[0] - service)))
        goto malformed;
    return REALM_SIGV4_OK;

malformed:
    set_msg(msg, msg_len,
            "Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/"
            "aws4_request\", not '%.*s'.",
            (int)n, v);
    return REALM_SIGV4_MALFORMED;
}

static int parse_signed_headers(const char *v, size_t n, realm_sigv4_auth_t *out, char *msg,
                                size_t msg_len)
{
    int ok = copy_field(out->signed_headers, sizeof(out->signed_headers), v, n) == 0;
    for (size_t i = 0; ok && i <= n; i++) /* no empty entry: ";a", "a;;b", "a;" */
        if ((i == n || v[i] == ';') && (i == 0 || v[i - 1] == ';')) ok = 0;
    if (!ok) {
        set_msg(msg, msg_len,
                "SignedHeaders must be a ';'-separated list of header names, not '%.*s'.", (int)n,
                v);
        return REALM_SIGV4_MALFORMED;
    }
    return REALM_SIGV4_OK;
}

int realm_sigv4_parse(const char *authorization, realm_sigv4_auth_t *out, char *msg, size_t msg_len)
{
    memset(out, 0, sizeof(*out));
    set_msg(msg, msg_len, "%s", "");
    size_t alen;
    const char *auth = authorization ? trim(authorization, &alen) : NULL;
    if (!auth || alen == 0) {
        set_msg(msg, msg_len, "Missing Authentication Token");
        return REALM_SIGV4_MISSING;
    }

    /* AWS splits the parameters at commas and whitespace alike. */
    const char *p = auth, *end = auth + alen;
    const char *tok = p;
    while (p < end && !is_delim(*p))
        p++;
    int is_v4 = (size_t)(p - tok) == strlen(ALGORITHM) && memcmp(tok, ALGORITHM, p - tok) == 0;

    const char *names[3] = {"Credential", "Signature", "SignedHeaders"};
    const char *val[3] = {NULL, NULL, NULL};
    size_t val_len[3] = {0, 0, 0};
    while (is_v4 && p < end) {
        while (p < end && is_delim(*p))
            p++;
        if (p == end) break;
        tok = p;
        while (p < end && !is_delim(*p))
            p++;
        const char *eq = memchr(tok, '=', (size_t)(p - tok));
        if (!eq) {
            set_msg(msg, msg_len,
                    "'%.*s' not a valid key=value pair (missing equal-sign) in Authorization "
                    "header: '%.*s'.",
                    (int)(p - tok), tok, (int)alen, auth);
            return REALM_SIGV4_MALFORMED;
        }
        for (int i = 0; i < 3; i++) {
            if ((size_t)(eq - tok) != strlen(names[i]) || memcmp(tok, names[i], eq - tok) != 0)
                continue;
            if (val[i]) {
                set_msg(msg, msg_len, "Authorization header has more than one '%s' parameter.",
                        names[i]);
                return REALM_SIGV4_MALFORMED;
            }
            val[i] = eq + 1;
            val_len[i] = (size_t)(p - eq - 1);
        }
    }

    /* AWS names every missing parameter, then the header as sent. */
    if (!is_v4 || !val_len[0] || !val_len[1] || !val_len[2]) {
        char m[256] = "";
        size_t ml = 0;
        for (int i = 0; i < 3; i++)
            if (!is_v4 || !val_len[i])
                ml += (size_t)snprintf(m + ml, sizeof(m) - ml,
                                       "Authorization header requires '%s' parameter. ", names[i]);
        set_msg(msg, msg_len, "%sAuthorization=%.*s", m, (int)alen, auth);
        return REALM_SIGV4_MALFORMED;
    }

    int rc = parse_credential(val[0], val_len[0], out, msg, msg_len);
    if (rc == REALM_SIGV4_OK) rc = parse_signed_headers(val[2], val_len[2], out, msg, msg_len);
    if (rc == REALM_SIGV4_OK &&
        copy_field(out->signature, sizeof(out->signature), val[1], val_len[1])) {
        set_msg(msg, msg_len, "Signature must be 64 hexadecimal characters, not '%.*s'.",
                (int)val_len[1], val[1]);
        rc = REALM_SIGV4_MALFORMED;
    }
    if (rc != REALM_SIGV4_OK) memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- canonical request ---- */

typedef struct {
    char *name;  /* owned; encoded */
    char *value; /* owned; encoded */
} qpair_t;

static int qpair_cmp(const void *a, const void *b)
{
    const qpair_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

/* Decodes then re-encodes p, into a new string. */
static char *reencode(const char *p, size_t n)
{
    realm_buf_t dec, enc;
    realm_buf_init(&dec);
    realm_buf_init(&enc);
    uri_decode(&dec, p, n);
    uri_encode(&enc, dec.data ? dec.data : "", dec.len, 0);
    realm_buf_dispose(&dec);
    if (!enc.data) return realm_strdup("");
    return realm_buf_steal(&enc, NULL);
}

static void append_canonical_query(realm_buf_t *out, const char *query)
{
    if (!query || !*query) return;
    size_t cnt = 1;
    for (const char *p = query; *p; p++)
        cnt += *p == '&';
    qpair_t *pairs = realm_calloc(cnt, sizeof(*pairs));
    const char *p = query;
    for (size_t i = 0; i < cnt; i++) {
        /* Every piece counts, empty ones too ("a=1&" signs "=&a=1"), as in botocore. */
        const char *e = strchr(p, '&');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        const char *eq = memchr(p, '=', l);
        size_t nl = eq ? (size_t)(eq - p) : l;
        pairs[i].name = reencode(p, nl);
        pairs[i].value = eq ? reencode(eq + 1, l - nl - 1) : realm_strdup("");
        p += l + 1;
    }
    qsort(pairs, cnt, sizeof(*pairs), qpair_cmp);
    for (size_t i = 0; i < cnt; i++) {
        realm_buf_appendf(out, "%s%s=%s", i ? "&" : "", pairs[i].name, pairs[i].value);
        free(pairs[i].name);
        free(pairs[i].value);
    }
    free(pairs);
}

/* botocore's quote(remove_dot_segments(path), safe='/~'). */
static void append_canonical_uri(realm_buf_t *out, const char *path)
{
    size_t len = path ? strlen(path) : 0;
    if (len == 0) {
        realm_buf_appends(out, "/");
        return;
    }
    realm_buf_t segs; /* the kept segments joined with '/' */
    realm_buf_init(&segs);
    size_t n = 0;
    for (const char *p = path, *end = path + len; p <= end;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *e = slash ? slash : end;
        size_t l = (size_t)(e - p);
        if (l == 0 || (l == 1 && p[0] == '.')) {
            /* "//" and "/./" vanish */
        } else if (l == 2 && p[0] == '.' && p[1] == '.') {
            if (n > 0) { /* drop the last kept segment */
                char *last = memrchr(segs.data, '/', segs.len);
                segs.len = last ? (size_t)(last - segs.data) : 0;
                segs.data[segs.len] = '\0';
                n--;
            }
        } else {
            if (n++ > 0) realm_buf_append(&segs, "/", 1);
            realm_buf_append(&segs, p, l);
        }
        if (!slash) break;
        p = slash + 1;
    }
    if (path[0] == '/') realm_buf_append(out, "/", 1);
    uri_encode(out, segs.data ? segs.data : "", segs.len, 1);
    if (path[len - 1] == '/' && n > 0) realm_buf_append(out, "/", 1);
    realm_buf_dispose(&segs);
}

static void append_canonical_headers(realm_buf_t *out, const realm_sigv4_req_t *req,
                                     const char *signed_headers)
{
    for (const char *p = signed_headers;;) {
        const char *e = strchr(p, ';');
        size_t nl = e ? (size_t)(e - p) : strlen(p);
        realm_buf_append(out, p, nl);
        realm_buf_append(out, ":", 1);
        int cnt = 0;
        for (size_t i = 0; i < req->headers_cnt; i++) {
            const realm_sigv4_header_t *h = &req->headers[i];
            if (strlen(h->name) != nl || strncasecmp(h->name, p, nl) != 0) continue;
            if (cnt++ > 0) realm_buf_append(out, ",", 1);
            append_trimall(out, h->value ? h->value : "");
        }
        realm_buf_append(out, "\n", 1);
        if (!e) break;
        p = e + 1;
    }
}

void realm_sigv4_canonical_request(const realm_sigv4_req_t *req, const char *signed_headers,
                                   realm_buf_t *out)
{
    for (const char *m = req->method; *m; m++) {
        char c = *m >= 'a' && *m <= 'z' ? (char)(*m - 'a' + 'A') : *m;
        realm_buf_append(out, &c, 1);
    }
    realm_buf_append(out, "\n", 1);
    append_canonical_uri(out, req->path);
    realm_buf_append(out, "\n", 1);
    append_canonical_query(out, req->query);
    realm_buf_append(out, "\n", 1);
    append_canonical_headers(out, req, signed_headers);
    realm_buf_append(out, "\n", 1);
    realm_buf_appends(out, signed_headers);
    realm_buf_append(out, "\n", 1);
    const char *xsha = realm_sigv4_header_get(req, "x-amz-content-sha256");
    if (xsha) {
        size_t l;
        const char *v = trim(xsha, &l);
        realm_buf_append(out, v, l);
    } else {
        char hex[SHA256_HEX_LEN + 1];
        sha256_hex(req->body, req->body_len, hex);
        realm_buf_append(out, hex, SHA256_HEX_LEN);
    }
}

/* ---- verification ---- */

/* The signature of req under the scope in a (date, region, service, signed headers). */
static void signature_hex(const realm_sigv4_req_t *req, const realm_sigv4_auth_t *a, const char *ts,
                          const char *secret, char sig_hex[SHA256_HEX_LEN + 1])
{
    realm_buf_t cr, sts, key;
    realm_buf_init(&cr);
    realm_buf_init(&sts);
    realm_buf_init(&key);
    realm_sigv4_canonical_request(req, a->signed_headers, &cr);
    char cr_hex[SHA256_HEX_LEN + 1];
    sha256_hex(cr.data, cr.len, cr_hex);
    realm_buf_appendf(&sts, "%s\n%s\n%s/%s/%s/%s\n%s", ALGORITHM, ts, a->date, a->region,
                      a->service, TERMINATOR, cr_hex);

    /* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" secret, date), region), service), "aws4_request") */
    unsigned char k1[32], k2[32], sig[32];
    realm_buf_appendf(&key, "AWS4%s", secret);
    hmac_sha256(key.data, key.len, a->date, strlen(a->date), k1);
    hmac_sha256(k1, sizeof(k1), a->region, strlen(a->region), k2);
    hmac_sha256(k2, sizeof(k2), a->service, strlen(a->service), k1);
    hmac_sha256(k1, sizeof(k1), TERMINATOR, strlen(TERMINATOR), k2);
    hmac_sha256(k2, sizeof(k2), sts.data, sts.len, sig);
    hex_encode(sig, sizeof(sig), sig_hex);
    OPENSSL_cleanse(key.data, key.len);
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    realm_buf_dispose(&key);
    realm_buf_dispose(&sts);
    realm_buf_dispose(&cr);
}

int realm_sigv4_sign(const realm_sigv4_req_t *req, const char *access_key_id, const char *secret,
                     const char *region, const char *service, const char *amz_date,
                     char *authorization, size_t auth_len)
{
    realm_sigv4_auth_t a;
    memset(&a, 0, sizeof(a));
    if (strlen(amz_date) != 16 || strlen(access_key_id) >= sizeof(a.access_key_id) ||
        strlen(region) >= sizeof(a.region) || strlen(service) >= sizeof(a.service))
        return REALM_SIGV4_MALFORMED;
    snprintf(a.access_key_id, sizeof(a.access_key_id), "%s", access_key_id);
    snprintf(a.date, sizeof(a.date), "%.8s", amz_date);
    snprintf(a.region, sizeof(a.region), "%s", region);
    snprintf(a.service, sizeof(a.service), "%s", service);
    snprintf(a.signed_headers, sizeof(a.signed_headers), "host;x-amz-date");
    char sig_hex[SHA256_HEX_LEN + 1];
    signature_hex(req, &a, amz_date, secret, sig_hex);
    int n = snprintf(authorization, auth_len,
                     "%s Credential=%s/%s/%s/%s/%s, SignedHeaders=%s, Signature=%s", ALGORITHM,
                     a.access_key_id, a.date, a.region, a.service, TERMINATOR, a.signed_headers,
                     sig_hex);
    OPENSSL_cleanse(sig_hex, sizeof(sig_hex));
    return n > 0 && (size_t)n < auth_len ? REALM_SIGV4_OK : REALM_SIGV4_MALFORMED;
}

void realm_sigv4_amz_date(int64_t now_ms, char out[17])
{
    format_amz_date(now_ms / 1000, out);
}

int realm_sigv4_verify(const realm_sigv4_req_t *req, const realm_sigv4_auth_t *a,
                       const char *secret, int64_t now_ms, char *msg, size_t msg_len)
{
    set_msg(msg, msg_len, "%s", "");
    if (!list_has(a->signed_headers, "host")) {
        set_msg(msg, msg_len,
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
        return REALM_SIGV4_MALFORMED;
    }

    /* The request time: X-Amz-Date wins over Date (botocore sends one or the other). */
    int64_t t;
    size_t vl;
    const char *v = realm_sigv4_header_get(req, "x-amz-date");
    if (v) {
        v = trim(v, &vl);
        if (parse_amz_date(v, vl, &t) != 0) {
            set_msg(msg, msg_len,
                    "Date must be in ISO-8601 'basic format'. Got '%.*s'. See "
                    "http://en.wikipedia.org/wiki/ISO_8601",
                    (int)vl, v);
            return REALM_SIGV4_MALFORMED;
        }
    } else if ((v = realm_sigv4_header_get(req, "date"))) {
        v = trim(v, &vl);
        if (parse_http_date(v, vl, &t) != 0) {
            set_msg(msg, msg_len, "Date header must be an HTTP date. Got '%.*s'.", (int)vl, v);
            return REALM_SIGV4_MALFORMED;
        }
    } else {
        set_msg(msg, msg_len,
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
                "header.");
        return REALM_SIGV4_MALFORMED;
    }
    char ts[17]; /* YYYYMMDDTHHMMSSZ: the string to sign's timestamp */
    format_amz_date(t, ts);

    if (strlen(a->date) != 8 || memcmp(a->date, ts, 8) != 0) {
        set_msg(msg, msg_len,
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                "from HTTP: '%s' != '%.8s', from '%s'.",
                a->date, ts, ts);
        return REALM_SIGV4_MISMATCH;
    }

    int64_t now = now_ms >= 0 ? now_ms / 1000 : -((-now_ms + 999) / 1000);
    int64_t skew = REALM_SIGV4_MAX_SKEW_MS / 1000;
    if (t < now - skew || t > now + skew) {
        char bound[17], now_s[17];
        format_amz_date(t < now - skew ? now - skew : now + skew, bound);
        format_amz_date(now, now_s);
        if (t < now - skew)
            set_msg(msg, msg_len, "Signature expired: %s is now earlier than %s (%s - 5 min.)", ts,
                    bound, now_s);
        else
            set_msg(msg, msg_len,
                    "Signature not yet current: %s is still later than %s (%s + 5 min.)", ts, bound,
                    now_s);
        return REALM_SIGV4_EXPIRED;
    }

    /* A claimed payload hash goes into the canonical request as it is, so it
     * must be the body's (else any body would verify). UNSIGNED-PAYLOAD is
     * S3's alone: AWS refuses it for Lambda, and accepting it would let a
     * captured request be replayed with another body. Without the header the
     * hash in the canonical request is the body's own (as botocore signs). */
    if ((v = realm_sigv4_header_get(req, "x-amz-content-sha256"))) {
        v = trim(v, &vl);
        if (vl == strlen(UNSIGNED_PAYLOAD) && memcmp(v, UNSIGNED_PAYLOAD, vl) == 0) {
            set_msg(msg, msg_len,
                    "UNSIGNED-PAYLOAD is not accepted: the payload must be signed "
                    "(x-amz-content-sha256).");
            return REALM_SIGV4_MISMATCH;
        }
        char hex[SHA256_HEX_LEN + 1];
        sha256_hex(req->body, req->body_len, hex);
        if (vl != SHA256_HEX_LEN || strncasecmp(v, hex, SHA256_HEX_LEN) != 0) {
            set_msg(msg, msg_len,
                    "The provided 'x-amz-content-sha256' header does not match what was "
                    "computed.");
            return REALM_SIGV4_MISMATCH;
        }
    }

    char sig_hex[SHA256_HEX_LEN + 1];
    signature_hex(req, a, ts, secret, sig_hex);

    /* The length is no secret; the bytes are compared in constant time. */
    int ok = strlen(a->signature) == SHA256_HEX_LEN &&
             CRYPTO_memcmp(sig_hex, a->signature, SHA256_HEX_LEN) == 0;
    OPENSSL_cleanse(sig_hex, sizeof(sig_hex));
    if (!ok) {
        set_msg(msg, msg_len, "%s", MSG_MISMATCH);
        return REALM_SIGV4_MISMATCH;
    }
    return REALM_SIGV4_OK;
}
