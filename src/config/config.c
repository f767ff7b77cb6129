/*
 * config.c - `realm serve` configuration: defaults, a config file, flags
 * (see config.h).
 *
 * DESIGN: the `options` table below is the only list of options. Each row
 * names a field of realm_config_t (by offset), its type, its default as text,
 * its help line and the placeholder shown in --help. Everything else walks
 * the table:
 *   - realm_config_defaults() feeds every default text through the same
 *     setter a flag or a file line uses, so a default can never be a value
 *     the parser would reject;
 *   - realm_config_set() finds the row by name and parses by type;
 *   - the flag parser and the file parser only split text into name/value
 *     pairs and hand them to realm_config_set();
 *   - realm_config_print_help() prints one line per row.
 * Adding an option is one field in config.h and one row here.
 *
 * A setter that fails leaves the field untouched, so a rejected value never
 * half-applies. A file that fails at line N has applied lines 1..N-1; the
 * caller is expected to give up on the whole config in that case.
 *
 * Numbers are parsed by hand rather than with strtoull(), which accepts
 * leading blanks, a '+' and even a '-' (wrapping "-1" to UINT64_MAX).
 *
 * LIFETIME: the string fields are owned by the config and freed by
 * realm_config_dispose(). THREADS: none; the config is built once at start.
 */
#include "config/config.h"

#include "base/alloc.h"
#include "base/buf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* ------------------------------------------------------------------------ */
/* The option table                                                          */
/* ------------------------------------------------------------------------ */

typedef enum {
    REALM_CFG_STRING,   /* char *, owned; must not be empty */
    REALM_CFG_ENUM,     /* char *, owned; one of the '|'-separated choices */
    REALM_CFG_PORT,     /* int, 0..65535 */
    REALM_CFG_SIZE,     /* uint64_t bytes; k/M/G suffixes (binary) */
    REALM_CFG_DURATION, /* uint64_t milliseconds */
    REALM_CFG_COUNT,    /* uint64_t plain count */
    REALM_CFG_BOOL,     /* int, 0 or 1; a bare flag means 1 */
    REALM_CFG_LIST,     /* char *, owned; each use adds an item (','-joined); "none": empty */
} cfg_type_t;

typedef struct {
    const char *name;        /* canonical spelling, '-' separated, no leading "--" */
    cfg_type_t type;         /* decides the field's C type and the parser */
    size_t offset;           /* offsetof(realm_config_t, field) */
    const char *def;         /* default, as text the setter accepts */
    const char *help;        /* one line for --help */
    const char *placeholder; /* value name for --help ("PORT", "SIZE") */
    const char *choices;     /* REALM_CFG_ENUM only: "a|b|c" */
    uint64_t min;            /* SIZE/DURATION/COUNT: smallest accepted value */
} cfg_opt_t;

/*
 * offsetof() plus a compile-time check that the field has C type T: comparing
 * a T * with a pointer to the field is a constraint violation (an error under
 * -Werror) when the types differ. The comparison sits inside sizeof, so it is
 * never evaluated.
 */
#define FIELD(f, T) (offsetof(realm_config_t, f) + 0 * sizeof((T *)0 == &((realm_config_t *)0)->f))

#define OPT_STRING(n, f, d, ph, h)                                                                 \
    {                                                                                              \
        .name = n, .type = REALM_CFG_STRING, .offset = FIELD(f, char *), .def = d, .help = h,      \
        .placeholder = ph                                                                          \
    }
#define OPT_ENUM(n, f, d, ch, h)                                                                   \
    {                                                                                              \
        .name = n, .type = REALM_CFG_ENUM, .offset = FIELD(f, char *), .def = d, .help = h,        \
        .placeholder = ch, .choices = ch                                                           \
    }
#define OPT_PORT(n, f, d, h)                                                                       \
    {                                                                                              \
        .name = n, .type = REALM_CFG_PORT, .offset = FIELD(f, int), .def = d, .help = h,           \
        .placeholder = "PORT"                                                                      \
    }
#define OPT_U64(n, t, f, d, ph, lo, h)                                                             \
    {                                                                                              \
        .name = n, .type = t, .offset = FIELD(f, uint64_t), .def = d, .help = h,                   \
        .placeholder = ph, .min = lo                                                               \
    }
