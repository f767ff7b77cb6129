/*
 * str.c - string helpers (see str.h).
 */
#include "base/str.h"

#include <string.h>
#include <strings.h>

int realm_str_has_token(const char *list, const char *token)
{
    size_t tl = strlen(token);
    const char *s = list;
    while (s && *s) {
        while (*s == ' ' || *s == '\t' || *s == ',') s++;
        const char *e = s;
        while (*e && *e != ',') e++;
        const char *te = e;
        while (te > s && (te[-1] == ' ' || te[-1] == '\t')) te--;
        if ((size_t)(te - s) == tl && strncasecmp(s, token, tl) == 0) return 1;
        s = e;
    }
    return 0;
}
