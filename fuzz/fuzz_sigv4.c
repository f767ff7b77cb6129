/*
 * fuzz_sigv4.c - libFuzzer driver for the SigV4 verifier: an untrusted
 * Authorization header and request (method, path, query, headers, body)
 * parsed and verified against a fixed secret and clock. Nothing may crash or
 * read out of bounds; a result is always one of the verifier's codes with a
 * message.
 *
 * Input: NUL-separated fields: authorization, method, path, query, then
 * header name/value pairs; the last field is the body.
 *
 *   make fuzz-build && build/fuzz/fuzz_sigv4 -max_total_time=600 fuzz/corpus/fuzz_sigv4
 */
#include "auth/sigv4.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 40

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *f[MAX_FIELDS];
    size_t n = 0;
    char *p = copy, *end = copy + size;
    while (n < MAX_FIELDS) {
        f[n++] = p;
        char *z = memchr(p, '\0', (size_t)(end - p));
        if (!z || z == end) break;
        p = z + 1;
    }
    const char *auth = n > 0 ? f[0] : "";
    realm_sigv4_header_t hs[MAX_FIELDS / 2];
    size_t hn = 0;
    for (size_t i = 4; i + 2 < n && hn < MAX_FIELDS / 2; i += 2) {
        hs[hn].name = f[i];
        hs[hn].value = f[i + 1];
        hn++;
    }
    const char *body = n > 4 ? f[n - 1] : "";
    realm_sigv4_req_t req = {
        .method = n > 1 ? f[1] : "GET",
        .path = n > 2 ? f[2] : "/",
        .query = n > 3 ? f[3] : "",
        .headers = hs,
        .headers_cnt = hn,
        .body = body,
        .body_len = strlen(body),
    };
    realm_sigv4_auth_t a;
    char msg[512];
    int rc = realm_sigv4_parse(auth, &a, msg, sizeof(msg));
    if (rc == REALM_SIGV4_OK) {
        /* 2024-01-01T00:00:00Z */
        rc = realm_sigv4_verify(&req, &a, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                1704067200000LL, msg, sizeof(msg));
        if (rc == REALM_SIGV4_OK) __builtin_trap(); /* no input forges a signature */
    }
    if (rc != REALM_SIGV4_OK && memchr(msg, '\0', sizeof(msg)) == NULL) __builtin_trap();
    free(copy);
    return 0;
}