#define OPT_SIZE(n, f, d, lo, h) OPT_U64(n, REALM_CFG_SIZE, f, d, "SIZE", lo, h)
#define OPT_MS(n, f, d, lo, h) OPT_U64(n, REALM_CFG_DURATION, f, d, "MS", lo, h)
#define OPT_COUNT(n, f, d, lo, h) OPT_U64(n, REALM_CFG_COUNT, f, d, "N", lo, h)
/* A bare --flag means true; --flag=false turns it off. */
#define OPT_LIST(n, f, d, ph, h)                                                                   \
    {                                                                                              \
        .name = n, .type = REALM_CFG_LIST, .offset = FIELD(f, char *), .def = d, .help = h,        \
        .placeholder = ph                                                                          \
    }
#define OPT_BOOL(n, f, d, h)                                                                       \
    {                                                                                              \
        .name = n, .type = REALM_CFG_BOOL, .offset = FIELD(f, int), .def = d, .help = h            \
    }

static const cfg_opt_t options[] = {
    OPT_STRING("host", host, "127.0.0.1", "ADDR", "listen address for every listener"),
    OPT_PORT("port", port, "8080", "client WebSocket port (0: ephemeral)"),
    OPT_PORT("control-port", control_port, "9000", "Lambda control API port"),
    OPT_PORT("runtime-port", runtime_port, "9001", "Lambda runtime API port"),
    OPT_PORT("metrics-port", metrics_port, "9090", "Prometheus /metrics port"),
    OPT_STRING("data-dir", data_dir, "./realm-data", "DIR", "directory for Realm's state"),
    OPT_STRING("db", db, "sqlite", "URL",
               "where functions, code, Events and keys live: sqlite (files in the data dir) or "
               "postgresql://USER@HOST:PORT/DB (shared by every server using it)"),
    OPT_STRING("server-key-file", server_key_file, "DATA_DIR/server.key", "PATH",
               "the key that encrypts the keys' secrets (DATA_DIR/ means the data dir); every "
               "server on one postgresql:// --db needs a copy of the same file"),
    OPT_STRING("nats", nats, "none", "URL[,URL]",
               "the cluster's NATS servers (nats://HOST:PORT); none: this server is a cluster of "
               "its own. Every node of a cluster uses the same postgresql:// --db"),
    OPT_STRING("node-id", node_id, "auto", "ID",
               "this node's id in a cluster, 1 to 32 of [A-Za-z0-9_-] (auto: the host name and "
               "the client port)"),
    OPT_MS("node-lease-ms", node_lease_ms, "10000", 1000,
           "in a cluster: how long an environment's concurrency lease lasts without its node "
           "(renewed every third of it; a node paused or cut off longer completes nothing)"),
    OPT_ENUM("log-format", log_format, "text", "text|json", "log line format"),
    OPT_ENUM("log-level", log_level, "info", "debug|info|warn|error", "lowest level logged"),
    OPT_SIZE("max-message-bytes", max_message_bytes, "16MiB", 1,
             "largest WebSocket message (close 1009 beyond)"),
    OPT_SIZE("max-send-queue-bytes", max_send_queue_bytes, "32MiB", 1,
             "unsent bytes per connection before dropping the peer"),
    OPT_SIZE("max-header-bytes", max_header_bytes, "16KiB", 1024,
             "largest request header block, >= 1KiB (431 beyond)"),
    /* 6 MiB is Lambda's synchronous invocation payload limit. */
    OPT_SIZE("max-body-bytes", max_body_bytes, "6MiB", 0,
             "default largest request body (413 beyond)"),
    OPT_MS("header-timeout-ms", header_timeout_ms, "10000", 1,
           "time to receive a request header block"),
    OPT_MS("idle-timeout-ms", idle_timeout_ms, "60000", 1,
           "keep-alive idle time; request body progress time"),
    OPT_MS("ws-ping-interval-ms", ws_ping_interval_ms, "30000", 0,
           "ping a silent WebSocket peer, drop it at 2x (0: never)"),
    OPT_MS("shutdown-grace-ms", shutdown_grace_ms, "10000", 0,
           "time in-flight work gets on SIGINT/SIGTERM"),
    OPT_COUNT("max-calls-per-connection", max_calls_per_connection, "1024", 1,
              "calls in flight on one client WebSocket"),
    OPT_STRING("region", region, "us-east-1", "REGION", "AWS region named in ARNs"),
    OPT_STRING("account-id", account_id, "000000000000", "ID",
               "12-digit AWS account id named in ARNs"),
    /* Lambda's own quotas: 50 MB zipped (direct upload), 250 MB unzipped. */
    OPT_SIZE("max-code-zip-bytes", max_code_zip_bytes, "50MiB", 22, "largest code package, zipped"),
    OPT_SIZE("max-code-unzipped-bytes", max_code_unzipped_bytes, "250MiB", 1,
             "largest code package, uncompressed"),
    OPT_COUNT("max-code-entries", max_code_entries, "20000", 1,
              "most files and directories in one code package"),
    OPT_COUNT("concurrency-limit", concurrency_limit, "100", 1,
              "account concurrency: execution environments at once"),
    OPT_COUNT("max-package-jobs", max_package_jobs, "4", 1,
              "code packages unpacked at once (429 TooManyRequests beyond)"),
    OPT_STRING("runtimes-dir", runtimes_dir, "auto", "DIR",
               "Realm's Node/Python bootstraps (auto: found beside the binary)"),
    OPT_MS("env-idle-ms", env_idle_ms, "300000", 1, "stop an idle execution environment after"),
    OPT_MS("env-init-timeout-ms", env_init_timeout_ms, "10000", 1,
           "time a new environment gets to ask for its first invocation"),
    OPT_SIZE("env-tmp-bytes", env_tmp_bytes, "512MiB", 1048576,
             "size of each environment's private /tmp"),
    OPT_COUNT("env-pids-max", env_pids_max, "1024", 8, "processes and threads in one environment"),
    OPT_ENUM("env-network", env_network, "private", "private|none|host",
             "environments' network: private (own namespace, outbound through slirp4netns, "
             "host loopback unreachable), none (only the runtime API), host (the host's own: "
             "local development only)"),
    OPT_STRING("env-host-uids", env_host_uids, "1000000-1999999", "FIRST-LAST",
               "when root: unprivileged host uids environments run as, one per tenant"),
    OPT_BOOL("env-tmp-disk", env_tmp_disk, "true",
             "when root: /tmp is a disk of its own (loop-mounted ext4), not memory"),
    OPT_COUNT("invoke-queue-depth", invoke_queue_depth, "100", 0,
              "invocations that wait per function when all may run (429 beyond)"),
    OPT_COUNT("event-retries", event_retries, "2", 0, "retries of a failed Event invocation"),
    OPT_MS("event-retry-base-ms", event_retry_base_ms, "1000", 0,
           "first Event retry delay (doubles each retry)"),
    OPT_MS("event-lease-ms", event_lease_ms, "1800000", 1000,
           "on a shared --db: how long a server holds a queued event it took (renewed "
           "while it lives; a dead server's events run elsewhere after it)"),
    OPT_COUNT("event-queue-max-per-function", event_queue_max_per_function, "100000", 1,
              "queued Event invocations of one function (429 beyond)"),
    OPT_COUNT("event-queue-max-per-tenant", event_queue_max_per_tenant, "200000", 1,
              "queued Event invocations of one tenant, all its functions (429 beyond)"),
    OPT_SIZE("log-file-bytes", log_file_bytes, "1MiB", 4096,
             "per-function log file size (one older file is kept)"),
    OPT_BOOL("auth", auth, "false", "require API keys (WebSocket) and SigV4 (control API)"),
    OPT_STRING("admin-key", admin_key, "none", "KEY",
               "a key that acts for any tenant (and reads /metrics); none: no admin"),
    OPT_COUNT("rate-limit", rate_limit, "100", 1, "default requests per second per key"),
    OPT_COUNT("rate-burst", rate_burst, "200", 1, "default burst per key"),
    OPT_COUNT("max-connections", max_connections, "10000", 1,
              "client WebSockets at once (503 beyond)"),
    OPT_COUNT("max-tenant-connections", max_tenant_connections, "1000", 1,
              "client WebSockets of one tenant at once"),
    OPT_COUNT("max-control-connections", max_control_connections, "1024", 1,
              "control API connections at once (503 beyond)"),
    OPT_COUNT("max-metrics-connections", max_metrics_connections, "128", 1,
              "metrics listener connections at once (503 beyond)"),
    OPT_COUNT("max-runtime-connections", max_runtime_connections, "1024", 1,
              "runtime API connections at once, from environments (503 beyond)"),
    OPT_COUNT("max-idle-http-connections", max_idle_http_connections, "256", 1,
              "idle HTTP connections kept per listener; beyond, the oldest close"),
    OPT_COUNT("reserved-fds", reserved_fds, "2048", 64,
              "descriptors kept from connections for environments, storage and logs"),
    OPT_LIST("model", models, "bundled", "NAME=PATH.gguf",
             "a model for generate (repeatable; the first is the default; bundled: "
             "models/stories260K.gguf; none: no model)"),
    OPT_MS("llm-timeout-ms", llm_timeout_ms, "300000", 1000, "longest generation"),
    OPT_SIZE("llm-memory-bytes", llm_memory_bytes, "0", 0,
             "memory limit of a model environment (0: twice the model file plus 1 GiB)"),
    OPT_COUNT("llm-threads", llm_threads, "0", 0,
              "threads per generation (0: half the cores, at least 1)"),
    OPT_STRING("provisioned", provisioned, "none", "LIST",
               "warm environments kept per function: [ACCOUNT/]NAME[:QUALIFIER]=N,..."),
};

