/*
 * str.c - string helpers (see str.h).
 */
#include "base/str.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int realm_str_has_token(const char *list, const char *token)
{
    size_t tl = strlen(token);
    const char *s = list;
    while (s && *s) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        const char *e = s;
        while (*e && *e != ',')
            e++;
        const char *te = e;
        while (te > s && (te[-1] == ' ' || te[-1] == '\t'))
            te--;
        if ((size_t)(te - s) == tl && strncasecmp(s, token, tl) == 0) return 1;
        s = e;
    }
    return 0;
}

void realm_str_uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) abort(); /* no randomness: nothing is safe */
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}
