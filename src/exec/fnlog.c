/*
 * fnlog.c - function logs: files with one rotated generation, invocation
 * tails and log stream names (see fnlog.h).
 */
#include "exec/fnlog.h"

#include "base/alloc.h"
#include "base/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define TAIL_KEEP (REALM_FNLOG_TAIL_BYTES * 2) /* trimmed back to the tail past this */

struct realm_fnlog_s {
    char *logs_dir; /* or NULL: no file */
    char *tenant, *name;
    uint64_t max_bytes;
    FILE *f;        /* open, or NULL (tried again at the next write) */
    uint64_t bytes; /* size of the open file */
    char path[4096];
};

realm_fnlog_t *realm_fnlog_new(const char *logs_dir, const char *tenant, const char *name,
                               uint64_t max_bytes)
{
    realm_fnlog_t *l = realm_calloc(1, sizeof(*l));
    l->logs_dir = realm_strdup_opt(logs_dir);
    l->tenant = realm_strdup(tenant ? tenant : "");
    l->name = realm_strdup(name);
    l->max_bytes = max_bytes;
    return l;
}

static void log_open(realm_fnlog_t *l)
{
    if (l->f || !l->logs_dir) return;
    char dir[3900];
    snprintf(dir, sizeof(dir), "%.3000s/%.200s", l->logs_dir, l->tenant[0] ? l->tenant : "_");
    mkdir(l->logs_dir, 0700);
    mkdir(dir, 0700);
    snprintf(l->path, sizeof(l->path), "%s/%.65s.log", dir, l->name);
    l->f = fopen(l->path, "ae");
    if (!l->f) return;
    struct stat st;
    l->bytes = stat(l->path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

void realm_fnlog_write(realm_fnlog_t *l, const char *bytes, size_t len)
{
    log_open(l);
    if (!l->f) return;
    if (l->bytes + len > l->max_bytes) {
        /* One generation kept: NAME.log.1. */
        fclose(l->f);
        l->f = NULL;
        char old[4200];
        snprintf(old, sizeof(old), "%s.1", l->path);
        rename(l->path, old);
        log_open(l);
        if (!l->f) return;
        l->bytes = 0;
    }
    fwrite(bytes, 1, len, l->f);
    fflush(l->f);
    l->bytes += len;
}

void realm_fnlog_free(realm_fnlog_t *l)
{
    if (!l) return;
    if (l->f) fclose(l->f);
    free(l->logs_dir);
    free(l->tenant);
    free(l->name);
    free(l);
}

void realm_fnlog_tail_append(realm_buf_t *tail, const char *bytes, size_t len)
{
    realm_buf_append(tail, bytes, len);
    if (tail->len > TAIL_KEEP) realm_buf_consume(tail, tail->len - REALM_FNLOG_TAIL_BYTES);
}

void realm_fnlog_tail_view(const realm_buf_t *tail, const char **out, size_t *out_len)
{
    const char *t = tail->data ? tail->data : "";
    size_t n = tail->len;
    if (n > REALM_FNLOG_TAIL_BYTES) {
        t += n - REALM_FNLOG_TAIL_BYTES;
        n = REALM_FNLOG_TAIL_BYTES;
    }
    *out = t;
    *out_len = n;
}

void realm_fnlog_stream_name(char *out, size_t n, const char *version)
{
    char uuid[37], hex[33];
    realm_str_uuid4(uuid);
    size_t h = 0;
    for (const char *c = uuid; *c && h < 32; c++)
        if (*c != '-') hex[h++] = *c;
    hex[h] = '\0';
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, n, "%04d/%02d/%02d/[%s]%s", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, version,
             hex);
}
