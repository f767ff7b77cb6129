/*
 * log.c - stderr logger (see log.h).
 *
 * JSON lines are built with jansson so that messages holding quotes or
 * control characters stay valid JSON.
 */
#include "base/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static realm_log_format_t log_format = REALM_LOG_TEXT;
static realm_log_level_t log_level = REALM_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void realm_log_init(realm_log_format_t format, realm_log_level_t level)
{
    log_format = format;
    log_level = level;
}

int realm_log_level_parse(const char *s, realm_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (realm_log_level_t)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = REALM_LOG_WARN;
        return 0;
    }
    return -1;
}

int realm_log_format_parse(const char *s, realm_log_format_t *out)
{
    if (strcmp(s, "text") == 0) *out = REALM_LOG_TEXT;
    else if (strcmp(s, "json") == 0) *out = REALM_LOG_JSON;
    else return -1;
    return 0;
}

int realm_log_enabled(realm_log_level_t level)
{
    return level >= log_level;
}

void realm_log(realm_log_level_t level, const char *fmt, ...)
{
    if (level < log_level) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

    if (log_format == REALM_LOG_JSON) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "ts", when, "level", level_names[level], "msg",
                              msg);
        char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (line) fprintf(stderr, "%s\n", line);
        free(line);
        json_decref(o);
    } else {
        fprintf(stderr, "%s %-5s %s\n", when, level_names[level], msg);
    }
}
