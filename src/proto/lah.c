/*
 * lah.c - the Lambda@Home dialect's JSON mapping (see lah.h).
 */
#include "proto/lah.h"

#include "base/alloc.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- keys ---- */

static void put(char *out, size_t out_len, size_t at, char c)
{
    if (at + 1 < out_len) out[at] = c;
}

static void terminate(char *out, size_t out_len, size_t n)
{
    if (out_len) out[n < out_len ? n : out_len - 1] = '\0';
}

size_t realm_lah_snake(const char *key, char *out, size_t out_len)
{
    size_t n = 0;
    for (size_t i = 0; key[i]; i++) {
        unsigned char c = (unsigned char)key[i];
        if (isupper(c)) {
            unsigned char prev = i ? (unsigned char)key[i - 1] : 0;
            unsigned char next = (unsigned char)key[i + 1];
            /* A word starts after a lower-case letter or digit ("CodeSha256"),
             * or at the last capital of an acronym ("KMSKey": kms_key). */
            if (i > 0 && prev != '_' &&
                (islower(prev) || isdigit(prev) || (isupper(prev) && islower(next))))
                put(out, out_len, n++, '_');
            put(out, out_len, n++, (char)tolower(c));
        } else {
            put(out, out_len, n++, (char)c);
        }
    }
    terminate(out, out_len, n);
    return n;
}

size_t realm_lah_camel(const char *key, char *out, size_t out_len)
{
    size_t n = 0;
    int word_start = 1;
    for (size_t i = 0; key[i]; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c == '_' && n > 0) {
            word_start = 1;
            continue;
        }
        put(out, out_len, n++, (char)(word_start ? toupper(c) : c));
        word_start = 0;
    }
    terminate(out, out_len, n);
    return n;
}

/* A renamed key, heap-allocated (keys are as long as the client made them). */
static char *renamed(const char *key, size_t (*fn)(const char *, char *, size_t))
{
    size_t n = fn(key, NULL, 0);
    char *s = realm_malloc(n + 1);
    fn(key, s, n + 1);
    return s;
}

/* ---- AWS -> Lambda@Home ---- */

/* Keys whose value is a map of the user's own names. */
static int is_opaque_aws(const char *key)
{
    return strcmp(key, "Variables") == 0 || strcmp(key, "Tags") == 0 ||
           strcmp(key, "AdditionalVersionWeights") == 0;
}

static json_t *from_aws(const json_t *v);

/* Adds AWS member key: value of an object to out, renamed. */
static void add_from_aws(json_t *out, const char *key, const json_t *value)
{
    if (strcmp(key, "Environment") == 0 && json_is_object(value)) {
        /* {"Variables": {...}} flattens to the map itself. */
        const json_t *vars = json_object_get(value, "Variables");
        json_object_set_new(out, "environment",
                            json_is_object(vars) ? json_deep_copy(vars) : json_object());
        return;
    }
    char *k = renamed(key, realm_lah_snake);
    json_object_set_new(out, k, is_opaque_aws(key) ? json_deep_copy(value) : from_aws(value));
    free(k);
}

static json_t *from_aws(const json_t *v)
{
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) json_array_append_new(a, from_aws(x));
        return a;
    }
    if (!json_is_object(v)) return json_deep_copy(v);
    json_t *o = json_object();
    const char *key;
    const json_t *x;
    json_object_foreach((json_t *)v, key, x) add_from_aws(o, key, x);
    return o;
}

json_t *realm_lah_from_aws(const json_t *aws)
{
    const json_t *cfg = json_object_get(aws, "Configuration");
    if (!json_is_object(cfg)) return from_aws(aws);
    /* GetFunction: Lambda@Home answers the function itself. */
    json_t *o = from_aws(cfg);
    const char *key;
    const json_t *x;
    json_object_foreach((json_t *)aws, key, x)
    {
        if (strcmp(key, "Configuration") == 0) continue;
        char *k = renamed(key, realm_lah_snake);
        if (!json_object_get(o, k)) add_from_aws(o, key, x);
        free(k);
    }
    return o;
}

json_t *realm_lah_error_from_aws(const json_t *aws, const char *type)
{
    json_t *o = json_object();
    const json_t *msg = json_object_get(aws, "message");
    if (!msg) msg = json_object_get(aws, "Message");
    json_object_set_new(o, "error_type", json_string(type ? type : ""));
    json_object_set_new(o, "error_message",
                        json_is_string(msg) ? json_copy((json_t *)msg) : json_string(""));
    const char *key;
    const json_t *x;
    json_object_foreach((json_t *)aws, key, x)
    {
        if (strcmp(key, "Type") == 0 || strcasecmp(key, "message") == 0) continue;
        add_from_aws(o, key, x);
    }
    return o;
}

/* ---- Lambda@Home -> AWS ---- */

static int is_opaque_lah(const char *key)
{
    return strcmp(key, "tags") == 0 || strcmp(key, "Tags") == 0 ||
           strcmp(key, "additional_version_weights") == 0 ||
           strcmp(key, "AdditionalVersionWeights") == 0 || strcmp(key, "Variables") == 0 ||
           strcmp(key, "variables") == 0;
}

static json_t *to_aws(const json_t *v)
{
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) json_array_append_new(a, to_aws(x));
        return a;
    }
    if (!json_is_object(v)) return json_deep_copy(v);
    json_t *o = json_object();
    const char *key;
    const json_t *x;
    json_object_foreach((json_t *)v, key, x)
    {
        if (strcmp(key, "environment") == 0 && json_is_object(x)) {
            /* Lambda@Home's flat map (or {"variables": {...}}) is AWS's Variables. */
            const json_t *vars = json_object_get(x, "variables");
            if (!vars) vars = json_object_get(x, "Variables");
            json_object_set_new(
                o, "Environment",
                json_pack("{s:o}", "Variables", json_deep_copy(json_is_object(vars) ? vars : x)));
            continue;
        }
        char *k = renamed(key, realm_lah_camel);
        json_object_set_new(o, k, is_opaque_lah(key) ? json_deep_copy(x) : to_aws(x));
        free(k);
    }
    return o;
}

json_t *realm_lah_to_aws(const json_t *lah)
{
    return to_aws(lah);
}