#define OPTIONS_CNT (sizeof(options) / sizeof(options[0]))

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static int fail(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes a message to err (if there is room for one) and returns -1. */
static int fail(char *err, size_t err_len, const char *fmt, ...)
{
    if (err != NULL && err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Name equality where '-' and '_' are the same character. */
static int name_eq(const char *canonical, const char *name, size_t name_len)
{
    size_t i;
    for (i = 0; i < name_len; i++) {
        char a = canonical[i], b = name[i];
        if (a == '\0') return 0;
        if (b == '_') b = '-';
        if (a != b) return 0;
    }
    return canonical[i] == '\0';
}

static const cfg_opt_t *find_opt(const char *name, size_t name_len)
{
    for (size_t i = 0; i < OPTIONS_CNT; i++) {
        if (name_eq(options[i].name, name, name_len)) return &options[i];
    }
    return NULL;
}

/*
 * Reads decimal digits from *s, advancing it past them. Returns 0, -1 if
 * there are no digits, or -2 if the number does not fit in 64 bits (all the
 * digits are still consumed so the caller can look at what follows).
 */
static int parse_digits(const char **s, uint64_t *out)
{
    const char *p = *s;
    uint64_t n = 0;
    int overflow = 0;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            overflow = 1;
        else
            n = n * 10 + d;
        p++;
    }
    if (p == *s) return -1;
    *s = p;
    *out = n;
    return overflow ? -2 : 0;
}

/*
 * Size suffix at s: "" or k/K/m/M/g/G, optionally followed by "B" or "iB".
 * All are binary multiples (KB == KiB == 1024). Returns 0 and the multiplier,
 * or -1 for anything else.
 */
static int parse_size_suffix(const char *s, uint64_t *mult)
{
    if (*s == '\0') {
        *mult = 1;
        return 0;
    }
    switch (*s) {
    case 'k':
    case 'K':
        *mult = UINT64_C(1) << 10;
        break;
    case 'm':
    case 'M':
        *mult = UINT64_C(1) << 20;
        break;
    case 'g':
    case 'G':
        *mult = UINT64_C(1) << 30;
        break;
    default:
        return -1;
    }
    s++;
    if (strcmp(s, "") == 0 || strcmp(s, "B") == 0 || strcmp(s, "iB") == 0) return 0;
    return -1;
}

static int in_choices(const char *choices, const char *v)
{
    size_t v_len = strlen(v);
    const char *p = choices;
    for (;;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == v_len && memcmp(p, v, len) == 0) return 1;
        if (bar == NULL) return 0;
        p = bar + 1;
    }
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Parses v as an option of type SIZE, DURATION or COUNT and checks its range. */
static int parse_u64_opt(const cfg_opt_t *o, const char *v, uint64_t *out, char *err,
                         size_t err_len)
{
    const char *p = v;
    uint64_t n = 0, mult = 1;
    /* Sizes become size_t; on 64-bit targets this is no limit at all. */
    uint64_t max = o->type == REALM_CFG_SIZE ? (uint64_t)SIZE_MAX : UINT64_MAX;
    const char *unit = o->type == REALM_CFG_SIZE       ? " bytes"
                       : o->type == REALM_CFG_DURATION ? " ms"
                                                       : "";
    int rc = parse_digits(&p, &n);

    if (o->type == REALM_CFG_SIZE) {
        if (rc == -1 || parse_size_suffix(p, &mult) != 0) {
            return fail(err, err_len,
                        "--%s: '%s' is not a size (a byte count, optionally with a suffix "
                        "k/K/KB/KiB, m/M/MB/MiB or g/G/GB/GiB)",
                        o->name, v);
        }
    } else if (rc == -1 || *p != '\0') {
        return fail(err, err_len, "--%s: '%s' is not %s", o->name, v,
                    o->type == REALM_CFG_DURATION ? "a duration (whole milliseconds)"
                                                  : "a number (a whole number)");
    }
    if (rc == -2 || n > max / mult) {
        return fail(err, err_len, "--%s: '%s' is too large (at most %" PRIu64 "%s)", o->name, v,
                    max, unit);
    }
    n *= mult;
    if (n < o->min) {
        return fail(err, err_len, "--%s: '%s' is too small (at least %" PRIu64 "%s)", o->name, v,
                    o->min, unit);
    }
    *out = n;
    return 0;
}

/* Parses v by o's type and stores it in c; on failure c is left unchanged. */
static int set_opt(realm_config_t *c, const cfg_opt_t *o, const char *v, char *err, size_t err_len)
{
    char *field = (char *)c + o->offset;

    switch (o->type) {
    case REALM_CFG_LIST: {
        if (*v == '\0' || strchr(v, ',')) {
            return fail(err, err_len, "--%s: give one item per use, not '%s'", o->name, v);
        }
        char **s = (char **)(void *)field;
        /* The first use replaces the default ("none", or a list's own default). */
        if (!*s || strcmp(*s, "none") == 0 || strcmp(*s, o->def) == 0) {
            free(*s);
            *s = realm_strdup(v);
        } else {
            size_t n = strlen(*s) + strlen(v) + 2;
            char *joined = realm_malloc(n);
            snprintf(joined, n, "%s,%s", *s, v);
            free(*s);
            *s = joined;
        }
        return 0;
    }
    case REALM_CFG_STRING:
    case REALM_CFG_ENUM: {
        if (o->type == REALM_CFG_STRING && *v == '\0') {
            return fail(err, err_len, "--%s: the value must not be empty", o->name);
        }
        if (o->type == REALM_CFG_ENUM && !in_choices(o->choices, v)) {
            return fail(err, err_len, "--%s: '%s' is not one of %s", o->name, v, o->choices);
        }
        char **s = (char **)(void *)field;
        free(*s);
        *s = realm_strdup(v);
        return 0;
    }
    case REALM_CFG_PORT: {
        const char *p = v;
        uint64_t n;
        if (parse_digits(&p, &n) != 0 || *p != '\0' || n > 65535) {
            return fail(err, err_len, "--%s: '%s' is not a port (0-65535)", o->name, v);
        }
        *(int *)(void *)field = (int)n;
        return 0;
    }
    case REALM_CFG_SIZE:
    case REALM_CFG_DURATION:
    case REALM_CFG_COUNT: {
        uint64_t n = 0;
        if (parse_u64_opt(o, v, &n, err, err_len) != 0) return -1;
        *(uint64_t *)(void *)field = n;
        return 0;
    }
    case REALM_CFG_BOOL: {
        int b;
        if (parse_bool(v, &b) != 0) {
            return fail(err, err_len,
                        "--%s: '%s' is not a boolean (true/false, 1/0, yes/no, on/off)", o->name,
                        v);
        }
        *(int *)(void *)field = b;
        return 0;
    }
    }
    return fail(err, err_len, "--%s: unsupported option type", o->name);
}

/* ------------------------------------------------------------------------ */
/* Defaults, dispose, set                                                    */
/* ------------------------------------------------------------------------ */

void realm_config_defaults(realm_config_t *c)
{
    char err[256];
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < OPTIONS_CNT; i++) {
        if (set_opt(c, &options[i], options[i].def, err, sizeof(err)) != 0) {
            /* A bad default is a bug in the table above, not a user error. */
            fprintf(stderr, "realm: bad built-in default: %s\n", err);
            abort();
        }
    }
}

void realm_config_dispose(realm_config_t *c)
{
    for (size_t i = 0; i < OPTIONS_CNT; i++) {
        if (options[i].type != REALM_CFG_STRING && options[i].type != REALM_CFG_ENUM &&
            options[i].type != REALM_CFG_LIST)
            continue;
        char **s = (char **)(void *)((char *)c + options[i].offset);
        free(*s);
        *s = NULL;
    }
}

int realm_config_set(realm_config_t *c, const char *name, const char *value, char *err,
                     size_t err_len)
{
    const cfg_opt_t *o = find_opt(name, strlen(name));
    if (o == NULL) return fail(err, err_len, "unknown option '%s'", name);
    if (value == NULL) return fail(err, err_len, "--%s: missing value", o->name);
    return set_opt(c, o, value, err, err_len);
}

/* ------------------------------------------------------------------------ */
/* Config file                                                               */
/* ------------------------------------------------------------------------ */

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/*
 * Parses one line (newline already stripped) into c. Returns 0 or -1 with a
 * message (without the "PATH:LINE: " prefix) in err.
 *
 *   line    = blank* [ name blank* '=' blank* value ] blank* [ '#' any* ]
 *   value   = quoted | unquoted
 *   quoted  = '"' ( '\"' | '\\' | any but '"' )* '"'   ; other '\' kept as is
 *   unquoted runs to '#' or the end, trailing blanks trimmed
 */
static int load_line(realm_config_t *c, char *line, char *err, size_t err_len)
{
    char *p = line;
    while (is_blank(*p))
        p++;
    if (*p == '\0' || *p == '#') return 0;

    char *name = p;
    while (*p != '\0' && *p != '=' && !is_blank(*p))
        p++;
    size_t name_len = (size_t)(p - name);
    while (is_blank(*p))
        p++;
    if (name_len == 0 || *p != '=') return fail(err, err_len, "expected 'name = value'");
    p++;
    while (is_blank(*p))
        p++;

    const cfg_opt_t *o = find_opt(name, name_len);
    if (o == NULL) return fail(err, err_len, "unknown option '%.*s'", (int)name_len, name);

    int rc;
    if (*p == '"') {
        realm_buf_t v;
        realm_buf_init(&v);
        p++;
        while (*p != '\0' && *p != '"') {
            if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
            realm_buf_append(&v, p, 1);
            p++;
        }
        if (*p != '"') {
            realm_buf_dispose(&v);
            return fail(err, err_len, "unterminated quoted value");
        }
        p++;
        while (is_blank(*p))
            p++;
        if (*p != '\0' && *p != '#') {
            realm_buf_dispose(&v);
            return fail(err, err_len, "unexpected text after the closing quote");
        }
        /* v.data stays NULL for "" (nothing was appended). */
        rc = set_opt(c, o, v.data ? v.data : "", err, err_len);
        realm_buf_dispose(&v);
    } else {
        char *end = strchr(p, '#');
        if (end == NULL) end = p + strlen(p);
        while (end > p && is_blank(end[-1]))
            end--;
        *end = '\0';
        rc = set_opt(c, o, p, err, err_len);
    }
    return rc;
}

int realm_config_load_file(realm_config_t *c, const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) return fail(err, err_len, "%s: %s", path, strerror(errno));

    char *line = NULL, *msg = realm_malloc(err_len ? err_len : 1);
    size_t cap = 0, lineno = 0;
    ssize_t n;
    int rc = 0;

    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (memchr(line, '\0', (size_t)n) != NULL) {
            rc = fail(err, err_len, "%s:%zu: the line holds a NUL byte", path, lineno);
            goto done;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (load_line(c, line, msg, err_len) != 0) {
            rc = fail(err, err_len, "%s:%zu: %s", path, lineno, msg);
            goto done;
        }
    }
    /* getline() returns -1 both at the end and on a read error (EISDIR). */
    if (ferror(f)) rc = fail(err, err_len, "%s: %s", path, strerror(errno));

done:
    free(line);
    free(msg);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

typedef enum { ARG_HELP, ARG_CONFIG, ARG_OPTION } arg_kind_t;

typedef struct {
    arg_kind_t kind;
    const cfg_opt_t *opt; /* ARG_OPTION */
    const char *value;    /* borrowed from argv, or a string literal */
} arg_t;

/*
 * Reads the flag at argv[*i] (and its value, if separate), advancing *i past
 * both. Returns 0, or -1 with a message (stray argument, unknown option,
 * missing value); *i has still advanced so a tolerant caller can go on.
 *
 * A separate value that starts with "--" is taken as a forgotten value
 * ("--port --host x") rather than as the value; --name=--x still works.
 */
static int next_arg(int argc, char **argv, int *i, arg_t *a, char *err, size_t err_len)
{
    const char *tok = argv[(*i)++];

    if (strcmp(tok, "-h") == 0) {
        a->kind = ARG_HELP;
        return 0;
    }
    if (strncmp(tok, "--", 2) != 0 || tok[2] == '\0') {
        return fail(err, err_len, "unexpected argument '%s'", tok);
    }

    const char *name = tok + 2;
    const char *eq = strchr(name, '=');
    size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
    const char *canonical;

    a->opt = NULL;
    if (name_eq("help", name, name_len)) {
        a->kind = ARG_HELP;
        return 0;
    } else if (name_eq("config", name, name_len)) {
        a->kind = ARG_CONFIG;
        canonical = "config";
    } else if ((a->opt = find_opt(name, name_len)) != NULL) {
        a->kind = ARG_OPTION;
        canonical = a->opt->name;
    } else {
        return fail(err, err_len, "unknown option '--%.*s'", (int)name_len, name);
    }

    if (eq != NULL) {
        a->value = eq + 1;
    } else if (a->opt != NULL && a->opt->type == REALM_CFG_BOOL) {
        a->value = "true";
    } else if (*i < argc && strncmp(argv[*i], "--", 2) != 0) {
        a->value = argv[(*i)++];
    } else {
        return fail(err, err_len, "--%s: missing value", canonical);
    }
    if (a->kind == ARG_CONFIG && *a->value == '\0') {
        return fail(err, err_len, "--config: missing value");
    }
    return 0;
}

/*
 * Three walks over argv: the first only looks for --help (which wins over
 * everything, even errors), the second checks the shape of the arguments and
 * finds the last --config, the third applies the flags on top of the file.
 */
int realm_config_parse_args(realm_config_t *c, int argc, char **argv, char *err, size_t err_len)
{
    arg_t a;
    const char *config_path = NULL;

    for (int i = 0; i < argc;) {
        if (next_arg(argc, argv, &i, &a, NULL, 0) == 0 && a.kind == ARG_HELP) return 1;
    }
    for (int i = 0; i < argc;) {
        if (next_arg(argc, argv, &i, &a, err, err_len) != 0) return -1;
        if (a.kind == ARG_CONFIG) config_path = a.value;
    }
    if (config_path != NULL && realm_config_load_file(c, config_path, err, err_len) != 0) {
        return -1;
    }
    for (int i = 0; i < argc;) {
        if (next_arg(argc, argv, &i, &a, err, err_len) != 0) return -1;
        if (a.kind == ARG_OPTION && set_opt(c, a.opt, a.value, err, err_len) != 0) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Help                                                                      */
/* ------------------------------------------------------------------------ */

/* "--name PLACEHOLDER" for one row (bare "--name" for booleans). */
static void flag_usage(realm_buf_t *b, const cfg_opt_t *o)
{
    realm_buf_reset(b);
    if (o->type == REALM_CFG_BOOL)
        realm_buf_appendf(b, "--%s", o->name);
    else
        realm_buf_appendf(b, "--%s %s", o->name, o->placeholder);
}

void realm_config_print_help(FILE *out)
{
    realm_buf_t b;
    int width = (int)strlen("--config PATH");

    realm_buf_init(&b);
    for (size_t i = 0; i < OPTIONS_CNT; i++) {
        flag_usage(&b, &options[i]);
        if ((int)b.len > width) width = (int)b.len;
    }

    fprintf(out, "usage: realm serve [options]\n\noptions:\n");
    fprintf(out, "  %-*s  %s\n", width, "--config PATH",
            "read 'name = value' lines from a file (flags win)");
    for (size_t i = 0; i < OPTIONS_CNT; i++) {
        flag_usage(&b, &options[i]);
        fprintf(out, "  %-*s  %s (default: %s)\n", width, b.data, options[i].help, options[i].def);
    }
    fprintf(out, "  %-*s  %s\n", width, "-h, --help", "show this help and exit");
    fprintf(out, "\nSIZE is a byte count with an optional k, M or G suffix (binary: 1k = 1024);\n"
                 "MS is whole milliseconds. Options are read from defaults, then the --config\n"
                 "file, then flags. In the file, '-' and '_' are interchangeable in names,\n"
                 "'#' starts a comment and values may be double-quoted.\n");
    realm_buf_dispose(&b);
}
