/*
 * config.h - `realm serve` configuration: defaults, a config file, flags.
 *
 * DESIGN: one table of options (name, type, field, default, help) drives
 * everything: the flag parser (--name VALUE and --name=VALUE), the config
 * file parser (`name = value` lines; '#' starts a comment; '-' and '_' are
 * interchangeable in names; values may be double-quoted), and the
 * `realm serve --help` text, so the three cannot drift apart.
 * Precedence: defaults < config file (--config PATH) < flags.
 *
 * Sizes accept a plain byte count or a suffix k/K/KB/KiB, m/M/MB/MiB,
 * g/G/GB/GiB (all binary). Durations are integer milliseconds. Ports are
 * 0..65535 (0 means an ephemeral port). Booleans: true/false/1/0/yes/no/on/off
 * (a boolean flag given without a value means true).
 */
#ifndef REALM_CONFIG_CONFIG_H
#define REALM_CONFIG_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    char *host;                    /* owned; listen address for every listener */
    int port;                      /* client WebSocket listener */
    int control_port;              /* Lambda control API */
    int runtime_port;              /* Lambda runtime API */
    int metrics_port;              /* Prometheus /metrics */
    char *data_dir;                /* owned */
    char *db;                      /* owned; "sqlite" (files in data_dir) or a postgresql:// URL */
    char *server_key_file;         /* owned; "DATA_DIR/..." is in data_dir (auth/keys.h) */
    char *nats;                    /* owned; "none" or nats://HOST:PORT[,...] (docs/cluster.md) */
    char *node_id;                 /* owned; this node's id in a cluster; "auto": HOST-PORT */
    uint64_t node_lease_ms;        /* an environment's concurrency lease in a cluster */
    char *log_format;              /* owned; "text" | "json" */
    char *log_level;               /* owned; "debug" | "info" | "warn" | "error" */
    uint64_t max_message_bytes;    /* WebSocket message limit (close 1009) */
    uint64_t max_send_queue_bytes; /* per-connection unsent bytes before the peer is dropped */
    uint64_t max_header_bytes;     /* HTTP request header block limit (431) */
    uint64_t max_body_bytes;       /* default HTTP request body limit (413) */
    uint64_t header_timeout_ms;    /* time to receive a whole request header block */
    uint64_t idle_timeout_ms;      /* keep-alive idle time / body progress time */
    uint64_t ws_ping_interval_ms;  /* ping a silent WebSocket peer after this; drop after 2x */
    uint64_t shutdown_grace_ms;    /* in-flight work allowed to finish on SIGINT/SIGTERM */
    uint64_t max_calls_per_connection;     /* in-flight calls on one client WebSocket */
    char *region;                          /* owned; the AWS region in ARNs */
    char *account_id;                      /* owned; 12 digits, the account in ARNs */
    uint64_t max_code_zip_bytes;           /* largest code package (zip bytes) */
    uint64_t max_code_unzipped_bytes;      /* largest code package, uncompressed */
    uint64_t max_code_entries;             /* most entries in one code package */
    uint64_t concurrency_limit;            /* account concurrency (environments at once) */
    uint64_t max_package_jobs;             /* code packages unpacked at once (429 beyond) */
    char *runtimes_dir;                    /* owned; our bootstraps (node/, python/); "" = find */
    uint64_t env_idle_ms;                  /* an idle execution environment is stopped after this */
    uint64_t env_init_timeout_ms;          /* from start to the runtime's first `next` */
    uint64_t env_tmp_bytes;                /* size of each environment's /tmp */
    uint64_t env_pids_max;                 /* processes and threads in one environment */
    char *env_network;                     /* owned; "private" | "none" | "host" */
    char *env_host_uids;                   /* owned; "FIRST-LAST" host uids of environments */
    int env_tmp_disk;                      /* /tmp on a loop-mounted disk when root */
    uint64_t invoke_queue_depth;           /* invocations waiting per function before 429 */
    uint64_t event_retries;                /* retries of a failed Event invocation */
    uint64_t event_retry_base_ms;          /* first retry delay; doubles each time */
    uint64_t event_lease_ms;               /* a taken event's lease on a shared database */
    uint64_t event_queue_max_per_function; /* queued Events of one function (429 beyond) */
    uint64_t event_queue_max_per_tenant;   /* queued Events of one tenant (429 beyond) */
    uint64_t log_file_bytes;               /* per-function log file size before rotation */
    int auth;                              /* API keys and SigV4 required on the public surfaces */
    char *admin_key;                       /* owned; acts for any tenant; "none" for no admin key */
    uint64_t rate_limit;                   /* default requests per second per key */
    uint64_t rate_burst;                   /* default bucket size per key */
    uint64_t max_connections;              /* client WebSockets at once (503 beyond) */
    uint64_t max_tenant_connections;       /* client WebSockets of one tenant at once */
    uint64_t max_control_connections;      /* control API connections at once (503 beyond) */
    uint64_t max_metrics_connections;      /* metrics listener connections at once */
    uint64_t max_runtime_connections;      /* runtime API connections at once */
    uint64_t max_idle_http_connections;    /* idle HTTP connections per listener; oldest close */
    uint64_t reserved_fds;                 /* descriptors kept for environments, storage, logs */
    char *models;                          /* owned; "NAME=PATH,...", "bundled" or "none" */
    uint64_t llm_timeout_ms;               /* longest generation */
    uint64_t llm_memory_bytes; /* memory limit of a model environment; 0: from the model size */
    uint64_t llm_threads;      /* threads per generation */
    char *provisioned;         /* owned; "NAME[:QUALIFIER]=N,..." warm environments, or "none" */
} realm_config_t;

/* Fills c with the defaults (allocates the string fields). */
void realm_config_defaults(realm_config_t *c);
/* Frees the string fields; safe on a zeroed or half-filled config. */
void realm_config_dispose(realm_config_t *c);

/*
 * Sets one option by name ("max-message-bytes" or "max_message_bytes") from
 * its text value. Returns 0, or -1 with a message in err ("unknown option
 * 'x'", "--port: '70000' is not a port (0-65535)").
 */
int realm_config_set(realm_config_t *c, const char *name, const char *value, char *err,
                     size_t err_len);

/* Loads a config file. Returns 0, or -1 with "PATH:LINE: message" in err. */
int realm_config_load_file(realm_config_t *c, const char *path, char *err, size_t err_len);

/*
 * Parses the arguments that follow `serve` (argv[0] is the first of them).
 * A --config PATH anywhere is loaded first, then the other flags apply on top.
 * Returns 0 on success, 1 if --help/-h was given (nothing else is checked),
 * or -1 with a message in err (unknown flag, missing value, bad value,
 * stray positional argument).
 */
int realm_config_parse_args(realm_config_t *c, int argc, char **argv, char *err, size_t err_len);

/* Prints the `realm serve` usage with every option, its default and help. */
void realm_config_print_help(FILE *out);

#endif
