/*
 * log.h - leveled logging to stderr, as text or one JSON object a line.
 *
 * The logger is process-wide state set once at start (realm_log_init) before
 * the loop runs; it is only used from the loop thread.
 */
#ifndef REALM_BASE_LOG_H
#define REALM_BASE_LOG_H

typedef enum {
    REALM_LOG_DEBUG = 0,
    REALM_LOG_INFO = 1,
    REALM_LOG_WARN = 2,
    REALM_LOG_ERROR = 3,
} realm_log_level_t;

typedef enum {
    REALM_LOG_TEXT = 0,
    REALM_LOG_JSON = 1,
} realm_log_format_t;

void realm_log_init(realm_log_format_t format, realm_log_level_t level);
/* Parses "debug|info|warn|error" / "text|json". Return 0, or -1 if unknown. */
int realm_log_level_parse(const char *s, realm_log_level_t *out);
int realm_log_format_parse(const char *s, realm_log_format_t *out);
int realm_log_enabled(realm_log_level_t level);
void realm_log(realm_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define realm_debug(...) realm_log(REALM_LOG_DEBUG, __VA_ARGS__)
#define realm_info(...) realm_log(REALM_LOG_INFO, __VA_ARGS__)
#define realm_warn(...) realm_log(REALM_LOG_WARN, __VA_ARGS__)
#define realm_error(...) realm_log(REALM_LOG_ERROR, __VA_ARGS__)

#endif
